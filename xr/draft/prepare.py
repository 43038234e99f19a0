"""One step from a study's films to what the models read, for drafting and training alike (as one image
processor serves both in HF transformers): each film's features, its view by the one rule (the DICOM
header's, else the view head's reading of the film), and the eye's finding probabilities over the frontal
views; then the generator's input (`example`). A drafter is prepare -> write -> explain."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xr.decode.processing import Example
from xr.encode.eye import Eye, read_frontal
from xr.encode.view_head import view_of
from xr.encode.vision import ImageFeatures
from xr.findings import FINDINGS
from xr.result import ViewResult, rle
from xr.views import FRONTAL


@dataclass
class Films:
    """A study's films as the models see them (no films: text mode, every list empty)."""
    pixels: list[np.ndarray] = field(default_factory=list)
    features: list[ImageFeatures] = field(default_factory=list)
    views: list[ViewResult] = field(default_factory=list)  # per film: its view, where that came from, measurements, mask
    read: dict[str, float] = field(default_factory=dict)  # the eye's probabilities over the frontal views

    @property
    def names(self) -> list[str]:
        """Each film's view, FRONTAL or LATERAL."""
        return [v.view for v in self.views]

    @property
    def pooled(self) -> list[np.ndarray]:
        return [f.pooled for f in self.features]


def read_views(header_views: Sequence[str], features: Sequence[ImageFeatures], hashes: Sequence[str] = ()) -> list[ViewResult]:
    """Each film's view (header, else the view head) and, for a frontal one, the lung measurements; the
    maps a drafter draws (fusion weights, evidence) are filled in later."""
    out = []
    for i, (header, f) in enumerate(zip(header_views, features, strict=True)):
        view, source = view_of(header, f)
        m = f.measurements()
        measurements = {"lung_fraction": round(m.lung_fraction, 4),
                        "lung_border_ratio": None if m.ctr is None else round(m.ctr, 3)} if view == FRONTAL else None
        out.append(ViewResult(i, view, source, hashes[i] if hashes else "", [], measurements, rle(f.mask)))
    return out


def prepare(images: Sequence, encoder, eye: Eye) -> Films:
    """`images`: IngestedImages (pixels, header view, content hash). The eye reads only when there are films."""
    if not images:
        return Films()
    pixels = [im.pixels for im in images]
    hashes = [im.content_hash for im in images]
    feats = encoder.encode(pixels, hashes)
    views = read_views([im.view for im in images], feats, hashes)
    return Films(pixels, feats, views, read_frontal(eye, pixels, feats, [v.view == FRONTAL for v in views]))


def example(films: Films | None, prompt: np.ndarray | None, retrieved: list[str], indication: str = "",
            indication_emb: np.ndarray | None = None, target: list[int] | None = None) -> Example:
    """The generator's input: the text inputs, each film's regions and view, and the finding prompt with
    the eye's probabilities over it for the findings the eye reads."""
    films = films or Films()
    if prompt is not None and films.read:
        prompt = prompt.copy()
        for name, p in films.read.items():
            prompt[FINDINGS.index(name)] = p
    return Example(indication=indication, indication_emb=indication_emb, prompt=prompt, retrieved=retrieved,
                   regions=[f.regions for f in films.features], views=films.names, target=target)
