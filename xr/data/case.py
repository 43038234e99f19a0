"""One study as every dataset loader returns it, whatever the layout on disk."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    id: str
    split: str  # "train", "val" or "test" (MIMIC's "validate" is mapped to "val")
    findings: str  # the reference text the field evaluates against (FINDINGS section)
    impression: str = ""
    indication: str = ""
    image_paths: tuple[Path, ...] = ()  # only files that exist
    labels: tuple[str, ...] = ()  # dataset labels in the xr.findings vocabulary, when it has any
