"""`python -m xr eval-images`: the scoring on hand-made label sets, then one short run on the NIH sample."""
from __future__ import annotations

import json

import pytest

from tests.conftest import NIH
from tests.test_cli import run
from xr.evaluate.images import (
    NORMAL_REPORT,
    SCORED,
    THRESHOLD,
    eye_labels,
    score_images,
    score_statements,
    stated,
    statements_markdown,
    to_markdown,
)

NIH_FOLDER = NIH.parent
CARDIO = "The heart is enlarged. The lungs are clear."
EFFUSION = "Heart size is normal. Small left pleural effusion."
BOTH = "Cardiomegaly. Small bilateral pleural effusions."


def test_reports_state_what_the_labeler_reads():
    assert stated(NORMAL_REPORT) == {"No Finding"}
    assert stated(CARDIO) == {"Cardiomegaly"}
    assert stated(BOTH) == {"Cardiomegaly", "Pleural Effusion"}
    assert stated("Possible small effusion. No pneumothorax.") == set()  # hedged and negated do not count


def test_eye_labels_threshold_and_no_finding():
    assert eye_labels({"Cardiomegaly": THRESHOLD, "Edema": 0.49, "No Finding": 0.9}) == {"Cardiomegaly"}
    assert eye_labels({"Cardiomegaly": 0.2, "No Finding": 0.1}) == {"No Finding"}  # none stated: normal
    assert eye_labels({"Support Devices": 0.8, "Edema": 0.1}) == {"Support Devices", "No Finding"}  # the labeler's rule


