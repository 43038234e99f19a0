"""The store on a real SQLite file and a real PostgreSQL database: one transaction per action, nothing
half-saved, nothing lost."""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image
from pydicom import dcmread
from sqlalchemy import select, text, update

from db.models import AuditEvent, Draft, Revision, Study
from db.models import Image as ImageRow
from db.session import engine_for, transaction
from tests.conftest import dciodvfy, write_dicom
from xr import store
from xr.errors import UserError
from xr.store import Actor, StoreError

RAD = Actor("dr_a", "radiologist")


def count(s, table: str) -> int:
    with engine_for(s.database_url).connect() as c:
        return c.scalar(text(f"select count(*) from {table}"))


def rows(s, query) -> list[tuple]:
    with engine_for(s.database_url).connect() as c:
        return [tuple(r) for r in c.execute(query)]


@pytest.fixture
def drafted(tmp_path, db_env, nih_pixels, workstation_factory):
    ws = workstation_factory(db_env)
    p = write_dicom(tmp_path / "a.dcm", nih_pixels)
    return ws, ws.draft([p], "cough", RAD)


def test_draft_is_stored_with_its_evidence(drafted, db_env):
    ws, result = drafted
    assert result.study_id is not None
    assert (count(db_env, "studies"), count(db_env, "images"), count(db_env, "drafts")) == (1, 1, 1)
    (report, fusion, similar, timings), = rows(db_env, select(Draft.text, Draft.fusion_weights, Draft.similar_cases,
                                                              Draft.timings))
    (path,), = rows(db_env, select(ImageRow.storage_path))
    assert report == result.draft.report
    grid = fusion["0"]
    assert len(grid) == 16 and len(grid[0]) == 16
    assert similar and "encode_ms" in timings
    assert (db_env.data_dir / path).is_file() and Image.open(db_env.data_dir / path).size == (512, 512)
    if db_env.database_url.startswith("sqlite"):
        assert rows(db_env, text("pragma journal_mode")) == [("wal",)]


def test_films_of_a_drafted_study_open_it_and_merge_nothing(drafted, tmp_path, db_env, nih_pixels):
    """Issue 31: the same films uploaded again are the study they already are: said so before anything is
    merged (no second draft, no new indication); drafting the study again is asked for by its number."""
    ws, first = drafted
    with pytest.raises(store.KnownStudy, match=rf"^these films are study #{first.study_id}, drafted: nothing was changed"):
        ws.draft([write_dicom(tmp_path / "b.dcm", nih_pixels)], "new indication", RAD)
    with pytest.raises(store.KnownStudy):
        ws.add_study([write_dicom(tmp_path / "c.dcm", nih_pixels)], "new indication", RAD)
    assert (count(db_env, "studies"), count(db_env, "images"), count(db_env, "drafts")) == (1, 1, 1)
    assert store.study_record(db_env, first.study_id).indication == "cough"
    again = ws.draft_stored(first.study_id, RAD)  # "Draft this study again"
    assert again.study_id == first.study_id
    assert (count(db_env, "studies"), count(db_env, "images"), count(db_env, "drafts")) == (1, 1, 2)


def test_signed_stays_signed(drafted, tmp_path, db_env, nih_pixels):
    """Issue 31: approve, then upload the same film with a new indication: the study opens as it was
    signed (its indication, its signed text, no new machine draft), and its export is unchanged."""
    ws, first = drafted
    sid = first.study_id
    store.approve(db_env, sid, "FINDINGS: Signed text.\n\nIMPRESSION: Signed.", RAD)
    before = (store.export_report(db_env, sid, "text", tmp_path / "a", RAD).read_text(), count(db_env, "drafts"))
    with pytest.raises(store.KnownStudy, match=rf"^these films are study #{sid}, signed \d{{4}}-\d\d-\d\d \d\d:\d\d UTC"):
        ws.draft([write_dicom(tmp_path / "b.dcm", nih_pixels)], "a new indication", RAD)
    with pytest.raises(store.StoreError, match="is signed: amend"):
        ws.draft_stored(sid, RAD)
    view = store.study_record(db_env, sid)
    assert view.indication == "cough" and view.text.startswith("FINDINGS: Signed text.")
    after = store.export_report(db_env, sid, "text", tmp_path / "b", RAD).read_text()
    assert (after, count(db_env, "drafts")) == before
    # a race past the workstation's check: the store refuses to put a draft under a signature too
    with pytest.raises(store.KnownStudy):
        store.record_study(db_env, first.study, "another", RAD, first.draft, again=True)


