"""Finding probabilities from image features: one logistic output per finding over standardised
[Xception pooled, lung-U-Net pooled, lung measurements] features. Small on purpose: it is trained on a
few hundred images. The measurements (cardiothoracic ratio estimate, lung fraction) carry what the
generic features miss: on the NIH sample the CTR estimate alone separates cardiomegaly far better."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from xr.encode.vision import ImageFeatures
from xr.modeling import Pretrained


@dataclass
class FindingHeadConfig:
    findings: list[str] = field(default_factory=list)  # outputs, in order; others are not predicted
    input_dim: int = 2048 + 512 + 2
    measurement_scale: float = 10.0  # the 2 measurements count this much more under the same weight decay


TYPICAL_CTR = 0.35  # stands in where no ratio can be read (lateral view, failed mask)


def head_inputs(features: list[ImageFeatures]) -> np.ndarray:
    rows = []
    for f in features:
        m = f.measurements()
        rows.append(np.concatenate([f.xception, f.pooled, [TYPICAL_CTR if m.ctr is None else m.ctr, m.lung_fraction]]))
    return np.stack(rows).astype(np.float32)


class FindingHead(Pretrained):
    config_class = FindingHeadConfig
    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor
    scale: torch.Tensor

    def __init__(self, config: FindingHeadConfig) -> None:
        super().__init__(config)
        self.register_buffer("mean", torch.zeros(config.input_dim))
        self.register_buffer("std", torch.ones(config.input_dim))
        scale = torch.ones(config.input_dim)
        scale[-2:] = config.measurement_scale  # two explicit features among 2,560 generic ones: keep them heard
        self.register_buffer("scale", scale, persistent=False)
        self.linear = nn.Linear(config.input_dim, len(config.findings))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std * self.scale)

    @torch.inference_mode()
    def probabilities(self, features: list[ImageFeatures]) -> np.ndarray:
        """(N, len(findings)) probabilities."""
        return torch.sigmoid(self(torch.from_numpy(head_inputs(features)))).numpy()
