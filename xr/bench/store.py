"""Does the worklist stay fast as the archive grows? Fills a scratch database (SQLite or PostgreSQL) with
100,000 studies in bulk, through Core inserts of the ORM tables rather than one store transaction per
study, then times the queries the app runs on it. Prints figures; asserts nothing."""
from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Select, insert, text

from db.models import Approval, Draft, Image, LibraryCase, Revision, Study, User
from db.scratch import scratch_database
from db.session import engine_for
from xr import store
from xr.config import settings
from xr.machine import machine, percentiles
from xr.views import VIEWS

_INDICATIONS = ("cough", "fever", "shortness of breath", "chest pain", "trauma", "pre-operative",
                "follow-up pneumonia", "line placement", "")
_SENTENCES = ("The heart size is normal.", "No pleural effusion.", "Small left pleural effusion.",
              "The mediastinum is not widened.", "Mild cardiomegaly.", "No pneumothorax.",
              "Right lower lobe opacity, possibly pneumonia.", "Degenerative changes of the spine.",
              "Lungs are clear.", "Endotracheal tube 4 cm above the carina.")
_START = datetime(2024, 1, 1, tzinfo=UTC)


def _inserted_ids(conn: Connection, statement: Insert, rows: list[dict[str, Any]]) -> list[int]:
    return list(conn.scalars(statement.returning(statement.table.c.id, sort_by_parameter_order=True), rows))


def _fill(engine: Engine, studies: int) -> dict[str, int]:
    """A plausible archive: a fifth pending, half drafted (a third of those corrected by an annotator,
    half of the corrections tagged), the rest approved and in the similar-case library with embeddings
    of their real size. Deterministic."""
    rng = random.Random(0)
    span = timedelta(days=730) / studies
    with engine.begin() as conn:
        rad, ann = _inserted_ids(conn, insert(User), [{"name": "bench.rad", "role": "radiologist"},
                                                      {"name": "bench.ann", "role": "annotator"}])
        created = [_START + span * i + timedelta(minutes=rng.randrange(60)) for i in range(studies)]
        status = rng.choices(store.STATUSES, weights=(2, 5, 3), k=studies)
        study_ids = _inserted_ids(conn, insert(Study), [
            {"key": f"{i:064x}", "status": status[i], "indication": rng.choice(_INDICATIONS),
             "created_at": created[i], "updated_at": created[i] + timedelta(hours=rng.randrange(72))}
            for i in range(studies)])
        conn.execute(insert(Image), [
            {"study_id": sid, "position": pos, "content_hash": f"{sid:032x}{pos:032x}", "view": view,
             "width": 2048, "height": 2048, "pixel_spacing_mm": 0.143, "source_format": "dicom",
             "storage_path": f"images/{sid % 256:02x}/{sid:032x}{pos:032x}.png"}
            for sid in study_ids for pos, view in enumerate(VIEWS[:1 + (sid % 3 == 0)])])
        drafted = [(sid, st) for sid, st in zip(study_ids, status, strict=False) if st != "pending"]
        texts = [" ".join(rng.sample(_SENTENCES, 4)) for _ in drafted]
        draft_ids = _inserted_ids(conn, insert(Draft), [
            {"study_id": sid, "model": "dffg", "model_version": "0.2.0", "indication": "", "text": t,
             "findings": {"Effusion": 0.3, "Cardiomegaly": 0.1}, "fusion_weights": {}, "similar_cases": [],
             "timings": {}, "created_by": rad} for (sid, _), t in zip(drafted, texts, strict=False)])
        corrected = [(sid, did, t) for (sid, st), did, t in zip(drafted, draft_ids, texts, strict=False)
                     if st == "drafted" and rng.random() < 1 / 3]
        conn.execute(insert(Revision), [
            {"study_id": sid, "draft_id": did, "user_id": ann, "text": t + " Corrected.", "diff": "",
             "tags": ["wording"] if i % 2 else []} for i, (sid, did, t) in enumerate(corrected)])
        approved = [(sid, did, t) for (sid, st), did, t in zip(drafted, draft_ids, texts, strict=False) if st == "approved"]
        approval_ids = _inserted_ids(conn, insert(Approval), [
            {"study_id": sid, "draft_id": did, "user_id": rad, "text": t} for sid, did, t in approved])
        conn.execute(insert(LibraryCase), [
            {"study_id": sid, "approval_id": aid, "image_encoder": "xception", "image_features": bytes(512 * 4),
             "text_embedding": bytes(384 * 4), "labels": ["Effusion"], "report": t}
            for (sid, _, t), aid in zip(approved, approval_ids, strict=False)])
    return {"studies": studies, "drafts": len(draft_ids), "corrections": len(corrected), "approved": len(approved)}


