"""Similar-case search at scale: exact vs IVF vs HNSW over synthetic embedding-like vectors, timed one query at
a time as the app asks, with recall@k against exact search. `python -m xr bench-retrieval`; asserts nothing.

The vectors are a mixture of Gaussian clusters with a decaying spectrum, L2-normalised, because on
isotropic noise in hundreds of dimensions every point is about equally far from every other and
approximate recall means nothing. Queries are fresh draws from the same mixture, not database members.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import TypeVar

import faiss
import numpy as np

from xr.machine import machine
from xr.retrieve.library import EXACT_BELOW, HNSW_EF_CONSTRUCTION, HNSW_M, new_index

SPREAD = 0.8  # within-cluster noise relative to the centre: top-10 cosines about 0.7-0.8, as in the case library
IVF_NPROBE = (16, 64)
HNSW_EF_SEARCH = (32, 64, 128)
TIMED_EXACT = 50  # exact single queries timed: each scans every vector


def synthetic_embeddings(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) database and (queries, dim) held-out queries, float32, unit norm. About 2 sqrt(n) clusters;
    centres and noise share one random basis whose variances fall as 1/rank, as embedding spectra do."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0].T
    basis *= np.sqrt(1.0 / np.arange(1, dim + 1) / np.sum(1.0 / np.arange(1, dim + 1)))[:, None]
    basis = basis.astype(np.float32)
    centres = rng.standard_normal((max(1, int(2 * math.sqrt(n))), dim), dtype=np.float32) @ basis
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n + queries, dim), np.float32)
    for start in range(0, n + queries, 100_000):
        stop = min(start + 100_000, n + queries)
        x = centres[rng.integers(len(centres), size=stop - start)]
        x += SPREAD * (rng.standard_normal((stop - start, dim), dtype=np.float32) @ basis)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out[:n], out[n:]


IndexT = TypeVar("IndexT", bound=faiss.Index)


def ivf_index(vectors: np.ndarray) -> faiss.IndexIVFFlat:
    """IVF with sqrt(n) lists, trained on 40 vectors a list (faiss's lower bound is 39). 4 sqrt(n) lists
    would scan fewer vectors a query, but k-means and filling cost 4 times as much, minutes at a million."""
    n, dim = vectors.shape
    nlist = max(1, int(math.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    sample = np.random.default_rng(0).choice(n, size=min(n, 40 * nlist), replace=False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    return index


def hnsw_index(vectors: np.ndarray) -> faiss.IndexHNSWFlat:
    """The approximate index new_index makes, whatever n is, so its efSearch can be varied here."""
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(vectors)
    return index


def _timed(build: Callable[[], IndexT]) -> tuple[IndexT, float]:
    t = time.perf_counter()
    index = build()
    return index, time.perf_counter() - t


def _measure(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, k: int) -> dict[str, float]:
    """Each query alone (a batch of one, as the app asks): p50/p95 ms, and recall@k against `truth`."""
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append((time.perf_counter() - t) * 1e3)
        found.append(ids[0])
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth[:len(queries)], strict=False))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "recall": hits / (len(queries) * k), "timed": len(queries)}


def _memory_mb(index: faiss.Index) -> float:
    return faiss.serialize_index(index).nbytes / 2**20


def describe(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSWFlat):
        return f"IndexHNSWFlat M={HNSW_M} efConstruction={index.hnsw.efConstruction} efSearch={index.hnsw.efSearch}"
    return type(index).__name__


def bench_retrieval(n: int = 1_000_000, dim: int = 512, queries: int = 1000, k: int = 10, seed: int = 0,
                    threads: int | None = None) -> dict:
    """Build seconds, single-query p50/p95 ms, recall@k and memory of each index over n synthetic vectors.
    `threads` (default: every core) is faiss's OpenMP thread count for building; a batch of one searches
    on one thread whatever it is."""
    threads = threads or os.cpu_count() or 1
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        base, query = synthetic_embeddings(n, dim, queries, seed)
        rows: dict[str, dict] = {}

        exact, seconds = _timed(lambda: _filled(faiss.IndexFlatIP(dim), base))
        truth = exact.search(query, k)[1]
        rows["exact (IndexFlatIP)"] = {"build_s": seconds, **_measure(exact, query[:TIMED_EXACT], truth, k),
                                       "memory_mb": _memory_mb(exact)}
        del exact

        ivf, seconds = _timed(lambda: ivf_index(base))
        memory = _memory_mb(ivf)
        for nprobe in IVF_NPROBE:
            ivf.nprobe = nprobe
            rows[f"IVF{ivf.nlist},Flat nprobe={nprobe}"] = {"build_s": seconds, **_measure(ivf, query, truth, k),
                                                           "memory_mb": memory}
        del ivf

        hnsw, seconds = _timed(lambda: hnsw_index(base))
        memory = _memory_mb(hnsw)
        for ef in HNSW_EF_SEARCH:
            hnsw.hnsw.efSearch = ef
            rows[f"HNSW{HNSW_M},Flat efSearch={ef}"] = {"build_s": seconds, **_measure(hnsw, query, truth, k),
                                                       "memory_mb": memory}
        del hnsw
    finally:
        faiss.omp_set_num_threads(before)

    auto = new_index(dim, n)
    same = (f"HNSW{HNSW_M},Flat efSearch={auto.hnsw.efSearch}" if isinstance(auto, faiss.IndexHNSWFlat)
            else "exact (IndexFlatIP)")
    choices = {m: describe(new_index(dim, m)) for m in (1_000, 100_000, 1_000_000)}
    return {"machine": machine(), "faiss": faiss.__version__, "threads": threads, "n": n, "dim": dim, "k": k,
            "queries": queries, "exact_below": EXACT_BELOW, "rows": rows,
            "automatic": {"index": describe(auto), "row": same}, "choices": choices}


def _filled(index: faiss.Index, vectors: np.ndarray) -> faiss.Index:
    index.add(vectors)
    return index


def format_retrieval(result: dict) -> str:
    r = result
    lines = [f"Similar-case search over {r['n']:,} synthetic {r['dim']}-d vectors, top-{r['k']}, one query at a time, "
             f"faiss {r['faiss']} with {r['threads']} OpenMP threads for building, on: {r['machine']}",
             f"recall@{r['k']} against exact search over {r['queries']} held-out queries "
             f"(exact: the first {TIMED_EXACT} timed)", "",
             f"| index | build s | p50 ms | p95 ms | recall@{r['k']} | memory MB |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in r["rows"].items():
        mark = " (automatic)" if name == r["automatic"]["row"] else ""
        lines.append(f"| {name}{mark} | {row['build_s']:.1f} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} "
                     f"| {row['recall']:.3f} | {row['memory_mb']:.0f} |")
    lines += ["", f"Automatic choice at n={r['n']:,}: {r['automatic']['index']} (exact below {r['exact_below']:,})"]
    lines += [f"- new_index({r['dim']}, {m:,}): {choice}" for m, choice in r["choices"].items()]
    return "\n".join(lines) + "\n"
