"""The real app, launched in-process on localhost and driven with gradio_client."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zipfile

import pytest
from gradio_client import Client, handle_file

from tests.conftest import free_port, write_dicom
from xr.config import ROOT


@pytest.fixture
def app(env, workstation_factory):
    from app import build_app

    demo = build_app(workstation_factory(env))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), demo, env
    finally:
        demo.close()


def test_upload_draft_edit_approve_export(app, tmp_path, nih_pixels):
    client, _, env = app
    z = tmp_path / "study.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(write_dicom(tmp_path / "pa.dcm", nih_pixels, view="PA"), "study/pa.dcm")
    out = client.predict([handle_file(str(z))], "fever", api_name="/draft")
    sid = out["study_id"]
    assert isinstance(sid, int) and out["report"].startswith("FINDINGS:")
    assert out["views"][0]["view"] == "frontal" and "0" in out["fusion_weights"]
    assert out["similar_cases"] and out["model"] == "dffg"

    edited = out["report"] + "\nMild cardiomegaly."
    saved = client.predict(sid, edited, api_name="/save_draft")
    assert saved["revision_id"] is not None
    approved = client.predict(sid, edited, api_name="/approve")
    assert approved["status"] == "approved"

    export = tmp_path / "edits.jsonl"
    r = subprocess.run([sys.executable, "-m", "xr", "export-edits", str(export)], cwd=ROOT, capture_output=True,
                       text=True, env={"XR_DATA_DIR": str(env.data_dir), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    line = json.loads(export.read_text())
    assert line["target"].endswith("Mild cardiomegaly.") and line["draft"] == out["report"]
    assert line["editor_role"] == "admin" and line["indication"] == "fever"  # single-user mode: the local admin


def test_bad_upload_gives_reason_and_stores_nothing(app, tmp_path):
    client, _, env = app
    (tmp_path / "scan.png").write_bytes(b"GIF89a not a png at all")
    with pytest.raises(Exception, match="not a PNG, JPEG or DICOM"):
        client.predict([handle_file(str(tmp_path / "scan.png"))], "", api_name="/draft")
    with pytest.raises(Exception, match="no study 424242"):
        client.predict(424242, "text", api_name="/approve")
    db = env.data_dir / "xr.sqlite3"
    if db.exists():
        with sqlite3.connect(db) as c:
            assert c.execute("select count(*) from studies").fetchone()[0] == 0
            assert c.execute("select count(*) from approvals").fetchone()[0] == 0


def test_page_says_research_use_only(app):
    client, demo, _ = app
    import httpx

    config = httpx.get(client.src.rstrip("/") + "/config", timeout=30).json()
    texts = json.dumps(config)
    assert "Research use only, not a medical device" in texts
    assert {"/draft", "/save_draft", "/approve"} <= set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])


def test_generator_fine_tunes_on_edits_made_through_the_api(app, tmp_path, nih_pixels):
    """Issue 6's loop: drafts corrected and approved through the API, exported, and the generator continued
    from the shipped weights on them (a real subprocess, as a user runs it)."""
    import numpy as np
    from safetensors.numpy import load_file

    from xr.config import ASSETS
    client, _, env = app
    for i, (pixels, extra) in enumerate([(nih_pixels, "Small left pleural effusion."),
                                         (np.fliplr(nih_pixels).copy(), "Mild cardiomegaly.")]):
        dcm = write_dicom(tmp_path / f"s{i}.dcm", pixels, view="PA", study_uid=f"1.2.826.0.1.{i + 7}")
        out = client.predict([handle_file(str(dcm))], "dyspnea", api_name="/draft")
        client.predict(out["study_id"], out["report"] + "\n" + extra, api_name="/approve")
    cmd_env = {"XR_DATA_DIR": str(env.data_dir), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    edits = tmp_path / "edits.jsonl"
    r = subprocess.run([sys.executable, "-m", "xr", "export-edits", str(edits)], cwd=ROOT, capture_output=True,
                       text=True, env=cmd_env)
    assert r.returncode == 0, r.stderr
    assert len(edits.read_text().splitlines()) == 2
    out_dir = tmp_path / "ft"
    r = subprocess.run([sys.executable, "-m", "xr", "train-generator", "--edits", str(edits), "--out", str(out_dir),
                        "--epochs", "1", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, env=cmd_env,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["studies"] == 2 and info["with_images"] == 2 and info["epochs"] == 1
    shipped = json.loads((ASSETS / "dffg" / "history.json").read_text())["with_images"]
    assert json.loads((out_dir / "history.json").read_text())["with_images"] == shipped + 2  # the drafter's count of films
    tuned, base = load_file(str(out_dir / "model.safetensors")), load_file(str(ASSETS / "dffg" / "model.safetensors"))
    assert set(tuned) == set(base) and any(not np.array_equal(tuned[k], base[k]) for k in base)
    from xr.draft.dffg import DFFGDrafter
    assert DFFGDrafter(out_dir).net.config == DFFGDrafter().net.config  # loads strictly, same architecture

    (tmp_path / "bad.jsonl").write_text('{"study": "x"}\n')
    r = subprocess.run([sys.executable, "-m", "xr", "train-generator", "--edits", str(tmp_path / "bad.jsonl"), "--out",
                        str(tmp_path / "ft2")], cwd=ROOT, capture_output=True, text=True, env=cmd_env)
    assert r.returncode == 2 and "line 1: not an export-edits line" in r.stderr and not (tmp_path / "ft2").exists()
