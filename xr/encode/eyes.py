"""The eyes, by the name XR_EYE gives: an eye is a module implementing `xr.encode.eye.Eye` and one line
here (a function from the settings to the eye, which loads it). The site's eye is the finding head
`python -m xr learn` retrained on this site's signed studies and promoted (kept under DATA_DIR/eyes/)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from xr.config import ASSETS, Settings
from xr.encode.eye import Eye
from xr.errors import UserError


def _finding_head(s: Settings) -> Eye:
    from xr.encode.finding_head import FindingHead
    return FindingHead.from_pretrained(ASSETS / "finding_head")


def _densenet(s: Settings) -> Eye:
    from xr.encode.densenet_eye import densenet_eye
    eye = densenet_eye(s)
    if eye is None:
        raise UserError("XR_EYE=densenet needs XR_DENSENET_WEIGHTS: a torchxrayvision DenseNet-121 weights file")
    return eye


SITE_EYES = "eyes"  # under the data directory: one folder per learnt version, and `current`, the promoted one


def site_eye_dir(s: Settings) -> Path | None:
    """The promoted site eye's folder, or None while no learnt eye has been promoted (or all rolled back)."""
    pointer = s.data_dir / SITE_EYES / "current"
    return s.data_dir / SITE_EYES / pointer.read_text().strip() if pointer.is_file() else None


def site_status(s: Settings) -> dict:
    """What an admin reads of the learnt eyes: the promoted one (None: the shipped eye serves), what it
    learnt from and how it measured against the eye before it, the promotions in order."""
    root = s.data_dir / SITE_EYES
    directory = site_eye_dir(s)
    promoted = json.loads((root / "promoted.json").read_text()) if (root / "promoted.json").is_file() else []
    learnt = json.loads((directory / "learn.json").read_text()) if directory and (directory / "learn.json").is_file() else {}
    return {"eye": directory.name if directory else None, "promoted": promoted,
            "versions": sorted(p.name for p in root.glob("v*")) if root.is_dir() else [],
            **{k: learnt.get(k) for k in ("site_training_studies", "site_validation_films", "before", "after", "before_eye")}}


def _site(s: Settings) -> Eye:
    from xr.encode.finding_head import FindingHead
    directory = site_eye_dir(s)
    if directory is None:
        raise UserError("XR_EYE=site: no eye has been learnt and promoted here yet (python -m xr learn)")
    head = FindingHead.from_pretrained(directory)
    learnt = json.loads((directory / "learn.json").read_text())["site_training_studies"]
    head.name = f"the site's finding head {directory.name} (learnt from {learnt} signed studies)"
    return head


EYES: dict[str, Callable[[Settings], Eye]] = {
    "finding-head": _finding_head,  # the shipped linear head over our image features
    "densenet": _densenet,  # the user's own chest-X-ray DenseNet-121
    "site": _site,  # the finding head as `xr learn` last promoted it
}


def eye_for(s: Settings) -> Eye:
    """The eye XR_EYE names; `auto`: the site's promoted eye where there is one, else the DenseNet where
    XR_DENSENET_WEIGHTS names one, else the shipped finding head."""
    name = s.eye if s.eye != "auto" else (
        "site" if site_eye_dir(s) else "densenet" if s.densenet_weights else "finding-head")
    if name not in EYES:
        raise UserError(f"XR_EYE must be auto or one of {', '.join(EYES)}, not '{s.eye}'")
    return EYES[name](s)
