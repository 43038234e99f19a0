"""Shipped weights and library: they load strictly, their checksums match, and they do what they claim."""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from tests.conftest import NIH
from xr.assets import digest
from xr.config import ASSETS
from xr.encode.lung_unet import LungUNet
from xr.encode.vision import VisionEncoder, batch, unet_transform
from xr.retrieve.library import CaseLibrary

LUNG_UNET_SHA256 = "8490ca59497ee27f87531e127fdc8db5a083abb6783ddab72e82e1009aeed2d4"


def test_manifest_checksums_match_files():
    # the U-Net is the project's shared fp16 file, byte for byte
    assert digest(ASSETS / "lung_unet/model.safetensors") == LUNG_UNET_SHA256
    manifest = json.loads((ASSETS / "MANIFEST.json").read_text())
    assert manifest["files"]
    for rel, entry in manifest["files"].items():
        assert digest(ASSETS / rel) == entry["sha256"], rel
        assert entry["licence"] and entry["source"]


def test_lung_unet_segments_lungs(shared):
    model = LungUNet.from_pretrained(ASSETS / "lung_unet")  # strict load
    img = np.asarray(Image.open(NIH / "00000075_000.png").convert("L"))
    x = torch.from_numpy(batch(unet_transform(), [img]))  # as the product runs it (256 px)
    with torch.inference_mode():
        mask = model(x).argmax(1)[0].numpy().astype(bool)
    assert 0.15 < mask.mean() < 0.45  # lungs cover a fifth to two fifths of a PA film
    half = mask.shape[1] // 2
    left, right = mask[:, :half].sum(), mask[:, half:].sum()
    assert min(left, right) / max(left, right) > 0.5  # two lungs, one each side
    assert mask[:20].mean() < 0.05 and mask[-20:].mean() < 0.05  # not the neck, not the abdomen


def test_save_and_reload_roundtrip(tmp_path):
    model = LungUNet.from_pretrained(ASSETS / "lung_unet")
    model.save_pretrained(tmp_path / "copy", dtype=torch.float16)
    again = LungUNet.from_pretrained(tmp_path / "copy")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=False):
        assert torch.equal(a, b), k


def test_library_image_finds_itself(shared):
    library = CaseLibrary()
    encoder = VisionEncoder()
    row = next(i for i, im in enumerate(library.images) if im["case"] == "nih:00000100_000")
    pixels = np.asarray(Image.open(NIH / "00000100_000.png").convert("L"))
    hits = library.search_images(encoder.encode([pixels])[0].pooled, k=3)
    assert hits[0].row == row and hits[0].similarity > 0.99
    assert hits[1].similarity < hits[0].similarity
    assert len(library.reports) > 2000 and not [c for c in library.cases if c["id"].startswith("iu:") and
                                                 c["id"][3:] in _val_ids(shared)]


def _val_ids(shared) -> set[str]:
    data = json.loads((shared / "data" / "iu_xray" / "annotation.json").read_text())
    return {x["id"] for x in data["val"]}
