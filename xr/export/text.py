"""The plain-text export: what a clinician reads, with who signed it and how it was drafted."""
from __future__ import annotations

from pathlib import Path

from xr.config import Settings, settings
from xr.export.approved import ApprovedReport, signer
from xr.files import write_atomic

TITLE = "Chest X-ray report"


def sign_off(r: ApprovedReport, s: Settings) -> str:
    line = f"Approved by {signer(r, s)} on {r.approved_at:%Y-%m-%d %H:%M} UTC"
    return line + " (amended)" if r.amended else line


def to_text(r: ApprovedReport, s: Settings | None = None) -> str:
    head = [TITLE]
    if r.views:
        head.append(f"Views: {', '.join(r.views)}")
    if r.indication.strip():
        head.append(f"Indication: {r.indication.strip()}")
    tail = [sign_off(r, s or settings()),
            f"Drafted with {r.model} {r.model_version}; read and corrected by the approving radiologist."]
    return "\n\n".join(["\n".join(head), r.text, "\n".join(tail)]) + "\n"


def write_text(r: ApprovedReport, path: Path, s: Settings | None = None) -> Path:
    return write_atomic(path, to_text(r, s).encode("utf-8"))
