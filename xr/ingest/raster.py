"""PNG and JPEG files: 8 or 16 bit, grey or colour, read defensively."""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
from PIL import Image

from xr.ingest.errors import IngestError, parser_boundary
from xr.ingest.image import SYNTHETIC_BAND, SYNTHETIC_KEY, IngestedImage, to_uint8

MIN_SIDE = 64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
FORMATS = {"png": "PNG", "jpeg": "JPEG"}  # the only decoders PIL may pick: content was sniffed as one of these


def read_raster(data: bytes, name: str, fmt: str, max_pixels: int) -> IngestedImage:
    with parser_boundary(name, f"not a readable {fmt.upper()} image"):  # what PIL raises beyond the usual
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data), formats=[FORMATS[fmt]])
            w, h = im.size
            if w * h > max_pixels:
                raise IngestError(f"{name}: {w}x{h} pixels is over the limit of {max_pixels:,} pixels")
            if min(w, h) < MIN_SIDE:
                raise IngestError(f"{name}: {w}x{h} pixels is too small for a chest X-ray (at least {MIN_SIDE} a side)")
            frames: int = getattr(im, "n_frames", 1)  # multi-frame formats only (TIFF, GIF)
            if frames > 1:
                raise IngestError(f"{name}: has {frames} frames; give one image per file")
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                pixels = to_uint8(np.asarray(im))
            elif im.mode == "L":
                pixels = np.asarray(im, dtype=np.uint8).copy()
            else:  # RGB(A), palette, 1-bit, LA, CMYK: the luminance is what a radiograph carries
                pixels = np.asarray(im.convert("L"), dtype=np.uint8).copy()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise IngestError(f"{name}: image dimensions are over the limit of {max_pixels:,} pixels") from None
        except IngestError:  # a ValueError too, but already the reason to give
            raise
        except (OSError, SyntaxError, ValueError) as e:
            raise IngestError(f"{name}: not a readable {fmt.upper()} image ({_short(e)})") from None
    text = getattr(im, "text", {})
    if SYNTHETIC_KEY not in text:
        return IngestedImage(pixels=pixels, source_format=fmt)
    return IngestedImage(pixels=pixels[_band(text[SYNTHETIC_KEY], pixels.shape[0]):], source_format=fmt, synthetic=True)


def _band(provenance: str, height: int) -> int:
    """The rows of the SYNTHETIC band our generator put above a film (0 for a film marked the older way)."""
    try:
        rows = json.loads(provenance).get(SYNTHETIC_BAND, 0)
    except (ValueError, AttributeError):
        return 0
    return rows if isinstance(rows, int) and 0 <= rows < height - MIN_SIDE else 0


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__
