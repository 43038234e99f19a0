"""The eye learns from the site's sign-offs (`xr learn`): studies drafted and signed through the real
workstation, their signed reports stating the films' NIH labels; the candidate is kept as a version,
promoted only when it reads the site's validation studies better than the eye in use, recorded on every
draft after that, and rolled back by one call."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from xr import store
from xr.config import ASSETS
from xr.data.films import LAYOUTS
from xr.data.split import is_validation
from xr.decode.wording import Wording
from xr.draft.retrieval import RetrievalDrafter
from xr.encode.eyes import eye_for, site_eye_dir, site_status
from xr.encode.finding_head import FindingHead
from xr.generate.anytoany import report_for
from xr.train.learn import learn, rollback
from xr.workstation import LOCAL_USER

SIGNED, BASE = 30, 24  # films signed at the site; shipped films the candidate is fit on besides


@pytest.fixture
def signed(env, workstation_factory, shared):
    """SIGNED films of the NIH sample drafted and signed as studies, each report stating the film's labels."""
    ws = workstation_factory(env)
    wording = Wording.load(ASSETS / "dffg")
    root = shared / "data" / "nih_cxr14_sample"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:SIGNED]
    films = {f.path.name: f for f in LAYOUTS["nih"].read(root)}
    keys = []
    for r in rows:
        film = films[r["Image Index"]]
        drafted = ws.draft([film.path], "", LOCAL_USER)
        ws.approve(drafted.study_id, report_for([x for x in film.labels if x != "No Finding"], wording))
        keys.append(drafted.study.key)
    return ws, keys


def test_learn_promotes_a_better_eye_records_it_on_drafts_and_rolls_back(env, signed, shared):
    ws, keys = signed
    assert {is_validation(f"site:{k[:16]}") for k in keys} == {True, False}  # both parts have signed studies
    base = LAYOUTS["nih"].read(shared / "data" / "nih_cxr14_more")[:BASE]
    worse = FindingHead.from_pretrained(ASSETS / "finding_head")
    with torch.no_grad():  # the eye in use reads every finding backwards: a candidate must beat it
        worse.linear.weight.neg_()
        worse.linear.bias.neg_()
    worse.name = "a head reading every finding backwards"
    quiet = {"encoder": ws.drafter.encoder, "progress": lambda m: None}

    # under the default floor of validation studies nothing is measured, so nothing is promoted; kept all the same
    unmeasured = learn(env, base, worse, **quiet)
    assert not unmeasured.promoted and "too few to measure on" in unmeasured.why and site_eye_dir(env) is None

    first = learn(env, base, worse, min_validation=2, **quiet)
    assert first.promoted and first.version == "v2" and first.after > first.before, first.why
    assert first.site_training_studies == sum(not is_validation(f"site:{k[:16]}") for k in keys)
    assert site_eye_dir(env).name == "v2"
    learnt = json.loads((site_eye_dir(env) / "learn.json").read_text())
    assert learnt["fit_on"] == BASE + first.site_training_studies and learnt["before_eye"] == worse.name
    shown = site_status(env)
    assert (shown["eye"], shown["promoted"], shown["versions"]) == ("v2", ["v2"], ["v1", "v2"])
    assert shown["site_training_studies"] == first.site_training_studies

    # every draft from now on names the eye it used, with its version
    eye = eye_for(env)
    assert eye.name.startswith("the site's finding head v2 (learnt from")
    d = RetrievalDrafter(encoder=ws.drafter.encoder, index=ws.index, s=env).draft(
        ws.draft([shared / "data" / "nih_cxr14_sample" / "images" / "00000100_000.png"], "", None).study)
    assert d.timings["eye"] == eye.name

    # the same data again: the candidate reads the validation studies no better, so it is kept, not promoted
    second = learn(env, base, eye, min_validation=2, **quiet)
    assert not second.promoted and second.version == "v3" and "not promoted" in second.why
    assert site_eye_dir(env).name == "v2" and (env.data_dir / "eyes" / "v3" / "model.safetensors").is_file()

    assert rollback(env) is None and site_eye_dir(env) is None  # the shipped eye again
    assert eye_for(env).name == "the shipped finding head"
    with pytest.raises(store.StoreError, match="nothing to roll back"):
        rollback(env)


def test_learn_from_the_terminal_says_what_is_in_use_and_refuses_an_empty_rollback(env):
    import subprocess
    import sys

    run = [sys.executable, "-m", "xr", "learn"]
    shown = subprocess.run([*run, "--status"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and json.loads(shown.stdout)["eye"] is None  # the shipped eye serves
    refused = subprocess.run([*run, "--rollback"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.strip() == "error: no learnt eye is in use: nothing to roll back"
