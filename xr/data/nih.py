"""NIH ChestX-ray14 in its published layout: labels.csv (Data_Entry style) + images/."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from xr.findings import from_nih


@dataclass(frozen=True)
class NIHImage:
    image_id: str
    patient_id: str  # the dataset's own pseudonymous number; never leaves the loader's caller
    view_position: str
    labels: list[str]
    path: Path
    age: int | None = None  # years; None where the sheet has none or an impossible one
    follow_up: int = 0  # the sheet's Follow-up #: orders a patient's films in time


def load_nih(root: Path) -> list[NIHImage]:
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        NIHImage(
            image_id=r["Image Index"],
            patient_id=r["Patient ID"],
            view_position=r["View Position"],
            labels=from_nih(r["Finding Labels"]),
            path=root / "images" / r["Image Index"],
            age=_age(r.get("Patient Age", "")),
            follow_up=int(r["Follow-up #"]) if r.get("Follow-up #", "").strip().isdigit() else 0,
        )
        for r in rows
    ]


def _age(text: str) -> int | None:
    """The sheet's age in years (ChestX-ray14 has a few entries over 400: typing errors, not ages)."""
    return int(text) if text.strip().isdigit() and int(text) <= 120 else None
