"""A film as the generator sees it: grey, square, `size` pixels a side, in [0, 1]. The whole film is kept
(the longer side scaled to `size`, the shorter padded), so a lateral's aspect is not distorted."""
from __future__ import annotations

import numpy as np
from monai.transforms import Compose, EnsureChannelFirst, Resize, ScaleIntensity, SpatialPad


def film_transform(size: int) -> Compose:
    return Compose([EnsureChannelFirst(channel_dim="no_channel"), ScaleIntensity(minv=0.0, maxv=1.0),
                    Resize(spatial_size=size, size_mode="longest", mode="area"), SpatialPad((size, size))])


def to_film(pixels: np.ndarray, size: int) -> np.ndarray:
    """(1, size, size) float32 in [0, 1] from display pixels (H, W) or (H, W, 3)."""
    grey = pixels.mean(-1) if pixels.ndim == 3 else pixels
    return np.asarray(film_transform(size)(grey.astype(np.float32)), dtype=np.float32)
