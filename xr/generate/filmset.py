"""Every film as the generator trains and is measured on it, computed once: pixels at the generator's
size, view, report embedding and findings, the same patient's other view, and which side of the held-out
split it is on."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from xr.data.films import LabelledFilm
from xr.decode.wording import Wording
from xr.encode.text import TextEmbedder
from xr.encode.view_head import view_of
from xr.generate.anytoany import findings_vector, report_for
from xr.generate.model import FilmGenerator, FilmGeneratorConfig
from xr.generate.transforms import to_film
from xr.ingest import read_pixels
from xr.views import FRONTAL, LATERAL, VIEWS


@dataclass
class FilmSet:
    """Every film as the generator trains on it, computed once."""
    films: torch.Tensor  # (N, 1, S, S) uint8
    view: torch.Tensor  # (N,) index into VIEWS
    report: torch.Tensor  # (N, 384) MiniLM of the report (or of the one written for the labels)
    findings: torch.Tensor  # (N, F)
    partner: list[int]  # the same patient's film of the other view, -1 where there is none
    held_out: np.ndarray  # (N,) bool
    groups: list[str]
    reports: list[str]

    def pixels(self, idx) -> torch.Tensor:
        return self.films[idx].float() / 255

    @torch.no_grad()  # with gradients, every film's encoding graph is kept: 24 GB at 256 px
    def latents(self, model: FilmGenerator, batch: int = 64) -> torch.Tensor:
        """Every film's scaled latent (the posterior mean) under `model`."""
        return torch.cat([model.encode(self.pixels(list(range(s, min(s + batch, len(self.groups))))))
                          for s in range(0, len(self.groups), batch)])


def tell_views(films: list[LabelledFilm], log: Callable[[str], None]) -> list[LabelledFilm]:
    """Films whose layout does not say their view get the drafter's answer (the view head)."""
    unknown = [i for i, f in enumerate(films) if f.view is None]
    if not unknown:
        return films
    from xr.encode.vision import VisionEncoder
    enc, out = VisionEncoder.for_models(), list(films)
    for i in tqdm(unknown, desc="telling views", unit="film", file=sys.stderr):
        out[i] = films[i].seen_as(view_of("unknown", enc.encode([read_pixels(films[i].path)])[0])[0])
    log(f"views told from the pixels for {len(unknown)} films")
    return out


def prepare(films: list[LabelledFilm], config: FilmGeneratorConfig, wording: Wording, log: Callable[[str], None]) -> FilmSet:
    films = tell_views(films, log)
    pixels = [to_film(read_pixels(f.path), config.size) for f in tqdm(films, desc="reading films", unit="film", file=sys.stderr)]
    reports = [f.report or report_for([x for x in f.labels if x in config.findings], wording) for f in films]
    by_key = {(f.group, f.view): i for i, f in reversed(list(enumerate(films)))}
    partner = [by_key.get((f.group, LATERAL if f.view == FRONTAL else FRONTAL), -1) for f in films]
    return FilmSet(
        films=torch.from_numpy(np.round(np.stack(pixels) * 255).astype(np.uint8)),
        view=torch.tensor([VIEWS.index(f.view) for f in films]),
        report=torch.from_numpy(TextEmbedder()(reports)),
        findings=torch.from_numpy(np.stack([findings_vector(r, config.findings) for r in reports])),
        partner=partner, held_out=np.array([f.held_out for f in films]), groups=[f.group for f in films], reports=reports)
