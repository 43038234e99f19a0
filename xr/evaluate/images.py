"""Drafts of labelled images, scored by the findings their reports state (`python -m xr eval-images`).

A report states a finding when the labeler reads it as POSITIVE (uncertain, negated and unmentioned do
not count), as in xr.evaluate.clinical. Two floors share the table: the same normal report for every
image (what writing nothing costs), and the draft's own finding probabilities thresholded (what a
perfect writer would reach from what the drafter saw), so a gap between drafts and eye labels is the
writer's and a gap between eye labels and the truth is the eye's.

Beside the text, the stances the drafts recorded (xr.thresholds) are scored per finding: the precision
of their "present" statements and "possible" hedges, the negative predictive value of their "absent"
negatives, and how many films a finding was not assessed on, so the statement policy's floors can be
checked on any labelled folder.

Only the findings the NIH ChestX-ray14 labels can name are scored: a sheet without support devices,
fractures or a widened mediastinum would count every such true statement as a false positive.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from xr.evaluate.clinical import label_scores
from xr.evaluate.labeler import label_report, positives
from xr.findings import FINDINGS, NIH_TO_FINDING
from xr.thresholds import Stance, floor_of, wilson

# The constant floor: no fixed report exists in xr.evaluate.baselines (its constant is the commonest
# training report of a split with texts, which an image folder has not), so this one is written out.
NORMAL_REPORT = "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear."
THRESHOLD = 0.5  # finding probability at or above which the eye-labels floor states a finding
SCORED = tuple(f for f in FINDINGS if f in set(NIH_TO_FINDING.values()))
FLOORS = ("drafts", "constant", "eye_labels")
_NOT_A_FINDING = ("No Finding", "Support Devices")  # the labeler's No Finding rule: devices do not rule it out


def stated(report: str) -> set[str]:
    """The findings a report states, by the project's labeler."""
    return set(positives(label_report(report)))


def eye_labels(probabilities: Mapping[str, float], threshold: float = THRESHOLD) -> set[str]:
    """The findings a writer faithful to the drafter's probabilities would state; No Finding when none
    but support devices reaches the threshold, as the labeler would read such a report."""
    out = {f for f, p in probabilities.items() if f != "No Finding" and p >= threshold}
    return out if out - set(_NOT_A_FINDING) else out | {"No Finding"}


def _matrix(label_sets: Sequence[Iterable[str]], findings: Sequence[str]) -> np.ndarray:
    sets = [set(s) for s in label_sets]
    return np.array([[f in s for f in findings] for s in sets], dtype=bool).reshape(len(sets), len(findings))


def score_images(truth: Sequence[Iterable[str]], reports: Sequence[str], probabilities: Sequence[Mapping[str, float]],
                 findings: Sequence[str] = SCORED, threshold: float = THRESHOLD) -> dict:
    """Drafts and both floors against the images' labels: for each, label_scores' per-finding P/R/F1 and
    positives, micro and macro (over the findings with a positive). One entry per image in each list."""
    if not len(truth) == len(reports) == len(probabilities):
        raise ValueError(f"{len(truth)} label sets, {len(reports)} reports, {len(probabilities)} probability sets")
    y = _matrix(truth, findings)
    constant = stated(NORMAL_REPORT)
    predicted = {
        "drafts": [stated(r) for r in reports],
        "constant": [constant] * len(truth),
        "eye_labels": [eye_labels(p, threshold) for p in probabilities],
    }
    return {"images": len(truth), "findings": list(findings), "threshold": threshold, "constant_report": NORMAL_REPORT,
            **{name: label_scores(y, _matrix(sets, findings), findings) for name, sets in predicted.items()}}


def _share(k: int, n: int) -> dict:
    return {"said": n, "right": k, "share": k / n if n else None, "ci95": wilson(k, n) if n else None}


