"""Scores of probability outputs: ROC AUC (rank form, ties counted half) and expected calibration error."""
from __future__ import annotations

import numpy as np

from xr.thresholds import NEVER


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


STATE_SPECIFICITY = 0.9  # a finding is stated on at most a tenth of the films without it


def choose_cut(y: np.ndarray, p: np.ndarray, min_precision: float = 0.0) -> float:
    """The threshold from which a source that cannot hedge (the retrieval prompt of text mode) states a
    finding, from predictions it did not fit.

    A finding whose AUC interval reaches down to chance (0.5) is never stated: its probability still shows,
    but no sentence is written from noise. Otherwise the best-F1 threshold among those that keep
    specificity at least 0.9, so a weak finding is stated seldom, not on every film. With `min_precision`,
    a finding whose statements at that threshold are right less often than that is never stated either.
    (Drafts from films follow the statement policy of xr.thresholds instead.)"""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=float)
    ci = bootstrap_auc(y, p, resamples=200)
    if ci is None or ci[0] <= 0.5:
        return NEVER
    best, state = 0.0, NEVER
    for t in np.unique(p)[::-1]:
        said = p >= t
        if 1 - said[~y].mean() < STATE_SPECIFICITY:
            break
        f1 = 2 * (said & y).sum() / (said.sum() + y.sum())
        if f1 > best:
            best, state = f1, float(t)
    said = p >= state
    if said.any() and (said & y).sum() / said.sum() < min_precision:
        return NEVER
    return state
