"""The case library: past cases with labels and/or reports, and a faiss index over their images."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from safetensors.numpy import load_file

from xr.config import ASSETS
from xr.findings import FINDINGS

EXACT_BELOW = 20_000  # vectors: exact search of 20k 512-d vectors takes about 4 ms a query (xr.bench.retrieval)
HNSW_M = 32  # graph neighbours per vector
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64  # recall@10 >= 0.95 at a million 512-d vectors (xr.bench.retrieval)


def new_index(dim: int, n: int) -> faiss.Index:
    """Every faiss index of the similar-case search is made here, for the n vectors about to be added.
    Exact inner product (cosine on L2-normalised vectors) while its time, linear in n, stays a few
    milliseconds; past that a graph index (HNSW), whose query time grows with log n. HNSW rather than IVF:
    it needs no training, so every caller fills it as it fills an exact index."""
    if n < EXACT_BELOW:
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def read_cases(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "cases.jsonl").read_text().splitlines()]


def has_report(case: dict) -> bool:
    return bool(case["findings"] or case["impression"])


def embed(features: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Centre on the library mean, then L2-normalise: raw ReLU features all point the same way, so
    uncentred cosine similarities bunch up near 1 and rank poorly."""
    x = features - mean
    return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)).astype(np.float32)


@dataclass(frozen=True)
class Neighbour:
    row: int  # row of the image in the library's embedding matrix
    case_id: str
    thumb: str  # relative to the library directory
    similarity: float


class CaseLibrary:
    def __init__(self, directory: Path = ASSETS / "case_library") -> None:
        self.directory = directory
        self.cases = read_cases(directory)
        self.by_id = {c["id"]: c for c in self.cases}
        self.images = json.loads((directory / "images.json").read_text())
        tensors = load_file(str(directory / "image_embeddings.safetensors"))
        self.embeddings = tensors["embeddings"].astype(np.float32)
        self.mean = tensors["mean"]
        self.encoder = json.loads((directory / "LIBRARY.json").read_text())["encoder"]  # made the embeddings
        self.index = new_index(self.embeddings.shape[1], len(self.embeddings))
        self.index.add(self.embeddings)
        self.reports = [c for c in self.cases if has_report(c)]
        self.report_labels = self.label_matrix(self.reports)

    @staticmethod
    def label_matrix(cases: list[dict]) -> np.ndarray:
        m = np.zeros((len(cases), len(FINDINGS)), dtype=np.float32)
        for i, c in enumerate(cases):
            for f in c["labels"]:
                m[i, FINDINGS.index(f)] = 1.0
        return m

    def labels_of(self, case_id: str) -> np.ndarray:
        return self.label_matrix([self.by_id[case_id]])[0]

    def search_images(self, pooled: np.ndarray, k: int) -> list[Neighbour]:
        sims, idx = self.index.search(embed(pooled[None], self.mean), k)
        return [Neighbour(int(i), self.images[i]["case"], f"thumbs/{self.images[i]['thumb']}", float(s))
                for s, i in zip(sims[0], idx[0], strict=False) if i >= 0]
