"""The real app, launched in-process on localhost and driven with gradio_client."""
from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import zipfile

import pytest
from gradio_client import Client, handle_file

from tests.conftest import write_dicom
from xr.config import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    assert out["similar_cases"] and out["model"] == "retrieval-knn"

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
    assert line["approved"].endswith("Mild cardiomegaly.") and line["draft"] == out["report"]
    assert line["editor_role"] == "radiologist" and line["indication"] == "fever"


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
