"""Pictures for people: heatmap overlays on radiographs."""
from __future__ import annotations

import numpy as np
from PIL import Image

# A perceptually ordered blue -> cyan -> yellow -> red ramp (anchor colours, linearly interpolated).
_ANCHORS = np.array([[0, 0, 130], [0, 140, 255], [90, 230, 160], [255, 220, 0], [230, 30, 0]], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """values in 0..1, any shape -> uint8 RGB of that shape + (3,)."""
    x = np.clip(values, 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_ANCHORS) - 2)
    t = (x - lo)[..., None]
    return ((1 - t) * _ANCHORS[lo] + t * _ANCHORS[lo + 1]).astype(np.uint8)


def overlay(pixels: np.ndarray, grid: list[list[float]] | np.ndarray, alpha: float = 0.35,
            max_side: int = 768) -> Image.Image:
    """Grey radiograph with a smooth (bilinear) heatmap of a coarse grid blended on top."""
    base = Image.fromarray(pixels).convert("RGB")
    base.thumbnail((max_side, max_side))
    g = np.asarray(grid, dtype=np.float32)
    heat = Image.fromarray((g * 255).astype(np.uint8)).resize(base.size, Image.Resampling.BILINEAR)
    colour = Image.fromarray(colormap(np.asarray(heat, dtype=np.float32) / 255.0))
    return Image.blend(base, colour, alpha)


def mask_overlay(pixels: np.ndarray, mask: np.ndarray, max_side: int = 768) -> Image.Image:
    """Radiograph with the lung mask as a translucent green fill and a bright outline."""
    base = Image.fromarray(pixels).convert("RGB")
    base.thumbnail((max_side, max_side))
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(base.size, Image.Resampling.NEAREST)) > 0
    edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
    rgb = np.asarray(base).astype(np.float32)
    rgb[m] = 0.75 * rgb[m] + 0.25 * np.array([40, 220, 90])
    rgb[edge] = [40, 255, 90]
    return Image.fromarray(rgb.astype(np.uint8))


def window_level(pixels: np.ndarray, centre: float, width: float, invert: bool = False) -> np.ndarray:
    """Display window over the stored 8-bit grey levels, as on a reading station: values below
    centre - width/2 go black, above centre + width/2 white, linear between."""
    lo = centre - max(width, 1.0) / 2
    out = np.clip((pixels.astype(np.float32) - lo) / max(width, 1.0), 0, 1) * 255
    return (255 - out if invert else out).astype(np.uint8)


def zoom_box(size: tuple[int, int], factor: float, centre: tuple[float, float]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the region shown at `factor` around a centre given as fractions of
    the image; kept inside the image so zooming near an edge shows the edge, not padding."""
    w, h = size
    cw, ch = w / max(factor, 1.0), h / max(factor, 1.0)
    left = min(max(centre[0] * w - cw / 2, 0), w - cw)
    top = min(max(centre[1] * h - ch / 2, 0), h - ch)
    return round(left), round(top), round(left + cw), round(top + ch)
