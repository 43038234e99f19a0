"""No patient identifier reaches the database, the stored images' folder, the logs or any export."""
from __future__ import annotations

import logging

from tests.conftest import PATIENT, write_dicom
from xr import store
from xr.store import Actor


def test_identifiers_never_stored(tmp_path, env, nih_pixels, workstation_factory, caplog):
    caplog.set_level(logging.DEBUG)
    ws = workstation_factory(env)
    uid = "1.2.826.0.1.3680043.8.498.777"
    paths = [write_dicom(tmp_path / f"Doe_Jane_{v}.dcm", nih_pixels, view=v, study_uid=uid) for v in ("PA", "LL")]
    result = ws.draft(paths, "cough", Actor("dr_a", "radiologist"))
    store.approve(env, result.study_id, result.draft.report, Actor("dr_a", "radiologist"))
    store.export_edits(env, tmp_path / "exports" / "export.jsonl")
    for fmt in ("sr", "fhir", "text"):
        store.export_report(env, result.study_id, fmt, tmp_path / "exports", Actor("dr_a", "radiologist"))

    needles = [v for v in PATIENT.values()] + ["Doe", "Jane", "19470203", "MRN-5550123", uid, "Doe_Jane"]
    blobs = {p: p.read_bytes() for p in env.data_dir.rglob("*") if p.is_file()}
    exports = {p: p.read_bytes() for p in (tmp_path / "exports").iterdir()}
    assert {p.suffix for p in exports} == {".jsonl", ".dcm", ".json", ".txt"}
    blobs.update(exports)
    blobs["log"] = caplog.text.encode()
    assert any(str(p).endswith(".sqlite3") for p in blobs)
    for where, blob in blobs.items():
        for needle in needles:
            assert needle.encode() not in blob, f"{needle!r} found in {where}"
