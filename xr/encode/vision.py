"""Everything the product sees of one image, computed in one place: the lung U-Net (lung mask, the
chest-X-ray features of retrieval and of the generator's regions, mid-level features of the eye),
ImageNet Xception's middle flow (the eye's main features), the view, and the measurements read off the
mask. Results are cached by content hash.

Why these layers: by 5-fold cross-validation on the NIH sample (docs in assets/finding_head/README.md),
Xception's middle-flow features pooled inside the lungs separate the findings better than its final
ImageNet features (macro AUC 0.68 against 0.64), and the U-Net's third stage adds what it learnt from
chest films. Why 256 px for the U-Net: a 512 px pass was 85 % of a draft's time; at 256 its deepest
stage is the 16x16 region grid itself.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Compose, Resize, ScaleIntensityRange

from xr.config import ASSETS, Settings, settings
from xr.encode.cache import FeatureCache
from xr.encode.lung_unet import LungUNet
from xr.encode.lungs import LungMeasurements, measure
from xr.encode.xception import Xception, grey_to_input
from xr.onnx.runtime import EXACT, backed

GRID = 16  # regions per side given to retrieval heatmaps, the generator and the evidence maps
UNET_SIZE = 256
XCEPTION_SIZE = 299
MIDDLE_BLOCKS = 7  # Xception middle-flow blocks run: the eye's features are the 7th block's output
XCEPTION_CHANNELS = 728  # the first channels of the eye's grid: the similar-case search's feature space too
EYE_CHANNELS = XCEPTION_CHANNELS + 256  # Xception middle flow + U-Net stage 3
ENCODER_NAME = "vision-v2"  # bump when any output below changes: it keys the feature cache


@dataclass(frozen=True)
class ImageFeatures:
    pooled: np.ndarray  # (728,) Xception's middle flow averaged inside the lungs: similar-case search
    regions: np.ndarray  # (GRID, GRID, 512) the same features per region: the generator's visual input
    eye: np.ndarray  # (GRID, GRID, EYE_CHANNELS) the eye's features per region (pooled in the lungs by the head)
    mask: np.ndarray  # (UNET_SIZE, UNET_SIZE) bool lung mask of the image squashed to a square

    def measurements(self) -> LungMeasurements:
        return measure(self.mask)

    def search_regions(self) -> np.ndarray:
        """(GRID, GRID, XCEPTION_CHANNELS): per region, the features whose lung average is `pooled`."""
        return self.eye[..., :XCEPTION_CHANNELS]

    def lung_weights(self) -> np.ndarray:
        """(GRID, GRID) weights summing to 1: each region's share of the lungs (uniform where the mask found none)."""
        return lung_weights(self.mask)


def lung_share(mask: np.ndarray) -> np.ndarray:
    """(GRID, GRID): the share of each region inside the lung mask."""
    return F.adaptive_avg_pool2d(torch.from_numpy(mask.astype(np.float32))[None, None], GRID)[0, 0].numpy()


def lung_weights(mask: np.ndarray) -> np.ndarray:
    w = lung_share(mask)
    return w / w.sum() if w.sum() > 0 else np.full_like(w, 1.0 / w.size)


def unet_transform() -> Compose:
    """(1, H, W) grey 0..255 -> the U-Net's input: squashed to a square, x/255 - 0.5 as it was trained."""
    return Compose([Resize((UNET_SIZE, UNET_SIZE), mode="area"), ScaleIntensityRange(0, 255, -0.5, 0.5)])


def xception_transform() -> Compose:
    """(1, H, W) grey 0..255 -> 299x299 grey 0..255 (the ImageNet scaling is part of the network)."""
    return Compose([Resize((XCEPTION_SIZE, XCEPTION_SIZE), mode="area")])


def batch(transform: Compose, images: list[np.ndarray]) -> np.ndarray:
    """(N, 1, S, S) float32 network input of N grey images."""
    return np.stack([np.asarray(transform(np.ascontiguousarray(im)[None].astype(np.float32)), dtype=np.float32)
                     for im in images])


