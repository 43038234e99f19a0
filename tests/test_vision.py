"""Vision: masks and measurements, view from the image, the feature cache, the finding head, its metrics."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import IU, NIH
from xr.config import ASSETS, ROOT
from xr.data.split import is_validation
from xr.encode.cache import FeatureCache
from xr.encode.finding_head import FindingHead
from xr.encode.lungs import measure
from xr.encode.vision import EYE_CHANNELS, GRID, VisionEncoder
from xr.evaluate.classification import expected_calibration_error, roc_auc
from xr.result import rle, unrle
from xr.train.findings import fit


def grey(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return VisionEncoder(cache=FeatureCache(tmp_path_factory.mktemp("cache")))


def test_measure_two_rectangles_exactly():
    mask = np.zeros((512, 512), bool)
    mask[100:400, 100:200] = True  # patient's right lung (image left)
    mask[100:400, 300:400] = True
    m = measure(mask)
    assert m.looks_frontal and m.ctr == pytest.approx((300 - 199) / (399 - 100))
    blob = np.zeros((512, 512), bool)
    blob[100:400, 150:380] = True  # one lung-shaped blob: a lateral film
    assert not measure(blob).looks_frontal and measure(blob).ctr is None
    assert measure(np.zeros((512, 512), bool)).ctr is None


def test_frontal_and_lateral_from_the_image(shared, encoder):
    frontal, lateral = encoder.encode([grey(NIH / "00000075_000.png"), grey(IU / "CXR14_IM-0256-2001.png")])
    fm, lm = frontal.measurements(), lateral.measurements()
    assert fm.looks_frontal and not lm.looks_frontal
    assert 0.3 < fm.ctr < 0.9  # a measurable ratio on a real PA film
    assert frontal.regions.shape == (GRID, GRID, 512) and frontal.eye.shape == (GRID, GRID, EYE_CHANNELS)


def test_feature_cache_round_trip_and_recovery(shared, tmp_path):
    enc = VisionEncoder(cache=FeatureCache(tmp_path))
    px = grey(NIH / "00000100_000.png")
    first = enc.encode([px], ["abc123"])[0]
    files = list(tmp_path.rglob("abc123.safetensors"))
    assert len(files) == 1
    again = enc.encode([np.zeros_like(px)], ["abc123"])[0]  # a cache hit: the pixels are not looked at
    np.testing.assert_array_equal(again.eye, first.eye)
    np.testing.assert_array_equal(again.mask, first.mask)
    files[0].write_bytes(b"truncated by a crash")
    recomputed = enc.encode([px], ["abc123"])[0]
    np.testing.assert_allclose(recomputed.pooled, first.pooled, rtol=1e-5)


def test_rle_round_trip():
    m = np.zeros((7, 5), bool)
    m[0, 0] = m[2, 1:4] = m[6, 4] = True
    encoded = rle(m)
    assert encoded["counts"][0] == 0 and sum(encoded["counts"]) == 35
    np.testing.assert_array_equal(unrle(encoded), m)


def test_shipped_head_loads_and_predicts(shared, encoder):
    head = FindingHead.from_pretrained(ASSETS / "finding_head")
    assert "Cardiomegaly" in head.config.findings and "Support Devices" not in head.config.findings
    p = head.probabilities(encoder.encode([grey(NIH / "00000075_000.png")]))
    assert p.shape == (1, len(head.config.findings)) and (0 < p).all() and (p < 1).all()


def test_evidence_maps_are_exact_depend_on_the_model_and_stay_in_the_lungs(shared, encoder):
    """A map that did not depend on the weights (an edge detector, the mask) would pass for one; this
    catches it: the same film under randomised weights gives another map. And being a class activation
    map of a linear head, its raw regional shares add up to the logit's image part."""
    f = encoder.encode([grey(NIH / "00000075_000.png")])[0]
    head = FindingHead.from_pretrained(ASSETS / "finding_head")
    maps = head.evidence(None, f, ["Cardiomegaly", "Pleural Effusion"])
    lungs = f.lung_weights() > 0
    for m in maps.values():
        assert m.shape == (GRID, GRID) and m.max() == pytest.approx(1.0) and m[~lungs].max() == 0
        assert (m[lungs] > 0).mean() > 0.1  # not a single hot cell
    assert np.corrcoef(maps["Cardiomegaly"].ravel(), maps["Pleural Effusion"].ravel())[0, 1] < 0.95
    randomised = FindingHead.from_pretrained(ASSETS / "finding_head")
    with torch.no_grad():
        randomised.linear.weight.normal_(generator=torch.Generator().manual_seed(0))
    other = randomised.evidence(None, f, ["Cardiomegaly"])["Cardiomegaly"]
    assert np.corrcoef(maps["Cardiomegaly"].ravel(), other.ravel())[0, 1] < 0.8

    from xr.encode.finding_head import _Pooled, head_inputs, measurement_row
    w = f.lung_weights()
    spatial = torch.from_numpy((f.eye * (w * w.size)[..., None]).transpose(2, 0, 1).copy())[None]
    module = _Pooled(head, torch.tensor([measurement_row(f)], dtype=torch.float32))
    shares = torch.einsum("kc,chw->khw", module.fc.weight, spatial[0]) / w.size  # per region, raw
    with torch.no_grad():
        logit = head(torch.from_numpy(head_inputs([f])))[0]
        image_part = head.linear.weight[:, :EYE_CHANNELS] @ head.standardise(torch.from_numpy(head_inputs([f])))[0, :EYE_CHANNELS]
    j = head.findings.index("Cardiomegaly")
    centre = (head.linear.weight[j, :EYE_CHANNELS] * head.scale[:EYE_CHANNELS] * head.mean[:EYE_CHANNELS] / head.std[:EYE_CHANNELS]).sum()
    assert float(shares[j].sum() - centre) == pytest.approx(float(image_part[j]), abs=1e-3)
    assert torch.isfinite(logit).all()


