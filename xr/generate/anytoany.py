"""Films from any subset of the others: a report (typed, or written from ticked findings), the other view,
or both. The report side of "any to any" (films -> report) is the drafter's.

A report reaches the generator as its MiniLM embedding and its findings by our labeler; ticked findings
become the site's sentences for them first (the faithful writer's wording), so both routes meet in the
same condition space the generator was trained on.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xr.decode.faithful import write
from xr.decode.wording import Wording
from xr.encode.text import TextEmbedder
from xr.errors import UserError
from xr.evaluate.labeler import POSITIVE, label_report
from xr.generate.model import GUIDANCE, GUIDE_DIR, Condition, FilmGenerator, FindingGuide
from xr.generate.transforms import to_film
from xr.report import join_sections
from xr.thresholds import Stance
from xr.views import FRONTAL, LATERAL, VIEWS

NORMAL = "No Finding"  # asked for as a finding: the site's normal report


class GenerationError(UserError):
    """Nothing to generate from, or a view asked for that was given."""


def report_for(findings: Sequence[str], wording: Wording) -> str:
    """The site's report stating `findings` and, for every other finding it routinely rules out, the
    negative: what a radiologist would have written for a film with just these findings."""
    stances = {f: Stance.PRESENT if f in findings else Stance.ABSENT for f in wording.order}
    written = write("", "", stances, wording)
    return join_sections(written.findings, written.impression)


def load_guide(directory: Path) -> FindingGuide | None:
    return FindingGuide.from_pretrained(directory / GUIDE_DIR) if (directory / GUIDE_DIR / "config.json").is_file() else None


def findings_vector(report: str, names: Sequence[str]) -> np.ndarray:
    labels = label_report(report)
    return np.array([labels.get(f) == POSITIVE for f in names], dtype=np.float32)


def through_frontal(model: FilmGenerator, cond: Condition, generator: torch.Generator, steps: int = 30,
                    guidance: float = GUIDANCE, guide: FindingGuide | None = None,
                    progress: Callable[[float], None] = lambda fraction: None) -> tuple[torch.Tensor, torch.Tensor]:
    """(frontals, laterals) for the reports of `cond`: each lateral made from the frontal made from its
    report, the way a lateral is made from a given frontal, not from the report itself. Trained on 20
    laterals among 805 films, the denoiser drew a report's lateral as the frontal it mostly saw (films
    0.4.0: frontal-looking films, 67 of 337 held-out ones read as frontal by the view rule), while from a
    frontal film it drew a lateral's outline (331 of 337). Chosen on 32 validation patients' reports
    (seed 7): read as lateral 17 from the report, 29 from the report and the made frontal, 32 from the
    made frontal alone. The two views of one request are then also one patient's."""
    frontal = Condition(torch.full_like(cond.view, VIEWS.index(FRONTAL)), cond.report, cond.findings,
                        torch.zeros_like(cond.other), cond.has_report, torch.zeros_like(cond.has_other))
    frontals = model.sample(frontal, generator, steps=steps, guidance=guidance, guide=guide,
                            progress=lambda f: progress(f / 2))
    with torch.no_grad():
        latents = model.encode(frontals)
    lateral = Condition(torch.full_like(cond.view, VIEWS.index(LATERAL)), torch.zeros_like(cond.report),
                        torch.zeros_like(cond.findings), latents, torch.zeros_like(cond.has_report),
                        torch.ones_like(cond.has_other))
    laterals = model.sample(lateral, generator, steps=steps, guidance=guidance, guide=guide,
                            progress=lambda f: progress(0.5 + f / 2))
    return frontals, laterals


@dataclass
class Generated:
    films: dict[str, np.ndarray]  # view -> uint8 (size, size), not yet watermarked
    report: str  # the report the films were made from ("" when none)
    findings: list[str]  # its findings by our labeler
    given: list[str]  # which inputs were used: "report", "frontal", "lateral"
    seed: int
    steps: int
    guidance: float
    guide: float  # the finding guide's scale (0: none)
    model: str
    provenance: dict = field(init=False)

    def __post_init__(self) -> None:
        self.provenance = {"model": self.model, "seed": self.seed, "steps": self.steps, "guidance": self.guidance,
                           "finding_guide": self.guide, "given": self.given, "report": self.report, "findings": self.findings}


