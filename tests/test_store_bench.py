"""The worklist benchmark at small scale, and the worklist's pages read through an index, not a scan and
a sort of every study."""
from __future__ import annotations

import pytest

from xr import store
from xr.bench.store import bench_worklist, format_worklist, query_plan


def test_bench_worklist_reports_each_query(tmp_path):
    db = tmp_path / "bench.sqlite3"
    result = bench_worklist(f"sqlite:///{db}", studies=2_000, repeats=2)
    assert result["engine"].startswith("sqlite ") and result["counts"]["studies"] == 2_000
    queries = result["queries"]
    assert {"worklist, first page", "worklist, pending", "worklist, drafted", "worklist, approved", "search 'effusion'",
            "search, no match", "search '#1000'", "open a study", "corrections queue", "teaching list"} == set(queries)
    assert all(q["p95_ms"] >= q["p50_ms"] > 0 and q["runs"] == 2 for q in queries.values())
    assert queries["worklist, first page"]["rows"] == 200 and queries["search '#1000'"]["rows"] == 1
    assert queries["search, no match"]["rows"] == 0
    assert queries["corrections queue"]["rows"] == result["counts"]["drafts"] - result["counts"]["approved"]
    assert queries["teaching list"]["rows"] == result["counts"]["approved"]
    table = format_worklist(result)
    assert "| worklist, first page | 200 |" in table and "sqlite p50 ms" in table
    assert not db.exists()  # a scratch database


@pytest.mark.parametrize("status", ["", *store.STATUSES])
def test_worklist_pages_read_an_index_in_order(env, status):
    plan = query_plan(env.database_url, store.worklist_query(status))
    assert not [line for line in plan if line.startswith("SCAN studies") and "USING" not in line], plan
    assert not [line for line in plan if "TEMP B-TREE" in line], plan  # no sort of every matching study
