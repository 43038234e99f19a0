"""Train and evaluate the finding head: `python -m xr train-findings` / `python -m xr eval-findings`.

Data: a folder in the NIH ChestX-ray14 layout (labels.csv + images/), labels mapped onto our finding
vocabulary, plus IU X-ray train-split images whose reports give labels, when present. The validation
part is patient-disjoint (chosen by a hash of the patient id, so it is the same on every run and
machine). Class imbalance: positives are up-weighted by neg/pos in the loss, then each output's bias
is shifted back by log(neg/pos) so the probabilities stay calibrated to the true base rates.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xr.data.iu_xray import load_iu
from xr.data.nih import load_nih
from xr.encode.batch import encode_files
from xr.encode.finding_head import FindingHead, FindingHeadConfig, head_inputs
from xr.encode.vision import ImageFeatures, VisionEncoder
from xr.evaluate.classification import expected_calibration_error, roc_auc
from xr.findings import FINDINGS
from xr.train.engine import seed_everything

MIN_POSITIVES = 5  # fewer training positives than this: the output is not trained, not guessed
WEIGHT_DECAYS = (0.3, 1.0, 3.0)


@dataclass(frozen=True)
class Example:
    path: Path
    group: str  # patient (NIH) or study (IU): the unit kept on one side of the split
    labels: tuple[str, ...]
    source: str


def is_validation(group: str, fraction: float = 0.3) -> bool:
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def examples(nih_root: Path, iu_root: Path | None = None) -> list[Example]:
    out = [Example(n.path, f"nih:{n.patient_id}", tuple(n.labels), "nih") for n in load_nih(nih_root)]
    if iu_root is not None and (iu_root / "annotation.json").exists():
        for c in load_iu(iu_root, "train"):
            out += [Example(p, f"iu:{c.id}", c.labels, "iu") for p in c.image_paths if c.labels]
    return out


def label_matrix(exs: list[Example], findings: list[str]) -> np.ndarray:
    return np.array([[f in e.labels for f in findings] for e in exs], dtype=np.float32).reshape(len(exs), len(findings))


def fit(x: np.ndarray, y: np.ndarray, findings: list[str], weight_decay: float, seed: int = 0,
        steps: int = 300) -> FindingHead:
    seed_everything(seed)
    head = FindingHead(FindingHeadConfig(findings=findings, input_dim=x.shape[1]))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    head.mean.copy_(xt.mean(0))
    head.std.copy_(xt.std(0).clamp_min(1e-6))
    pos = yt.sum(0).clamp_min(1)
    pos_weight = (len(yt) - pos) / pos
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(head(xt), yt).backward()
        opt.step()
    with torch.no_grad():
        head.linear.bias.sub_(torch.log(pos_weight))  # undo the up-weighting: calibrated to base rates
    return head.eval()


def macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    aucs = [a for a in (roc_auc(y[:, j], p[:, j]) for j in range(y.shape[1])) if a is not None]
    return float(np.mean(aucs)) if aucs else 0.0


def choose_weight_decay(x: np.ndarray, y: np.ndarray, findings: list[str], groups: list[str], folds: int = 5) -> dict[float, float]:
    fold_of = np.array([int(hashlib.sha256(g.encode()).hexdigest()[8:16], 16) % folds for g in groups])
    scores: dict[float, float] = {}
    for wd in WEIGHT_DECAYS:
        p = np.zeros_like(y)
        for k in range(folds):
            tr, te = fold_of != k, fold_of == k
            p[te] = torch.sigmoid(fit(x[tr], y[tr], findings, wd)(torch.from_numpy(x[te]))).detach().numpy()
        scores[wd] = macro_auc(y, p)
    return scores


def train(nih_root: Path, iu_root: Path | None, out: Path, encoder: VisionEncoder,
          progress: Callable[[str], None] = print) -> dict:
    exs = examples(nih_root, iu_root)
    train_exs = [e for e in exs if not is_validation(e.group)]
    feats = encode_files(encoder, [e.path for e in train_exs], progress=progress)
    y_all = label_matrix(train_exs, list(FINDINGS))
    findings = [f for j, f in enumerate(FINDINGS) if y_all[:, j].sum() >= MIN_POSITIVES]
    x, y = head_inputs(feats), label_matrix(train_exs, findings)
    cv = choose_weight_decay(x, y, findings, [e.group for e in train_exs])
    best = max(cv, key=cv.__getitem__)
    progress(f"weight decay {best} (5-fold CV macro AUC {cv[best]:.3f}; all: {cv})")
    head = fit(x, y, findings, best)
    head.save_pretrained(out)
    info = {"trained_on": f"{len(train_exs)} images ({sum(e.source == 'iu' for e in train_exs)} IU X-ray train, "
                          f"the rest NIH ChestX-ray14 sample), validation part held out by patient",
            "weight_decay": best, "cv_macro_auc": cv, "findings": findings,
            "not_trained": [f for f in FINDINGS if f not in findings]}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def evaluate(head: FindingHead, feats: list[ImageFeatures], exs: list[Example]) -> dict:
    p = head.probabilities(feats)
    y = label_matrix(exs, head.config.findings)
    rows = {}
    for j, f in enumerate(head.config.findings):
        rows[f] = {"auc": roc_auc(y[:, j], p[:, j]), "ece": expected_calibration_error(y[:, j], p[:, j]),
                   "positives": int(y[:, j].sum())}
    ctr = np.array([m.ctr if m.ctr is not None else np.nan for m in (f.measurements() for f in feats)])
    cardio = label_matrix(exs, ["Cardiomegaly"])[:, 0]
    ok = ~np.isnan(ctr)
    return {
        "images": len(exs),
        "per_finding": rows,
        "macro_auc": macro_auc(y, p),
        "ece": expected_calibration_error(y.ravel(), p.ravel()),
        "ctr_vs_cardiomegaly": {"auc": roc_auc(cardio[ok], ctr[ok]), "measured": int(ok.sum()),
                                "positives": int(cardio[ok].sum()),
                                "median_ctr_positive": float(np.median(ctr[ok][cardio[ok] == 1])) if cardio[ok].any() else None,
                                "median_ctr_negative": float(np.median(ctr[ok][cardio[ok] == 0])) if (cardio[ok] == 0).any() else None},
    }


def evaluate_folder(root: Path, head: FindingHead, encoder: VisionEncoder, split: str,
                    progress: Callable[[str], None] = print) -> dict:
    exs = [e for e in examples(root) if split == "all" or is_validation(e.group) == (split == "val")]
    feats = encode_files(encoder, [e.path for e in exs], progress=progress)
    return {"data": str(root.name), "split": split, **evaluate(head, feats, exs)}


def format_markdown(result: dict) -> str:
    lines = [f"NIH-layout folder `{result['data']}`, part `{result['split']}` (patient-disjoint from training): "
             f"{result['images']} images.", "", "| finding | AUC | ECE | positives |", "|---|---:|---:|---:|"]
    for f, r in result["per_finding"].items():
        auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f}"
        lines.append(f"| {f} | {auc} | {r['ece']:.3f} | {r['positives']} |")
    lines.append(f"| **macro** | **{result['macro_auc']:.3f}** | {result['ece']:.3f} (all outputs) | |")
    c = result["ctr_vs_cardiomegaly"]
    if c["auc"] is not None:
        lines += ["", f"Cardiothoracic ratio estimate vs the Cardiomegaly label: AUC {c['auc']:.3f} on {c['measured']} "
                      f"images with a measurable mask ({c['positives']} positives); median CTR "
                      f"{c['median_ctr_positive']:.2f} with cardiomegaly, {c['median_ctr_negative']:.2f} without."]
    return "\n".join(lines) + "\n"
