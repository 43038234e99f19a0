"""The store on a real SQLite file: one transaction per action, nothing half-saved, nothing lost."""
from __future__ import annotations

import json
import sqlite3

import pytest
from PIL import Image

from tests.conftest import write_dicom
from xr import store
from xr.store import Actor, StoreError

RAD = Actor("dr_a", "radiologist")


def count(s, table: str) -> int:
    with sqlite3.connect(s.database_url.removeprefix("sqlite:///")) as c:
        return c.execute(f"select count(*) from {table}").fetchone()[0]


@pytest.fixture
def drafted(tmp_path, env, nih_pixels, workstation_factory):
    ws = workstation_factory(env)
    p = write_dicom(tmp_path / "a.dcm", nih_pixels)
    return ws, ws.draft([p], "cough", RAD)


def test_draft_is_stored_with_its_evidence(drafted, env):
    ws, result = drafted
    assert result.study_id is not None
    assert (count(env, "studies"), count(env, "images"), count(env, "drafts")) == (1, 1, 1)
    with sqlite3.connect(env.database_url.removeprefix("sqlite:///")) as c:
        text, fusion, similar, timings = c.execute("select text, fusion_weights, similar_cases, timings from drafts").fetchone()
        path, = c.execute("select storage_path from images").fetchone()
        mode, = c.execute("pragma journal_mode").fetchone()
    assert text == result.draft.report
    grid = json.loads(fusion)["0"]
    assert len(grid) == 16 and len(grid[0]) == 16
    assert json.loads(similar) and "encode_ms" in json.loads(timings)
    assert (env.data_dir / path).is_file() and Image.open(env.data_dir / path).size == (512, 512)
    assert mode == "wal"


def test_redrafting_same_study_adds_draft_not_study(drafted, tmp_path, env, nih_pixels):
    ws, first = drafted
    again = ws.draft([write_dicom(tmp_path / "b.dcm", nih_pixels)], "", RAD)
    assert again.study_id == first.study_id
    assert (count(env, "studies"), count(env, "images"), count(env, "drafts")) == (1, 1, 2)


def test_edit_approve_export(drafted, env, tmp_path):
    _, result = drafted
    sid, text = result.study_id, result.draft.report
    assert store.save_revision(env, sid, text, RAD) is None  # unchanged: nothing to keep
    rev = store.save_revision(env, sid, text + "\nSmall left effusion.", RAD, tags=["missed finding"])
    assert rev is not None
    approval = store.approve(env, sid, text + "\nSmall left effusion.", RAD)
    assert approval > 0
    hist = store.history(env, sid)
    assert [h["event"] for h in hist] == ["draft", "edit", "approval"]
    n = store.export_edits(env, tmp_path / "out" / "edits.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "out" / "edits.jsonl").read_text().splitlines()]
    assert n == 1 and len(lines) == 1
    line = lines[0]
    assert line["draft"] == text and line["approved"].endswith("Small left effusion.")
    assert line["editor_role"] == "radiologist" and line["tags"] == ["missed finding"]
    assert line["images"][0]["path"].startswith("images/")
    with sqlite3.connect(env.database_url.removeprefix("sqlite:///")) as c:
        diff, = c.execute("select diff from revisions").fetchone()
        actions = [a for a, in c.execute("select action from audit_events order by id")]
    assert "+Small left effusion." in diff
    assert actions == ["ingest", "draft", "edit", "edit", "approve", "export"]


def test_amended_approval_keeps_both_and_exports_latest(drafted, env, tmp_path):
    _, result = drafted
    store.approve(env, result.study_id, "First text.", RAD)
    store.approve(env, result.study_id, "Amended text.", RAD)
    assert count(env, "approvals") == 2
    store.export_edits(env, tmp_path / "e.jsonl")
    assert [json.loads(x)["approved"] for x in (tmp_path / "e.jsonl").read_text().splitlines()] == ["Amended text."]


def test_refusals_leave_nothing_behind(drafted, env):
    _, result = drafted
    before = {t: count(env, t) for t in ("revisions", "approvals", "audit_events", "users")}
    with pytest.raises(StoreError, match="empty"):
        store.approve(env, result.study_id, "   ", RAD)
    with pytest.raises(StoreError, match="no study 999"):
        store.approve(env, 999, "text", RAD)
    with pytest.raises(StoreError, match="cannot approve"):
        store.approve(env, result.study_id, "text", Actor("teacher", "educator"))
    with pytest.raises(StoreError, match="unknown role"):
        store.save_revision(env, result.study_id, "text", Actor("x", "janitor"))
    assert {t: count(env, t) for t in before} == before


def test_failed_transaction_removes_new_image_files(tmp_path, env, nih_pixels, workstation_factory):
    ws = workstation_factory(env)
    p = write_dicom(tmp_path / "a.dcm", nih_pixels)
    with pytest.raises(StoreError, match="unknown role"):
        ws.draft([p], "", Actor("x", "janitor"))  # fails inside the transaction, after files are written
    assert not list((env.data_dir / "images").rglob("*.png"))
    assert count(env, "studies") == 0 and count(env, "drafts") == 0


def test_export_under_a_file_fails_cleanly(drafted, env, tmp_path):
    _, result = drafted
    store.approve(env, result.study_id, "Text.", RAD)
    (tmp_path / "plain").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot write e.jsonl"):
        store.export_edits(env, tmp_path / "plain" / "e.jsonl")
    assert (tmp_path / "plain").read_text() == "not a folder"


def test_export_over_a_directory_fails_cleanly(drafted, env, tmp_path):
    _, result = drafted
    store.approve(env, result.study_id, "Text.", RAD)
    (tmp_path / "taken").mkdir()
    exports = count(env, "audit_events")
    with pytest.raises(StoreError, match="cannot write taken"):
        store.export_edits(env, tmp_path / "taken")
    assert count(env, "audit_events") == exports  # the failed export is not logged as done
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".taken")]
