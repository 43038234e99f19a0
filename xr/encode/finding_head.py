"""Finding probabilities from image features: one logistic output per finding over three groups of
standardised features, each pooled inside the lung mask or read off it:

  1. Xception's middle flow (728), 2. the lung U-Net's third stage (256), 3. five lung measurements
  (cardiothoracic ratio estimate, cardiac and thoracic widths, lung fraction, two lungs seen).

Each group is scaled by `scale / sqrt(its size)` so that under one weight decay a group's prior weight
does not grow with its number of features: without it five measurements are drowned by 984 generic
features, and the measurements carry cardiomegaly. Small on purpose: it is trained on a few hundred
films. Because the features are averages over regions, each finding's logit is a sum over regions, so
its evidence map (a class activation map, Zhou et al. 2016, computed by MONAI) is exact, not a guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from monai.visualize import CAM
from torch import nn

from xr.encode.vision import EYE_CHANNELS, ImageFeatures
from xr.modeling import Pretrained
from xr.thresholds import Thresholds

MEASUREMENTS = 5
HOLDOUT = "holdout"  # beside the shipped head: the one fit on the training part only, which the val figures are of


@dataclass
class FindingHeadConfig:
    findings: list[str] = field(default_factory=list)  # outputs, in order; others are not predicted
    groups: list[int] = field(default_factory=lambda: [728, 256, MEASUREMENTS])  # feature groups, in input order
    group_scales: list[float] = field(default_factory=lambda: [1.0, 1.0, 2.0])


def measurement_row(f: ImageFeatures) -> list[float]:
    """NaN where the mask shows no measurable pair of lungs: the head reads that as the training mean."""
    m = f.measurements()
    nan = float("nan")
    return [nan if m.ctr is None else m.ctr, nan if m.cardiac_width_frac is None else m.cardiac_width_frac,
            nan if m.thoracic_width_frac is None else m.thoracic_width_frac, m.lung_fraction, float(m.looks_frontal)]


def lung_pooled(f: ImageFeatures) -> np.ndarray:
    return np.einsum("hw,hwc->c", f.lung_weights(), f.eye)


def head_inputs(features: list[ImageFeatures]) -> np.ndarray:
    return np.stack([np.concatenate([lung_pooled(f), measurement_row(f)]) for f in features]).astype(np.float32)


class _Pooled(nn.Module):
    """Spatial features (N, C, G, G), already weighted by the lung mask -> logits: the module MONAI's CAM
    reads, with the measurements held fixed. `fc` is the head's weight on the raw spatial features."""

    def __init__(self, head: FindingHead, measurements: torch.Tensor) -> None:
        super().__init__()
        self.head, self.measurements = head, measurements  # (1, MEASUREMENTS), the same for every row
        self.spatial = nn.Identity()  # CAM's target layer
        n = EYE_CHANNELS
        self.fc = nn.Linear(n, len(head.findings), bias=False)
        self.fc.weight.data = head.linear.weight[:, :n] * (head.scale[:n] / head.std[:n])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.spatial(x).mean((2, 3)), self.measurements.expand(len(x), -1)], 1))


class FindingHead(Pretrained):
    config_class = FindingHeadConfig
    name = "the shipped finding head"
    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor
    scale: torch.Tensor
    thresholds = Thresholds()  # replaced by the folder's own in from_pretrained

    def __init__(self, config: FindingHeadConfig) -> None:
        super().__init__(config)
        dim = sum(config.groups)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        scale = torch.cat([torch.full((n,), s / n ** 0.5) for n, s in zip(config.groups, config.group_scales, strict=True)])
        self.register_buffer("scale", scale, persistent=False)
        self.linear = nn.Linear(dim, len(config.findings))

    @classmethod
    def from_pretrained(cls, directory, dtype: torch.dtype = torch.float32) -> FindingHead:
        """The weights, and the per-finding thresholds chosen beside them (train-findings) for the drafts' words."""
        head = super().from_pretrained(directory, dtype)
        head.thresholds = Thresholds.load(directory)
        return head

    @property
    def findings(self) -> list[str]:
        return self.config.findings

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num((x - self.mean) / self.std) * self.scale  # NaN (not measurable) -> the mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.standardise(x))

    @torch.inference_mode()
    def probabilities(self, features: list[ImageFeatures]) -> np.ndarray:
        """(N, len(findings)) probabilities."""
        return torch.sigmoid(self(torch.from_numpy(head_inputs(features)))).numpy()

    def read(self, pixels: object, features: list[ImageFeatures]) -> np.ndarray:
        """The eye's interface (xr.encode.eye): it reads our features, not the pixels."""
        return self.probabilities(features)

    def evidence(self, pixels: object, f: ImageFeatures, findings: list[str]) -> dict[str, np.ndarray]:
        """(GRID, GRID) map per finding, 0..1 of its peak: where in the lungs the evidence for it lies (the
        regions' positive shares of its logit; the measurements' share has no place on the film)."""
        w = f.lung_weights()
        spatial = torch.from_numpy(np.ascontiguousarray((f.eye * (w * w.size)[..., None]).transpose(2, 0, 1)))[None]
        measurements = torch.tensor([measurement_row(f)], dtype=torch.float32)
        cam = CAM(_Pooled(self, measurements), target_layers="spatial", fc_layers="fc",
                  postprocessing=lambda m: m)
        with torch.no_grad():  # one batch row per finding asked for
            maps = cam(spatial.expand(len(findings), -1, -1, -1), class_idx=[self.findings.index(n) for n in findings])
        for_finding = maps.clamp_min(0)  # what speaks for the finding; 0 outside the lungs
        peak = for_finding.amax((1, 2, 3), keepdim=True).clamp_min(1e-12)
        return {name: (for_finding[i, 0] / peak[i, 0]).numpy() for i, name in enumerate(findings)}