def score_statements(truth: Sequence[Iterable[str]], stances: Sequence[Mapping[str, str]],
                     findings: Sequence[str] = SCORED) -> dict[str, dict]:
    """Per finding: precision of the drafts' present and possible stances, negative predictive value of
    their absent ones (each with its Wilson interval), and the films it was not assessed on."""
    sets = [set(t) for t in truth]
    out = {}
    for f in findings:
        if f == "No Finding":
            continue
        y = np.array([f in s for s in sets], dtype=bool)
        st = np.array([s.get(f, Stance.NOT_ASSESSED.value) for s in stances])
        row: dict = {"positives": int(y.sum()), "not_assessed": int((st == Stance.NOT_ASSESSED.value).sum())}
        for stance in (Stance.PRESENT, Stance.POSSIBLE):
            sel = st == stance.value
            row[stance.value] = _share(int(y[sel].sum()), int(sel.sum()))
        sel = st == Stance.ABSENT.value
        row[Stance.ABSENT.value] = _share(int((~y[sel]).sum()), int(sel.sum()))
        out[f] = row
    return out


def statements_markdown(rows: dict[str, dict]) -> str:
    def cell(d: dict) -> str:
        if not d["said"]:
            return "–"
        lo, hi = d["ci95"]
        return f"{d['right']}/{d['said']} = {d['share']:.2f} ({lo:.2f}–{hi:.2f})"
    lines = ["| finding | positives | present: precision (floor) | possible: precision | absent: NPV | not assessed |",
             "|---|---:|---:|---:|---:|---:|"]
    for f, r in rows.items():
        lines.append(f"| {f} | {r['positives']} | {cell(r['present'])} ({floor_of(f):.1f}) | {cell(r['possible'])} | "
                     f"{cell(r['absent'])} | {r['not_assessed']} |")
    return "\n".join(lines + ["", "What the drafts recorded of each finding, against the labels: right/said with the "
                                   "95 % Wilson interval; floors: present 0.8 (0.9 critical), possible 0.4, absent NPV "
                                   "0.98; – : never said."]) + "\n"


def _cell(value: float, defined: bool) -> str:
    return f"{value:.2f}" if defined else "–"


def to_markdown(result: dict) -> str:
    """The table, then its caption. `result`: score_images' dict with `data`, `split` and `drafter` added."""
    lines = ["| finding | positives | P | R | F1 | F1 constant | F1 eye labels |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for f in result["findings"]:
        d = result["drafts"]["per_observation"][f]
        has = d["positives"] > 0
        lines.append(f"| {f} | {d['positives']} | {_cell(d['precision'], d['predicted'] > 0)} | "
                     f"{_cell(d['recall'], has)} | {_cell(d['f1'], has)} | "
                     f"{_cell(result['constant']['per_observation'][f]['f1'], has)} | "
                     f"{_cell(result['eye_labels']['per_observation'][f]['f1'], has)} |")
    for avg in ("micro", "macro"):
        d = result["drafts"][avg]
        lines.append(f"| **{avg}** | | {d['precision']:.2f} | {d['recall']:.2f} | **{d['f1']:.2f}** | "
                     f"{result['constant'][avg]['f1']:.2f} | {result['eye_labels'][avg]['f1']:.2f} |")
    drafter = result["drafter"]
    eye = f", eye {drafter['eye']}" if drafter.get("eye") else ""
    lines += ["", f"Drafts of the NIH-layout folder `{result['data']}`, part `{result['split']}`: {result['images']} "
                  f"images, drafter {drafter['model']} {drafter['model_version']}{eye}. A finding counts when the "
                  f"labeler reads it as positive; constant: \"{result['constant_report']}\" for every image; eye "
                  f"labels: the draft's finding probabilities ≥ {result['threshold']:g} (No Finding when none but "
                  f"support devices is). Macro over the {result['drafts']['macro_over']} findings with a positive; – : undefined "
                  "(no positive, or never stated)."]
    return "\n".join(lines) + "\n"
