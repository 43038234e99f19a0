"""The similar-case index on the shipped library and a real SQLite file: approved studies join it in the
approval's transaction, amendments replace them, refusals add nothing, the CLI reports and backfills."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from tests.conftest import IU, PATIENT, write_dicom
from tests.test_cli import run
from xr import store
from xr.config import ASSETS
from xr.retrieve.index import CaseIndex, study_case_id
from xr.retrieve.library import read_cases
from xr.retrieve.text import TEXT_EMBEDDINGS
from xr.store import Actor, StoreError

RAD = Actor("dr_a", "radiologist")
EDIT = "\nSmall left pleural effusion."


def rows(s) -> list[tuple]:
    with sqlite3.connect(s.database_url.removeprefix("sqlite:///")) as c:
        return c.execute("select study_id, approval_id, labels, report from library_cases").fetchall()


@pytest.fixture
def drafted(tmp_path, env, shared, workstation_factory):
    """A study that is not in the shipped library (an IU image outside the train split), drafted and stored."""
    ws = workstation_factory(env)
    pixels = np.asarray(Image.open(IU / "CXR3_IM-1384-1001.png").convert("L"))
    path = write_dicom(tmp_path / "pa.dcm", pixels, view="PA", study_uid="1.2.826.0.1.3680043.8.498.4242")
    result = ws.draft([path], "cough", RAD)
    pooled = ws.drafter.encoder.encode([pixels], [result.study.images[0].content_hash])[0].pooled
    return ws, result, pooled, path


def test_approved_study_is_found_first_by_its_own_image_and_text(drafted, env):
    ws, result, pooled, path = drafted
    vias = {part for c in result.draft.similar_cases for part in c.via.split("+")}
    assert vias == {"image", "report"} and len(result.draft.similar_cases) == 6  # both indices, one list
    assert rows(env) == []

    text = result.draft.report + EDIT
    approval = ws.approve(result.study_id, text, RAD)
    (study_id, approval_id, labels, report), = rows(env)
    assert (study_id, approval_id, report) == (result.study_id, approval, text)
    assert "Pleural Effusion" in json.loads(labels)  # the labeler read the approved text

    me = study_case_id(result.study.key)
    first = ws.index.similar_cases([pooled], text, {"Pleural Effusion": 0.9}, k=3)[0]
    assert first.case_id == me and first.via == "image+report" and first.similarity == 1.0
    assert first.similarities["image"] > 0.99 and first.similarities["report"] > 0.99
    # the study's own film: its labels (what the approved text states, the edit's effusion among them) are the query's
    assert first.thumb is None and first.report == text and first.shared_findings == json.loads(labels)
    assert ws.index.similar_cases([pooled], k=1)[0].case_id == me

    again = ws.draft([path], "cough", None)  # the same films (signed: drafted again, not stored)
    assert me not in {c.case_id for c in again.draft.similar_cases}  # a study is never its own similar case


def test_library_row_holds_no_identifier(drafted, env):
    ws, result, _, _ = drafted
    ws.approve(result.study_id, result.draft.report, RAD)
    with sqlite3.connect(env.database_url.removeprefix("sqlite:///")) as c:
        row = c.execute("select * from library_cases").fetchone()
    blob = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    for needle in [*PATIENT.values(), "Doe", "1.2.826.0.1.3680043.8.498.4242"]:
        assert needle.encode() not in blob


def test_amendment_replaces_the_entry(drafted, env):
    ws, result, pooled, _ = drafted
    ws.approve(result.study_id, result.draft.report, RAD)
    amended = "FINDINGS: Large right pleural effusion. Heart size is enlarged.\n\nIMPRESSION: Effusion, cardiomegaly."
    second = ws.approve(result.study_id, amended, RAD)
    (_, approval_id, labels, report), = rows(env)
    assert (approval_id, report) == (second, amended)
    assert {"Pleural Effusion", "Cardiomegaly"} <= set(json.loads(labels))
    hits = ws.index.similar_cases([pooled], k=10)
    assert hits[0].report == amended and [h.case_id for h in hits].count(study_case_id(result.study.key)) == 1
    assert ws.index.stats(env)["approved"] == {"in_library": 1, "waiting": 0}


def test_refused_approval_adds_nothing(drafted, env):
    ws, result, _, _ = drafted
    with pytest.raises(StoreError, match="cannot approve"):
        ws.approve(result.study_id, result.draft.report, Actor("teacher", "educator"))
    with pytest.raises(StoreError, match="empty"):
        ws.approve(result.study_id, "  ", RAD)
    with pytest.raises(StoreError, match="no study 999"):
        ws.approve(999, "text", RAD)
    assert rows(env) == [] and ws.index.stats(env)["approved"]["in_library"] == 0


def test_restart_loads_approvals_and_backfill_adds_the_missing(drafted, env):
    ws, result, pooled, _ = drafted
    ws.approve(result.study_id, result.draft.report, RAD)
    restarted = CaseIndex(ws.index.library)  # a new process: nothing in memory
    stats = restarted.stats(env)
    assert stats["cases"] == {"iu": 2069, "nih": 497, "approved": 1}
    assert stats["with_images"] == {"iu": 4, "nih": 497, "approved": 1}
    assert stats["with_reports"] == {"iu": 2069, "approved": 1}
    assert stats["image_index"] == {"type": "IndexFlatIP", "dim": 728, "vectors": 502}
    assert stats["text_index"] == {"type": "IndexFlatIP", "dim": 384, "vectors": 2070}

    store.approve(env, result.study_id, "Amended without an entry.", RAD)  # a path that computed no embeddings
    assert rows(env) == []  # the superseded report left the library
    assert restarted.stats(env)["approved"] == {"in_library": 0, "waiting": 1}
    assert restarted.add_approved(env, ws.drafter.encoder) == 1
    assert rows(env)[0][3] == "Amended without an entry."
    assert restarted.similar_cases([pooled], k=1)[0].case_id == study_case_id(result.study.key)
    assert restarted.add_approved(env, ws.drafter.encoder) == 0


def test_cli_stats_and_add(drafted, env):
    ws, result, _, _ = drafted
    store.approve(env, result.study_id, result.draft.report, RAD)  # approved before the library took approvals
    r = run(["index", "stats", "--json"], env.data_dir)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["approved"] == {"in_library": 0, "waiting": 1}
    r = run(["index", "add"], env.data_dir)
    assert r.returncode == 0 and "added 1 approved studies" in r.stderr, r.stderr
    r = run(["index", "stats"], env.data_dir)
    assert "approved studies: 1 in the library, 0 waiting" in r.stdout and "IndexFlatIP, 384-d" in r.stdout


def test_cli_build_reproduces_the_shipped_text_embeddings(tmp_path):
    lines = (ASSETS / "case_library" / "cases.jsonl").read_text().splitlines()[:3]
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cases.jsonl").write_text("\n".join(lines) + "\n")
    r = run(["index", "build", "--library", str(tmp_path / "lib")], tmp_path / "d")
    assert r.returncode == 0 and "embedded 3 report texts" in r.stderr, r.stderr
    built = load_file(str(tmp_path / "lib" / TEXT_EMBEDDINGS))["embeddings"].astype(np.float32)
    shipped = load_file(str(ASSETS / "case_library" / TEXT_EMBEDDINGS))["embeddings"].astype(np.float32)
    assert len(read_cases(tmp_path / "lib")) == 3 and np.abs(built - shipped[:3]).max() < 2e-3

    r = run(["index", "build", "--library", str(tmp_path / "nowhere")], tmp_path / "d")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nowhere'}: no cases.jsonl, "
                                                                   "not a case library"]


def test_cli_eval_images_beat_random(tmp_path):
    r = run(["index", "eval", "--json"], tmp_path / "d")
    assert r.returncode == 0, r.stderr
    nih = json.loads(r.stdout)["images (NIH)"]
    assert nih["overall"]["queries"] > 497 and set(nih["findings"]) >= {"No Finding", "Cardiomegaly"}
    assert nih["overall"]["p@1"] > nih["overall"]["random"] > 0
    assert not (tmp_path / "d" / "xr.sqlite3").exists()  # measuring creates no database
