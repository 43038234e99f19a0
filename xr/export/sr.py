"""DICOM Basic Text SR (TID 2000), so the approved report can go back to a PACS beside the images.
The patient module is there but empty (type 2): the workstation holds no patient identity, the receiving
system reconciles. UIDs are derived from the study key, so every export of a study shares one Study UID
and re-exporting an approval gives the same instance. Checked with dicom3tools' dciodvfy in the tests: no
errors, and no warnings but the empty Patient ID (there is none to give)."""
from __future__ import annotations

import io
import re
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import PersonName

from xr.config import Settings, settings
from xr.export.approved import ApprovedReport, signer
from xr.files import write_atomic

BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
REPORT = ("18748-4", "LN", "Diagnostic Imaging Report")
FINDINGS = ("121070", "DCM", "Findings")
FINDING = ("121071", "DCM", "Finding")
IMPRESSIONS = ("121072", "DCM", "Impressions")
IMPRESSION = ("121073", "DCM", "Impression")
ORIGINAL = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
            "AccessionNumber", "StudyID", "ReferringPhysicianName")  # copied from the PACS's study when sent back
PREFIXES = {"dr": "Dr", "prof": "Prof", "mr": "Mr", "mrs": "Mrs", "ms": "Ms", "mx": "Mx"}


def person_name(name: str) -> str:
    """A DICOM PN (Family^Given^Middle^Prefix) from an account name or a name as a person writes it:
    "dr.house" -> "House^^^Dr", "jane.doe" -> "Doe^Jane", "Gregory House" -> "House^Gregory",
    "House, Gregory" -> "House^Gregory", "rad1" -> "Rad1^". A name without a caret is the retired PN
    form (dciodvfy warns), so there is always one."""
    name = "".join(c for c in name if c.isprintable() and c not in "\\^=")
    if "," in name:
        family, _, rest = name.partition(",")
        words = rest.split() + family.split()
    else:
        # account names (xr.access: lower case, digits, . _ -) split at their punctuation; written names at spaces
        words = name.split() if " " in name.strip() else [w.capitalize() for w in re.split(r"[._-]+", name) if w]
    prefix = ""
    if len(words) > 1 and words[0].lower().rstrip(".") in PREFIXES:
        prefix = PREFIXES[words.pop(0).lower().rstrip(".")]
    family = words[-1] if words else ""
    given = words[0] if len(words) > 1 else ""
    middle = " ".join(words[1:-1])
    parts = [family[:63], given, middle, prefix]
    while len(parts) > 2 and not parts[-1]:
        parts.pop()
    return "^".join(parts)[:64]  # (64 characters at most, the carets counted)


def _code(value: str, scheme: str, meaning: str) -> Sequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return Sequence([item])


def _section(heading: tuple[str, str, str], concept: tuple[str, str, str], text: str) -> Dataset:
    entry = Dataset()
    entry.RelationshipType = "CONTAINS"
    entry.ValueType = "TEXT"
    entry.ConceptNameCodeSequence = _code(*concept)
    entry.TextValue = text
    section = Dataset()
    section.RelationshipType = "CONTAINS"
    section.ValueType = "CONTAINER"
    section.ConceptNameCodeSequence = _code(*heading)
    section.ContinuityOfContent = "SEPARATE"
    section.ContentSequence = Sequence([entry])
    return section


def _uids(study_key: str, approval_id: int) -> tuple[UID, UID]:
    """(series, instance) UIDs of one approval's SR: derived, so an amendment can name its predecessor's."""
    return (generate_uid(entropy_srcs=["xr-sr-series", study_key, str(approval_id)]),
            generate_uid(entropy_srcs=["xr-sr-instance", study_key, str(approval_id)]))


def _predecessor(study_uid: str, study_key: str, approval_id: int) -> Sequence:
    """The Predecessor Documents Sequence (a Hierarchical SOP Instance Reference) naming the SR replaced."""
    series, instance = _uids(study_key, approval_id)
    sop = Dataset()
    sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = BASIC_TEXT_SR, instance
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = series
    ref_series.ReferencedSOPSequence = Sequence([sop])
    ref_study = Dataset()
    ref_study.StudyInstanceUID = study_uid
    ref_study.ReferencedSeriesSequence = Sequence([ref_series])
    return Sequence([ref_study])


def to_dicom_sr(r: ApprovedReport, s: Settings | None = None, study: Dataset | None = None) -> Dataset:
    """`study`: the original study's patient and study attributes, read from the PACS when the report is
    sent back into it (xr.ingest.pacs.Pacs.header); held in memory only. Without, the modules stay empty."""
    s = s or settings()
    study_uid = str(study.StudyInstanceUID) if study is not None else generate_uid(entropy_srcs=["xr-study", r.study_key])
    series_uid, sop_uid = _uids(r.study_key, r.approval_id)
    date, time = r.approved_at.strftime("%Y%m%d"), r.approved_at.strftime("%H%M%S")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: report text is free text
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = r.study_key[:16]  # (SH) from the salted key, as the Study UID: no identifier of the original study
    ds.AccessionNumber = ""
    ds.Modality = "SR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = r.approval_id  # orders the approvals of a study in a viewer
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.Manufacturer = "XR drafting workstation"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = PersonName(person_name(signer(r, s)))
    observer.VerificationDateTime = date + time + "+0000"
    observer.VerifyingOrganization = s.organization  # type 1: empty fails dciodvfy
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    ds.VerifyingObserverSequence = Sequence([observer])
    # An amendment is a new instance in the same study that names the one it replaces; it stays FINAL.
    if r.predecessor_id is not None:
        ds.PredecessorDocumentsSequence = _predecessor(study_uid, r.study_key, r.predecessor_id)
    ds.PreliminaryFlag = "FINAL"
    ds.PerformedProcedureCodeSequence = Sequence()
    if study is not None:  # into the original study: its patient, accession and study attributes
        for element in study:
            if element.keyword in ORIGINAL:
                ds[element.tag] = element

    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = _code(*REPORT)
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2000"
    ds.ContentTemplateSequence = Sequence([template])
    ds.ContentSequence = Sequence(
        [_section(heading, concept, text.strip())
         for heading, concept, text in ((FINDINGS, FINDING, r.findings), (IMPRESSIONS, IMPRESSION, r.impression))
         if text.strip()])
    return ds


def write_sr(r: ApprovedReport, path: Path, s: Settings | None = None) -> Path:
    buf = io.BytesIO()
    dcmwrite(buf, to_dicom_sr(r, s), enforce_file_format=True)
    return write_atomic(path, buf.getvalue())


def _texts(items: Sequence, concept: tuple[str, str, str]) -> list[str]:
    found = []
    for item in items:
        code = item.ConceptNameCodeSequence[0]
        if item.ValueType == "TEXT" and (code.CodeValue, code.CodingSchemeDesignator) == concept[:2]:
            found.append(str(item.TextValue))
        found += _texts(item.get("ContentSequence", []), concept)
    return found


def read_sr_text(path: Path) -> tuple[str, str]:
    """(findings, impression) of a written SR, found by concept code so any TID 2000 layout reads."""
    content = dcmread(path).get("ContentSequence", [])
    return "\n".join(_texts(content, FINDING)), "\n".join(_texts(content, IMPRESSION))
