"""Label-matched pseudo-reports: films that have labels but no report (NIH ChestX-ray14) are each paired
with a training report that states the same findings, so that the generator's visual pathway can learn
from films whose own reports nobody here has. A pseudo-report is another patient's words: it teaches which
findings a film's regions should make the text say, never what this film shows beyond its labels."""
from __future__ import annotations

import numpy as np


def match_reports(film_labels: np.ndarray, report_labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each film (a row of 0/1 over the findings its dataset labels) the index of a report whose labels
    over the same findings differ in the fewest places, drawn at random among the closest so that a label
    set shared by many films is not always worded the same."""
    f, r = film_labels.astype(bool), report_labels.astype(bool)
    distance = (f[:, None, :] != r[None, :, :]).sum(-1)  # (films, reports)
    out = np.empty(len(f), dtype=np.int64)
    for i, row in enumerate(distance):
        out[i] = rng.choice(np.flatnonzero(row == row.min()))
    return out
