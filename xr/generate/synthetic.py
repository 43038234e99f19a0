"""Every generated film says so: "SYNTHETIC" in a band added above the film (in the pixels, so a screenshot
or a print keeps it, yet covering none of the film: the apices are where a pneumothorax is looked for)
and in its file's metadata (PNG text chunks: what made it, from what, with which seed, how many rows the
band takes), so that nobody takes it for a patient's film, a teaching case can be made again exactly,
and our ingest reads the film without its band."""
from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from xr.ingest.image import SYNTHETIC_BAND as BAND  # the provenance's count of the band's rows
from xr.ingest.image import SYNTHETIC_KEY as KEY  # the PNG text chunk that carries the provenance

MARK = "SYNTHETIC"


def band_rows(width: int, height: int) -> int:
    """The height of the band a film of this size gets: its text a twelfth of the film's height."""
    font = ImageFont.load_default(size=max(10, height // 12))
    box = ImageDraw.Draw(Image.new("L", (width, 8))).textbbox((0, 0), MARK, font=font)
    return int(box[3] - box[1]) + 2 * max(2, height // 40)


def watermark(film: np.ndarray) -> np.ndarray:
    """uint8 (H + band, W): MARK white on a black band added above the film, the film's rows unchanged below."""
    film = np.asarray(film, dtype=np.uint8)
    h, w = film.shape
    rows = band_rows(w, h)
    band = Image.new("L", (w, rows), 0)
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default(size=max(10, h // 12))
    box = draw.textbbox((0, 0), MARK, font=font)
    draw.text(((w - (box[2] - box[0])) / 2, max(2, h // 40) - box[1]), MARK, fill=255, font=font)
    return np.concatenate([np.asarray(band), film])


def png_bytes(film: np.ndarray, provenance: dict) -> bytes:
    """The watermarked film as PNG, its provenance in a text chunk (`Description` too, for viewers)."""
    info = PngImagePlugin.PngInfo()
    h, w = np.asarray(film).shape
    info.add_text(KEY, json.dumps({"synthetic": True, **provenance, BAND: band_rows(w, h)}, sort_keys=True))
    info.add_text("Description", f"{MARK} chest film made by {provenance.get('model', 'a generator')}: not a patient's image")
    buf = io.BytesIO()
    Image.fromarray(watermark(film), mode="L").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def provenance_of(png: bytes) -> dict | None:
    """The provenance a generated PNG carries, or None for any other image."""
    text = Image.open(io.BytesIO(png)).text  # type: ignore[attr-defined]
    return json.loads(text[KEY]) if KEY in text else None
