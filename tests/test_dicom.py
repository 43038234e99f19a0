"""DICOM ingest on real files written with pydicom from the shared images."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from tests.conftest import write_dicom
from xr.ingest import IngestError, load_study


def corr(a, b) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_bit_depths(tmp_path, env, nih_pixels, bits):
    p = write_dicom(tmp_path / "a.dcm", nih_pixels, bits=bits)
    im = load_study([p], env).images[0]
    assert im.source_format == "dicom" and im.pixels.dtype == np.uint8
    assert corr(im.pixels, nih_pixels) > 0.98


def test_monochrome1_is_inverted(tmp_path, env, nih_pixels):
    m1 = load_study([write_dicom(tmp_path / "m1.dcm", nih_pixels, photometric="MONOCHROME1")], env).images[0]
    assert corr(m1.pixels, nih_pixels) > 0.98  # displayed the same way round as the original


def test_rescale_slope_intercept_applied(tmp_path, env, nih_pixels):
    # a negative slope flips the stored values: the modality LUT must flip them back
    p = write_dicom(tmp_path / "r.dcm", 255 - nih_pixels, bits=12, slope=-1.0, intercept=4095.0)
    assert corr(load_study([p], env).images[0].pixels, nih_pixels) > 0.98


def test_window_applied(tmp_path, env, nih_pixels):
    # 12-bit data, window covering only the upper half of grey levels: everything below is black
    p = write_dicom(tmp_path / "w.dcm", nih_pixels, bits=12, window=(3071.0, 2048.0))
    im = load_study([p], env).images[0]
    dark = nih_pixels < 120
    assert im.pixels[dark].max() == 0
    assert im.pixels[nih_pixels >= nih_pixels.max() - 2].min() > 240


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_transfer_syntaxes(tmp_path, env, nih_pixels, syntax):
    p = write_dicom(tmp_path / "c.dcm", nih_pixels, compress=syntax)
    assert corr(load_study([p], env).images[0].pixels, nih_pixels) > 0.98


def test_view_and_spacing_read(tmp_path, env, nih_pixels):
    lat = load_study([write_dicom(tmp_path / "l.dcm", nih_pixels, view="LL", spacing=(0.2, 0.2))], env).images[0]
    assert lat.view == "lateral" and lat.pixel_spacing_mm == (0.2, 0.2)
    pa = load_study([write_dicom(tmp_path / "p.dcm", nih_pixels, view="PA", spacing=None)], env).images[0]
    assert pa.view == "frontal" and pa.pixel_spacing_mm is None


def test_dicom_without_extension_or_preamble(tmp_path, env, nih_pixels):
    p = write_dicom(tmp_path / "IM0001", nih_pixels)
    assert load_study([p], env).images[0].source_format == "dicom"


def test_study_key_is_salted_hash_of_uid(tmp_path, env, nih_pixels):
    a = write_dicom(tmp_path / "a.dcm", nih_pixels, study_uid="1.2.3.4")
    b = write_dicom(tmp_path / "b.dcm", 255 - nih_pixels, study_uid="1.2.3.4")
    key = load_study([a, b], env).key
    assert key == load_study([a], env).key  # same study UID, same key
    assert "1.2.3.4" not in key and len(key) == 64
    c = write_dicom(tmp_path / "c.dcm", nih_pixels, study_uid=None)
    assert load_study([c], env).key != key


def test_two_studies_refused(tmp_path, env, nih_pixels):
    a = write_dicom(tmp_path / "a.dcm", nih_pixels, study_uid="1.2.3.4")
    b = write_dicom(tmp_path / "b.dcm", nih_pixels, study_uid="1.2.3.5")
    with pytest.raises(IngestError, match="2 different studies"):
        load_study([a, b], env)


def test_multiframe_refused(tmp_path, env, nih_pixels):
    p = write_dicom(tmp_path / "mf.dcm", nih_pixels[:128, :128], frames=3)
    with pytest.raises(IngestError, match="multi-frame"):
        load_study([p], env)


def test_structured_report_refused(tmp_path, env, nih_pixels):
    p = write_dicom(tmp_path / "sr.dcm", nih_pixels, with_pixels=False, sop_class="1.2.840.10008.5.1.4.1.1.88.22")
    with pytest.raises(IngestError, match="Enhanced SR Storage has no pixel data"):
        load_study([p], env)


def test_truncated_dicom_refused(tmp_path, env, nih_pixels):
    p = write_dicom(tmp_path / "t.dcm", nih_pixels)
    p.write_bytes(p.read_bytes()[:-100_000])
    with pytest.raises(IngestError, match="cannot be decoded|not a readable DICOM"):
        load_study([p], env)
