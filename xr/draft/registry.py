"""The drafters, by the name XR_DRAFTER gives: a drafter is a module with a class implementing `Drafter`
and one line in `DRAFTERS` (a function from the settings and the workstation's similar-case index to it).
`xr.draft.prepare` and `xr.draft.explain` do what every drafter does, so a new one writes only its text."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from xr.config import Settings
from xr.encode.eye import Eye
from xr.ingest import IngestedStudy
from xr.result import DraftResult
from xr.retrieve.index import CaseIndex


class Drafter(Protocol):
    model: str  # recorded with every draft, with its version
    version: str
    eye: Eye  # where its finding probabilities come from (xr.encode.eyes)

    @property
    def encoder(self):
        """The image encoder (xr.encode.vision): an approval's library entry is pooled from its features."""
        ...

    def draft(self, study: IngestedStudy, indication: str = "", exclude: frozenset[str] = frozenset()) -> DraftResult:
        """`exclude`: library cases the draft may not use (a teaching case drafted from its own film)."""
        ...


def _dffg(s: Settings, index: CaseIndex) -> Drafter:
    from xr.draft.dffg import DFFGDrafter
    # a fine-tuned copy (train-generator --edits --out DIR), else the shipped generator
    return DFFGDrafter(s.generator_dir, index=index, s=s) if s.generator_dir else DFFGDrafter(index=index, s=s)


def _retrieval(s: Settings, index: CaseIndex) -> Drafter:
    from xr.draft.retrieval import RetrievalDrafter
    return RetrievalDrafter(index=index, s=s)


DRAFTERS: dict[str, Callable[[Settings, CaseIndex], Drafter]] = {
    "dffg": _dffg,  # the DFFG generator with retrieval and the finding prompt
    "retrieval": _retrieval,  # the nearest library report, held to the statement policy
}


def make_drafter(s: Settings, index: CaseIndex) -> Drafter:
    """Every drafter shares the workstation's similar-case index, so approvals show up in its drafts."""
    if s.drafter not in DRAFTERS:
        raise ValueError(f"XR_DRAFTER must be one of {', '.join(DRAFTERS)}, not '{s.drafter}'")
    return DRAFTERS[s.drafter](s, index)
