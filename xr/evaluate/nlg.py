"""BLEU-1..4, METEOR, ROUGE-L and CIDEr exactly as pycocoevalcap computes them, on normalised text.

METEOR runs a Java program; without `java` on the PATH it is reported as unavailable (None), not failed.
"""
from __future__ import annotations

import contextlib
import io
import shutil

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def meteor_available() -> bool:
    return shutil.which("java") is not None


def nlg_scores(refs: dict[str, str], preds: dict[str, str]) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
    """(corpus scores, per-case scores) for normalised texts keyed by case id (same keys in both)."""
    if set(refs) != set(preds):
        raise ValueError("references and predictions must cover the same cases")
    ids = sorted(refs)
    gts = {i: [refs[i]] for i in ids}
    res = {i: [preds[i]] for i in ids}
    corpus: dict[str, float | None] = {}
    per_case: dict[str, dict[str, float]] = {i: {} for i in ids}

    with contextlib.redirect_stdout(io.StringIO()):  # pycocoevalcap prints its internals
        bleu, bleu_cases = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"BLEU-{n + 1}"] = bleu[n]
        for i, s in zip(ids, bleu_cases[n], strict=False):
            per_case[i][f"BLEU-{n + 1}"] = float(s)

    if meteor_available():
        meteor = Meteor()
        try:
            corpus["METEOR"], cases = meteor.compute_score(gts, res)
        finally:
            meteor.meteor_p.kill()
            meteor.meteor_p.wait()
        for i, s in zip(ids, cases, strict=False):
            per_case[i]["METEOR"] = float(s)
    else:
        corpus["METEOR"] = None

    corpus["ROUGE-L"], cases = Rouge().compute_score(gts, res)
    for i, s in zip(ids, cases, strict=False):
        per_case[i]["ROUGE-L"] = float(s)
    corpus["CIDEr"], cases = Cider().compute_score(gts, res)
    for i, s in zip(ids, cases, strict=False):
        per_case[i]["CIDEr"] = float(s)
    corpus = {k: (float(v) if v is not None else None) for k, v in corpus.items()}
    return {k: corpus[k] for k in METRICS}, per_case
