"""Fuzzing ingest with hypothesis: real seed files (PNG, JPEG, 16-bit DICOM, JPEG 2000 DICOM, zip) mutated by
byte flips, truncations, insertions and overwrites of the header fields that size the data. Whatever comes
out must be a display-ready image within the limits or an IngestError with a one-line reason; any other
exception is a bug in ingest.

Deterministic (derandomize) and bounded for CI: XR_FUZZ_EXAMPLES examples per seed (default 150). Run
longer locally, e.g. XR_FUZZ_EXAMPLES=3000 python -m pytest -q tests/test_fuzz_ingest.py.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import PurePosixPath

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from tests.conftest import PATIENT, write_dicom
from xr.ingest import IngestedImage, IngestError, load_study
from xr.ingest.raster import MIN_SIDE
from xr.ingest.study import read_image

EXAMPLES = int(os.environ.get("XR_FUZZ_EXAMPLES", "150"))
SIZING_TAGS = [(0x0028, 0x0010), (0x0028, 0x0011), (0x0028, 0x0002), (0x0028, 0x0100), (0x0028, 0x0101),
               (0x0028, 0x0102), (0x0028, 0x0103), (0x0028, 0x1053), (0x7FE0, 0x0010)]  # rows ... slope, pixels
INTERESTING = [b"\x00", b"\xff", b"\x00\x00", b"\xff\xff", b"\x01\x00", b"\x00\x80", b"\x7f\xff\xff\xff",
               b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x00\x01\x00", b"abc", b"-1", b"\\"]


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _fields(data: bytes, suffix: str) -> list[int]:
    """Offsets of the header values that say how big the data is: where a lie does the most harm."""
    if suffix == ".png":
        return [16, 20, 24, 25, 28, 33]  # IHDR width, height, bit depth, colour type, interlace; IDAT length
    if suffix == ".jpg":
        sof = data.find(b"\xff\xc0")
        return [sof + 2, sof + 5, sof + 7, sof + 9, sof + 11]  # length, height, width, components, sampling
    if suffix == ".zip":
        out = [18, 22, 26, 28]  # local header: compressed and real size, name and extra lengths
        cd, end = data.find(b"PK\x01\x02"), data.rfind(b"PK\x05\x06")
        return out + [cd + 20, cd + 24, cd + 28, cd + 38, cd + 42, end + 8, end + 10, end + 12, end + 16]
    out = []
    for group, element in SIZING_TAGS:  # explicit VR: tag, VR, then a 2-byte length (4 after OB/OW)
        at = data.find(struct.pack("<HH", group, element), 132)
        if at >= 0:
            out += [at + 6, at + 8]
    return out


@pytest.fixture(scope="module")
def seeds(nih_pixels, tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    """Small real files (96x96: headers are a large part of each) keyed by kind, with the name to give them."""
    pixels = np.ascontiguousarray(nih_pixels[400:496, 400:496])
    folder = tmp_path_factory.mktemp("seeds")
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=90)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("study/a.png", _png(pixels))
        zf.writestr("study/b.png", _png(255 - pixels))
    return {
        "png": ("seed.png", _png(pixels)),
        "jpeg": ("seed.jpg", jpeg.getvalue()),
        "dicom16": ("seed.dcm", write_dicom(folder / "a.dcm", pixels, bits=16).read_bytes()),
        "dicom_j2k": ("seed.dcm", write_dicom(folder / "b.dcm", pixels, compress=JPEG2000Lossless).read_bytes()),
        "zip": ("seed.zip", zipped.getvalue()),
    }


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("field"), st.integers(0, 31), st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=4))),
)


def mutate(data: bytes, fields: list[int], mutations) -> bytes:
    b = bytearray(data)
    for op, at, *arg in mutations:
        if op == "field":
            at = fields[at % len(fields)]
            b[at:at + len(arg[0])] = arg[0]
        elif not b:
            continue
        elif op == "flip":
            b[at % len(b)] ^= arg[0]
        elif op == "truncate":
            del b[at % len(b):]
        else:
            b[at % len(b):at % len(b)] = arg[0]
    return bytes(b)


def check(call, s) -> None:
    """The property: images within limits, or a one-line IngestError without the patient's identifiers (the
    DICOM seeds carry them); anything else escapes as a failure."""
    try:
        out = call()
    except IngestError as e:
        msg = str(e)
        assert "\n" not in msg and 0 < len(msg) < 200 and not any(v in msg for v in PATIENT.values()), msg
        return
    for im in [out] if isinstance(out, IngestedImage) else out.images:
        assert im.pixels.dtype == np.uint8 and im.pixels.ndim == 2
        assert min(im.pixels.shape) >= MIN_SIDE and im.pixels.size <= s.max_pixels


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom16", "dicom_j2k", "zip"])
def test_mutated_files_are_drafted_or_refused_in_one_line(kind, seeds, env, tmp_path):
    name, seed = seeds[kind]
    fields = _fields(seed, PurePosixPath(name).suffix)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(MUTATION, min_size=1, max_size=4))
    def run(mutations):
        data = mutate(seed, fields, mutations)
        if kind != "zip":  # from bytes, and without an extension: content sniffing alone decides
            check(lambda: read_image(data, "IMAGE", env), env)
        path = tmp_path / name
        path.write_bytes(data)
        check(lambda: load_study([path], env), env)

    run()
