"""Issue 31: the statement policy. A draft states a finding only where statements from that probability
were right at least 80 % of the time (90 % for a critical finding) on films the eye did not fit, hedges
from 40 %, denies only what the eye reads with a negative predictive value of 98 %, and otherwise says
nothing ("not assessed")."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from xr.config import ASSETS
from xr.evaluate.classification import bootstrap_auc
from xr.thresholds import (
    ABSENT_NPV,
    CRITICAL,
    MIN_SAID,
    NEVER,
    POSSIBLE_PRECISION,
    Cut,
    Stance,
    Thresholds,
    choose,
    floor_of,
    wilson,
)
from xr.train.findings import POLICY_DATA

EYE = ASSETS / "finding_head"


def synthetic(n: int = 2000, prevalence: float = 0.1, separation: float = 2.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prevalence
    logit = np.where(y, rng.normal(separation, 1, n), rng.normal(0, 1, n)) - 2
    return y, 1 / (1 + np.exp(-logit))


def test_a_readable_finding_gets_every_band_each_at_its_floor():
    y, p = synthetic()
    cut, ev = choose("Cardiomegaly", y, p, bootstrap_auc(y, p, resamples=200))
    assert 0 < cut.absent <= cut.possible <= cut.present < NEVER
    said = p >= cut.present
    assert y[said].mean() >= 0.8 and said.sum() >= MIN_SAID
    assert y[p >= cut.possible].mean() >= POSSIBLE_PRECISION
    assert (~y[p < cut.absent]).mean() >= ABSENT_NPV
    assert ev["present"]["share"] == pytest.approx(y[said].mean())
    lo, hi = ev["present"]["ci95"]
    assert lo < ev["present"]["share"] <= hi  # an interval, not a point
    # a critical finding needs more: its statements start higher
    critical, _ = choose("Pneumothorax", y, p, bootstrap_auc(y, p, resamples=200))
    assert "Pneumothorax" in CRITICAL and critical.present > cut.present and y[p >= critical.present].mean() >= 0.9


def test_a_finding_at_chance_is_never_stated_nor_denied():
    y, _ = synthetic()
    noise = np.random.default_rng(1).random(len(y))
    cut, ev = choose("Pneumothorax", y, noise, bootstrap_auc(y, noise, resamples=200))
    assert cut == Cut() and "present" not in ev
    t = Thresholds({"Pneumothorax": cut})
    assert {t.stance("Pneumothorax", q) for q in (0.0, 0.5, 1.0)} == {Stance.NOT_ASSESSED}
    # a rare finding: nearly every film is free of it, so a negative 'predictive value' says nothing without the AUC
    rare = np.zeros(500, bool)
    rare[:3] = True
    assert choose("Hernia", rare, np.random.default_rng(2).random(500), (0.3, 0.7))[0] == Cut()


def test_a_precision_that_only_holds_below_a_missing_band_is_not_taken():
    """From the top down: ten wrong statements at the top are not redeemed by many right ones below."""
    y = np.array([False] * 10 + [True] * 90 + [False] * 900)
    p = np.linspace(1, 0, len(y))
    assert choose("Edema", y, p, (0.8, 0.9))[0].present == NEVER


def test_stances_by_the_cut():
    t = Thresholds({"Cardiomegaly": Cut(possible=0.3, present=0.6, absent=0.1)})
    assert [t.stance("Cardiomegaly", q) for q in (0.05, 0.1, 0.29, 0.3, 0.6)] == [
        Stance.ABSENT, Stance.NOT_ASSESSED, Stance.NOT_ASSESSED, Stance.POSSIBLE, Stance.PRESENT]
    assert t.stance("Edema", 0.99) is Stance.NOT_ASSESSED  # no cut: nothing is said, whatever the probability
    assert t.describe("Cardiomegaly") == "present ≥ 0.60, possible ≥ 0.30, absent < 0.1"
    assert t.describe("Edema") == "no cut: not told from chance"


def test_thresholds_round_trip(tmp_path):
    t = Thresholds({"Edema": Cut(0.2, 0.4, 0.05)}, "a test", {"Edema": {"films": 10}})
    t.save(tmp_path)
    assert Thresholds.load(tmp_path) == t
    assert Thresholds.load(tmp_path / "none").cuts == {}  # a user's own model without a policy: nothing assessed


def test_wilson_interval():
    assert wilson(8, 10) == pytest.approx((0.490, 0.943), abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)


def test_the_shipped_policy_holds_on_the_films_it_was_chosen_on():
    """On the shared NIH films, each with the probability of a head that never saw its patient: no finding
    is stated below its precision floor, hedged below 40 %, or denied with a negative predictive value
    under 98 %, and no finding the eye cannot tell from chance gets any stance but 'not assessed'."""
    t = Thresholds.load(EYE)
    data = load_file(str(EYE / POLICY_DATA))
    y, p = data["labels"].astype(bool), data["probabilities"]
    import json
    findings = json.loads((EYE / "config.json").read_text())["findings"]
    assert len(y) >= 1000 and y.shape == p.shape == (len(y), len(findings))  # both shared NIH folders
    assert "never saw its patient" in t.chosen_on
    for j, f in enumerate(findings):
        if f == "No Finding":
            continue
        cut = t.cuts[f]
        ci = t.evidence[f]["auc_ci95"]
        if ci is None or ci[0] <= 0.5:
            assert cut == Cut(), f  # not told from chance: never stated, hedged or denied
            continue
        said = p[:, j] >= cut.present
        if said.any():
            assert y[said, j].mean() >= floor_of(f) and said.sum() >= MIN_SAID, f
        hedged = p[:, j] >= cut.possible
        if hedged.any():
            assert y[hedged, j].mean() >= POSSIBLE_PRECISION, f
        denied = p[:, j] < cut.absent
        if denied.any():
            assert (~y[denied, j]).mean() >= ABSENT_NPV, f
        assert bootstrap_auc(y[:, j], p[:, j], resamples=200)[0] > 0.5 or cut == Cut(), f
