"""Scores of probability outputs: ROC AUC (rank form, ties counted half) and expected calibration error."""
from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """None when only one class is present: an AUC is then undefined, not 0.5."""
    y = np.asarray(y).astype(bool)
    pos, neg = scores[y], scores[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean predicted| over equal-width probability bins."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / max(len(y), 1))


def bootstrap_auc(y: np.ndarray, scores: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile interval of the AUC over resamples of the films (None where it is undefined): with
    a few dozen positives an AUC is uncertain by about +-0.1, and the interval says by how much."""
    y, scores = np.asarray(y).astype(bool), np.asarray(scores)
    rng = np.random.default_rng(seed)
    aucs = [a for a in (roc_auc(y[i], scores[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(resamples)))
            if a is not None]
    return (float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))) if aucs else None
