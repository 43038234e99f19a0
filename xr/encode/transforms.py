"""Image transforms written out, MONAI style: each a small callable on a numpy array, composed in order."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Resize:
    """Square resize, bilinear: the lung U-Net was trained on images squashed to 512x512."""

    size: int

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if img.shape == (self.size, self.size):
            return img
        return np.asarray(Image.fromarray(img).resize((self.size, self.size), Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class ScaleIntensity:
    """uint8 -> float32 as x/255 - offset (the lung U-Net expects offset 0.5)."""

    offset: float = 0.5

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return img.astype(np.float32) / 255.0 - self.offset


@dataclass(frozen=True)
class Compose:
    steps: Sequence[Callable[[np.ndarray], np.ndarray]]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        for step in self.steps:
            img = step(img)
        return img
