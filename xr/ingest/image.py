"""The ingested image: display-ready 8-bit pixels plus the few header facts the models use."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

SYNTHETIC_KEY = "xr-synthetic"  # the PNG text chunk our generator writes (xr.generate.synthetic): not a patient's film
SYNTHETIC_BAND = "band_rows"  # in that chunk: the rows of the SYNTHETIC band above the film, which the ingest drops


@dataclass(frozen=True)
class IngestedImage:
    pixels: np.ndarray  # uint8, HxW, windowed for display; MONOCHROME1 already inverted
    source_format: str  # "dicom", "png" or "jpeg"
    view: str = "unknown"  # "frontal", "lateral" or "unknown"
    pixel_spacing_mm: tuple[float, float] | None = None
    study_uid: str | None = field(default=None, repr=False)  # only ever hashed, never stored
    synthetic: bool = False  # made by our generator (its PNG says so): never stored as a patient's study
    burned_in: bool = False  # DICOM BurnedInAnnotation YES: text on the pixels may name the patient
    age_years: int | None = None  # the patient's, at the study (90 and over as 90): read with every film
    patient_id: str | None = field(default=None, repr=False)  # issuer|ID: only ever hashed, never stored
    study_date: str | None = None  # YYYYMMDD: when the films were taken (the comparison with a prior names it)
    sex: str | None = None  # F | M | O

    @property
    def content_hash(self) -> str:
        return pixel_hash(self.pixels)


def pixel_hash(pixels: np.ndarray) -> str:
    """Identity of an image by its display pixels: the same picture from a PNG or a DICOM hashes alike."""
    h = hashlib.sha256(f"{pixels.shape[0]}x{pixels.shape[1]}:".encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def to_uint8(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Linear window to 0..255. Without a window, a robust one (0.5-99.5 percentiles) so one hot pixel
    or a black border does not wash out the lungs."""
    v = values.astype(np.float32)
    if low is None or high is None:
        low, high = (float(x) for x in np.percentile(v, [0.5, 99.5]))
    if high <= low:
        high = low + 1.0
    return np.clip((v - low) * (255.0 / (high - low)), 0, 255).round().astype(np.uint8)
