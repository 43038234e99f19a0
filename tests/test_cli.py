"""`python -m xr` as a user runs it: a real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import IU, write_dicom
from xr.config import ROOT
from xr.findings import FINDINGS


def run(args, env_dir, **kw):
    env = {**os.environ, "XR_DATA_DIR": str(env_dir), "XR_SALT": "t", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "xr", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, **{"timeout": 300, **kw})


def test_draft_json_two_views(tmp_path, nih_pixels):
    pa = write_dicom(tmp_path / "pa.dcm", nih_pixels, view="PA")
    lat_pixels = __import__("numpy").asarray(Image.open(IU / "CXR1002_IM-0004-2001.png").convert("L"))
    lat = write_dicom(tmp_path / "lat.dcm", lat_pixels, view="LATERAL")
    r = run(["draft", str(pa), str(lat), "--indication", "cough and fever", "--json"], tmp_path / "d")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("report", "findings", "views", "fusion_weights", "similar_cases", "model", "timings"):
        assert key in out
    assert out["report"].startswith("FINDINGS:") and "XXXX" not in out["report"]
    assert [v["view"] for v in out["views"]] == ["frontal", "lateral"]
    assert [v["view_source"] for v in out["views"]] == ["dicom", "dicom"]
    assert 0.2 < out["views"][0]["measurements"]["lung_border_ratio"] < 1.0 and out["views"][1]["measurements"] is None
    from xr.result import unrle

    mask = unrle(out["views"][0]["lung_mask"])
    assert mask.shape == (256, 256) and 0.15 < mask.mean() < 0.5
    evidence = out["views"][0]["evidence"]  # maps of the most probable findings, on the frontal view only
    assert len(evidence) == 3 and "No Finding" not in evidence and out["views"][1]["evidence"] == {}
    ranked = sorted((f for f in evidence), key=lambda f: -out["findings"][f])
    assert list(evidence) == ranked and all(len(m) == 16 and max(map(max, m)) == 1.0 for m in evidence.values())
    assert out["timings"]["eye"] == "the shipped finding head"
    assert out["model"] == "dffg" and set(out["findings"]) == set(FINDINGS)  # the default drafter
    assert set(out["fusion_weights"]) == {"0", "1"}
    assert 0.0 <= min(out["findings"].values()) and max(out["findings"].values()) <= 1.0
    assert {"ingest_ms", "encode_ms", "total_ms"} <= set(out["timings"])
    assert out["study_id"] is None and not (tmp_path / "d" / "xr.sqlite3").exists()  # --save not given


def test_draft_text_and_save(tmp_path, nih_pixels):
    p = tmp_path / "a.png"
    Image.fromarray(nih_pixels).save(p)
    r = run(["draft", str(p), "--save"], tmp_path / "d")
    assert r.returncode == 0, r.stderr
    assert "FINDINGS:" in r.stdout and "Similar cases:" in r.stdout
    assert (tmp_path / "d" / "xr.sqlite3").exists()
    # issue 31: every finding with what the draft says of it, not the most probable few
    assert r.stdout.count("not assessed by the model — check") + r.stdout.count("○ absent") + r.stdout.count(
        "⚠ possible") + r.stdout.count("● present") == len(FINDINGS) - 1
    again = run(["draft", str(p), "--save"], tmp_path / "d")  # the same film saved again: that study, unchanged
    assert again.returncode == 2 and "these films are study #1, drafted: nothing was changed" in again.stderr


@pytest.mark.parametrize("content,name,reason", [
    (b"", "empty.png", "file is empty"),
    (b"hello", "notes.txt", "are not images"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "trunc.png", "not a readable PNG"),
])
def test_bad_input_exit_2_one_line(tmp_path, content, name, reason):
    (tmp_path / name).write_bytes(content)
    r = run(["draft", str(tmp_path / name)], tmp_path / "d")
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0] and "Traceback" not in r.stderr


def test_export_edits_empty(tmp_path):
    r = run(["export-edits", str(tmp_path / "e.jsonl")], tmp_path / "d")
    assert r.returncode == 0 and (tmp_path / "e.jsonl").read_text() == ""
    assert "wrote 0 studies" in r.stderr and "0 approved, 0 corrected" in r.stderr  # issue 31: says which kind


def test_formats_lists_transfer_syntaxes(tmp_path):
    r = run(["formats"], tmp_path / "d")
    assert r.returncode == 0 and "yes  RLE Lossless" in r.stdout and "yes  JPEG 2000 Image Compression" in r.stdout


def test_retrieval_drafter_behind_the_switch(tmp_path, nih_pixels):
    p = tmp_path / "a.png"
    Image.fromarray(nih_pixels).save(p)
    env = {**os.environ, "XR_DRAFTER": "retrieval", "XR_DATA_DIR": str(tmp_path / "d"), "XR_SALT": "t",
           "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "xr", "draft", str(p), "--json", "--indication", "cough"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "retrieval-knn" and out["findings_text"].strip() and "XXXX" not in out["report"].upper()
    grid = out["fusion_weights"]["0"]
    assert len(grid) == 16 and all(0.0 <= v <= 1.0 for row in grid for v in row)
