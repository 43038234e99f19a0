"""Bad input through the real drafting path (Workstation.draft, storing as a radiologist): every file is either
drafted and stored or refused with a one-line IngestError, and a refusal leaves every table and the image
folder exactly as they were.

pydicom's own test data (pydicom 3.0.2, `get_testdata_files("**/*")`): 193 paths tried (176 files and 17
folders of its DICOMDIR set, passed as given), 41 accepted, 152 refused: no pixel data (SR, RT plans, ECG,
DICOMDIR members), under 64 pixels a side, multi-frame, folders of over 16 images, not images (.txt, .json,
.gz, .icc, .dump), palette colour, undecodable pixel data, a non-numeric NumberOfFrames. Every path goes
through ingest (load_study), every refusal through Workstation.draft as well. Drafting all 41 accepted files
took about 105 s on this 2-core machine, so only the first file (by name) of each distinct accepted kind
(transfer syntax, photometric interpretation, bits allocated: 24 kinds) is drafted and stored.

The crafted files extend tests/test_ingest.py and tests/test_dicom.py: lying headers, colour DICOM,
damaged header fields, unsafe and oversized archives.
"""
from __future__ import annotations

import io
import re
import struct
import time
import tracemalloc
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataelem import RawDataElement
from pydicom.pixels import convert_color_space
from pydicom.tag import Tag
from sqlalchemy import func, select

from db.models import Base
from db.session import transaction
from tests.conftest import PATIENT, write_dicom
from xr import store
from xr.config import settings
from xr.ingest import IngestError, load_study
from xr.store import Actor

ACTOR = Actor("dr_a", "radiologist")


def stored(s) -> tuple[dict[str, int], list[Path]]:
    """Row count of every table and the image files kept: all that a refused study must leave as it was."""
    with transaction(s.database_url, read_only=True) as session:
        rows = {t.name: session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}
    return rows, sorted((s.data_dir / "images").rglob("*"))


def refused(ws, paths, match: str = "") -> str:
    """Draft and store `paths`, which must be refused in one line with nothing stored; the reason."""
    before = stored(ws.settings)
    with pytest.raises(IngestError, match=match) as e:
        ws.draft(paths, "cough", ACTOR)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 200, msg
    assert not any(v in msg for v in PATIENT.values()), msg
    assert stored(ws.settings) == before
    return msg


def drafted(ws, paths) -> int:
    """Draft and store `paths`: one draft more, its images kept (content-addressed: maybe kept already).
    Files that are a study already drafted (the same study UID and pixels as an earlier file) are that
    study: it is named, and nothing is drafted over it."""
    drafts = stored(ws.settings)[0]["drafts"]
    try:
        study_id = ws.draft(paths, "cough", ACTOR).study_id
    except store.KnownStudy as known:
        assert stored(ws.settings)[0]["drafts"] == drafts
        return known.study_id
    rows, images = stored(ws.settings)
    assert study_id and rows["drafts"] == drafts + 1 and images
    return study_id


@pytest.fixture
def ws(env, workstation_factory):
    return workstation_factory(env)


def _kind(path: str) -> tuple:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation, ds.BitsAllocated


def test_pydicom_test_files_drafted_or_refused(ws, env):
    paths = sorted(get_testdata_files("**/*"))
    kinds, reasons, accepted = {}, Counter(), 0
    t0 = time.perf_counter()
    for path in paths:
        try:
            load_study([path], env)
        except IngestError:
            msg = refused(ws, [path])
            reasons[re.sub(r"\d+", "N", msg.split(": ", 1)[-1])] += 1
            continue
        accepted += 1
        if _kind(path) not in kinds:
            kinds[_kind(path)] = drafted(ws, [path])
    print(f"\npydicom corpus: {len(paths)} paths, {accepted} accepted, {len(kinds)} kinds drafted, "
          f"{sum(reasons.values())} refused, {time.perf_counter() - t0:.0f} s")
    for reason, n in reasons.most_common():
        print(f"  {n:3d} {reason}")
    assert accepted + sum(reasons.values()) == len(paths) and accepted and reasons


@pytest.mark.parametrize("name", ["SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm", "SC_ybr_full_422_uncompressed.dcm",
                                  "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_gdcm.dcm"])
def test_colour_encodings_of_one_picture_look_alike(env, name):
    """Colour DICOM is shown as its luminance whatever the encoding: YBR is not converted twice, and 16- or
    32-bit samples are not clipped to white."""
    reference = load_study([get_testdata_file("SC_rgb_rle.dcm")], env).images[0].pixels.astype(int)
    pixels = load_study([get_testdata_file(name)], env).images[0].pixels.astype(int)
    assert np.abs(pixels - reference).mean() < 3


