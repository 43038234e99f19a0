"""Approved-report exports read back with independent readers: pydicom for the SR, fhir.resources (R4B,
whose DiagnosticReport has R4's required fields) for FHIR; every SR written is checked by dicom3tools'
dciodvfy (tests/conftest.py)."""
from __future__ import annotations

import base64
import dataclasses
import json
import os
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from pydantic import ValidationError
from pydicom import dcmread

from tests.conftest import dciodvfy
from tests.test_faults import remount, tmpfs
from xr.config import DEFAULT_LOCAL_USER, DEFAULT_ORGANIZATION, settings
from xr.errors import UserError
from xr.export.approved import ApprovedReport
from xr.export.fhir import to_fhir, write_fhir
from xr.export.sr import BASIC_TEXT_SR, person_name, read_sr_text, write_sr
from xr.export.text import to_text, write_text

FINDINGS = "Nodule Ø 5 mm in the right upper lobe, unchanged. <script>alert(1)</script> Café."
IMPRESSION = "No acute cardiopulmonary process. Follow-up per protocol, é."
# The one warning left, by design: the workstation holds no patient identity to put there.
NO_PATIENT_ID = "Warning - Missing attribute or value that would be needed to build DICOMDIR - Patient ID"


@pytest.fixture(autouse=True)
def site(monkeypatch):
    """Exports as on an installation that has not named its organisation or its local user."""
    monkeypatch.delenv("XR_ORGANIZATION", raising=False)
    monkeypatch.delenv("XR_LOCAL_USER", raising=False)


@pytest.fixture
def report() -> ApprovedReport:
    return ApprovedReport(
        study_key="ab" * 32, approval_id=7, findings=FINDINGS, impression=IMPRESSION, approved_by="dr_house",
        approved_at=datetime(2024, 3, 5, 14, 7, 9, tzinfo=UTC), predecessor_id=None, version=1, model="fusion-gen",
        model_version="2024.03", indication="Cough for two weeks", views=("frontal", "lateral"))


