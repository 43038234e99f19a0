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
        )
        for r in rows
    ]
