"""The load scenario in the suite: 20 clients, a queue smaller than the crowd (8), three rounds of
draft, edit, approve and worklist each. Figures go to the README (python -m tests.load.scenario)."""
from __future__ import annotations

import json

from tests.load.scenario import run


def test_twenty_clients_draft_and_approve(tmp_path, shared):
    figures = run(clients=20, rounds=3, queue_size=8, work=tmp_path)
    print(json.dumps(figures, indent=2))
    assert figures["errors"] == [] and figures["database_problems"] == []
    assert figures["approvals_acknowledged"] == 20 * 3
    assert figures["locked_in_log"] == 0 and figures["tracebacks_in_log"] == 0
    assert figures["queue_full_retries"] > 0  # the queue is bounded: callers beyond it are told, and retry
    first, *later = figures["rss_mb"]["after_round"]
    assert max(later) < first * 1.15, f"memory still growing after the first round: {figures['rss_mb']}"
