"""Whether the fusion-weight map says anything: how much its gates vary across one film, whether they differ
inside and outside the lungs, and how they line up with the eye's evidence map of the same film. A map
that is the same everywhere (s.d. near 0) or unrelated to the evidence is not shown as evidence."""
from __future__ import annotations

import numpy as np

LUNG = 0.5  # a region is in the lungs when at least this share of it is
FLAT_SPREAD = 0.1  # gates whose 5th and 95th percentiles over a film are closer than this: one colour on the map


def spread(gates: np.ndarray) -> float:
    """How far a film's gates range (95th minus 5th percentile), robust to a few odd regions."""
    g = np.asarray(gates, dtype=np.float32)
    return float(np.percentile(g, 95) - np.percentile(g, 5))


def is_flat(gates: np.ndarray) -> bool:
    """A map of the same colour everywhere: it says nothing about where the image mattered."""
    return spread(gates) < FLAT_SPREAD


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def gate_statistics(gates: np.ndarray, lungs: np.ndarray, evidence: np.ndarray) -> dict:
    """`gates`, `lungs` (share of each region in the lungs) and `evidence` (the eye's map of its most probable
    finding): (films, grid, grid) each. Means over films of the per-film figures."""
    sd, ranges, inside, outside, corr = [], [], [], [], []
    for g, lung, ev in zip(gates, lungs, evidence, strict=True):
        sd.append(g.std())
        ranges.append(spread(g))
        in_lung = lung >= LUNG
        if in_lung.any() and (~in_lung).any():
            inside.append(g[in_lung].mean())
            outside.append(g[~in_lung].mean())
        r = _correlation(g[in_lung], ev[in_lung])
        if r is not None:
            corr.append(r)
    return {"films": len(gates), "mean_gate": float(gates.mean()), "sd_within_film": float(np.mean(sd)),
            "p95_minus_p5_within_film": float(np.mean(ranges)), "flat_films": int(sum(r < FLAT_SPREAD for r in ranges)),
            "inside_lungs": float(np.mean(inside)) if inside else None,
            "outside_lungs": float(np.mean(outside)) if outside else None,
            "evidence_correlation": float(np.mean(corr)) if corr else None, "correlated_films": len(corr)}
