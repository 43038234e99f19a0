"""From a finding's probability to what the draft says of it: stated, hedged ("cannot be excluded") or
not stated. Per finding, because the eye is much surer of some findings than of others; chosen on data
the model did not fit (out-of-fold predictions), never on a reported figure, and kept beside the model
that produces the probabilities, with the data they were chosen on.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from xr.files import write_atomic


class Stance(StrEnum):
    STATED = "stated"
    HEDGED = "hedged"
    ABSENT = "not stated"


@dataclass(frozen=True)
class Cut:
    hedge: float  # at or above: hedged
    state: float  # at or above: stated (hedge <= state; equal means never hedged)


NEVER = 1.01  # a threshold no probability reaches: the finding is never written from this model
DEFAULT_CUT = Cut(0.5, 0.5)  # a probability with no chosen thresholds: stated from one half, never hedged
FILE = "thresholds.json"


@dataclass
class Thresholds:
    cuts: dict[str, Cut] = field(default_factory=dict)
    chosen_on: str = "not chosen: 0.5 for every finding"

    def stance(self, finding: str, p: float) -> Stance:
        cut = self.cuts.get(finding, DEFAULT_CUT)
        return Stance.STATED if p >= cut.state else Stance.HEDGED if p >= cut.hedge else Stance.ABSENT

    def never_written(self, findings) -> list[str]:
        """Of `findings`, those no probability can make the draft state or hedge."""
        return [f for f in findings if f in self.cuts and self.cuts[f].hedge >= NEVER]

    def stances(self, probabilities: dict[str, float]) -> dict[str, Stance]:
        return {f: self.stance(f, p) for f, p in probabilities.items() if f != "No Finding"}

    def save(self, directory: Path) -> None:
        write_atomic(Path(directory) / FILE, (json.dumps(
            {"chosen_on": self.chosen_on, "cuts": {f: asdict(c) for f, c in self.cuts.items()}}, indent=2) + "\n").encode())

    @classmethod
    def load(cls, directory: Path) -> Thresholds:
        """The folder's thresholds.json, or the 0.5 default where there is none (a user's own model)."""
        path = Path(directory) / FILE
        if not path.is_file():
            return cls()
        d = json.loads(path.read_text())
        return cls({f: Cut(**c) for f, c in d["cuts"].items()}, d["chosen_on"])

    def merged(self, other: Thresholds, findings: list[str]) -> Thresholds:
        """These thresholds with `other`'s for `findings` (the eye's own outputs over the retrieval's)."""
        return Thresholds({**self.cuts, **{f: other.cuts.get(f, DEFAULT_CUT) for f in findings}},
                          f"{other.chosen_on} (for {', '.join(findings)}); otherwise {self.chosen_on}")
