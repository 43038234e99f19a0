"""Train the view head (`python -m xr train-views`): every film of known view in the folders given (NIH
ChestX-ray14 frontals, covid_cxr_views frontals and laterals, IU X-ray or MIMIC-CXR films whose header
sheet names the view). Laterals are few here (a few dozen), so the two classes are weighted equally and
the weight decay is strong; how often it errs is measured by patient-grouped 5-fold cross-validation
before the shipped head is fit on every film.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from xr.data.films import LAYOUTS, LabelledFilm
from xr.encode.batch import encode_files
from xr.encode.view_head import ViewHead, ViewHeadConfig, view_inputs
from xr.encode.vision import VisionEncoder
from xr.train.engine import fit_logistic, seed_everything
from xr.views import LATERAL

WEIGHT_DECAY = 1.0  # L2 per film on standardised features
FOLDS = 5


def films(nih: list[Path], views: Path | None, studies: Path | None) -> list[LabelledFilm]:
    out = [f for root in nih for f in LAYOUTS["nih"].read(root)]
    out += LAYOUTS["views"].read(views) if views else []
    out += [f for f in LAYOUTS["studies"].read(studies) if f.view] if studies else []
    return out


def fit(x: np.ndarray, y: np.ndarray) -> ViewHead:
    """Full-batch L-BFGS on the class-balanced logistic loss (xr.train.engine.fit_logistic)."""
    seed_everything(0)
    head = ViewHead(ViewHeadConfig(features=x.shape[1]))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    head.mean.copy_(xt.mean(0))
    head.std.copy_(xt.std(0).clamp_min(1e-6))
    torch.nn.init.zeros_(head.linear.weight)
    torch.nn.init.zeros_(head.linear.bias)
    fit_logistic(head.linear, (xt - head.mean) / head.std, yt, WEIGHT_DECAY, 300)
    return head.eval()


def train(nih: list[Path], views: Path | None, studies: Path | None, out: Path, encoder: VisionEncoder,
          progress: Callable[[str], None] = print) -> dict:
    fs = films(nih, views, studies)
    x = view_inputs(encode_files(encoder, [f.path for f in fs], progress=progress))
    y = np.array([f.view == LATERAL for f in fs])
    fold = np.array([int(hashlib.sha256(f.group.encode()).hexdigest()[8:16], 16) % FOLDS for f in fs])
    p = np.zeros(len(fs), dtype=np.float32)
    for k in range(FOLDS):
        with torch.no_grad():
            p[fold == k] = torch.sigmoid(fit(x[fold != k], y[fold != k])(torch.from_numpy(x[fold == k]))).numpy()
    wrong = [f for f, q, t in zip(fs, p, y, strict=True) if (q >= 0.5) != t]
    head = fit(x, y)
    head.save_pretrained(out)
    with torch.no_grad():
        fitted = torch.sigmoid(head(torch.from_numpy(x))).numpy()
    info = {"trained_on": f"{len(fs)} films of known view ({int(y.sum())} lateral) from "
                          f"{', '.join(r.name for r in [*nih, *(p for p in (views, studies) if p)])}",
            "cross_validation": {"folds": FOLDS, "grouped_by": "patient (study where there is no patient)",
                                 "frontal_wrong": sum(f.view != LATERAL for f in wrong),
                                 "lateral_wrong": sum(f.view == LATERAL for f in wrong),
                                 "frontals": int((~y).sum()), "laterals": int(y.sum()),
                                 "wrong": sorted(f"{f.source}:{f.path.name} ({f.view})" for f in wrong)},
            "fitted_wrong": int(((fitted >= 0.5) != y).sum()),
            "weight_decay": WEIGHT_DECAY}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
