"""DICOM files through pydicom: the display pipeline a viewer applies (modality LUT, VOI LUT or window,
MONOCHROME1 inversion), and nothing of the header kept but view, spacing and the study UID to hash."""
from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from xr.ingest.errors import IngestError, parser_boundary
from xr.ingest.image import IngestedImage, to_uint8
from xr.ingest.raster import MIN_SIDE
from xr.views import view_from_position

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
    with parser_boundary(name, "not a readable DICOM file"):
        ds = pydicom.dcmread(io.BytesIO(data), force=not looks_like_dicom(data))
    with parser_boundary(name, "damaged DICOM header"):  # pydicom converts each value when first read
        header = {k: ds.get(k) for k in HEADER}
        has_pixels = "PixelData" in ds
        has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None

    if not looks_like_dicom(data) and not header["SOPClassUID"] and not has_pixels:
        raise IngestError(f"{name}: not a PNG, JPEG or DICOM file")
    if not has_pixels:
        raise IngestError(f"{name}: DICOM {_uid_name(header['SOPClassUID'], 'object')} has no pixel data; only images can be drafted")
    frames = _number(header, "NumberOfFrames", name, 1)
    if frames > 1:
        raise IngestError(f"{name}: multi-frame DICOM ({frames} frames) is not a chest radiograph; give single images")
    rows, cols = _number(header, "Rows", name, 0), _number(header, "Columns", name, 0)
    if rows * cols > max_pixels:
        raise IngestError(f"{name}: {cols}x{rows} pixels is over the limit of {max_pixels:,} pixels")
    if min(rows, cols) < MIN_SIDE:
        raise IngestError(f"{name}: {cols}x{rows} pixels is too small for a chest X-ray (at least {MIN_SIDE} a side)")
    samples = _number(header, "SamplesPerPixel", name, 1)
    if samples not in (1, 3):
        raise IngestError(f"{name}: {samples} samples per pixel; a radiograph has 1 (grey) or 3 (colour)")
    photometric = str(header["PhotometricInterpretation"] or "MONOCHROME2").upper()
    if photometric == "PALETTE COLOR":
        raise IngestError(f"{name}: palette-colour DICOM is not a radiograph")

    try:
        arr = ds.pixel_array
    except Exception as e:  # truncated or inconsistent pixel data: pydicom raises many kinds
        if isinstance(e, NotImplementedError) and not supported_transfer_syntaxes().get(UID(str(syntax)).name):
            raise IngestError(f"{name}: no decoder installed for {_uid_name(syntax, 'this transfer syntax')}") from None
        raise IngestError(f"{name}: pixel data cannot be decoded ({type(e).__name__})") from None

    if arr.ndim == 3:  # colour: pydicom already gives RGB, YBR included; 8, 16 or 32 bits a sample
        grey = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        pixels = to_uint8(grey, 0, float(np.iinfo(arr.dtype).max))
    else:
        with parser_boundary(name, "damaged DICOM display settings"):  # rescale and window from the header
            values = apply_modality_lut(arr, ds)
            if has_voi:
                values = apply_voi_lut(values, ds, index=0)
        if not np.isfinite(values).all():  # a NaN or infinite slope: else silently a black image
            raise IngestError(f"{name}: rescaled pixel values are not finite numbers")
        pixels = to_uint8(values, float(np.min(values)), float(np.max(values))) if has_voi else to_uint8(values)
        if photometric == "MONOCHROME1":
            pixels = 255 - pixels

    return IngestedImage(
        pixels=np.ascontiguousarray(pixels),
        source_format="dicom",
        view=view_from_position(str(header["ViewPosition"] or "")),
        pixel_spacing_mm=_spacing(header["PixelSpacing"] or header["ImagerPixelSpacing"]),
        study_uid=str(header["StudyInstanceUID"]) if header["StudyInstanceUID"] else None,
        burned_in=str(header["BurnedInAnnotation"] or "").strip().upper() == "YES",
        age_years=age_years(header),
        patient_id=f"{header['IssuerOfPatientID'] or ''}|{header['PatientID']}" if str(header["PatientID"] or "").strip() else None,
        study_date=str(header["StudyDate"]) if len(str(header["StudyDate"] or "")) == 8 and str(header["StudyDate"]).isdigit() else None,
        sex=str(header["PatientSex"] or "").strip().upper() if str(header["PatientSex"] or "").strip().upper() in SEXES else None,
    )


SEXES = ("F", "M", "O")
OLDEST = 90  # ages above are shown as 90: the retained characteristics must not single out the very old
AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def age_years(header: dict) -> int | None:
    """Patient's Age (nnnY/M/W/D), else from the birth and study dates; None where neither reads."""
    age = str(header["PatientAge"] or "").strip().upper()
    years: float | None = None
    if len(age) == 4 and age[:3].isdigit() and age[3] in AGE_UNITS:
        years = int(age[:3]) * AGE_UNITS[age[3]]
    else:
        born, seen = str(header["PatientBirthDate"] or ""), str(header["StudyDate"] or "")
        if len(born) == 8 and len(seen) == 8 and born.isdigit() and seen.isdigit():
            years = int(seen[:4]) - int(born[:4]) - ((seen[4:] < born[4:]) * 1)
    if years is None or years < 0 or years > 150:
        return None
    return min(int(years), OLDEST)


HEADER = ("BurnedInAnnotation", "SOPClassUID", "NumberOfFrames", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
          "ViewPosition", "PixelSpacing", "ImagerPixelSpacing", "StudyInstanceUID", "PatientAge", "PatientSex",
          "PatientBirthDate", "StudyDate", "PatientID", "IssuerOfPatientID")


def _number(header: dict, keyword: str, name: str, default: int) -> int:
    value = header[keyword]
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # text, several values, NaN
        raise IngestError(f"{name}: DICOM {keyword} is not a number") from None
    if not 0 <= number < 2**32:  # a 300-digit count must not make a 300-character message
        raise IngestError(f"{name}: DICOM {keyword} is out of range")
    return number


def _uid_name(uid, unknown: str) -> str:
    """The standard name of a UID we know; never the header text itself, which may be anything."""
    uid = UID(str(uid or ""))
    return uid.name if uid.keyword else unknown


def _spacing(value) -> tuple[float, float] | None:
    """Row and column spacing in mm, or None where absent or not two positive finite numbers."""
    try:
        spacing = (float(value[0]), float(value[1])) if value else None
    except (TypeError, ValueError, IndexError):
        return None
    return spacing if spacing and all(np.isfinite(spacing)) and min(spacing) > 0 else None
