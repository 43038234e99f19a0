"""The load scenario in the suite: 20 clients, a queue smaller than the crowd (8), six rounds of draft,
edit, approve and worklist each, every round on radiographs not seen before. Figures go to docs/robustness.md
(python -m tests.load.scenario)."""
from __future__ import annotations

import json

from tests.load.scenario import run


def test_twenty_clients_draft_and_approve(tmp_path, shared):
    figures = run(clients=20, rounds=6, queue_size=8, work=tmp_path)
    print(json.dumps(figures, indent=2))
    assert figures["errors"] == [] and figures["database_problems"] == []
    assert figures["approvals_acknowledged"] == 20 * 6
    assert figures["locked_in_log"] == 0 and figures["tracebacks_in_log"] == 0
    assert figures["queue_full_retries"] > 0  # the queue is bounded: callers beyond it are told, and retry
    # Memory does not keep growing: the second half of the run needs at most 15% more than the first half.
    # Round to round it moves by up to ~7% on a shared 2-core machine; a leak of 10 MB a draft adds 60%.
    rounds = figures["rss_mb"]["after_round"]
    assert max(rounds[3:]) < max(rounds[:3]) * 1.15, f"memory still growing: {figures['rss_mb']}"
