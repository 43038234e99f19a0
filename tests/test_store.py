"""The store on a real SQLite file: one transaction per action, nothing half-saved, nothing lost."""
from __future__ import annotations

import json
import sqlite3

import pytest
from PIL import Image

from tests.conftest import write_dicom
from xr import store
from xr.errors import UserError
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
    assert line["draft"] == text and line["target"].endswith("Small left effusion.")
    assert line["editor_role"] == "radiologist" and line["tags"] == ["missed finding"] and line["source"] == "approval"
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
    assert [json.loads(x)["target"] for x in (tmp_path / "e.jsonl").read_text().splitlines()] == ["Amended text."]


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
    with pytest.raises(UserError, match="cannot write e.jsonl"):
        store.export_edits(env, tmp_path / "plain" / "e.jsonl")
    assert (tmp_path / "plain").read_text() == "not a folder"


def test_export_over_a_directory_fails_cleanly(drafted, env, tmp_path):
    _, result = drafted
    store.approve(env, result.study_id, "Text.", RAD)
    (tmp_path / "taken").mkdir()
    exports = count(env, "audit_events")
    with pytest.raises(UserError, match="cannot write taken"):
        store.export_edits(env, tmp_path / "taken")
    assert count(env, "audit_events") == exports  # the failed export is not logged as done
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".taken")]


ANN = Actor("ann_b", "annotator")


def test_worklist_filters_searches_and_reopens(drafted, env, tmp_path, nih_pixels):
    ws, first = drafted
    pending = ws.add_study([write_dicom(tmp_path / "p.dcm", nih_pixels[::-1].copy(), study_uid="1.2.826.0.1.55")],
                           "trauma", RAD)
    rows = store.worklist(env)
    assert [r["id"] for r in rows] == [pending, first.study_id]  # newest first
    assert [r["status"] for r in rows] == ["pending", "drafted"] and rows[1]["views"] == "frontal"
    assert [r["id"] for r in store.worklist(env, "pending")] == [pending]
    assert [r["id"] for r in store.worklist(env, search="TRAUMA")] == [pending]  # indication, any case
    assert [r["id"] for r in store.worklist(env, search="mediastinum")] == [first.study_id]  # the draft's text
    assert [r["id"] for r in store.worklist(env, search=f"#{pending}")] == [pending]
    with pytest.raises(StoreError, match="unknown status 'done'"):
        store.worklist(env, "done")
    view = store.study_view(env, pending)
    assert view["draft"] is None and view["text"] == "" and len(view["images"]) == 1
    redrafted = ws.draft_stored(pending, RAD)  # drafting a pending study from its stored image
    assert redrafted.study_id == pending and store.study_view(env, pending)["status"] == "drafted"
    v = store.study_view(env, first.study_id)
    assert v["draft"]["views"][0]["lung_mask"]["size"] == [512, 512]  # overlays survive a reopen
    assert v["text"] == first.draft.report and v["approval"] is None


def test_corrections_queue_tags_and_export(drafted, env, tmp_path, nih_pixels):
    ws, first = drafted
    second = ws.draft([write_dicom(tmp_path / "s.dcm", np_flip(nih_pixels), study_uid="1.2.826.0.1.56")], "", RAD)
    assert store.corrections_queue(env) == {"total": 2, "done": 0, "next": first.study_id}
    assert store.corrections_queue(env, after=first.study_id)["next"] == second.study_id  # skip
    with pytest.raises(StoreError, match="unknown reason tag 'typo'"):
        store.save_revision(env, first.study_id, "Corrected.", ANN, tags=["typo"])
    store.save_revision(env, first.study_id, first.draft.report + " Small left effusion.", ANN,
                        tags=["missed finding", "wording"])
    store.save_revision(env, second.study_id, second.draft.report, ANN, tags=["no correction"])
    assert store.corrections_queue(env) == {"total": 2, "done": 2, "next": None}
    store.approve(env, second.study_id, second.draft.report + " Approved.", RAD)
    assert store.corrections_queue(env)["total"] == 1  # approved studies leave the queue
    n = store.export_edits(env, tmp_path / "edits.jsonl", ANN)
    lines = {json.loads(x)["source"]: json.loads(x) for x in (tmp_path / "edits.jsonl").read_text().splitlines()}
    assert n == 2 and set(lines) == {"approval", "correction"}
    assert lines["correction"]["tags"] == ["missed finding", "wording"]
    assert lines["correction"]["target"].endswith("Small left effusion.") and lines["correction"]["editor_role"] == "annotator"
    assert lines["approval"]["tags"] == ["no correction"] and lines["approval"]["target"].endswith("Approved.")


def np_flip(pixels):
    return pixels[:, ::-1].copy()


def test_report_export_is_audited_and_refused_before_approval(drafted, env, tmp_path):
    from xr.export.sr import read_sr_text

    _, result = drafted
    with pytest.raises(StoreError, match="not approved yet"):
        store.export_report(env, result.study_id, "sr", tmp_path, RAD)
    store.approve(env, result.study_id, "FINDINGS: Heart normal.\n\nIMPRESSION: No acute disease.", RAD)
    with pytest.raises(StoreError, match="unknown export format 'pdf'"):
        store.export_report(env, result.study_id, "pdf", tmp_path, RAD)
    path = store.export_report(env, result.study_id, "sr", tmp_path, RAD)
    assert read_sr_text(path) == ("Heart normal.", "No acute disease.")
    fhir = json.loads(store.export_report(env, result.study_id, "fhir", tmp_path, RAD).read_text())
    assert fhir["resourceType"] == "DiagnosticReport" and fhir["status"] == "final"
    assert store.export_report(env, result.study_id, "text", tmp_path, RAD).read_text().startswith("Chest X-ray report")
    with sqlite3.connect(env.database_url.removeprefix("sqlite:///")) as c:
        formats = [json.loads(d)["format"] for d, in c.execute("select detail from audit_events where action='export'")]
    assert formats == ["sr", "fhir", "text"]
