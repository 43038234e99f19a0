"""HL7 FHIR R4 DiagnosticReport. No subject: it is 0..1 in R4 and the workstation holds no patient identity,
so the receiving system links the report to its patient through the study-key identifier."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from xr.config import Settings, settings
from xr.export.approved import ApprovedReport, signer
from xr.export.text import TITLE, to_text
from xr.files import write_atomic

STUDY_KEY_SYSTEM = "urn:xr:study-key"


def resource_id(r: ApprovedReport) -> str:
    """One id per study: an amendment is a new version of the same resource, not a second report.
    (FHIR ids are [A-Za-z0-9\\-\\.]{1,64}; half the key is 128 bits.)"""
    return r.study_key[:32]


def _narrative(r: ApprovedReport) -> str:
    # Report text is free text typed by users: escaped, so markup in it stays text.
    return ('<div xmlns="http://www.w3.org/1999/xhtml">'
            f"<p><b>Findings:</b> {html.escape(r.findings.strip())}</p>"
            f"<p><b>Impression:</b> {html.escape(r.impression.strip())}</p>"
            "</div>")


def to_fhir(r: ApprovedReport, s: Settings | None = None) -> dict:
    s = s or settings()
    radiologist = {"type": "Practitioner", "display": signer(r, s)}  # the configured name in single-user mode
    instant = r.approved_at.isoformat(timespec="seconds")
    resource = {
        "resourceType": "DiagnosticReport",
        "id": resource_id(r),
        "meta": {"versionId": str(r.version)},
        "text": {"status": "generated", "div": _narrative(r)},
        "identifier": [{"system": STUDY_KEY_SYSTEM, "value": r.study_key}],
        "status": "amended" if r.amended else "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                                  "display": "Radiology"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4",
                             "display": "Diagnostic imaging study"}]},
        "effectiveDateTime": instant,
        "issued": instant,
        "performer": [radiologist, {"type": "Organization", "display": s.organization}],
        "resultsInterpreter": [radiologist],
        "presentedForm": [{"contentType": "text/plain; charset=utf-8", "language": "en",
                           "data": base64.b64encode(to_text(r, s).encode("utf-8")).decode("ascii"),
                           "title": TITLE}],
    }
    if r.impression.strip():  # FHIR strings may not be empty
        resource["conclusion"] = r.impression.strip()
    return resource


def write_fhir(r: ApprovedReport, path: Path, s: Settings | None = None) -> Path:
    return write_atomic(path, (json.dumps(to_fhir(r, s), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
