"""Everything the product sees of one image, computed in one place: the lung U-Net at its training size
(lung mask + chest-X-ray features for retrieval and heatmaps), ImageNet Xception features (for finding
probabilities), the view, and the measurements read off the mask. Results are cached by content hash."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xr.config import ASSETS, Settings
from xr.encode.cache import FeatureCache
from xr.encode.lung_unet import LungUNet
from xr.encode.lungs import MASK_SIZE, LungMeasurements, measure
from xr.encode.transforms import Compose, Resize, ScaleIntensity
from xr.encode.xception import Xception, grey_to_input
from xr.onnx.runtime import backed

GRID = 16  # regions per side given to retrieval heatmaps and the generator
XCEPTION_SIZE = 299
ENCODER_NAME = "vision-v1"  # bump when any output below changes: it keys the feature cache


@dataclass(frozen=True)
class ImageFeatures:
    pooled: np.ndarray  # (512,) mean of the U-Net's deepest encoder stage: similar-case search
    regions: np.ndarray  # (GRID, GRID, 512) the same features per region
    xception: np.ndarray  # (2048,) ImageNet Xception, pooled: finding probabilities
    mask: np.ndarray  # (MASK_SIZE, MASK_SIZE) bool lung mask of the image squashed to a square

    def measurements(self) -> LungMeasurements:
        return measure(self.mask)


def unet_transform() -> Compose:
    return Compose([Resize(MASK_SIZE), ScaleIntensity(0.5)])


class VisionEncoder:
    name = ENCODER_NAME

    def __init__(self, assets: Path = ASSETS, cache: FeatureCache | None = None, s: Settings | None = None) -> None:
        self.unet = LungUNet.from_pretrained(assets / "lung_unet")
        self.xception = Xception.from_pretrained(assets / "xception")
        # eager PyTorch or the ONNX graph `python -m xr export-onnx` made of the same weights (xr.onnx.runtime)
        self.segment, unet_part = backed("lung_unet", assets / "lung_unet" / "model.safetensors",
                                         self.unet.segment_and_encode, s)
        self.features, x_part = backed("xception", assets / "xception" / "model.safetensors",
                                       lambda x: self.xception(grey_to_input(x)), s)
        self.parts = {"lung_unet": unet_part, "xception": x_part}
        self.unet_input = unet_transform()
        self.xception_input = Resize(XCEPTION_SIZE)
        self.cache = cache

    def encode(self, images: list[np.ndarray], content_hashes: list[str] | None = None) -> list[ImageFeatures]:
        hashes: Sequence[str | None] = content_hashes or [None] * len(images)
        out: list[ImageFeatures | None] = [self._cached(h) for h in hashes]
        todo = [i for i, f in enumerate(out) if f is None]
        if todo:
            for i, f in zip(todo, self._compute([images[i] for i in todo]), strict=False):
                out[i] = f
                h = hashes[i]
                if self.cache is not None and h:
                    self.cache.put(self.name, h, {"pooled": f.pooled, "regions": f.regions.astype(np.float16),
                                                  "xception": f.xception, "mask": np.packbits(f.mask)})
        return out  # type: ignore[return-value]

    def _cached(self, content_hash: str | None) -> ImageFeatures | None:
        if self.cache is None or not content_hash:
            return None
        d = self.cache.get(self.name, content_hash)
        if d is None:
            return None
        mask = np.unpackbits(d["mask"])[: MASK_SIZE * MASK_SIZE].reshape(MASK_SIZE, MASK_SIZE).astype(bool)
        return ImageFeatures(d["pooled"], d["regions"].astype(np.float32), d["xception"], mask)

    @torch.inference_mode()
    def _compute(self, images: list[np.ndarray]) -> list[ImageFeatures]:
        x = torch.from_numpy(np.stack([self.unet_input(im) for im in images]))[:, None]
        logits, deep = self.segment(x)
        masks = logits.argmax(1).numpy().astype(bool)
        pooled = deep.mean((2, 3)).numpy()
        regions = F.adaptive_avg_pool2d(deep, GRID).permute(0, 2, 3, 1).numpy()
        xin = torch.from_numpy(np.stack([self.xception_input(im) for im in images]))[:, None]
        xfeat = self.features(xin.float()).numpy()
        return [ImageFeatures(p, r, xf, m) for p, r, xf, m in zip(pooled, regions, xfeat, masks, strict=False)]
