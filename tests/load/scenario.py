"""Load scenario: N clients (threads with gradio_client) each draft a study of their own through the API,
save an edit and approve it, round after round, against the real app in its own process. Afterwards the
database must hold every acknowledged approval exactly once and nothing else, no client may have seen
'database is locked', and the app's memory must level off. A queue smaller than the crowd shows the
queue is bounded: a caller it cannot take is told so at once and retries with backoff.

    python -m tests.load.scenario --clients 20 --rounds 6 [--queue-size 8]

prints the figures (docs/robustness.md); tests/load/test_load.py runs it in the suite."""
from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import NIH, write_dicom
from tests.load.harness import AppProcess
from xr.machine import machine

MARKER = "Load marker"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    queue_full: int = 0
    approvals: list[tuple[int, str]] = field(default_factory=list)  # (approval id, text) acknowledged
    lock: threading.Lock = field(default_factory=threading.Lock)

    def took(self, op: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(op, []).append(seconds)


def call(client, tally: Tally, op: str, *args, tries: int = 8):
    """One API call; a full queue is retried with exponential backoff, as a well-behaved script would."""
    from gradio_client.utils import QueueError

    for attempt in range(tries):
        t0 = time.perf_counter()
        try:
            out = client.predict(*args, api_name=f"/{op}")
        except QueueError:
            if attempt == tries - 1:
                raise
            with tally.lock:
                tally.queue_full += 1
            time.sleep(0.5 * 2 ** attempt)
            continue
        tally.took(op, time.perf_counter() - t0)
        return out


def client_loop(url: str, i: int, clients: int, rounds: int, work: Path, tally: Tally,
                gate: threading.Barrier) -> None:
    from gradio_client import Client, handle_file

    radiographs = sorted(NIH.glob("*.png"))
    client = Client(url, verbose=False)
    for r in range(rounds):
        gate.wait()
        try:  # a radiograph not seen before, every round: no draft is served from the feature cache
            pixels = np.asarray(Image.open(radiographs[(i + r * clients) % len(radiographs)]).convert("L"))
            dcm = write_dicom(work / f"client{i}_round{r}.dcm", pixels, view="PA",
                              study_uid=f"1.2.826.0.1.3680043.8.498.{9000 + i}.{r}")
            out = call(client, tally, "draft", [handle_file(str(dcm))], "cough")
            text = f"{out['report']} {MARKER} {i}-{r}."
            call(client, tally, "save_draft", out["study_id"], text)
            approved = call(client, tally, "approve", out["study_id"], text)
            with tally.lock:
                tally.approvals.append((approved["approval_id"], text))
            call(client, tally, "worklist", "", "")
        except Exception as e:  # every failure is a finding: reported, and the test fails on it
            with tally.lock:
                tally.errors.append(f"client {i} round {r}: {type(e).__name__}: {str(e)[:200]}")
        gate.wait()


def check_database(db: Path, acknowledged: list[tuple[int, str]]) -> list[str]:
    """Every acknowledged approval there once with its text, no other marked approval, consistent rows."""
    problems = []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = dict(c.execute("select id, text from approvals where text like ?", (f"%{MARKER}%",)).fetchall())
        for approval_id, text in acknowledged:
            if rows.get(approval_id) != text:
                problems.append(f"approval {approval_id} lost or changed")
        texts = [t for t in rows.values()]
        if len(rows) != len(acknowledged):
            problems.append(f"{len(rows)} marked approvals stored, {len(acknowledged)} acknowledged")
        if len(set(texts)) != len(texts):
            problems.append("an approval is stored twice")
        if c.execute("pragma integrity_check").fetchone()[0] != "ok":
            problems.append("integrity check failed")
        if c.execute("pragma foreign_key_check").fetchall():
            problems.append("foreign key violations")
    return problems


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def run(clients: int = 20, rounds: int = 6, queue_size: int = 64, work: Path | None = None) -> dict:
    work = Path(work or tempfile.mkdtemp(prefix="xr-load-"))
    app = AppProcess(work / "data", env={"XR_QUEUE_SIZE": str(queue_size)}).start()
    tally, gate = Tally(), threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client_loop, args=(app.url, i, clients, rounds, work, tally, gate))
               for i in range(clients)]
    rss_after_round, t0 = [], time.perf_counter()
    try:
        rss_start = app.rss_now()
        for t in threads:
            t.start()
        for _ in range(rounds):
            gate.wait()  # the round starts
            gate.wait()  # every client finished it
            rss_after_round.append(app.rss_now())
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
    finally:
        app.stop()
    log = app.log.read_text(errors="replace")
    problems = check_database(work / "data" / "xr.sqlite3", tally.approvals)
    return {
        "machine": machine(),
        "clients": clients, "rounds": rounds, "queue_size": queue_size,
        "requests": sum(len(v) for v in tally.latencies.values()), "seconds": round(seconds, 1),
        "approvals_acknowledged": len(tally.approvals),
        "latency_ms": {op: {"p50": round(percentile(v, 50)), "p95": round(percentile(v, 95)), "n": len(v)}
                       for op, v in tally.latencies.items()},
        "queue_full_retries": tally.queue_full,
        "errors": tally.errors,
        "database_problems": problems,
        "locked_in_log": log.lower().count("database is locked"),
        "tracebacks_in_log": log.count("Traceback"),
        "rss_mb": {"serving": round(rss_start), "after_round": [round(x) for x in rss_after_round],
                   "peak": round(max((m for _, m in app.samples), default=0))},
        "work": str(work),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--queue-size", type=int, default=64)
    args = ap.parse_args()
    print(json.dumps(run(args.clients, args.rounds, args.queue_size), indent=2))


if __name__ == "__main__":
    main()