def raw(keyword: str, vr: str, value: bytes) -> RawDataElement:
    """An element written as given, unchecked: pydicom refuses to set such values itself."""
    tag = Tag(keyword)
    return RawDataElement(tag, vr, len(value), value, 0, False, True)


def rewrite(path: Path, **values) -> Path:
    """Change header elements of a written DICOM file (None deletes one), as a faulty modality would."""
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        elif isinstance(value, RawDataElement):
            ds[value.tag] = value
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def test_colour_dicom_drafted(tmp_path, ws, nih_pixels):
    rgb = np.stack([nih_pixels] * 3, axis=-1)
    for photometric, stored_pixels in [("RGB", rgb), ("YBR_FULL", convert_color_space(rgb, "RGB", "YBR_FULL"))]:
        p = rewrite(write_dicom(tmp_path / f"{photometric}.dcm", nih_pixels, bits=8, study_uid=f"1.2.826.0.1.{len(photometric)}"),
                    SamplesPerPixel=3,
                    PhotometricInterpretation=photometric, PlanarConfiguration=0, PixelData=stored_pixels.tobytes())
        assert np.abs(load_study([p], ws.settings).images[0].pixels.astype(int) - nih_pixels).mean() < 2
        drafted(ws, [p])


def test_enormous_dimensions_refused_before_decoding(tmp_path, ws, nih_pixels):
    p = rewrite(write_dicom(tmp_path / "huge.dcm", nih_pixels[:256, :256]), Rows=65535, Columns=65535)
    tracemalloc.start()
    try:
        refused(ws, [p], "65535x65535 pixels is over the limit")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20  # decoding would need 8 GB


@pytest.mark.parametrize("change, match", [
    ({"PhotometricInterpretation": "PALETTE COLOR"}, "palette-colour"),
    ({"NumberOfFrames": raw("NumberOfFrames", "IS", b"abc ")}, "NumberOfFrames is not a number"),
    ({"Rows": raw("Rows", "US", b"\x00\x01\x00\x02")}, "Rows is not a number"),
    ({"Rows": None}, "too small"),
    ({"BitsAllocated": 7}, "cannot be decoded"),
    ({"RescaleSlope": raw("RescaleSlope", "DS", b"NaN ")}, "not finite numbers"),
    ({"SamplesPerPixel": 2}, "2 samples per pixel"),
    ({"PixelData": b"\0" * 1000}, "cannot be decoded"),
])
def test_damaged_header_fields_refused(tmp_path, ws, nih_pixels, change, match):
    refused(ws, [rewrite(write_dicom(tmp_path / "d.dcm", nih_pixels[:256, :256]), **change)], match)


def test_header_text_never_in_the_reason(tmp_path, ws, nih_pixels):
    """An unknown SOP class or transfer syntax is named generically: the UID field may hold anything."""
    p = write_dicom(tmp_path / "ps.dcm", nih_pixels, with_pixels=False, sop_class="1.2.840.10008.5.1.4.1.1.11.1")
    refused(ws, [p], "Grayscale Softcopy Presentation State Storage has no pixel data")
    p = write_dicom(tmp_path / "odd.dcm", nih_pixels, with_pixels=False, sop_class=PATIENT["PatientName"] + "\nbed 12")
    refused(ws, [p], "DICOM object has no pixel data")
    p = write_dicom(tmp_path / "ts.dcm", nih_pixels[:256, :256])
    ds = pydicom.dcmread(p)
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.99.1"
    ds.save_as(p)
    refused(ws, [p], "no decoder installed for this transfer syntax")


def test_one_pixel_dicom(tmp_path, ws):
    refused(ws, [write_dicom(tmp_path / "dot.dcm", np.full((1, 1), 128, np.uint8))], "1x1 pixels is too small")


@pytest.mark.parametrize("keep", [1, 100, 132, 300, 700, -2])
def test_dicom_truncated(tmp_path, ws, nih_pixels, keep):
    p = write_dicom(tmp_path / "t.dcm", nih_pixels[:256, :256])
    p.write_bytes(p.read_bytes()[:keep])
    refused(ws, [p])


def _png_with_size(pixels: np.ndarray, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares another size, its checksum fixed so that only the size lies."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg_with_size(pixels: np.ndarray, width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("name, lie, size, match", [
    ("a.png", _png_with_size, 2048, "not a readable PNG"),
    ("a.png", _png_with_size, 100_000, "over the limit"),
    ("a.jpg", _jpeg_with_size, 65_000, "over the limit"),
])
def test_lying_raster_dimensions(tmp_path, ws, nih_pixels, name, lie, size, match):
    (tmp_path / name).write_bytes(lie(nih_pixels[:256, :256], size, size))
    refused(ws, [tmp_path / name], match)


