"""Frontal or lateral, read off the film where no DICOM tag says: one logistic output over the whole
film's features (Xception's middle flow and the lung U-Net's third stage averaged over every region, the
lung mask's share of the film and whether it shows two lungs side by side).

Why learnt: the mask rule alone (two lungs of comparable size side by side) called 209 of the 1,226
shared NIH frontals lateral (17 %: AP films, opacities, low lung fraction), so those films were drafted
and stored as laterals, and the same pixels drafted differently as a DICOM whose header said PA.
Trained by `python -m xr train-views` (xr/train/views.py); how well it holds is in its model card.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from xr.config import ASSETS
from xr.encode.vision import EYE_CHANNELS, ImageFeatures
from xr.modeling import Pretrained
from xr.views import FRONTAL, LATERAL

VIEW_HEAD_DIR = ASSETS / "view_head"


@dataclass
class ViewHeadConfig:
    features: int = EYE_CHANNELS + 2


def view_inputs(features: list[ImageFeatures]) -> np.ndarray:
    """(N, features): the whole film's mean features, then the mask's share and its two-lungs reading."""
    rows = []
    for f in features:
        m = f.measurements()
        rows.append(np.concatenate([f.eye.reshape(-1, f.eye.shape[-1]).mean(0), [m.lung_fraction, float(m.looks_frontal)]]))
    return np.stack(rows).astype(np.float32)


class ViewHead(Pretrained):
    config_class = ViewHeadConfig
    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, config: ViewHeadConfig) -> None:
        super().__init__(config)
        self.register_buffer("mean", torch.zeros(config.features))
        self.register_buffer("std", torch.ones(config.features))
        self.linear = nn.Linear(config.features, 1)  # the logit of "lateral"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)[:, 0]

    @torch.inference_mode()
    def lateral_probability(self, features: list[ImageFeatures]) -> np.ndarray:
        return torch.sigmoid(self(torch.from_numpy(view_inputs(features)))).numpy()


@cache
def shipped() -> ViewHead:
    return ViewHead.from_pretrained(VIEW_HEAD_DIR)


def view_of(header_view: str, features: ImageFeatures) -> tuple[str, str]:
    """(view, where it came from): the DICOM header's ("dicom") where it names one, else the film's ("image")."""
    if header_view in (FRONTAL, LATERAL):
        return header_view, "dicom"
    return (LATERAL if shipped().lateral_probability([features])[0] >= 0.5 else FRONTAL), "image"
