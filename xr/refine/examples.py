"""Refiner examples from IU X-ray: the DFFG generator's own text-mode drafts (greedy), so the refiner
learns to correct exactly the drafts it will see, with the same inputs the drafter had."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RefineExample:
    indication: str
    draft: str  # "FINDINGS: ...\n\nIMPRESSION: ..."
    findings: dict[str, float] = field(default_factory=dict)  # finding -> probability the drafter gave
    similar: list[str] = field(default_factory=list)  # retrieved reports
    target: str = ""  # the reference report (training only)
    id: str = ""