def test_edit_approve_export(drafted, db_env, tmp_path):
    _, result = drafted
    sid, text = result.study_id, result.draft.report
    assert store.save_revision(db_env, sid, text, RAD) is None  # unchanged: nothing to keep
    rev = store.save_revision(db_env, sid, text + "\nSmall left effusion.", RAD, tags=["missed finding"])
    assert rev is not None
    approval = store.approve(db_env, sid, text + "\nSmall left effusion.", RAD)
    assert approval > 0
    hist = store.history(db_env, sid)
    assert [h.event for h in hist] == ["draft", "edit", "approval"]
    n = store.export_edits(db_env, tmp_path / "out" / "edits.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "out" / "edits.jsonl").read_text().splitlines()]
    assert n == 1 and len(lines) == 1
    line = lines[0]
    assert line["draft"] == text and line["target"].endswith("Small left effusion.")
    assert line["editor_role"] == "radiologist" and line["tags"] == ["missed finding"] and line["source"] == "approval"
    assert line["images"][0]["path"].startswith("images/")
    (diff,), = rows(db_env, select(Revision.diff))
    actions = [a for a, in rows(db_env, select(AuditEvent.action).order_by(AuditEvent.id))]
    assert "+Small left effusion." in diff
    assert actions == ["ingest", "draft", "edit", "edit", "approve", "export"]


def test_image_names_that_leave_are_keyed(drafted, db_env, tmp_path):
    """Issue 21.6: an exported image is named by the HMAC of its pixel hash under the site's secret, never
    by the bare hash anyone holding the film can compute; images stored under the bare hash (before this)
    move to their keyed names, their bytes unchanged, the old names gone."""
    from xr.config import keyed_hash

    _, result = drafted
    sid = result.study_id
    store.approve(db_env, sid, result.draft.report, RAD)
    ((row_id, bare, keyed),) = rows(db_env, select(ImageRow.id, ImageRow.content_hash, ImageRow.storage_path))
    assert keyed == f"images/{keyed_hash(bare, db_env)[:2]}/{keyed_hash(bare, db_env)}.png" and bare not in keyed
    png = (db_env.data_dir / keyed).read_bytes()
    legacy = f"images/{bare[:2]}/{bare}.png"  # as a store before keyed names wrote it
    (db_env.data_dir / legacy).parent.mkdir(parents=True, exist_ok=True)
    (db_env.data_dir / keyed).rename(db_env.data_dir / legacy)
    with transaction(db_env.database_url) as session:
        session.execute(update(ImageRow).where(ImageRow.id == row_id).values(storage_path=legacy))
    store.export_edits(db_env, tmp_path / "e.jsonl")
    exported = (tmp_path / "e.jsonl").read_text()
    assert bare not in exported and json.loads(exported)["images"][0]["path"] == keyed
    assert (db_env.data_dir / keyed).read_bytes() == png and not (db_env.data_dir / legacy).exists()
    assert rows(db_env, select(ImageRow.storage_path)) == [(keyed,)]
    assert store.rename_images(db_env) == 0  # nothing left to move


def test_amended_approval_keeps_both_and_exports_latest(drafted, db_env, tmp_path):
    _, result = drafted
    store.approve(db_env, result.study_id, "First text.", RAD)
    signed = dcmread(store.export_report(db_env, result.study_id, "sr", tmp_path, RAD))
    store.approve(db_env, result.study_id, "Amended text.", RAD)
    assert count(db_env, "approvals") == 2
    # issue 31: the amendment's exports name what they replace
    sr = dcmread(store.export_report(db_env, result.study_id, "sr", tmp_path, RAD))
    ref = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == signed.SOPInstanceUID != sr.SOPInstanceUID
    fhir = json.loads(store.export_report(db_env, result.study_id, "fhir", tmp_path, RAD).read_text())
    assert (fhir["status"], fhir["meta"]["versionId"], fhir["id"]) == ("amended", "2", result.study.key[:32])
    store.export_edits(db_env, tmp_path / "e.jsonl")
    assert [json.loads(x)["target"] for x in (tmp_path / "e.jsonl").read_text().splitlines()] == ["Amended text."]


def test_approving_the_same_text_again_is_the_same_approval(drafted, db_env):
    """Issue 21.4: a double click or a client's retry signs once; the report is not marked amended."""
    _, result = drafted
    sid = result.study_id
    first = store.approve(db_env, sid, "Signed text.", RAD)
    audits = count(db_env, "audit_events")
    assert store.approve(db_env, sid, "Signed text.", RAD) == first
    assert count(db_env, "approvals") == 1 and count(db_env, "audit_events") == audits
    assert store.approve(db_env, sid, "Signed text, amended.", RAD) != first  # a real amendment still adds one
    assert count(db_env, "approvals") == 2


def test_a_signed_report_takes_no_correction(drafted, db_env):
    """Issue 21.4: an annotator's correction of an approved study would become the text shown under the
    radiologist's signature; it is refused, and a radiologist's edit (the start of an amendment) is not."""
    _, result = drafted
    sid = result.study_id
    store.approve(db_env, sid, "Signed text.", RAD)
    revisions = count(db_env, "revisions")
    with pytest.raises(StoreError, match="is signed"):
        store.save_revision(db_env, sid, "Signed text. Mild cardiomegaly.", Actor("ann", "annotator"), ["missed finding"])
    with pytest.raises(StoreError, match="is signed"):
        store.save_revision(db_env, sid, "Signed text. Mild cardiomegaly.", RAD, ["missed finding"])
    assert count(db_env, "revisions") == revisions and store.study_record(db_env, sid).text == "Signed text."
    assert store.save_revision(db_env, sid, "Signed text, to amend.", RAD) is not None


def test_saving_and_signing_are_bound_to_the_text_the_page_saw(drafted, db_env):
    """Issue 21.4: two radiologists on one study. B saves an edit after A opened the study; A's save and
    A's sign-off, both made from the text A saw, are refused, and B's edit stays."""
    _, result = drafted
    sid = result.study_id
    opened = store.study_record(db_env, sid).text  # what A's page shows
    store.save_revision(db_env, sid, opened + " Small left effusion.", Actor("dr_b", "radiologist"), seen=opened)
    with pytest.raises(StoreError, match="was changed by dr_b since you opened it"):
        store.save_revision(db_env, sid, opened + " Mild cardiomegaly.", RAD, seen=opened)
    with pytest.raises(StoreError, match="was changed by dr_b since you opened it"):
        store.approve(db_env, sid, opened + " Mild cardiomegaly.", RAD, seen=opened)
    assert count(db_env, "approvals") == 0 and store.study_record(db_env, sid).text == opened + " Small left effusion."
    now = store.study_record(db_env, sid).text  # A opens it again: then A may sign
    assert store.approve(db_env, sid, now, RAD, seen=now)


def test_burned_in_images_stay_out_of_teaching_and_the_export(tmp_path, db_env, nih_pixels, workstation_factory):
    """Issue 21.6: an image whose header says text is burned into it (it may name the patient) is kept
    out of the teaching view and of the fine-tuning export, unless the export is asked to include it."""
    from pydicom import dcmread

    ws = workstation_factory(db_env)
    burned = write_dicom(tmp_path / "b.dcm", nih_pixels, study_uid="1.2.826.0.1.3680043.8.498.11")
    ds = dcmread(burned)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(burned)
    b = ws.draft([burned], "cough", RAD)
    c = ws.draft([write_dicom(tmp_path / "c.dcm", nih_pixels[::-1].copy(), study_uid="1.2.826.0.1.3680043.8.498.12")], "", RAD)
    for r in (b, c):
        ws.approve(r.study_id, r.draft.report, RAD)
    assert [t.study_id for t in store.teaching_studies(db_env)] == [c.study_id]
    for include, shown in ((False, 0), (True, 1)):
        store.export_edits(db_env, tmp_path / "e.jsonl", include_burned_in=include)
        line = next(json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()
                    if json.loads(x)["study"] == b.study.key)
        assert len(line["images"]) == shown and line["images_withheld"] == 1 - shown


def test_refusals_leave_nothing_behind(drafted, db_env):
    _, result = drafted
    before = {t: count(db_env, t) for t in ("revisions", "approvals", "audit_events", "users")}
    with pytest.raises(StoreError, match="empty"):
        store.approve(db_env, result.study_id, "   ", RAD)
    with pytest.raises(StoreError, match="no study 999"):
        store.approve(db_env, 999, "text", RAD)
    with pytest.raises(StoreError, match="cannot approve"):
        store.approve(db_env, result.study_id, "text", Actor("teacher", "educator"))
    with pytest.raises(StoreError, match="unknown role"):
        store.save_revision(db_env, result.study_id, "text", Actor("x", "janitor"))
    assert {t: count(db_env, t) for t in before} == before


def test_failed_transaction_removes_new_image_files(tmp_path, db_env, nih_pixels, workstation_factory):
    ws = workstation_factory(db_env)
    p = write_dicom(tmp_path / "a.dcm", nih_pixels)
    with pytest.raises(StoreError, match="unknown role"):
        ws.draft([p], "", Actor("x", "janitor"))  # fails inside the transaction, after files are written
    assert not list((db_env.data_dir / "images").rglob("*.png"))
    assert count(db_env, "studies") == 0 and count(db_env, "drafts") == 0


def test_export_under_a_file_fails_cleanly(drafted, db_env, tmp_path):
    _, result = drafted
    store.approve(db_env, result.study_id, "Text.", RAD)
    (tmp_path / "plain").write_text("not a folder")
    with pytest.raises(UserError, match="cannot write e.jsonl"):
        store.export_edits(db_env, tmp_path / "plain" / "e.jsonl")
    assert (tmp_path / "plain").read_text() == "not a folder"


def test_export_over_a_directory_fails_cleanly(drafted, db_env, tmp_path):
    _, result = drafted
    store.approve(db_env, result.study_id, "Text.", RAD)
    (tmp_path / "taken").mkdir()
    exports = count(db_env, "audit_events")
    with pytest.raises(UserError, match="cannot write taken"):
        store.export_edits(db_env, tmp_path / "taken")
    assert count(db_env, "audit_events") == exports  # the failed export is not logged as done
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".taken")]


