"""The floors every model must beat, each built from the training split only:
constant (the most common training report), random (a random training report, seeded),
nearest-text (the report of the training case whose indication is most similar, TF-IDF cosine), and
label-matched (the training report whose labeler findings are the closest to the ones asked for: what a
writer that only looks reports up by their findings would say)."""
from __future__ import annotations

import math
import random
import re
from collections import Counter

import numpy as np

from xr.data.case import Case
from xr.normalize import normalize

BASELINES = ("constant", "random", "nearest-text")
_WORD = re.compile(r"[a-z]{2,}")


def _tokens(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w != "xxxx"]


def constant_report(train: list[Case]) -> str:
    counts = Counter(normalize(c.findings) for c in train)
    best = counts.most_common(1)[0][0]
    return next(c.findings for c in train if normalize(c.findings) == best)


class TfidfIndex:
    """Cosine similarity of TF-IDF vectors (sublinear tf, smoothed idf): enough for short indications."""

    def __init__(self, docs: list[str]) -> None:
        toks = [_tokens(d) for d in docs]
        df = Counter(w for t in toks for w in set(t))
        self.vocab = {w: i for i, w in enumerate(sorted(df))}
        self.idf = np.array([math.log((1 + len(docs)) / (1 + df[w])) + 1 for w in sorted(df)])
        self.matrix = np.stack([self._vec(t) for t in toks]) if docs else np.zeros((0, len(self.vocab)))

    def _vec(self, toks: list[str]) -> np.ndarray:
        v = np.zeros(len(self.vocab))
        for w, n in Counter(toks).items():
            if w in self.vocab:
                v[self.vocab[w]] = (1 + math.log(n)) * self.idf[self.vocab[w]]
        norm = np.linalg.norm(v)
        return v / norm if norm else v

    def nearest(self, text: str) -> tuple[int, float]:
        sims = self.matrix @ self._vec(_tokens(text))
        i = int(np.argmax(sims))
        return i, float(sims[i])


def baseline_predictions(name: str, train: list[Case], cases: list[Case], seed: int = 0) -> dict[str, str]:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline '{name}'; choose from {', '.join(BASELINES)}")
    constant = constant_report(train)
    if name == "constant":
        return {c.id: constant for c in cases}
    if name == "random":
        rng = random.Random(seed)
        return {c.id: rng.choice(train).findings for c in cases}
    with_indication = [c for c in train if _tokens(c.indication)]
    index = TfidfIndex([c.indication for c in with_indication])
    out = {}
    for c in cases:
        i, sim = index.nearest(c.indication) if _tokens(c.indication) else (0, 0.0)
        out[c.id] = with_indication[i].findings if sim > 0 else constant
    return out


def label_matched_predictions(train: list[Case], train_labels: np.ndarray, cases: list[Case],
                              case_labels: np.ndarray) -> dict[str, str]:
    """Per case, the training report whose labels differ from the case's in the fewest findings; among
    those, the commonest text (the site's usual wording), then the first."""
    counts = Counter(normalize(c.findings) for c in train)
    rank = sorted(range(len(train)), key=lambda i: -counts[normalize(train[i].findings)])
    ordered = train_labels[rank]
    out = {}
    for c, y in zip(cases, case_labels, strict=True):
        distance = np.abs(ordered - y).sum(1)
        out[c.id] = train[rank[int(np.argmin(distance))]].findings
    return out
