import faiss
import numpy as np

from xr.bench.retrieval import bench_retrieval, format_retrieval, synthetic_embeddings
from xr.retrieve.library import EXACT_BELOW, HNSW_EF_SEARCH, new_index


def test_new_index_is_exact_for_today_libraries_and_hnsw_past_the_threshold():
    for dim, n in ((512, 0), (512, 502), (384, 2070), (384, EXACT_BELOW - 1)):
        assert type(new_index(dim, n)) is faiss.IndexFlatIP
    big = new_index(512, 1_000_000)  # made, not filled
    assert isinstance(big, faiss.IndexHNSWFlat) and big.ntotal == 0 and big.d == 512
    assert big.metric_type == faiss.METRIC_INNER_PRODUCT and big.hnsw.efSearch == HNSW_EF_SEARCH
    assert isinstance(new_index(384, EXACT_BELOW), faiss.IndexHNSWFlat)


def test_synthetic_queries_are_fresh_unit_vectors_with_embedding_like_neighbours():
    base, queries = synthetic_embeddings(5000, 128, 50, seed=3)
    assert base.shape == (5000, 128) and queries.shape == (50, 128) and base.dtype == np.float32
    assert np.allclose(np.linalg.norm(base, axis=1), 1, atol=1e-5)
    top = np.sort(queries @ base.T, axis=1)[:, ::-1]
    assert top[:, 0].max() < 0.99  # no query is a database member
    assert 0.5 < np.median(top[:, 9]) < 0.95 and abs(np.median(base[:500] @ base[500:1000].T)) < 0.1


def test_approximate_index_recall_at_10_against_exact():
    base, queries = synthetic_embeddings(EXACT_BELOW, 384, 200, seed=1)  # the text index's size
    index = new_index(384, len(base))
    assert isinstance(index, faiss.IndexHNSWFlat)
    index.add(base)
    exact = faiss.IndexFlatIP(384)
    exact.add(base)
    sims, found = index.search(queries, 10)
    truth = exact.search(queries, 10)[1]
    recall = np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, truth, strict=False)])
    assert recall >= 0.95, recall
    assert np.allclose(sims, np.einsum("qd,qkd->qk", queries, base[found]), atol=1e-4)  # cosines, not distances


def test_bench_retrieval_small():
    threads = faiss.omp_get_max_threads()
    result = bench_retrieval(n=3000, dim=64, queries=60, seed=2, threads=1)
    assert faiss.omp_get_max_threads() == threads  # restored
    rows = result["rows"]
    assert list(rows)[0] == "exact (IndexFlatIP)" and result["automatic"]["row"] == "exact (IndexFlatIP)"
    assert sum(name.startswith("IVF") for name in rows) == 2 and sum(name.startswith("HNSW") for name in rows) == 3
    assert rows["exact (IndexFlatIP)"]["recall"] == 1.0
    for row in rows.values():
        assert 0.9 <= row["recall"] <= 1.0 and 0 < row["p50_ms"] <= row["p95_ms"] < 1000 and row["build_s"] >= 0
        assert row["memory_mb"] >= 3000 * 64 * 4 / 2**20
    assert result["choices"][1_000] == "IndexFlatIP" and result["choices"][1_000_000].startswith("IndexHNSWFlat")
    table = format_retrieval(result)
    assert "| exact (IndexFlatIP) (automatic) |" in table and "1 OpenMP threads" in table
    assert table.count("\n| ") == 7  # the header and six rows