ANN = Actor("ann_b", "annotator")


def test_worklist_filters_searches_and_reopens(drafted, db_env, tmp_path, nih_pixels):
    ws, first = drafted
    pending = ws.add_study([write_dicom(tmp_path / "p.dcm", nih_pixels[::-1].copy(), study_uid="1.2.826.0.1.55")],
                           "trauma", RAD)
    rows = store.worklist(db_env)
    assert [r["id"] for r in rows] == [pending, first.study_id]  # newest first
    assert [r["status"] for r in rows] == ["pending", "drafted"] and rows[1]["views"] == "frontal"
    assert [r["id"] for r in store.worklist(db_env, "pending")] == [pending]
    assert [r["id"] for r in store.worklist(db_env, search="TRAUMA")] == [pending]  # indication, any case
    store.save_revision(db_env, first.study_id, "FINDINGS: The mediastinum is unremarkable.", RAD)
    assert [r["id"] for r in store.worklist(db_env, search="mediastinum")] == [first.study_id]  # the report's text
    assert [r["id"] for r in store.worklist(db_env, search=f"#{pending}")] == [pending]
    with pytest.raises(StoreError, match="unknown status 'done'"):
        store.worklist(db_env, "done")
    view = store.study_record(db_env, pending)
    assert view.draft is None and view.text == "" and len(view.images) == 1
    redrafted = ws.draft_stored(pending, RAD)  # drafting a pending study from its stored image
    assert redrafted.study_id == pending and store.study_record(db_env, pending).status == "drafted"
    v = store.study_record(db_env, first.study_id)
    assert v.draft.views[0].lung_mask["size"] == [256, 256]  # overlays survive a reopen
    # the stored draft is the drafter's typed record, whole (the timings grow once it is stored)
    assert replace(v.draft, timings={}) == replace(first.draft, timings={})
    assert v.draft.views[0].fusion_weights == first.draft.views[0].fusion_weights and v.draft.hedged == first.draft.hedged
    assert v.text == "FINDINGS: The mediastinum is unremarkable." and v.approval is None