class VisionEncoder:
    name = ENCODER_NAME

    def __init__(self, assets: Path = ASSETS, cache: FeatureCache | None = None, s: Settings | None = None) -> None:
        # channels-last: oneDNN's fast layout for eager convolutions (fp32 or bf16; the same fp32 results)
        self.unet = LungUNet.from_pretrained(assets / "lung_unet").to(memory_format=torch.channels_last)
        self.xception = Xception.from_pretrained(assets / "xception").to(memory_format=torch.channels_last)
        # eager PyTorch or the ONNX graph `python -m xr export-onnx` made of the same weights (xr.onnx.runtime)
        self.segment, unet_part = backed("lung_unet", assets / "lung_unet" / "model.safetensors",
                                         self.unet.segment_and_encode, s)
        self.middle, x_part = backed("xception", assets / "xception" / "model.safetensors",
                                     lambda x: self.xception.forward_middle(grey_to_input(x), MIDDLE_BLOCKS), s)
        self.parts = {"lung_unet": unet_part, "xception": x_part}
        # features of an inexact variant (bf16, int8) are cached apart, so that a cached film drafts as it
        # would fresh under the same backend, and exact cached features never mix with approximate ones
        self.cache_key = self.name + "".join(f"-{m}.{v}" for m, (v, _) in self.parts.items() if v not in EXACT)
        self.unet_input, self.xception_input = unet_transform(), xception_transform()
        self.cache = cache

    @classmethod
    def for_models(cls, cache: FeatureCache | None = None, s: Settings | None = None) -> VisionEncoder:
        """The encoder models are trained and measured with and shipped artefacts are built with: exact
        fp32 (never bf16 by default), so that their figures repeat on any machine, unless XR_BACKEND says."""
        s = s or settings()
        return cls(cache=cache, s=replace(s, backend="exact") if s.backend == "auto" else s)

    def encode(self, images: list[np.ndarray], content_hashes: list[str] | None = None) -> list[ImageFeatures]:
        hashes: Sequence[str | None] = content_hashes or [None] * len(images)
        out: list[ImageFeatures | None] = [self._cached(h) for h in hashes]
        todo = [i for i, f in enumerate(out) if f is None]
        if todo:
            for i, f in zip(todo, self._compute([images[i] for i in todo]), strict=True):
                out[i] = f
                h = hashes[i]
                if self.cache is not None and h:
                    self.cache.put(self.cache_key, h, {"pooled": f.pooled, "regions": f.regions.astype(np.float16),
                                                  "eye": f.eye.astype(np.float16), "mask": np.packbits(f.mask)})
        return out  # type: ignore[return-value]

    def _cached(self, content_hash: str | None) -> ImageFeatures | None:
        if self.cache is None or not content_hash:
            return None
        d = self.cache.get(self.cache_key, content_hash)
        if d is None:
            return None
        mask = np.unpackbits(d["mask"])[: UNET_SIZE * UNET_SIZE].reshape(UNET_SIZE, UNET_SIZE).astype(bool)
        return ImageFeatures(d["pooled"], d["regions"].astype(np.float32), d["eye"].astype(np.float32), mask)

    @torch.inference_mode()
    def _compute(self, images: list[np.ndarray]) -> list[ImageFeatures]:
        logits, stage3, deep = self.segment(torch.from_numpy(batch(self.unet_input, images)))
        masks = logits.argmax(1).numpy().astype(bool)
        # regional grids are kept in fp16 (the cache's precision) from the start, so that a cached film gives
        # the same draft as a fresh one
        regions = F.adaptive_avg_pool2d(deep, GRID).permute(0, 2, 3, 1).half().float().numpy()
        middle = self.middle(torch.from_numpy(batch(self.xception_input, images)))
        eye = torch.cat([F.adaptive_avg_pool2d(middle, GRID), F.adaptive_avg_pool2d(stage3, GRID)], 1)
        eye_np = eye.permute(0, 2, 3, 1).half().float().numpy()
        # retrieval by the eye's own features: a neighbour shares a finding with the query more often than by
        # the U-Net's deepest stage (leave-one-out on the NIH sample: p@1 0.30 against 0.21)
        pooled = [np.einsum("hw,hwc->c", lung_weights(m), e[..., :XCEPTION_CHANNELS]) for m, e in zip(masks, eye_np, strict=True)]
        return [ImageFeatures(p, r, e, m) for p, r, e, m in zip(pooled, regions, eye_np, masks, strict=True)]
