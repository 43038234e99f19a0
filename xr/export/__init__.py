"""Approved reports out of the workstation: plain text, HL7 FHIR R4 and DICOM Basic Text SR."""
from __future__ import annotations

from collections.abc import Callable


def approved_report_writers() -> dict[str, tuple[str, Callable]]:
    """Format name -> (file suffix, writer(report, path) -> path)."""
    from xr.export.fhir import write_fhir
    from xr.export.sr import write_sr
    from xr.export.text import write_text

    return {"sr": (".dcm", write_sr), "fhir": (".json", write_fhir), "text": (".txt", write_text)}
