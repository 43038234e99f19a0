"""The eye: where a draft's finding probabilities come from (which one: xr/encode/eyes.py). Every eye reads
the frontal views (what they were trained on) and every draft records which one it used."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from xr.encode.vision import ImageFeatures
from xr.thresholds import Thresholds


class Eye(Protocol):
    name: str

    @property
    def findings(self) -> list[str]:
        """Its outputs, in our vocabulary."""
        ...

    @property
    def thresholds(self) -> Thresholds:
        """Per finding: from which probability a draft hedges or states it."""
        ...

    def read(self, pixels: list[np.ndarray], features: list[ImageFeatures]) -> np.ndarray:
        """(N, len(findings)) probabilities for N films."""
        ...

    def evidence(self, pixels: np.ndarray, features: ImageFeatures, findings: list[str]) -> dict[str, np.ndarray]:
        """(GRID, GRID) map per finding, 0..1: where on one film the probability of each comes from."""
        ...


EVIDENCE_FINDINGS = 3  # maps are drawn for the most probable findings (besides No Finding)


def evidence_for(eye: Eye, probabilities: dict[str, float], pixels: np.ndarray, features: ImageFeatures) -> dict[str, list]:
    """The evidence maps a draft keeps for one frontal view, most probable finding first, rounded for JSON."""
    top = sorted((f for f in probabilities if f != "No Finding"), key=lambda f: -probabilities[f])[:EVIDENCE_FINDINGS]
    maps = eye.evidence(pixels, features, top)
    return {f: np.round(maps[f], 3).tolist() for f in top}


def read_frontal(eye: Eye, pixels: list[np.ndarray], features: list[ImageFeatures], frontal: list[bool]) -> dict[str, float]:
    """The eye's probabilities averaged over a study's frontal views (over every view when it has none)."""
    chosen = [i for i, f in enumerate(frontal) if f] or list(range(len(pixels)))
    p = eye.read([pixels[i] for i in chosen], [features[i] for i in chosen]).mean(0)
    return {name: float(p[j]) for j, name in enumerate(eye.findings)}