class FilmMaker:
    def __init__(self, model: FilmGenerator, wording: Wording, embedder: TextEmbedder | None = None,
                 guide: FindingGuide | None = None) -> None:
        self.model, self.wording, self.guide = model.eval(), wording, guide
        self._embedder = embedder

    @classmethod
    def from_pretrained(cls, directory: Path, wording_dir: Path) -> FilmMaker:
        """The generator in `directory`, with its finding guide where it has one."""
        return cls(FilmGenerator.from_pretrained(directory), Wording.load(wording_dir), guide=load_guide(directory))

    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = TextEmbedder()
        return self._embedder

    def film(self, pixels: np.ndarray) -> torch.Tensor:
        """(1, 1, size, size): one film as the autoencoder takes it."""
        return torch.from_numpy(to_film(pixels, self.model.config.size))[None]

    def condition(self, views: Sequence[str], report: str, other: dict[str, torch.Tensor]) -> Condition:
        """One row per view to make; `other`: the given films' latents by view (each view made from the
        other one's, where given)."""
        c, n = self.model.config, len(views)
        emb = self.embedder([report])[0] if report else np.zeros(c.text_dim, np.float32)
        latent = torch.zeros(c.latent_channels, c.latent_size, c.latent_size)
        others = [other.get(LATERAL if v == FRONTAL else FRONTAL) for v in views]
        return Condition(
            view=torch.tensor([VIEWS.index(v) for v in views]),
            report=torch.from_numpy(np.repeat(emb[None], n, 0)),
            findings=torch.from_numpy(np.repeat(findings_vector(report, c.findings)[None], n, 0)),
            other=torch.stack([o if o is not None else latent for o in others]),
            has_report=torch.full((n,), bool(report)),
            has_other=torch.tensor([o is not None for o in others]))

    def make(self, views: Sequence[str], report: str = "", findings: Sequence[str] = (),
             frontal: np.ndarray | None = None, lateral: np.ndarray | None = None, seed: int = 0,
             steps: int = 30, guidance: float = GUIDANCE, progress: Callable[[float], None] = lambda f: None) -> Generated:
        """`views` from the report (or, when it is empty, the report the ticked `findings` make) and the
        other view's film where given; a lateral without a given frontal through the frontal made from the
        report (`through_frontal`). The same inputs and seed give the same films."""
        views = list(dict.fromkeys(views))
        given_films = {v: p for v, p in ((FRONTAL, frontal), (LATERAL, lateral)) if p is not None}
        if not views:
            raise GenerationError("choose the view(s) to generate: frontal, lateral or both")
        if unknown := [v for v in views if v not in VIEWS]:
            raise GenerationError(f"unknown view {unknown[0]!r}: frontal or lateral")
        if both := [v for v in views if v in given_films]:
            raise GenerationError(f"the {both[0]} film is given: ask for the other view, or draft the report from the films")
        if unknown_findings := [f for f in findings if f not in self.model.config.findings and f != NORMAL]:
            raise GenerationError(f"unknown finding {unknown_findings[0]!r}")
        if NORMAL in findings and len(findings) > 1:
            raise GenerationError(f"'{NORMAL}' and a finding cannot both be asked for")
        shown = [f for f in findings if f != NORMAL]
        report = (report or "").strip() or (report_for(shown, self.wording) if findings else "")
        if not report and not given_films:
            raise GenerationError("give a report, findings or a film to generate from")
        with torch.inference_mode():
            latents = {v: self.model.encode(self.film(p))[0] for v, p in given_films.items()}
        generator = torch.Generator().manual_seed(int(seed))
        if LATERAL in views and FRONTAL not in given_films:  # from the report alone: through its frontal
            cond = self.condition([LATERAL], report, latents)
            pair = through_frontal(self.model, cond, generator, steps, guidance, self.guide, progress)
            made = {FRONTAL: pair[0][0], LATERAL: pair[1][0]}
        else:
            cond = self.condition(views, report, latents)
            made = dict(zip(views, self.model.sample(cond, generator, steps=steps, guidance=guidance, guide=self.guide,
                                                     progress=progress), strict=True))
        films = {v: np.round(made[v][0].numpy() * 255).astype(np.uint8) for v in views}
        given = (["report"] if report else []) + list(given_films)
        found = [f for f, x in zip(self.model.config.findings, cond.findings[0].tolist(), strict=True) if x and report]
        return Generated(films, report, found, given, int(seed), steps, guidance,
                         self.guide.config.scale if self.guide is not None else 0.0, self.model.config.version)