def test_corrections_queue_tags_and_export(drafted, db_env, tmp_path, nih_pixels):
    ws, first = drafted
    second = ws.draft([write_dicom(tmp_path / "s.dcm", np_flip(nih_pixels), study_uid="1.2.826.0.1.56")], "", RAD)
    assert store.corrections_queue(db_env) == store.CorrectionsQueue(total=2, done=0, next=first.study_id)
    assert store.corrections_queue(db_env, after=first.study_id).next == second.study_id  # skip
    with pytest.raises(StoreError, match="unknown reason tag 'typo'"):
        store.save_revision(db_env, first.study_id, "Corrected.", ANN, tags=["typo"])
    store.save_revision(db_env, first.study_id, first.draft.report + " Small left effusion.", ANN,
                        tags=["missed finding", "wording"])
    store.save_revision(db_env, second.study_id, second.draft.report, ANN, tags=["no correction"])
    assert store.corrections_queue(db_env) == store.CorrectionsQueue(total=2, done=2, next=None)
    store.approve(db_env, second.study_id, second.draft.report + " Approved.", RAD)
    assert store.corrections_queue(db_env).total == 1  # approved studies leave the queue
    n = store.export_edits(db_env, tmp_path / "edits.jsonl", ANN)
    lines = {json.loads(x)["source"]: json.loads(x) for x in (tmp_path / "edits.jsonl").read_text().splitlines()}
    assert n == 2 and set(lines) == {"approval", "correction"}
    assert lines["correction"]["tags"] == ["missed finding", "wording"]
    assert lines["correction"]["target"].endswith("Small left effusion.") and lines["correction"]["editor_role"] == "annotator"
    assert lines["approval"]["tags"] == ["no correction"] and lines["approval"]["target"].endswith("Approved.")


