"""Clinical efficacy: the labeler run on generated and reference reports, compared per observation.

A label counts as present when the labeler says POSITIVE (uncertain, negative and unmentioned count as
absent), over the 14 CheXpert observations. Micro averages pool all observations; macro averages are
over the observations with at least one positive reference, and say how many those are.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xr.evaluate.labeler import POSITIVE, label_reports
from xr.findings import CHEXPERT


def label_matrix(texts: list[str]) -> np.ndarray:
    return np.array([[lab[f] == POSITIVE for f in CHEXPERT] for lab in label_reports(texts)], dtype=bool).reshape(-1, len(CHEXPERT))


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def label_scores(y: np.ndarray, yhat: np.ndarray, names: Sequence[str]) -> dict:
    """Per-observation precision, recall and F1 of boolean (cases, names) matrices, with micro and macro
    averages: the one definition every table comparing stated findings with reference labels uses."""
    y, yhat = np.asarray(y, dtype=bool).reshape(-1, len(names)), np.asarray(yhat, dtype=bool).reshape(-1, len(names))
    tp, fp, fn = (y & yhat).sum(0), (~y & yhat).sum(0), (y & ~yhat).sum(0)
    per_obs = {}
    for j, name in enumerate(names):
        p, r, f = _prf(tp[j], fp[j], fn[j])
        per_obs[name] = {"precision": float(p), "recall": float(r), "f1": float(f), "positives": int(y[:, j].sum()),
                         "predicted": int(yhat[:, j].sum())}
    micro = _prf(tp.sum(), fp.sum(), fn.sum())
    present = [n for n in names if per_obs[n]["positives"] > 0]
    macro = [float(np.mean([per_obs[n][k] for n in present])) if present else 0.0 for k in ("precision", "recall", "f1")]
    return {
        "micro": dict(zip(("precision", "recall", "f1"), map(float, micro), strict=True)),
        "macro": dict(zip(("precision", "recall", "f1"), macro, strict=True)),
        "macro_over": len(present),
        "per_observation": per_obs,
    }


def clinical_scores(refs: dict[str, str], preds: dict[str, str]) -> tuple[dict, dict[str, dict]]:
    """(summary, per-case) for raw (not normalised) report texts keyed by case id."""
    ids = sorted(refs)
    y, yhat = label_matrix([refs[i] for i in ids]), label_matrix([preds[i] for i in ids])
    summary = label_scores(y, yhat, CHEXPERT)
    per_case = {}
    for k, i in enumerate(ids):
        t, f_, n = int((y[k] & yhat[k]).sum()), int((~y[k] & yhat[k]).sum()), int((y[k] & ~yhat[k]).sum())
        per_case[i] = {"CE-F1": _prf(t, f_, n)[2] if (t + f_ + n) else 1.0,
                       "reference_labels": [c for c, v in zip(CHEXPERT, y[k], strict=False) if v],
                       "predicted_labels": [c for c, v in zip(CHEXPERT, yhat[k], strict=False) if v]}
    return summary, per_case
