"""No patient identifier reaches the database, the stored images' folder, the logs or any export."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from tests.conftest import PATIENT, dciodvfy, free_port, write_dicom
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
    dciodvfy(next((tmp_path / "exports").glob("*.dcm")))
    pixel_hashes = [im.content_hash for im in result.study.images]  # computable by anyone holding the films
    for where, blob in exports.items():
        assert not any(h.encode() in blob for h in pixel_hashes), f"a bare pixel hash in {where}"
    blobs.update(exports)
    blobs["log"] = caplog.text.encode()
    assert any(str(p).endswith(".sqlite3") for p in blobs)
    for where, blob in blobs.items():
        for needle in needles:
            assert needle.encode() not in blob, f"{needle!r} found in {where}"


def test_identifiers_gone_after_an_api_session(tmp_path, env, nih_pixels, workstation_factory, caplog):
    """Through the app: the uploads Gradio kept under their own names are deleted once read (after a
    draft, after a refusal, after a caller without the right), and nothing of the DICOM header reaches
    the database, the data directory, the upload cache or the log."""
    from gradio.utils import get_upload_folder
    from gradio_client import Client, handle_file

    from app import build_app, launch

    caplog.set_level(logging.DEBUG)
    demo = build_app(workstation_factory(env))
    port = free_port()
    launch(demo, env, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        uid = "1.2.826.0.1.3680043.8.498.778"
        good = write_dicom(tmp_path / "Doe_Jane_PA.dcm", nih_pixels, view="PA", study_uid=uid)
        bad = tmp_path / "Doe_Jane_notes.dcm"
        bad.write_bytes(good.read_bytes()[:2000])  # truncated: refused
        out = client.predict([handle_file(str(good))], "cough", api_name="/draft")
        with pytest.raises(Exception, match="Doe_Jane_notes.dcm"):
            client.predict([handle_file(str(bad))], "cough", api_name="/draft")
        client.predict(out["study_id"], out["report"], api_name="/approve")
    finally:
        demo.close()

    left = [p for p in Path(get_upload_folder()).rglob("*Doe_Jane*")]
    assert left == [], f"uploads kept under their own names: {left}"
    stored = [str(p.relative_to(env.image_dir)) for p in env.image_dir.rglob("*") if p.is_file()]
    assert stored and all(re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{64}\.png", p) for p in stored), stored
    needles = [*PATIENT.values(), "Doe", "Jane", uid, "Doe_Jane"]
    blobs = {p: p.read_bytes() for p in env.data_dir.rglob("*") if p.is_file()}
    blobs["log"] = caplog.text.encode()
    for where, blob in blobs.items():
        for needle in needles:
            assert needle.encode() not in blob, f"{needle!r} found in {where}"
