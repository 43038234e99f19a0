"""Every generated film says so: "SYNTHETIC" burned into its pixels (a screenshot or a print keeps it) and
in its file's metadata (PNG text chunks: what made it, from what, with which seed), so that nobody takes
it for a patient's film and a teaching case can be made again exactly."""
from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from xr.ingest.image import SYNTHETIC_KEY as KEY  # the PNG text chunk that carries the provenance

MARK = "SYNTHETIC"


def watermark(film: np.ndarray) -> np.ndarray:
    """uint8 (H, W) film with MARK across its top, white on a black band, and a thin white frame."""
    img = Image.fromarray(np.asarray(film, dtype=np.uint8), mode="L")
    draw = ImageDraw.Draw(img)
    w, h = img.size
    font = ImageFont.load_default(size=max(10, h // 12))
    box = draw.textbbox((0, 0), MARK, font=font)
    band = box[3] - box[1] + max(2, h // 40)
    draw.rectangle([0, 0, w, band], fill=0)
    draw.text(((w - (box[2] - box[0])) / 2, max(1, h // 80) - box[1]), MARK, fill=255, font=font)
    draw.rectangle([0, 0, w - 1, h - 1], outline=255)
    return np.asarray(img)


def png_bytes(film: np.ndarray, provenance: dict) -> bytes:
    """The watermarked film as PNG, its provenance in a text chunk (`Description` too, for viewers)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(KEY, json.dumps({"synthetic": True, **provenance}, sort_keys=True))
    info.add_text("Description", f"{MARK} chest film made by {provenance.get('model', 'a generator')}: not a patient's image")
    buf = io.BytesIO()
    Image.fromarray(watermark(film), mode="L").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def provenance_of(png: bytes) -> dict | None:
    """The provenance a generated PNG carries, or None for any other image."""
    text = Image.open(io.BytesIO(png)).text  # type: ignore[attr-defined]
    return json.loads(text[KEY]) if KEY in text else None
