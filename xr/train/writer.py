"""`python -m xr train-writer`: what the faithful writer needs beside the generator's weights, chosen on
the training split alone:

- `wording.json` (xr.decode.wording): the site's sentences per finding, read off the training reports;
- `thresholds.json`: per-finding thresholds on the finding prompt that retrieval gives (the labels of the
  similar training reports, used without images and for the findings the eye does not read), chosen
  leave-one-out: each training study's prompt comes from its neighbours, never from itself, and is
  compared with its own labels (xr.evaluate.classification.choose_cut). Never hedged: other patients'
  reports are no evidence of doubt about this one. And never stated where those statements are right less
  than half the time: a report retrieved by indication says little of this patient's film (on IU train, a
  finding stated that way was right 7-33 % of the time), and a sentence more often wrong than right lowers
  a draft's clinical accuracy below writing nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xr.decode.wording import Wording
from xr.evaluate.classification import choose_cut
from xr.findings import FINDINGS
from xr.thresholds import Cut, Thresholds
from xr.train.generator import Data

MIN_PRECISION = 0.5


def prompt_thresholds(data: Data) -> Thresholds:
    p = np.stack([data.memory.prompt_from(nb[: data.k]) for nb in data.train_nb])
    cuts = {}
    for j, f in enumerate(FINDINGS):
        if f != "No Finding":
            state = choose_cut(data.train_labels[:, j], p[:, j], min_precision=MIN_PRECISION)
            cuts[f] = Cut(round(state, 4), round(state, 4), round(state, 4))  # text mode: the template's negatives
    return Thresholds(cuts, f"leave-one-out on the {len(data.train)} IU X-ray train studies: the labels of each "
                            f"study's {data.k} reports retrieved by indication (never its own) against its own labels; "
                            f"stated only where at least {MIN_PRECISION:.0%} of its statements were right; text mode, "
                            f"the template: absent below the statement cut")


def train_writer(data: Data, out: Path) -> tuple[Wording, Thresholds]:
    wording = Wording.build([c.findings for c in data.train], [c.impression for c in data.train])
    thresholds = prompt_thresholds(data)
    out.mkdir(parents=True, exist_ok=True)
    wording.save(out)
    thresholds.save(out)
    return wording, thresholds
