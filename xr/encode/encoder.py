"""Image -> (global embedding for similar-case search, regional grid for heatmaps and fusion)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xr.config import ASSETS
from xr.encode.lung_unet import LungUNet
from xr.encode.transforms import Compose, Resize, ScaleIntensity

ENCODER_INPUT = 256  # 16x16 regions; 4x faster than 512 on two cores and enough for retrieval


@dataclass(frozen=True)
class Encoded:
    pooled: np.ndarray  # (D,) mean of the regional features; the library centres and normalises it
    regions: np.ndarray  # (G, G, D) raw regional features


class ImageEncoder:
    name = "lung-unet-vgg11-encoder"

    def __init__(self, model_dir: Path = ASSETS / "lung_unet", input_size: int = ENCODER_INPUT) -> None:
        self.model = LungUNet.from_pretrained(model_dir)
        self.transform = Compose([Resize(input_size), ScaleIntensity(0.5)])

    @torch.inference_mode()
    def encode(self, images: list[np.ndarray]) -> list[Encoded]:
        if not images:
            return []
        x = torch.from_numpy(np.stack([self.transform(im) for im in images]))[:, None]
        feats = self.model.encode(x)  # (B, D, G, G)
        pooled = feats.mean((2, 3)).numpy()
        regions = feats.permute(0, 2, 3, 1).numpy()
        return [Encoded(pooled=p, regions=r) for p, r in zip(pooled, regions)]