def np_flip(pixels):
    return pixels[:, ::-1].copy()


def test_report_export_is_audited_and_refused_before_approval(drafted, db_env, tmp_path):
    from xr.export.sr import read_sr_text

    _, result = drafted
    with pytest.raises(StoreError, match="not approved yet"):
        store.export_report(db_env, result.study_id, "sr", tmp_path, RAD)
    store.approve(db_env, result.study_id, "FINDINGS: Heart normal.\n\nIMPRESSION: No acute disease.", RAD)
    with pytest.raises(StoreError, match="unknown export format 'pdf'"):
        store.export_report(db_env, result.study_id, "pdf", tmp_path, RAD)
    path = store.export_report(db_env, result.study_id, "sr", tmp_path, RAD)
    assert read_sr_text(path) == ("Heart normal.", "No acute disease.")
    dciodvfy(path)
    fhir = json.loads(store.export_report(db_env, result.study_id, "fhir", tmp_path, RAD).read_text())
    assert fhir["resourceType"] == "DiagnosticReport" and fhir["status"] == "final"
    assert store.export_report(db_env, result.study_id, "text", tmp_path, RAD).read_text().startswith("Chest X-ray report")
    formats = [d["format"] for d, in rows(db_env, select(AuditEvent.detail).where(AuditEvent.action == "export")
                                              .order_by(AuditEvent.id))]
    assert formats == ["sr", "fhir", "text"]


