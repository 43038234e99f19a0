"""Where studies come from (as MONAI Label's datastores sit behind one interface): a source names the
studies it holds and reads one into identifier-free films. Uploaded files and a folder (or archive, once
unpacked by the batch) of studies are here; a PACS is one more module and one line in `SOURCES`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from xr.config import Settings
from xr.ingest.study import EXTENSIONS, IngestedStudy, load_study, skipped_name

INDICATION = "indication.txt"  # optional, inside a study folder
IMAGE_SUFFIXES = {suffix for suffix in EXTENSIONS if suffix}  # a loose image at the top is a one-view study


@dataclass(frozen=True)
class StudyRef:
    """A study as its source names it: never a patient identifier."""
    name: str  # how it is shown and logged (a folder source: the path relative to the folder)
    files: tuple[Path, ...] = ()  # what the ingest reads (a file-based source)
    indication: str = ""
    address: str = ""  # where the source finds it again, sealed under the site secret (a PACS's study UID)
    date: str = ""  # the study's date as the source gives it (YYYY-MM-DD), shown, never stored
    modality: str = ""


class StudySource(Protocol):
    def studies(self) -> list[StudyRef]:
        """The studies it holds now."""
        ...

    def load(self, ref: StudyRef) -> IngestedStudy:
        """One study read into films (xr.ingest: PNG, JPEG, DICOM; the archive rules; no identifier kept)."""
        ...


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
}
