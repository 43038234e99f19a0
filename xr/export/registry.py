"""The export formats of a signed report, by name: the store writes them, and the API, the UI and the
CLI list them from here. A format is a module with `write(report, path) -> path` and one line below."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry itself stays light: the CLI lists it in `--help`
    from xr.export.approved import ApprovedReport


@dataclass(frozen=True)
class ExportFormat:
    label: str  # as the UI offers it
    suffix: str  # of the file written
    writer: str  # "module:function", imported when used (pydicom only loads for an SR)

    def write(self, report: ApprovedReport, path: Path) -> Path:
        module, function = self.writer.split(":")
        write: Callable[[ApprovedReport, Path], Path] = getattr(importlib.import_module(module), function)
        return write(report, path)


FORMATS: dict[str, ExportFormat] = {
    "sr": ExportFormat("DICOM SR", ".dcm", "xr.export.sr:write_sr"),
    "fhir": ExportFormat("FHIR R4 (JSON)", ".json", "xr.export.fhir:write_fhir"),
    "text": ExportFormat("Plain text", ".txt", "xr.export.text:write_text"),
}

