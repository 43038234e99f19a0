"""How right the drafts' comparison words are (xr.change), on NIH ChestX-ray14 follow-up pairs: a patient's
consecutive films by Follow-up #, each with the sheet's labels. The current film's stances are the
statement policy's on the eye's probabilities; what the prior had is read two ways, as the drafts read it:
its labels (a signed prior: the radiologist's word) or its own stances (a prior never signed).

Truth per finding the policy assesses: *new* (prior without, current with), *resolved* (with, then
without), *unchanged* (with, with); a finding absent on both has no change, and a word about it is wrong.
The floor is what a copied-forward report says: "unchanged" for every finding the prior had."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from xr.change import Change, changes
from xr.data.nih import load_nih
from xr.thresholds import Stance, Thresholds, wilson


def follow_up_pairs(roots: list[Path]) -> tuple[list[Path], list[tuple[int, int]]]:
    """Every film of the folders (in the order the trainers read them) and the (prior, current) index pairs of
    each patient's consecutive films; a patient in two folders is one patient."""
    films = [n for root in roots for n in load_nih(root) if n.path.exists()]
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(films):
        by_patient[n.patient_id].append(i)
    pairs = []
    for idx in by_patient.values():
        idx.sort(key=lambda i: films[i].follow_up)
        pairs += list(zip(idx, idx[1:], strict=False))
    return [n.path for n in films], pairs


def _truth(before: bool, after: bool) -> Change | None:
    if before and after:
        return Change.UNCHANGED
    if before:
        return Change.RESOLVED
    return Change.NEW if after else None


def _score(stated: int, right: int) -> dict:
    lo, hi = wilson(right, stated) if stated else (0.0, 0.0)
    return {"stated": stated, "right": right, "accuracy": right / stated if stated else None, "ci95": [lo, hi]}


def measure(findings: list[str], y: np.ndarray, p: np.ndarray, policy: Thresholds,
            pairs: list[tuple[int, int]]) -> dict:
    """The comparison's statements against the pairs' labels, with the prior read from its labels and from
    its stances, next to the floor; per change and overall (accuracy with a 95 % Wilson interval)."""
    assessed = [f for f in findings if f in policy.cuts]
    stances = [{f: policy.stance(f, float(p[i, findings.index(f)])) for f in assessed} for i in range(len(y))]
    label = [{f: bool(y[i, findings.index(f)]) for f in assessed} for i in range(len(y))]
    out: dict = {"pairs": len(pairs), "findings": assessed}
    for prior_read in ("labels", "stances"):
        tally: dict[str, list[int]] = {c.value: [0, 0] for c in Change}
        for a, b in pairs:
            had = label[a] if prior_read == "labels" else {f: s == Stance.PRESENT for f, s in stances[a].items()
                                                           if s in (Stance.PRESENT, Stance.ABSENT)}
            for f, said in changes(had, stances[b]).items():
                tally[said.value][0] += 1
                tally[said.value][1] += said == _truth(label[a][f], label[b][f])
        out[f"prior_{prior_read}"] = {c: _score(*t) for c, t in tally.items()} | {
            "all": _score(sum(t[0] for t in tally.values()), sum(t[1] for t in tally.values()))}
    had_any = [(a, b, f) for a, b in pairs for f in assessed if label[a][f]]
    out["floor_unchanged"] = _score(len(had_any), sum(label[b][f] for a, b, f in had_any))
    changed = [(a, b, f) for a, b in pairs for f in assessed if label[a][f] or label[b][f]]
    out["true_changes"] = {c.value: sum(_truth(label[a][f], label[b][f]) == c for a, b, f in changed) for c in Change}
    return out