def test_worklist_search_is_a_case_insensitive_literal_substring(db_env):
    with transaction(db_env.database_url) as session:
        session.add_all([Study(key="a" * 64, indication="SpO2 50% on air"), Study(key="b" * 64, indication="spo2 fell"),
                         Study(key="c" * 64, indication="left_base"), Study(key="d" * 64, indication="see a\\b")])
    assert len(store.worklist(db_env, search="spO2")) == 2
    assert [r["indication"] for r in store.worklist(db_env, search="50%")] == ["SpO2 50% on air"]
    assert [r["indication"] for r in store.worklist(db_env, search="T_B")] == ["left_base"]
    assert [r["indication"] for r in store.worklist(db_env, search="%")] == ["SpO2 50% on air"]
    assert [r["indication"] for r in store.worklist(db_env, search="A\\B")] == ["see a\\b"]


def test_times_read_back_as_utc(drafted, db_env):
    """The PostgreSQL test databases run in New York time: a time read back in the server's zone shows."""
    _, result = drafted
    at = datetime.fromisoformat(store.history(db_env, result.study_id)[0].at)
    assert at.tzinfo is None and abs(at - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=5)


def test_an_approval_waits_for_another_writer_of_the_study(drafted, db_env):
    """Approvals of one study run one after the other, or two could both take the library's slot and the
    older win. SQLite's one writer does it; on PostgreSQL the study's row lock. Approving a second time
    changes no study column, so without that lock nothing would make the second approval wait."""
    _, result = drafted
    sid = result.study_id
    store.approve(db_env, sid, "First.", RAD)
    outcome: list = []

    def amend() -> None:
        try:
            outcome.append(store.approve(db_env, sid, "Amended.", RAD))
        except Exception as e:  # reported by the assertions below
            outcome.append(e)

    with engine_for(db_env.database_url).begin() as other:
        other.execute(update(Study).where(Study.id == sid).values(indication="written by another transaction"))
        worker = threading.Thread(target=amend)
        worker.start()
        worker.join(1.5)
        assert worker.is_alive() and outcome == []  # waiting for the other transaction
    worker.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], int)
    assert count(db_env, "approvals") == 2 and store.study_record(db_env, sid).text == "Amended."


def test_png_views_are_stored_as_the_drafter_decided(tmp_path, db_env, shared, workstation_factory):
    """Issue 16.4: a PNG has no ViewPosition; the view the drafter reads off the image is the one stored,
    listed in the worklist and exported (text report, fine-tuning data), and a redraft reads it again."""
    ws = workstation_factory(db_env)
    views = shared / "data" / "covid_cxr_views" / "images"
    r = ws.draft([views / "p0022_00.png", views / "p0022_01.png"], "fever", RAD)
    decided = [v.view for v in r.draft.views]
    assert decided == ["frontal", "lateral"] and {v.view_source for v in r.draft.views} == {"image"}
    assert store.worklist(db_env)[0]["views"] == "frontal + lateral"
    again = ws.draft_stored(r.study_id, RAD)  # a redraft reads the views again (a signed study is not redrafted)
    assert [(v.view, v.view_source) for v in again.draft.views] == [("frontal", "image"), ("lateral", "image")]
    ws.approve(r.study_id, "FINDINGS: Patchy opacities.\n\nIMPRESSION: Pneumonia.", RAD)
    out = store.export_report(db_env, r.study_id, "text", tmp_path, RAD)
    assert "Views: frontal, lateral" in out.read_text()
    store.export_edits(db_env, tmp_path / "edits.jsonl")
    (line,) = [json.loads(x) for x in (tmp_path / "edits.jsonl").read_text().splitlines()]
    assert [i["view"] for i in line["images"]] == decided
