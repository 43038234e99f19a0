"""Lung masks and what a radiologist reads off them: the cardiothoracic ratio, and whether the film is
frontal or lateral when no DICOM tag says so.

The heart's borders on a frontal film are the medial borders of the lungs, so the mask alone gives an
estimate: cardiac width = the widest gap between the two lungs' medial edges between 30 % and 80 % of
the lung height, where both lungs are still broad; thoracic width = the widest span from one lung's
lateral edge to the other's. The lung U-Net outlines the aerated lung only, so the estimate reads lower
than a CTR measured on the heart shadow (the lung U-Net's card, assets/lung_unet/README.md, says how well it separates cardiomegaly).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LungMeasurements:
    lung_fraction: float  # share of the image inside the lungs
    ctr: float | None  # cardiothoracic ratio estimate; None when the mask does not show two lungs
    cardiac_width_frac: float | None  # widths as fractions of the image width
    thoracic_width_frac: float | None
    looks_frontal: bool  # two lungs side by side of comparable size


def measure(mask: np.ndarray) -> LungMeasurements:
    h, w = mask.shape
    fraction = float(mask.mean())
    cols = np.flatnonzero(mask.any(0))
    if fraction < 0.02 or cols.size == 0:
        return LungMeasurements(fraction, None, None, None, False)
    # split at the valley of lung pixels per column between the two lungs (searched in the middle half)
    profile = mask.sum(0).astype(float)
    lo, hi = w // 4, 3 * w // 4
    split = lo + int(np.argmin(profile[lo:hi]))
    right, left = mask[:, :split], mask[:, split:]  # image left = patient's right
    r_area, l_area = right.sum(), left.sum()
    looks_frontal = bool(min(r_area, l_area) > 0.3 * max(r_area, l_area) and profile[split] < 0.25 * profile.max())
    if not looks_frontal:
        return LungMeasurements(fraction, None, None, None, False)

    r_width, l_width = right.sum(1), left.sum(1)
    rows = np.flatnonzero((r_width > 0) & (l_width > 0))
    if rows.size == 0:
        return LungMeasurements(fraction, None, None, None, True)
    top, bottom = rows.min(), rows.max()
    # the heart borders are read where both lungs are still broad: below that the bases taper laterally
    # (costophrenic angles) and the gap between them is no longer the heart
    broad = (r_width >= 0.5 * r_width.max()) & (l_width >= 0.5 * l_width.max())
    thoracic = cardiac = 0
    for y in rows:
        r_cols, l_cols = np.flatnonzero(right[y]), split + np.flatnonzero(left[y])
        thoracic = max(thoracic, l_cols.max() - r_cols.min())
        if broad[y] and top + 0.3 * (bottom - top) <= y <= top + 0.8 * (bottom - top):
            cardiac = max(cardiac, l_cols.min() - r_cols.max())
    if thoracic <= 0:
        return LungMeasurements(fraction, None, None, None, True)
    return LungMeasurements(fraction, float(cardiac / thoracic), float(cardiac / w), float(thoracic / w), True)
