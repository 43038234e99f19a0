"""Many writers at once, on a real SQLite file and a real PostgreSQL database: the same new study drafted
by 20 threads, 20 approvals of one study, 20 studies approved side by side. Nothing lost, nothing
doubled, and no 'database is locked' (before BEGIN IMMEDIATE, a SQLite transaction that read and then
wrote failed at once when another had committed in between; before INSERT ... ON CONFLICT, two first
drafts of one study or by one new user collided on the unique key)."""
from __future__ import annotations

import threading

import numpy as np
from sqlalchemy import text

from db.session import engine_for
from xr import store
from xr.ingest import IngestedImage, IngestedStudy
from xr.result import DraftResult
from xr.store import Actor

THREADS = 20


def count(s, table: str, where: str = "") -> int:
    with engine_for(s.database_url).connect() as c:
        return c.scalar(text(f"select count(*) from {table} {where}"))


def at_once(fn, n: int = THREADS) -> list:
    """Run fn(i) in n threads released together; each result or the exception it raised."""
    gate, out = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = fn(i)
        except Exception as e:  # reported by the callers' assertions, with its message
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def study(seed: int) -> IngestedStudy:
    pixels = np.random.default_rng(seed).integers(0, 255, (64, 64), dtype=np.uint8)
    return IngestedStudy(key=f"{seed:064x}", images=[IngestedImage(pixels=pixels, source_format="png")])


def draft() -> DraftResult:
    return DraftResult(findings_text="Lungs are clear.", impression="No acute disease.", findings={}, views=[],
                 similar_cases=[], model="test", model_version="0")


def test_same_new_study_by_a_new_user_from_many_threads(db_env):
    """One study, one draft: every other thread is told the films are that study (nothing merged)."""
    results = at_once(lambda i: store.record_study(db_env, study(1), "cough", Actor("newcomer", "radiologist"), draft()))
    ids = [r for r in results if isinstance(r, int)]
    assert len(ids) == 1 and all(isinstance(r, store.KnownStudy) and r.study_id == ids[0] for r in results if r not in ids)
    assert (count(db_env, "studies"), count(db_env, "users"), count(db_env, "images")) == (1, 1, 1)
    assert count(db_env, "drafts") == 1
    assert count(db_env, "audit_events", "where action = 'ingest'") == 1


def test_approvals_of_one_study_and_of_many_side_by_side(db_env):
    rad = Actor("dr_a", "radiologist")
    one = store.record_study(db_env, study(1), "", rad, draft())
    many = [store.record_study(db_env, study(100 + i), "", rad, draft()) for i in range(THREADS)]

    same = at_once(lambda i: store.approve(db_env, one, f"Approval {i} of one study.", Actor(f"dr_{i}", "radiologist")))
    apart = at_once(lambda i: store.approve(db_env, many[i], f"Approval of study {i}.", rad))
    for results in (same, apart):
        assert [r for r in results if not isinstance(r, int)] == []
        assert len(set(results)) == THREADS
    assert count(db_env, "approvals") == 2 * THREADS
    assert count(db_env, "studies", "where status = 'approved'") == THREADS + 1
    assert count(db_env, "audit_events", "where action = 'approve'") == 2 * THREADS
    latest = store.study_record(db_env, one).text
    assert latest == f"Approval {same.index(max(same))} of one study."  # the last to commit is the one shown
