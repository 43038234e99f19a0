"""How close a faster variant of a model comes to exact fp32: what the export checks and bench-agreement counts."""
from __future__ import annotations

import numpy as np


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest intersection over union of matching (H, W) masks of two (N, H, W) stacks (two empty masks agree)."""
    inter, union = (a & b).sum((1, 2)), (a | b).sum((1, 2))
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).min())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest cosine similarity of matching rows."""
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())
