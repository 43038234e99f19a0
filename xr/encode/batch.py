"""Encode dataset files in batches through the same ingest path the app uses, with the feature cache."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from xr.config import Settings, settings
from xr.encode.vision import ImageFeatures, VisionEncoder
from xr.ingest.study import read_image


def encode_files(encoder: VisionEncoder, paths: list[Path], batch: int = 8, s: Settings | None = None,
                 progress: Callable[[str], None] = lambda m: None) -> list[ImageFeatures]:
    """`progress` hears when it is done; the images go by on a progress bar (stderr)."""
    s = s or settings()
    out: list[ImageFeatures] = []
    with tqdm(total=len(paths), desc="encoding images", unit="image", file=sys.stderr) as bar:
        for start in range(0, len(paths), batch):
            images = [read_image(p.read_bytes(), p.name, s) for p in paths[start:start + batch]]
            out.extend(encoder.encode([im.pixels for im in images], [im.content_hash for im in images]))
            bar.update(len(images))
    progress(f"encoded {len(paths)} images")
    return out