def test_per_finding_micro_and_macro_on_known_counts():
    truth = [{"Cardiomegaly"}, {"Cardiomegaly", "Pleural Effusion"}, {"No Finding"}, {"Pleural Effusion"}]
    reports = [CARDIO, CARDIO, BOTH, EFFUSION]
    # drafts: Cardiomegaly tp 2 fp 1 fn 0; Effusion tp 1 fp 1 fn 1; No Finding tp 0 fp 0 fn 1
    r = score_images(truth, reports, [{}] * 4)
    d = r["drafts"]["per_observation"]
    assert d["Cardiomegaly"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "positives": 2, "predicted": 3})
    assert d["Pleural Effusion"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "positives": 2, "predicted": 2})
    assert d["No Finding"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "positives": 1, "predicted": 0})
    assert d["Edema"]["positives"] == 0 and d["Edema"]["predicted"] == 0
    # micro: tp 3, fp 2, fn 2
    assert r["drafts"]["micro"] == pytest.approx({"precision": 0.6, "recall": 0.6, "f1": 0.6})
    # macro over the three findings with a positive, not over all of SCORED
    assert r["drafts"]["macro_over"] == 3
    assert r["drafts"]["macro"]["f1"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert r["drafts"]["macro"]["precision"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert r["images"] == 4 and r["findings"] == list(SCORED)


def test_floors_constant_and_eye_labels():
    truth = [{"Cardiomegaly"}, {"No Finding"}, {"No Finding"}, {"Pleural Effusion"}]
    probs = [{"Cardiomegaly": 0.7, "No Finding": 0.2}, {"Cardiomegaly": 0.6}, {"Cardiomegaly": 0.1}, {"Edema": 0.9}]
    r = score_images(truth, [NORMAL_REPORT] * 4, probs)
    # constant: No Finding every time: tp 2 fp 2 fn 0; nothing else stated
    c = r["constant"]
    assert c["per_observation"]["No Finding"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "positives": 2, "predicted": 4})
    assert c["per_observation"]["Cardiomegaly"]["f1"] == 0.0
    assert c["micro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})  # tp 2, fp 2, fn 2
    assert r["drafts"] == c  # the drafts were the same normal report
    # eye labels: {Cardiomegaly}, {Cardiomegaly}, {No Finding}, {Edema}
    e = r["eye_labels"]["per_observation"]
    assert e["Cardiomegaly"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "positives": 1, "predicted": 2})
    assert e["No Finding"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "positives": 2, "predicted": 1})
    assert e["Edema"]["predicted"] == 1 and e["Pleural Effusion"]["recall"] == 0.0
    assert r["eye_labels"]["micro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})  # tp 2, fp 2, fn 2


def test_findings_nih_cannot_label_are_not_scored():
    r = score_images([{"No Finding"}], ["Sternotomy wires. The lungs are clear."], [{"Support Devices": 0.9}])
    assert "Support Devices" not in r["drafts"]["per_observation"]
    assert r["drafts"]["micro"]["f1"] == 1.0 and r["eye_labels"]["micro"]["f1"] == 1.0


def test_lengths_must_agree():
    with pytest.raises(ValueError):
        score_images([{"No Finding"}], [], [{}])


def test_markdown_rows_and_caption():
    r = score_images([{"Cardiomegaly"}, {"No Finding"}], [CARDIO, NORMAL_REPORT], [{"Cardiomegaly": 0.9}, {}])
    text = to_markdown({**r, "data": "sample", "split": "val",
                        "drafter": {"model": "dffg", "model_version": "1", "eye": "head"}})
    lines = text.splitlines()
    assert lines[0] == "| finding | positives | P | R | F1 | F1 constant | F1 eye labels |"
    assert "| Cardiomegaly | 1 | 1.00 | 1.00 | 1.00 | 0.00 | 1.00 |" in lines
    assert "| Edema | 0 | – | – | – | – | – |" in lines
    assert any(line.startswith("| **micro** |") for line in lines) and any(line.startswith("| **macro** |") for line in lines)
    caption = lines[-1]
    for part in ("`sample`", "`val`", "2 images", "dffg 1", "eye head", f"≥ {THRESHOLD:g}", NORMAL_REPORT):
        assert part in caption


def test_statements_scored_per_stance_against_the_labels():
    """Issue 31: eval-images scores what the drafts recorded: precision of present and possible, NPV of absent."""
    truth = [{"Cardiomegaly"}, {"Cardiomegaly"}, {"No Finding"}, {"No Finding"}, {"Pneumothorax"}]
    stances = [{"Cardiomegaly": "present"}, {"Cardiomegaly": "possible"}, {"Cardiomegaly": "present"},
               {"Cardiomegaly": "absent", "Pneumothorax": "absent"}, {"Pneumothorax": "absent"}]
    rows = score_statements(truth, stances)
    c = rows["Cardiomegaly"]
    assert (c["present"]["right"], c["present"]["said"], c["present"]["share"]) == (1, 2, 0.5)
    assert (c["possible"]["right"], c["possible"]["said"]) == (1, 1)
    assert (c["absent"]["right"], c["absent"]["said"], c["not_assessed"]) == (1, 1, 1)
    p = rows["Pneumothorax"]
    assert (p["absent"]["right"], p["absent"]["said"], p["positives"], p["not_assessed"]) == (1, 2, 1, 3)
    table = statements_markdown(rows)
    assert "| Cardiomegaly | 2 | 1/2 = 0.50 (0.09–0.91) (0.8) | 1/1 = 1.00" in table
    assert "| Pneumothorax | 1 | – (0.9) | – | 1/2 = 0.50" in table


@pytest.mark.skipif(not NIH.is_dir(), reason="the NIH sample is not beside the checkout")
def test_cli_drafts_three_images(tmp_path):
    r = run(["eval-images", "--data", str(NIH_FOLDER), "--split", "all", "--limit", "3", "--json"], tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["images"] == 3 and out["split"] == "all" and out["data"] == NIH_FOLDER.name
    assert out["drafter"]["model"] and out["drafter"]["model_version"]
    assert "drafting images" in r.stderr  # the progress bar, on stderr
    for name in ("drafts", "constant", "eye_labels"):
        block = out[name]
        assert set(block) == {"micro", "macro", "macro_over", "per_observation"}
        assert set(block["per_observation"]) == set(SCORED)
        assert 1 <= block["macro_over"] <= len(SCORED)
        assert all(0.0 <= block[avg][k] <= 1.0 for avg in ("micro", "macro") for k in ("precision", "recall", "f1"))
    # every image is stated something by the constant floor, and the same number of labels underlies all three
    assert out["constant"]["per_observation"]["No Finding"]["predicted"] == 3
    positives = [{f: v["positives"] for f, v in out[name]["per_observation"].items()} for name in ("drafts", "constant", "eye_labels")]
    assert positives[0] == positives[1] == positives[2] and sum(positives[0].values()) >= 3
    statements = out["statements"]
    assert set(statements) == set(SCORED) - {"No Finding"}
    for row in statements.values():  # every film has one stance per finding
        assert sum(row[s]["said"] for s in ("present", "possible", "absent")) + row["not_assessed"] == 3


def test_cli_missing_folder_is_one_line(tmp_path):
    r = run(["eval-images", "--data", str(tmp_path / "nowhere")], tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ") and "no such folder" in r.stderr


_SHEET = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"


def _folder(root, patient: int, with_image: bool = False):
    (root / "images").mkdir(parents=True)
    (root / "labels.csv").write_text(_SHEET + f"{patient:08d}_000.png,Cardiomegaly,0,{patient},60,F,PA\n")
    if with_image:
        (root / "images" / f"{patient:08d}_000.png").write_bytes(b"")
    return root


@pytest.mark.parametrize("case", ["no labels.csv", "limit 0", "no val images", "image missing", "not a sheet"])
def test_bad_folders_are_one_line_errors(tmp_path, capsys, case):
    """Each is refused before a model loads (in-process: the checks, not the start-up, are under test)."""
    from xr.cli import main
    from xr.data.split import is_validation

    train_patient = next(p for p in range(1, 1000) if not is_validation(f"nih:{p}"))
    val_patient = next(p for p in range(1, 1000) if is_validation(f"nih:{p}"))
    args, expect = {
        "no labels.csv": ([str(tmp_path)], "no labels.csv"),
        "limit 0": ([str(_folder(tmp_path / "a", val_patient)), "--limit", "0"], "--limit must be at least 1"),
        "no val images": ([str(_folder(tmp_path / "b", train_patient, with_image=True))], "no val images in b"),
        "image missing": ([str(_folder(tmp_path / "c", val_patient))], "1 of the 1 val images"),
        "not a sheet": ([str(tmp_path / "d")], "not a ChestX-ray14 label sheet"),
    }[case]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "labels.csv").write_text("a,b\n1,2\n")
    assert main(["eval-images", "--data", *args]) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.startswith("error: ") and expect in err.err and err.err.count("\n") == 1
