"""Encode dataset files in batches through the same ingest path the app uses, with the feature cache."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from xr.config import Settings, settings
from xr.encode.vision import ImageFeatures, VisionEncoder
from xr.ingest.study import read_image


def encode_files(encoder: VisionEncoder, paths: list[Path], batch: int = 8, s: Settings | None = None,
                 progress: Callable[[str], None] = lambda m: None) -> list[ImageFeatures]:
    s = s or settings()
    out: list[ImageFeatures] = []
    for start in range(0, len(paths), batch):
        images = [read_image(p.read_bytes(), p.name, s) for p in paths[start:start + batch]]
        out.extend(encoder.encode([im.pixels for im in images], [im.content_hash for im in images]))
        progress(f"encoded {min(start + batch, len(paths))}/{len(paths)} images")
    return out