def test_jpeg_declaring_more_rows_than_it_holds(tmp_path, ws, nih_pixels):
    """libjpeg fills the missing rows with grey, as viewers do: drafted, not refused."""
    (tmp_path / "a.jpg").write_bytes(_jpeg_with_size(nih_pixels[:256, :256], 256, 512))
    assert load_study([tmp_path / "a.jpg"], ws.settings).images[0].pixels.shape == (512, 256)
    drafted(ws, [tmp_path / "a.jpg"])


@pytest.mark.parametrize("fmt, name", [("GIF", "a.png"), ("BMP", "a.png"), ("TIFF", "a.png"), ("TIFF", "a.dcm")])
def test_other_image_formats_under_our_extensions(tmp_path, ws, nih_pixels, fmt, name):
    Image.fromarray(nih_pixels).save(tmp_path / name, format=fmt)
    refused(ws, [tmp_path / name], "not a PNG, JPEG or DICOM|not a readable DICOM")


def _zip(path: Path, entries: dict[str | zipfile.ZipInfo, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("entry", ["/etc/cron.d/x.png", "C:/Windows/x.png", "\\\\server\\share\\x.png", "a/../../x.png"])
def test_zip_entries_outside_the_folder_refused(tmp_path, ws, nih_pixels, entry):
    refused(ws, [_zip(tmp_path / "z.zip", {"ok.png": _png_bytes(nih_pixels), entry: _png_bytes(nih_pixels)})], "unsafe path")


def test_zip_symlink_entry_refused(tmp_path, ws, nih_pixels):
    link = zipfile.ZipInfo("study/frontal.png")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        zf.writestr("study/lateral.png", _png_bytes(nih_pixels))
        zf.writestr(link, "/etc/passwd")
    refused(ws, [tmp_path / "z.zip"], "unsafe path")


def test_nested_zip_and_odd_entry_names(tmp_path, ws, nih_pixels):
    inner = _zip(tmp_path / "inner.zip", {"a.png": _png_bytes(nih_pixels)}).read_bytes()
    refused(ws, [_zip(tmp_path / "outer.zip", {"inner.zip": inner})], "'.zip' files are not images")
    msg = refused(ws, [_zip(tmp_path / "names.zip", {"bed 12\nDoe" + "x" * 300 + ".png": b"text"})], "not a PNG")
    assert "?Doe" in msg
    refused(ws, [_zip(tmp_path / "nameless.zip", {zipfile.ZipInfo(""): b"x"})], "no image files found")


def test_zip_entry_limit_configurable(tmp_path, monkeypatch, workstation_factory, env):
    monkeypatch.setenv("XR_MAX_ZIP_ENTRIES", "5")
    ws = workstation_factory(settings())
    refused(ws, [_zip(tmp_path / "six.zip", {f"f{i}.png": b"x" for i in range(6)})], "6 entries, over the limit of 5")
    refused(ws, [_zip(tmp_path / "five.zip", {f"f{i}.png": b"x" for i in range(5)})], "not a PNG")


def test_zip_over_archive_size_refused(tmp_path, monkeypatch, workstation_factory, env):
    monkeypatch.setenv("XR_MAX_FILE_MB", "0.01")  # 16 images of 10 kB: 160 kB an archive
    ws = workstation_factory(settings())
    z = _zip(tmp_path / "big.zip", {"noise.png": np.random.default_rng(0).bytes(200_000)})
    refused(ws, [z], "over the limit of 0 MB per archive")


def _bomb(path: Path) -> Path:
    """A zip holding one entry of 1 GB of zero bytes: under 5 MB on disk."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("bomb.png", "w") as f:
            for _ in range(64):
                f.write(bytes(2**24))
    return path


def test_zip_bombs_not_expanded(tmp_path, ws):
    """A 1 GB entry is refused by its declared size; the same entry declaring 1 MB is read no further."""
    honest = _bomb(tmp_path / "honest.zip")
    data = bytearray(honest.read_bytes())
    for at in (22, data.find(b"PK\x01\x02") + 24):  # real size in the local header and the central directory
        assert data[at:at + 4] == struct.pack("<I", 2**30)
        data[at:at + 4] = struct.pack("<I", 2**20)
    lying = tmp_path / "lying.zip"
    lying.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        refused(ws, [honest], "1024.0 MB is over the limit")
        refused(ws, [lying], "not a readable zip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * ws.settings.max_file_bytes  # zipfile decompresses up to what is asked; never the 1 GB
