"""What a study source is (as MONAI Label's datastores sit behind one interface): it names the studies it
holds and reads one into identifier-free films. The sources there are: `xr.ingest.sources.SOURCES`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from xr.ingest.study import IngestedStudy


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
