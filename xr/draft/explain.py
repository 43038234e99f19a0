"""What every drafter shows beside its text, so a new drafter writes only its text: the eye's evidence
maps on each frontal film, and the similar cases (shipped library and approved studies)."""
from __future__ import annotations

from collections.abc import Collection, Mapping

from xr.draft.prepare import Films
from xr.encode.eye import Eye, evidence_for
from xr.result import SimilarCase
from xr.retrieve.index import CaseIndex
from xr.views import FRONTAL

SIMILAR_CASES = 6


def explain(films: Films, eye: Eye, index: CaseIndex, text: str, probabilities: Mapping[str, float],
            exclude: Collection[str]) -> list[SimilarCase]:
    """Draws the evidence maps into `films.views` and returns the similar cases of the films and the draft's
    text (the text, not the indication: it retrieves cases sharing its findings far more often)."""
    read = {f: probabilities[f] for f in eye.findings if f in probabilities}
    for v, pixels, f in zip(films.views, films.pixels, films.features, strict=True):
        if v.view == FRONTAL:
            v.evidence = evidence_for(eye, read, pixels, f)
    return index.similar_cases(films.pooled, text, probabilities, k=SIMILAR_CASES, exclude=exclude, views=films.names)