def query_plan(database_url: str, query: Select) -> list[str]:
    """The engine's plan for a query: EXPLAIN QUERY PLAN's details on SQLite, EXPLAIN's lines on PostgreSQL."""
    engine = engine_for(database_url)
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return [row[3] for row in conn.execute(text("EXPLAIN QUERY PLAN " + sql))]
        return [row[0] for row in conn.execute(text("EXPLAIN " + sql))]


def _rows(result: object) -> int:
    if isinstance(result, store.CorrectionsQueue):
        return result.total
    return len(result) if isinstance(result, list) else 1


def bench_worklist(database_url: str, studies: int = 100_000, repeats: int = 10) -> dict:
    """Times (p50/p95 over `repeats`) and row counts of the worklist's queries on `studies` studies.
    `database_url`: `sqlite:///FILE` for a new file, or a PostgreSQL server URL, on which a scratch
    database is made; either is removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp, scratch_database(database_url) as url:
        s = replace(settings(), data_dir=Path(tmp), database_url=url)
        engine = engine_for(url)
        started = time.perf_counter()
        counts = _fill(engine, studies)
        fill_s = time.perf_counter() - started
        with engine.begin() as conn:  # fresh statistics, as autovacuum (PostgreSQL) would have them
            if engine.dialect.name == "postgresql":
                conn.execute(text("ANALYZE"))
            else:
                conn.execute(text("PRAGMA optimize"))
        one = studies // 2
        queries: dict[str, Callable[[], object]] = {
            "worklist, first page": lambda: store.worklist(s),
            **{f"worklist, {st}": partial(store.worklist, s, st) for st in store.STATUSES},
            "search 'effusion'": lambda: store.worklist(s, search="effusion"),
            "search, no match": lambda: store.worklist(s, search="no such words"),
            f"search '#{one}'": lambda: store.worklist(s, search=f"#{one}"),
            "open a study": lambda: store.study_record(s, one),
            "corrections queue": lambda: store.corrections_queue(s),
            "teaching list": lambda: store.teaching_studies(s),
        }
        timings = {name: {**percentiles(fn, repeats), "rows": _rows(fn())} for name, fn in queries.items()}
        version = ".".join(map(str, engine.dialect.server_version_info or ()))
        plans = {"first page": query_plan(url, store.worklist_query()),
                 "drafted": query_plan(url, store.worklist_query("drafted"))}
        engine.dispose()
    return {"machine": machine(), "engine": f"{engine.dialect.name} {version}", "fill_s": fill_s, "counts": counts,
            "queries": timings, "plans": plans}


def format_worklist(*results: dict) -> str:
    """One table, a column pair per engine."""
    lines = [f"Worklist queries on: {results[0]['machine']}", ""]
    for r in results:
        c = r["counts"]
        lines.append(f"- {r['engine']}: {c['studies']:,} studies ({c['drafts']:,} drafts, {c['corrections']:,} "
                     f"corrections, {c['approved']:,} approved), filled in {r['fill_s']:.0f} s")
    lines += ["", "| query | rows | " + " | ".join(f"{r['engine'].split()[0]} p50 ms | p95 ms" for r in results) + " |",
              "|---|---:|" + "---:|---:|" * len(results)]
    for name in results[0]["queries"]:
        cells = " | ".join(f"{r['queries'][name]['p50_ms']:.1f} | {r['queries'][name]['p95_ms']:.1f}" for r in results)
        lines.append(f"| {name} | {results[0]['queries'][name]['rows']:,} | {cells} |")
    for r in results:
        for name, plan in r["plans"].items():
            lines += ["", f"{r['engine']} plan, worklist {name}:", *(f"    {line}" for line in plan)]
    return "\n".join(lines) + "\n"
