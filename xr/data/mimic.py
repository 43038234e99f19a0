"""MIMIC-CXR-JPG for users who have it: the split CSV, the report text files
(files/pXX/pSUBJECT/sSTUDY.txt) and the images (files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg)."""
from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

from xr.data.case import Case
from xr.report import sections

SPLIT_FILE = "mimic-cxr-2.0.0-split.csv"
SPLITS = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def _open_csv(root: Path):
    plain, gz = root / SPLIT_FILE, root / (SPLIT_FILE + ".gz")
    if plain.exists():
        return open(plain, newline="")
    if gz.exists():
        return gzip.open(gz, "rt", newline="")
    raise FileNotFoundError(f"{SPLIT_FILE}(.gz) not found in {root}")


def load_mimic(root: Path, split: str | None = None) -> list[Case]:
    studies: dict[tuple[str, str], dict] = {}
    with _open_csv(root) as f:
        for row in csv.DictReader(f):
            name = SPLITS[row["split"]]
            if split is not None and name != split:
                continue
            key = (row["subject_id"], row["study_id"])
            studies.setdefault(key, {"split": name, "dicoms": []})["dicoms"].append(row["dicom_id"])
    cases = []
    for (subject, study), info in studies.items():
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        report_path = folder / f"s{study}.txt"
        if not report_path.exists():
            continue
        sec = sections(report_path.read_text())
        findings = sec.get("FINDINGS", "")
        if not findings:  # the field's convention: studies without a FINDINGS section are left out
            continue
        images = tuple(p for p in (folder / f"s{study}" / f"{d}.jpg" for d in info["dicoms"]) if p.exists())
        cases.append(Case(id=f"s{study}", split=info["split"], findings=findings,
                          impression=sec.get("IMPRESSION", ""), indication=sec.get("INDICATION", ""),
                          image_paths=images))
    return cases
