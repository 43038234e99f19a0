"""The study sources there are (`xr.ingest.source`), by name: uploaded files and a folder (or archive, once
unpacked by the batch) of studies are here; the PACS is its own module (`xr.ingest.pacs`). Another
source is one more module and one line in `SOURCES`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from xr.config import Settings
from xr.ingest.pacs import Pacs
from xr.ingest.source import StudyRef, StudySource
from xr.ingest.study import EXTENSIONS, IngestedStudy, load_study, skipped_name

INDICATION = "indication.txt"  # optional, inside a study folder
IMAGE_SUFFIXES = {suffix for suffix in EXTENSIONS if suffix}  # a loose image at the top is a one-view study


class Files:
    """Files a user gave (uploaded, or named on the command line): one study."""

    def __init__(self, paths: Sequence[str | Path], s: Settings) -> None:
        self.paths, self.s = [Path(p) for p in paths], s

    def studies(self) -> list[StudyRef]:
        return [StudyRef("given files", tuple(self.paths))]

    def load(self, ref: StudyRef) -> IngestedStudy:
        return load_study(list(ref.files), self.s)


class Folder:
    """A folder of studies: each immediate subfolder (with an optional indication.txt), each .zip and each
    loose image; other files are not studies."""

    def __init__(self, root: str | Path, s: Settings) -> None:
        self.root, self.s = Path(root), s

    def studies(self) -> list[StudyRef]:
        refs = []
        for p in sorted(self.root.iterdir()):
            if skipped_name(p.name):
                continue
            if p.is_dir():
                files = tuple(f for f in sorted(p.rglob("*")) if f.is_file() and f.name != INDICATION
                              and not any(skipped_name(part) for part in f.relative_to(p).parts))
                indication = p / INDICATION
                refs.append(StudyRef(p.name, files, indication.read_text(errors="replace").strip()
                                     if indication.is_file() else ""))
            elif p.suffix.lower() == ".zip" or p.suffix.lower() in IMAGE_SUFFIXES:
                refs.append(StudyRef(p.name, (p,)))
        return refs

    def load(self, ref: StudyRef) -> IngestedStudy:
        return load_study(list(ref.files), self.s)


SOURCES: dict[str, Callable[[str, Settings], StudySource]] = {
    "files": lambda location, s: Files([location], s),
    "folder": Folder,
    "pacs": lambda url, s: Pacs(s, url or None),  # a DICOMweb root; '' for XR_PACS_URL
}
