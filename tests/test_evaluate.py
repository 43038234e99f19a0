"""Evaluation: normalisation, metrics identical to pycocoevalcap, clinical scores, baselines, the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import SHARED
from xr.config import ROOT
from xr.data.case import Case
from xr.evaluate.baselines import baseline_predictions, constant_report
from xr.evaluate.clinical import clinical_scores
from xr.evaluate.nlg import nlg_scores
from xr.normalize import normalize, placeholder_count

REFS = {
    "a": "The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax.",
    "b": "Cardiomegaly. Small left pleural effusion. 1. Stable. 2. Degenerative spine..",
    "c": "Left lower lobe opacity, concerning for pneumonia.",
}
PREDS = {
    "a": "Heart size is normal. Lungs are clear. No effusion.",
    "b": "Heart is enlarged. Left pleural effusion.",
    "c": "The lungs are clear. No pneumothorax.",
}


def test_normalize_like_r2gen():
    assert normalize("The Heart is normal.. Lungs: clear; (no) effusion!") == "the heart is normal . lungs clear no effusion ."
    assert normalize("1. No acute disease. 2. Stable cardiomegaly.") == "no acute disease . stable cardiomegaly ."
    assert normalize("Left-sided XXXX opacity/scar.") == "left-sided xxxx opacityscar ."
    assert placeholder_count(["fine", "the XXXX are normal", "XX"]) == 2


def test_nlg_identical_to_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    refs = {k: normalize(v) for k, v in REFS.items()}
    preds = {k: normalize(v) for k, v in PREDS.items()}
    ours, per_case = nlg_scores(refs, preds)
    gts, res = {k: [v] for k, v in sorted(refs.items())}, {k: [v] for k, v in sorted(preds.items())}
    bleu, bleu_cases = Bleu(4).compute_score(gts, res, verbose=0)
    assert [ours[f"BLEU-{n}"] for n in range(1, 5)] == bleu
    assert ours["ROUGE-L"] == Rouge().compute_score(gts, res)[0]
    assert ours["CIDEr"] == Cider().compute_score(gts, res)[0]
    assert per_case["b"]["BLEU-4"] == bleu_cases[3][1]
    if ours["METEOR"] is not None:
        assert ours["METEOR"] == Meteor().compute_score(gts, res)[0]
    assert nlg_scores({"x": "a b c d ."}, {"x": "a b c d ."})[0]["BLEU-4"] == pytest.approx(1.0)


def test_meteor_unavailable_without_java(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    scores, _ = nlg_scores({"x": "the lungs are clear ."}, {"x": "lungs clear ."})
    assert scores["METEOR"] is None and scores["BLEU-1"] > 0


def test_clinical_scores():
    summary, per_case = clinical_scores(REFS, PREDS)
    obs = summary["per_observation"]
    assert obs["Pleural Effusion"]["positives"] == 1 and obs["Pleural Effusion"]["recall"] == 1.0
    assert obs["Cardiomegaly"]["f1"] == 1.0
    assert obs["Pneumonia"]["recall"] == 0.0 and obs["Lung Opacity"]["recall"] == 0.0
    assert per_case["b"]["CE-F1"] == 1.0 and per_case["c"]["CE-F1"] == 0.0
    assert 0 < summary["micro"]["f1"] < 1


def test_baselines_use_training_split_only():
    train = [Case("t1", "train", "Lungs clear.", indication="Chest pain"),
             Case("t2", "train", "Lungs clear.", indication="Fever and cough"),
             Case("t3", "train", "Right lower lobe pneumonia.", indication="Fever, productive cough, XXXX")]
    val = [Case("v1", "val", "x", indication="cough with fever"), Case("v2", "val", "y", indication="")]
    assert constant_report(train) == "Lungs clear."
    near = baseline_predictions("nearest-text", train, val)
    assert near == {"v1": "Lungs clear.", "v2": "Lungs clear."}  # t2 matches best; no indication -> constant
    val2 = [Case("v3", "val", "x", indication="productive cough")]
    assert baseline_predictions("nearest-text", train, val2) == {"v3": "Right lower lobe pneumonia."}
    r1, r2 = baseline_predictions("random", train, val, seed=1), baseline_predictions("random", train, val, seed=1)
    assert r1 == r2 and set(r1.values()) <= {c.findings for c in train}


def run(args, tmp_path):
    env = {**os.environ, "XR_DATA_DIR": str(tmp_path / "d"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "xr", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)


def test_eval_cli_baseline_and_predictions_agree(shared, tmp_path):
    data = str(SHARED / "data" / "iu_xray")
    base = run(["eval", "--data", data, "--split", "val", "--baseline", "constant", "--json"], tmp_path)
    assert base.returncode == 0, base.stderr
    b = json.loads(base.stdout)
    assert b["studies"] == 296 and b["split"] == "val" and b["source"] == "baseline: constant"
    assert 0 < b["nlg"]["BLEU-4"] < 0.5 and b["nlg"]["CIDEr"] > 0
    from xr.data.iu_xray import load_iu

    constant = constant_report(load_iu(SHARED / "data" / "iu_xray", "train"))
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"id": c.id, "report": constant}) + "\n" for c in load_iu(SHARED / "data" / "iu_xray", "val")))
    md = run(["eval", "--data", data, "--split", "val", "--predictions", str(pred), "--per-case", str(tmp_path / "pc.jsonl")], tmp_path)
    assert md.returncode == 0, md.stderr
    assert "IU X-ray `val` split, 296 studies" in md.stdout and "| pred.jsonl |" in md.stdout
    assert f"{b['nlg']['CIDEr']:.3f}" in md.stdout and f"{b['nlg']['BLEU-4']:.3f}" in md.stdout
    per_case = [json.loads(x) for x in (tmp_path / "pc.jsonl").read_text().splitlines()]
    assert len(per_case) == 296 and {"BLEU-4", "CIDEr", "CE-F1", "reference"} <= set(per_case[0])


@pytest.mark.parametrize("content,reason", [
    ('{"id": "nope", "report": "x"}\n', "not in the val split"),
    ('{"id": "CXR2279_IM-0865"}\n', "expected a JSON object with 'id' and 'report'"),
    ('not json\n', "line 1: expected a JSON object"),
    ('{"id": "CXR2279_IM-0865", "report": "x"}\n', "295 of 296 val studies have no prediction"),
])
def test_eval_cli_bad_predictions(shared, tmp_path, content, reason):
    (tmp_path / "p.jsonl").write_text(content)
    r = run(["eval", "--data", str(SHARED / "data" / "iu_xray"), "--predictions", str(tmp_path / "p.jsonl")], tmp_path)
    assert r.returncode == 2 and reason in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_label_matched_floor_takes_the_closest_labels_in_the_commonest_words():
    import numpy as np

    from xr.evaluate.baselines import label_matched_predictions
    train = [Case("t1", "train", "Mild cardiomegaly."), Case("t2", "train", "Lungs clear."),
             Case("t3", "train", "Lungs clear."), Case("t4", "train", "Heart is enlarged.")]
    labels = np.array([[1, 0], [0, 0], [0, 0], [1, 0]], np.float32)
    cases = [Case("v1", "val", "x"), Case("v2", "val", "y"), Case("v3", "val", "z")]
    asked = np.array([[0, 0], [1, 0], [1, 1]], np.float32)
    assert label_matched_predictions(train, labels, cases, asked) == {
        "v1": "Lungs clear.", "v2": "Mild cardiomegaly.", "v3": "Mild cardiomegaly."}  # nearest labels, then first


def small_iu(tmp_path):
    """An IU X-ray folder of 60 train, 3 val and 4 test studies (the test ones taken from the real val
    split, one with its frontal film), with the Open-i reports and images: the layout a user with the
    full set has."""
    iu = SHARED / "data" / "iu_xray"
    ann = json.loads((iu / "annotation.json").read_text())
    root = tmp_path / "iu"
    root.mkdir()
    test = [{**item, "split": "test"} for item in ann["val"][3:6] + [ann["val"][184]]]  # the last has its film here
    (root / "annotation.json").write_text(json.dumps({"train": ann["train"][:60], "val": ann["val"][:3], "test": test}))
    (root / "reports").symlink_to(iu / "reports")
    (root / "images_openi").symlink_to(iu / "images_openi")
    return root, [item["id"] for item in test]


def test_eval_generator_measures_a_test_split_in_one_command(shared, tmp_path):
    import shutil

    root, test_ids = small_iu(tmp_path)
    model = tmp_path / "dffg"
    shutil.copytree(ROOT / "assets" / "dffg", model)
    preds = tmp_path / "drafts.jsonl"
    r = run(["eval-generator", "--data", str(root), "--dir", str(model), "--split", "test", "--predictions-out", str(preds),
             "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"floor/constant", "floor/nearest-text", "floor/label-matched", "text/dynamic", "oracle/dynamic",
            "oracle/generator-alone", "oracle/fixed"} <= set(out)
    assert all(v["split"] == "test" and v["studies"] == (1 if k.startswith("image/") else 4) for k, v in out.items())
    assert out["floor/label-matched"]["clinical"]["micro"]["f1"] > out["floor/constant"]["clinical"]["micro"]["f1"] - 1e-9
    lines = {x["id"]: x for x in map(json.loads, preds.read_text().splitlines())}
    assert sorted(lines) == sorted(test_ids) and [x["mode"] for x in lines.values()].count("image") == 1
    assert lines["CXR103_IM-0023"]["mode"] == "image" and out["image/dynamic"]["studies"] == 1  # drafted from its film
    md = (model / "EVAL-test.md").read_text()
    assert "`test` split, 4 studies" in md and "faithful writer" in md and (model / "EVAL.md").read_text() == (
        ROOT / "assets" / "dffg" / "EVAL.md").read_text()  # the val figures are left alone
    again = run(["eval", "--data", str(root), "--split", "test", "--predictions", str(preds), "--json"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["nlg"]["CIDEr"] == pytest.approx(out["text/dynamic"]["nlg"]["CIDEr"])
    bad = run(["eval-generator", "--data", str(root), "--dir", str(model), "--split", "nope"], tmp_path)
    assert bad.returncode == 2 and "no nope studies" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_the_generator_learns_from_films_with_pseudo_reports_and_its_fusion_is_measured(shared, tmp_path):
    """Issue 33: labelled films without reports (NIH layout) join IU train with label-matched pseudo-reports,
    and the fusion is measured before and after on their patient-disjoint validation part."""
    from xr.data.films import load_films
    from xr.data.layouts import load_cases
    from xr.data.split import is_validation

    root, _ = small_iu(tmp_path)
    src, nih = SHARED / "data" / "nih_cxr14_sample", tmp_path / "nih"
    (nih / "images").mkdir(parents=True)
    lines = (src / "labels.csv").read_text().splitlines()[:25]
    (nih / "labels.csv").write_text("\n".join(lines) + "\n")
    for line in lines[1:]:
        (nih / "images" / line.split(",")[0]).symlink_to(src / "images" / line.split(",")[0])
    films = load_films(nih=nih)
    held = [f for f in films if is_validation(f.group)]
    assert 0 < len(held) < len(films) == 24
    out = tmp_path / "dffg"
    r = run(["train-generator", "--data", str(root), "--films", str(nih), "--out", str(out), "--epochs", "1",
             "--threads", "1"], tmp_path)
    assert r.returncode == 0, r.stderr
    fusion = json.loads((out / "FUSION.json").read_text())
    t = fusion["training"]
    assert t["pseudo_reports"] == len(films) - len(held) and t["films"] == ["nih"] and t["epochs"] == 1
    history = json.loads((out / "history.json").read_text())
    with_films = sum(1 for c in load_cases(root, "train")[1] if c.image_paths)  # IU's own, in the base's count too
    assert history["with_images"] == t["with_images"] == t["pseudo_reports"] + with_films  # not counted twice
    assert set(fusion["figures"]) == {"before (dffg)", "after"}
    for f in fusion["figures"].values():
        assert f["films"] == len(held)
        assert set(f["rows"]) == {f"{p}/{m}" for p in ("none", "eye") for m in ("dynamic", "fixed", "text")}
        assert set(f["gates"]) == {"none", "eye"} and 0 <= f["gates"]["none"]["mean_gate"] <= 1
    assert f"{len(held)} validation films (patient-disjoint)" in (out / "FUSION.md").read_text()
    bad = run(["train-generator", "--data", str(root), "--films", str(tmp_path), "--out", str(tmp_path / "x")], tmp_path)
    assert bad.returncode == 2 and "no labels.csv there" in bad.stderr and not (tmp_path / "x").exists()
    bad = run(["train-generator", "--data", str(root), "--films", str(nih)], tmp_path)
    assert bad.returncode == 2 and "--films needs --data IU_DIR" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    one_side = tmp_path / "one-side"
    (one_side / "images").mkdir(parents=True)
    (one_side / "labels.csv").write_text("\n".join([lines[0], *(x for x in lines[1:] if not is_validation(
        f"nih:{x.split(',')[3]}"))]) + "\n")
    for line in lines[1:]:
        (one_side / "images" / line.split(",")[0]).symlink_to(src / "images" / line.split(",")[0])
    bad = run(["train-generator", "--data", str(root), "--films", str(one_side), "--out", str(tmp_path / "y")], tmp_path)
    assert bad.returncode == 2 and "none of them in the validation part" in bad.stderr and not (tmp_path / "y").exists()


def test_train_writer_chooses_its_words_and_thresholds_on_train(shared, tmp_path):
    from xr.decode.wording import Wording, sentence_labels
    from xr.thresholds import Thresholds

    root, _ = small_iu(tmp_path)
    r = run(["train-writer", "--data", str(root), "--dir", str(tmp_path / "w")], tmp_path)
    assert r.returncode == 0, r.stderr
    w, t = Wording.load(tmp_path / "w"), Thresholds.load(tmp_path / "w")
    assert sentence_labels(w.stated["Cardiomegaly"]) == {"Cardiomegaly": 1} and w.negatives
    assert "leave-one-out on the 60 IU X-ray train studies" in t.chosen_on
    # retrieval's prompt is never hedged, and text mode keeps the template: absent below the statement cut
    assert all(c.possible == c.present == c.absent for c in t.cuts.values())
    bad = run(["train-writer", "--data", str(tmp_path)], tmp_path)
    assert bad.returncode == 2 and "no annotation.json" in bad.stderr


def test_teaching_scores_a_false_hedge_as_added():
    """Issue 31: the quiz scored "A small pneumothorax cannot be excluded." on a normal film as finding F1 1.0."""
    from xr.evaluate.case import case_metrics

    m = case_metrics("The lungs are clear. A small pneumothorax cannot be excluded.", reference_labels=["No Finding"])
    assert m["added"] == ["Pneumothorax"] and m["finding_f1"] == 0.0
    assert case_metrics("The lungs are clear.", reference_labels=["No Finding"])["finding_f1"] == 1.0
