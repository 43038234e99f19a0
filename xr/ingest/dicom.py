"""DICOM files through pydicom: the display pipeline a viewer applies (modality LUT, VOI LUT or window,
MONOCHROME1 inversion), and nothing of the header kept but view, spacing and the study UID to hash."""
from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from xr.ingest.errors import IngestError
from xr.ingest.image import IngestedImage, to_uint8, view_from_position
from xr.ingest.raster import MIN_SIDE

DICM_OFFSET = 128


def looks_like_dicom(data: bytes) -> bool:
    return data[DICM_OFFSET:DICM_OFFSET + 4] == b"DICM"


def supported_transfer_syntaxes() -> dict[str, bool]:
    """Which transfer syntaxes this installation can decode (depends on installed plugins)."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import AllTransferSyntaxes

    out = {}
    for uid in AllTransferSyntaxes:
        try:
            out[uid.name] = bool(get_decoder(uid).is_available)
        except NotImplementedError:  # video and audio syntaxes: never a radiograph
            out[uid.name] = False
    return out


def read_dicom(data: bytes, name: str, max_pixels: int) -> IngestedImage:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not looks_like_dicom(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError):
        raise IngestError(f"{name}: not a readable DICOM file") from None

    if not looks_like_dicom(data) and "SOPClassUID" not in ds and "PixelData" not in ds:
        raise IngestError(f"{name}: not a PNG, JPEG or DICOM file")
    if "PixelData" not in ds:
        kind = UID(str(ds.get("SOPClassUID", ""))).name if ds.get("SOPClassUID") else "object"
        raise IngestError(f"{name}: DICOM {kind} has no pixel data; only images can be drafted")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise IngestError(f"{name}: multi-frame DICOM ({frames} frames) is not a chest radiograph; give single images")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > max_pixels:
        raise IngestError(f"{name}: {cols}x{rows} pixels is over the limit of {max_pixels:,} pixels")
    if min(rows, cols) < MIN_SIDE:
        raise IngestError(f"{name}: {cols}x{rows} pixels is too small for a chest X-ray (at least {MIN_SIDE} a side)")

    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        arr = ds.pixel_array
    except NotImplementedError:
        raise IngestError(f"{name}: no decoder installed for {UID(str(syntax)).name if syntax else 'this transfer syntax'}") from None
    except Exception as e:  # truncated or inconsistent pixel data: pydicom raises many kinds
        raise IngestError(f"{name}: pixel data cannot be decoded ({type(e).__name__})") from None

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1 or arr.ndim == 3:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        pixels = to_uint8(arr, 0, 255)
    elif photometric == "PALETTE COLOR":
        raise IngestError(f"{name}: palette-colour DICOM is not a radiograph")
    else:
        values = apply_modality_lut(arr, ds)
        has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
        if has_voi:
            values = apply_voi_lut(values, ds, index=0)
            pixels = to_uint8(values, float(np.min(values)), float(np.max(values)))
        else:
            pixels = to_uint8(values)
        if photometric == "MONOCHROME1":
            pixels = 255 - pixels

    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        pixel_spacing = (float(spacing[0]), float(spacing[1])) if spacing else None
    except (TypeError, ValueError, IndexError):
        pixel_spacing = None
    return IngestedImage(
        pixels=np.ascontiguousarray(pixels),
        source_format="dicom",
        view=view_from_position(ds.get("ViewPosition")),
        pixel_spacing_mm=pixel_spacing,
        study_uid=str(ds.get("StudyInstanceUID")) if ds.get("StudyInstanceUID") else None,
    )