def test_fit_learns_and_stays_calibrated():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20)).astype(np.float32)
    y = (x[:, :1] + 0.5 * rng.normal(size=(400, 1)) > 1.3).astype(np.float32)  # ~10 % positives
    head = fit(x, y, ["Cardiomegaly"], weight_decay=1e-3, groups=[20])
    p = torch.sigmoid(head(torch.from_numpy(x))).detach().numpy()[:, 0]
    assert roc_auc(y[:, 0], p) > 0.9
    assert abs(p.mean() - y.mean()) < 0.05  # class weighting undone: probabilities near the base rate


def test_auc_and_ece_by_hand():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert expected_calibration_error(np.array([1, 0, 1, 0]), np.array([0.95, 0.05, 0.95, 0.05])) == pytest.approx(0.05)


def test_validation_split_is_stable_and_disjoint():
    groups = [f"nih:{i}" for i in range(1000)]
    val = [g for g in groups if is_validation(g)]
    assert 250 < len(val) < 350 and val == [g for g in groups if is_validation(g)]


def test_eval_findings_cli_on_a_small_folder(shared, tmp_path):
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    with open(NIH.parent / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen = [r for r in rows if "Cardiomegaly" in r["Finding Labels"]][:3] + [r for r in rows if r["Finding Labels"] == "No Finding"][:3]
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(chosen)
    for r in chosen:
        shutil.copy(NIH / r["Image Index"], root / "images" / r["Image Index"])
    env = {**os.environ, "XR_DATA_DIR": str(tmp_path / "d"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "xr", "eval-findings", "--data", str(root), "--split", "all", "--json"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["images"] == 6 and out["per_finding"]["Cardiomegaly"]["positives"] == 3
    assert out["per_finding"]["Cardiomegaly"]["auc"] is not None
    bad = subprocess.run([sys.executable, "-m", "xr", "eval-findings", "--data", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert bad.returncode == 2 and "no labels.csv" in bad.stderr
