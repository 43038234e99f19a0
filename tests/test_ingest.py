"""Ingest of PNG/JPEG files, folders and archives: what is accepted, and the one-line reason for what is not."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from xr.ingest import IngestError, load_study


def save(img: Image.Image, path, fmt=None, **kw):
    img.save(path, format=fmt, **kw)
    return path


def refused(paths, env, match: str) -> str:
    with pytest.raises(IngestError, match=match) as e:
        load_study(paths, env)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 200
    return msg


def test_png_8bit_kept_exactly(tmp_path, env, nih_pixels):
    p = save(Image.fromarray(nih_pixels), tmp_path / "a.png")
    study = load_study([p], env)
    assert len(study.images) == 1
    im = study.images[0]
    assert im.source_format == "png" and im.view == "unknown"
    np.testing.assert_array_equal(im.pixels, nih_pixels)


def test_png_16bit_windowed_to_8bit(tmp_path, env, nih_pixels):
    wide = (nih_pixels.astype(np.uint16) * 257).astype(np.uint16)
    p = tmp_path / "a16.png"
    Image.fromarray(wide).save(p)
    assert Image.open(p).mode.startswith("I")
    im = load_study([p], env).images[0]
    assert im.pixels.dtype == np.uint8
    # a monotone window: ordering of grey levels survives
    assert np.corrcoef(im.pixels.ravel().astype(float), nih_pixels.ravel().astype(float))[0, 1] > 0.99


def test_rgb_jpeg_to_grey(tmp_path, env, nih_pixels):
    rgb = Image.fromarray(nih_pixels).convert("RGB")
    p = save(rgb, tmp_path / "a.jpg", quality=95)
    im = load_study([p], env).images[0]
    assert im.pixels.ndim == 2 and im.source_format == "jpeg"
    assert np.abs(im.pixels.astype(int) - nih_pixels.astype(int)).mean() < 3


def test_palette_png(tmp_path, env, nih_pixels):
    p = save(Image.fromarray(nih_pixels).convert("P"), tmp_path / "p.png")
    assert load_study([p], env).images[0].pixels.shape == nih_pixels.shape


def test_empty_file(tmp_path, env):
    (tmp_path / "e.png").write_bytes(b"")
    refused([tmp_path / "e.png"], env, "empty")


def test_truncated_png(tmp_path, env, nih_pixels):
    data = io.BytesIO()
    Image.fromarray(nih_pixels).save(data, format="PNG")
    (tmp_path / "t.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    refused([tmp_path / "t.png"], env, "not a readable PNG")


def test_truncated_jpeg(tmp_path, env, nih_pixels):
    data = io.BytesIO()
    Image.fromarray(nih_pixels).save(data, format="JPEG")
    (tmp_path / "t.jpg").write_bytes(data.getvalue()[:2000])
    refused([tmp_path / "t.jpg"], env, "not a readable JPEG")


def test_not_an_image(tmp_path, env):
    (tmp_path / "notes.png").write_text("this is a text file, not an image " * 10)
    refused([tmp_path / "notes.png"], env, "not a PNG, JPEG or DICOM")


def test_wrong_extension_text_file(tmp_path, env):
    (tmp_path / "report.txt").write_text("hello")
    refused([tmp_path / "report.txt"], env, "'.txt' files are not images")


def test_extension_contradicts_content(tmp_path, env, nih_pixels):
    p = save(Image.fromarray(nih_pixels), tmp_path / "x.jpg", fmt="PNG")
    refused([p], env, "content is PNG but the extension says JPEG")


def test_file_over_size_limit(tmp_path, monkeypatch, nih_pixels):
    monkeypatch.setenv("XR_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("XR_MAX_FILE_MB", "0.01")
    from xr.config import settings

    p = save(Image.fromarray(nih_pixels), tmp_path / "big.png")
    refused([p], settings(), "over the limit of 0 MB per file")


def test_image_over_pixel_limit(tmp_path, monkeypatch, nih_pixels):
    monkeypatch.setenv("XR_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("XR_MAX_PIXELS", "10000")
    from xr.config import settings

    p = save(Image.fromarray(nih_pixels), tmp_path / "a.png")
    refused([p], settings(), "over the limit of 10,000 pixels")


def test_decompression_bomb_refused_before_decoding(tmp_path, env):
    # 30000 x 30000 of zeros compresses to a few hundred kB but would need 900 MB decoded
    p = save(Image.new("L", (30000, 30000)), tmp_path / "bomb.png", optimize=True)
    assert p.stat().st_size < 2_000_000
    refused([p], env, "over the limit")


def test_one_pixel_image(tmp_path, env):
    p = save(Image.new("L", (1, 1), 128), tmp_path / "dot.png")
    refused([p], env, "too small")


def test_folder_and_zip(tmp_path, env, nih_pixels):
    folder = tmp_path / "study"
    folder.mkdir()
    save(Image.fromarray(nih_pixels), folder / "frontal.png")
    save(Image.fromarray(255 - nih_pixels), folder / "other.png")
    (folder / ".DS_Store").write_bytes(b"\0junk")
    assert len(load_study([folder], env).images) == 2
    z = tmp_path / "study.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(folder / "frontal.png", "s/frontal.png")
        zf.write(folder / "other.png", "s/other.png")
        zf.writestr("__MACOSX/s/._frontal.png", b"junk")
    study = load_study([z], env)
    assert len(study.images) == 2
    assert study.key == load_study([folder], env).key  # same pixels, same study


def test_duplicate_images_counted_once(tmp_path, env, nih_pixels):
    a = save(Image.fromarray(nih_pixels), tmp_path / "a.png")
    b = save(Image.fromarray(nih_pixels), tmp_path / "b.png")
    assert len(load_study([a, b], env).images) == 1


def test_zip_with_parent_path_refused(tmp_path, env, nih_pixels):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        buf = io.BytesIO()
        Image.fromarray(nih_pixels).save(buf, format="PNG")
        zf.writestr("../../etc/evil.png", buf.getvalue())
    refused([z], env, "unsafe path")


def test_zip_with_thousands_of_entries_refused(tmp_path, env):
    z = tmp_path / "many.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(3000):
            zf.writestr(f"f{i}.png", b"x")
    refused([z], env, "over the limit of 1000")


def test_too_many_images_refused(tmp_path, env):
    z = tmp_path / "twenty.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(20):
            zf.writestr(f"f{i}.png", b"x")
    refused([z], env, "at most 16 images")


def test_corrupt_zip(tmp_path, env):
    (tmp_path / "c.zip").write_bytes(b"PK\x03\x04 not really a zip")
    refused([tmp_path / "c.zip"], env, "not a readable zip")


def test_nothing_given(env):
    refused([], env, "no files given")


def test_missing_path(tmp_path, env):
    refused([tmp_path / "nope.png"], env, "no such file")
