"""Which dataset a folder holds, told from its files, so one `--data DIR` works for all of them."""
from __future__ import annotations

from pathlib import Path

from xr.data.case import Case
from xr.data.iu_xray import load_iu
from xr.data.mimic import SPLIT_FILE, load_mimic


def load_cases(root: Path, split: str | None = None) -> tuple[str, list[Case]]:
    """(dataset name, cases) for an IU X-ray (R2Gen/Open-i) or MIMIC-CXR-JPG folder."""
    if (root / "annotation.json").exists():
        return "IU X-ray", load_iu(root, split)
    if (root / SPLIT_FILE).exists() or (root / (SPLIT_FILE + ".gz")).exists():
        return "MIMIC-CXR", load_mimic(root, split)
    raise FileNotFoundError(f"{root}: neither an IU X-ray folder (annotation.json) nor MIMIC-CXR-JPG ({SPLIT_FILE})")