def test_sr_round_trip(tmp_path, report):
    path = write_sr(report, tmp_path / "report.dcm")
    ds = dcmread(path)
    assert ds.SOPClassUID == BASIC_TEXT_SR == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == "SR"
    assert (ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag) == ("COMPLETE", "VERIFIED", "FINAL")
    observer = ds.VerifyingObserverSequence[0]
    assert str(observer.VerifyingObserverName) == "House^^^Dr"  # the account dr_house as a DICOM PN
    assert observer.VerifyingOrganization == DEFAULT_ORGANIZATION
    assert (ds.ContentDate, ds.ContentTime) == ("20240305", "140709")
    assert read_sr_text(path) == (FINDINGS, IMPRESSION)
    assert all(ds[k].value in ("", None) for k in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"))
    assert dciodvfy(path) == [NO_PATIENT_ID]


def test_sr_names_the_site_and_the_local_signer(tmp_path, report, monkeypatch):
    """Issue 16: VerifyingOrganization was empty (a dciodvfy error) and single-user approvals were signed
    'local' (the retired PN form); both now come from the settings."""
    monkeypatch.setenv("XR_ORGANIZATION", "Saint Example Hospital, Radiology")
    monkeypatch.setenv("XR_LOCAL_USER", "Gregory House")
    path = write_sr(dataclasses.replace(report, approved_by="local"), tmp_path / "local.dcm")
    observer = dcmread(path).VerifyingObserverSequence[0]
    assert str(observer.VerifyingObserverName) == "House^Gregory"
    assert observer.VerifyingOrganization == "Saint Example Hospital, Radiology"
    assert dciodvfy(path) == [NO_PATIENT_ID]


def test_sr_default_local_signer(tmp_path, report):
    path = write_sr(dataclasses.replace(report, approved_by="local"), tmp_path / "local.dcm", settings())
    assert str(dcmread(path).VerifyingObserverSequence[0].VerifyingObserverName) == person_name(DEFAULT_LOCAL_USER)
    assert person_name(DEFAULT_LOCAL_USER) == "Radiologist^Local"
    assert dciodvfy(path) == [NO_PATIENT_ID]


@pytest.mark.parametrize("name, pn", [
    ("dr.house", "House^^^Dr"), ("jane.doe", "Doe^Jane"), ("rad1", "Rad1^"), ("a-b_c", "C^A^B"),
    ("Gregory House", "House^Gregory"), ("House, Gregory", "House^Gregory"), ("Prof. Ada K. Lovelace", "Lovelace^Ada^K.^Prof"),
    ("García-López, José María", "García-López^José^María"), ("back\\slash^caret=equals", "Backslashcaretequals^"),
    ("x" * 70, "X" + "x" * 62 + "^")])
def test_person_name(name, pn):
    """Every signer becomes a DICOM PN with at least one caret (without one it is the retired form),
    no delimiter of its own, and at most 64 characters."""
    assert person_name(name) == pn


@pytest.mark.parametrize("variable", ["XR_ORGANIZATION", "XR_LOCAL_USER"])
@pytest.mark.parametrize("value", ["", "   ", "a" * 65, "back\\slash", "caret^", "bell\x07"])
def test_settings_refuse_names_an_export_cannot_hold(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        settings()


def test_sr_uids_shared_by_study_not_by_approval(tmp_path, report):
    first = dcmread(write_sr(report, tmp_path / "a.dcm"))
    dciodvfy(tmp_path / "a.dcm")
    amended = dcmread(write_sr(dataclasses.replace(report, approval_id=8, predecessor_id=7, version=2), tmp_path / "b.dcm"))
    assert dciodvfy(tmp_path / "b.dcm") == [NO_PATIENT_ID]
    again = dcmread(write_sr(report, tmp_path / "c.dcm"))
    assert first.StudyInstanceUID == amended.StudyInstanceUID
    assert first.SOPInstanceUID != amended.SOPInstanceUID
    assert first.SeriesInstanceUID != amended.SeriesInstanceUID
    assert first.SOPInstanceUID == again.SOPInstanceUID


def test_sr_omits_empty_section(tmp_path, report):
    path = write_sr(dataclasses.replace(report, findings="  "), tmp_path / "r.dcm")
    assert read_sr_text(path) == ("", IMPRESSION)
    assert len(dcmread(path).ContentSequence) == 1
    assert dciodvfy(path) == [NO_PATIENT_ID]


def test_fhir_validates(tmp_path, report):
    d = to_fhir(report)
    dr = DiagnosticReport.model_validate(d)
    assert dr.status == "final" and dr.code.coding[0].code == "18748-4"
    assert "subject" not in d
    assert base64.b64decode(d["presentedForm"][0]["data"]).decode("utf-8") == to_text(report)
    div = d["text"]["div"]
    assert "<script>" not in div and "&lt;script&gt;" in div and "Ø 5 mm" in div
    assert d["identifier"] == [{"system": "urn:xr:study-key", "value": report.study_key}]
    assert d["issued"] == d["effectiveDateTime"] == "2024-03-05T14:07:09+00:00"
    written = json.loads(write_fhir(report, tmp_path / "r.json").read_text("utf-8"))
    assert written == d
    assert d["performer"] == [{"type": "Practitioner", "display": "dr_house"},
                              {"type": "Organization", "display": DEFAULT_ORGANIZATION}]
    assert d["resultsInterpreter"] == d["performer"][:1]


def test_fhir_single_user_performer(report, monkeypatch):
    monkeypatch.setenv("XR_LOCAL_USER", "Gregory House")
    monkeypatch.setenv("XR_ORGANIZATION", "Saint Example Hospital")
    d = to_fhir(dataclasses.replace(report, approved_by="local"))
    assert [p["display"] for p in d["performer"]] == ["Gregory House", "Saint Example Hospital"]
    assert "local" not in json.dumps(d["performer"])
    DiagnosticReport.model_validate(d)
    text = base64.b64decode(d["presentedForm"][0]["data"]).decode("utf-8")  # the text export, as FHIR embeds it
    assert "Approved by Gregory House on" in text and "Approved by local" not in text


@pytest.mark.parametrize("field", ["status", "code"])
def test_fhir_missing_required_field_fails(report, field):
    d = to_fhir(report)
    del d[field]
    with pytest.raises(ValidationError):
        DiagnosticReport.model_validate(d)


def test_sr_amendment_names_its_predecessor(tmp_path, report):
    """Issue 31: an amended SR references the one it replaces (Predecessor Documents Sequence), which
    passes dciodvfy; the first SR has none."""
    first = dcmread(write_sr(report, tmp_path / "a.dcm"))
    assert "PredecessorDocumentsSequence" not in first
    path = write_sr(dataclasses.replace(report, approval_id=9, predecessor_id=7, version=2), tmp_path / "b.dcm")
    assert dciodvfy(path) == [NO_PATIENT_ID]
    ref = dcmread(path).PredecessorDocumentsSequence[0]
    assert ref.StudyInstanceUID == first.StudyInstanceUID
    assert ref.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    sop = ref.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert (sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID) == (first.SOPClassUID, first.SOPInstanceUID)


def test_fhir_amended(report):
    """Issue 31: the amendment is the same resource (same id) in a new version, status amended."""
    first = to_fhir(report)
    d = to_fhir(dataclasses.replace(report, approval_id=8, predecessor_id=7, version=2))
    assert (first["status"], first["meta"]["versionId"]) == ("final", "1")
    assert (d["status"], d["meta"]["versionId"]) == ("amended", "2")
    assert d["id"] == first["id"]
    DiagnosticReport.model_validate(d)


def test_text(tmp_path, report):
    text = to_text(report)
    assert text.startswith("Chest X-ray report\nViews: frontal, lateral\nIndication: Cough for two weeks\n")
    assert f"FINDINGS: {FINDINGS}\n\nIMPRESSION: {IMPRESSION}" in text
    assert "Approved by dr_house on 2024-03-05 14:07 UTC\n" in text
    assert text.endswith("Drafted with fusion-gen 2024.03; read and corrected by the approving radiologist.\n")
    assert "(amended)" in to_text(dataclasses.replace(report, predecessor_id=6, version=2))
    assert write_text(report, tmp_path / "r.txt").read_text("utf-8") == text


def test_rejects_uid_and_naive_time(report):
    with pytest.raises(ValueError):
        dataclasses.replace(report, study_key="1.2.840.113619.2.55.3")
    with pytest.raises(ValueError):
        dataclasses.replace(report, approved_at=datetime(2024, 3, 5, 14, 7))


@pytest.fixture
def read_only_dir(tmp_path):
    """An empty folder nothing may be written into. Root ignores folder permissions, so as root it is a
    tmpfs mounted read-only (skipped where even root may not mount); otherwise a folder without write
    permission."""
    out = tmp_path / "ro"
    if os.geteuid() == 0:
        with tmpfs(out, size="64k"):
            remount(out, "ro")
            yield out
        return
    out.mkdir()
    out.chmod(0o500)
    try:
        yield out
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize("write", [write_sr, write_fhir, write_text])
def test_read_only_directory(read_only_dir, report, write):
    with pytest.raises(UserError) as e:
        write(report, read_only_dir / "report.out")
    assert "\n" not in str(e.value) and str(e.value).startswith("cannot write report.out: ")
    assert list(read_only_dir.iterdir()) == []


def test_unwritable_path_even_as_root(tmp_path, report):
    (tmp_path / "taken").write_text("a file where the directory should be")
    with pytest.raises(UserError, match=r"^cannot write report\.dcm: [^\n]+$"):
        write_sr(report, tmp_path / "taken" / "report.dcm")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
