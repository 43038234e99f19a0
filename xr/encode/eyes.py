"""The eyes, by the name XR_EYE gives: an eye is a module implementing `xr.encode.eye.Eye` and one line
here (a function from the settings to the eye, which loads it)."""
from __future__ import annotations

from collections.abc import Callable

from xr.config import ASSETS, Settings
from xr.encode.eye import Eye


def _finding_head(s: Settings) -> Eye:
    from xr.encode.finding_head import FindingHead
    return FindingHead.from_pretrained(ASSETS / "finding_head")


def _densenet(s: Settings) -> Eye:
    from xr.encode.densenet_eye import densenet_eye
    eye = densenet_eye(s)
    if eye is None:
        raise ValueError("XR_EYE=densenet needs XR_DENSENET_WEIGHTS: a torchxrayvision DenseNet-121 weights file")
    return eye


EYES: dict[str, Callable[[Settings], Eye]] = {
    "finding-head": _finding_head,  # the shipped linear head over our image features
    "densenet": _densenet,  # the user's own chest-X-ray DenseNet-121
}


def eye_for(s: Settings) -> Eye:
    """The eye XR_EYE names; `auto`: the DenseNet where XR_DENSENET_WEIGHTS names one, else the finding head."""
    name = s.eye if s.eye != "auto" else ("densenet" if s.densenet_weights else "finding-head")
    if name not in EYES:
        raise ValueError(f"XR_EYE must be auto or one of {', '.join(EYES)}, not '{s.eye}'")
    return EYES[name](s)
