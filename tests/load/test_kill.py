"""SIGKILL during approvals, then restart: the database is consistent and every approval is either fully
there (approval, revision, audit event, status, library entry) or not at all; acknowledged ones are all
there; the app starts again and takes approvals."""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.conftest import NIH
from tests.load.harness import AppProcess
from tests.test_concurrency import draft
from xr import store
from xr.ingest import IngestedImage, IngestedStudy
from xr.store import Actor

CLIENTS = 8


@pytest.fixture
def drafted_studies(env, shared) -> list[int]:
    """Drafted studies of real radiographs, written by the store before the app starts."""
    rad = Actor("dr_a", "radiologist")
    ids = []
    for i, path in enumerate(sorted(NIH.glob("*.png"))[:CLIENTS]):
        pixels = np.asarray(Image.open(path).convert("L"))
        study = IngestedStudy(key=f"{i:064x}", images=[IngestedImage(pixels=pixels, source_format="png", view="frontal")])
        ids.append(store.record_study(env, study, "cough", rad, draft()))
    return ids


def approve_until(url: str, study_id: int, i: int, stop: threading.Event, sent: list, acked: list) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    k = 0
    while not stop.is_set():
        text = f"FINDINGS: Client {i} approval {k}. IMPRESSION: None."
        sent.append(text)
        try:
            acked.append((client.predict(study_id, text, api_name="/approve")["approval_id"], text))
        except Exception:  # the app was killed under it
            return
        k += 1


def test_sigkill_during_approvals_leaves_whole_approvals(env, drafted_studies):
    app = AppProcess(env.data_dir).start()
    stop, sent, acked = threading.Event(), [], []
    threads = [threading.Thread(target=approve_until, args=(app.url, sid, i, stop, sent, acked), daemon=True)
               for i, sid in enumerate(drafted_studies)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 240
    while len(acked) < 2 * CLIENTS and time.monotonic() < deadline:
        time.sleep(0.05)
    app.kill()  # approvals are in flight: each client has one outstanding
    stop.set()
    for t in threads:
        t.join(60)
    assert len(acked) >= 2 * CLIENTS, f"only {len(acked)} approvals before the deadline"

    db = env.data_dir / "xr.sqlite3"
    with sqlite3.connect(db) as c:
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert c.execute("pragma foreign_key_check").fetchall() == []
        approvals = {i: (sid, text) for i, sid, text in c.execute("select id, study_id, text from approvals")}
        audited = {json.loads(d)["approval"] for (d,) in c.execute("select detail from audit_events where action='approve'")}
        library = dict(c.execute("select study_id, approval_id from library_cases"))
        status = dict(c.execute("select id, status from studies"))
        revisions = {t for (t,) in c.execute("select text from revisions")}
    for approval_id, text in acked:
        assert approvals.get(approval_id, (None, None))[1] == text, f"acknowledged approval {approval_id} lost"
    assert {text for _, text in approvals.values()} <= set(sent)
    assert audited == set(approvals), "an approval without its audit event, or the reverse"
    for sid in {sid for sid, _ in approvals.values()}:
        assert status[sid] == "approved"
        assert library[sid] == max(i for i, (s, _) in approvals.items() if s == sid), "library entry of an older approval"
    assert {text for _, text in approvals.values()} <= revisions
    assert not list(env.data_dir.rglob(".*.tmp")), "temporary files left behind"
    unacknowledged = len(approvals) - len(acked)

    again = AppProcess(env.data_dir).start()  # the same data directory, as after a crash
    try:
        from gradio_client import Client

        out = Client(again.url, verbose=False).predict(drafted_studies[0], "FINDINGS: After restart.",
                                                       api_name="/approve")
        assert out["status"] == "approved"
        assert store.study_record(env, drafted_studies[0]).text == "FINDINGS: After restart."
    finally:
        again.stop()
    print(f"SIGKILL after {len(acked)} acknowledged approvals ({len(approvals)} stored, {unacknowledged} committed "
          f"as the process died); database consistent; restarted and approving")
