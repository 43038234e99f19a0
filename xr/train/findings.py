"""Train and evaluate the finding head: `python -m xr train-findings` / `python -m xr eval-findings`.

Data: one or more folders in the NIH ChestX-ray14 layout (labels.csv + images/), labels mapped onto our
finding vocabulary, plus IU X-ray train-split images whose reports give labels, when present. The validation
part is patient-disjoint (chosen by a hash of the patient id, so it is the same on every run and
machine). Class imbalance: positives are up-weighted by neg/pos in the loss, then each output's bias
is shifted back by log(neg/pos) so the probabilities stay calibrated to the true base rates.

The order of work keeps every figure honest: the weight decay is chosen by patient-grouped 5-fold
cross-validation inside the training part; the validation part is then measured once, by a head fit on
the training part; and only then is the shipped head refit on every film with that setting (a few
hundred films: a third more data is worth more than a held-out figure of the shipped weights, which the
independent held-out set gives). The head fit on the training part is kept in `holdout/`, so that the
validation figures can be measured again (`eval-findings --head .../holdout`, `eval-images --head ...`).

The statement policy (xr.thresholds) of the shipped head is chosen on every film's probability from a
head that never saw its patient: out of fold for the training part, the held-out head's for the
validation part. Those probabilities and labels are kept (`policy.safetensors`), so the cuts can be
checked against them (tests/test_policy.py).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from xr.data.films import LAYOUTS, LabelledFilm
from xr.data.iu_xray import load_iu
from xr.data.split import is_validation
from xr.encode.batch import encode_files
from xr.encode.finding_head import HOLDOUT, FindingHead, FindingHeadConfig, head_inputs
from xr.encode.vision import ImageFeatures, VisionEncoder
from xr.evaluate.classification import bootstrap_auc, expected_calibration_error, roc_auc
from xr.findings import FINDINGS, NIH_PREVALENCE
from xr.thresholds import Thresholds, choose_all
from xr.train.engine import fit_logistic, seed_everything

MIN_POSITIVES = 5  # fewer training positives than this: the output is not trained, not guessed
WEIGHT_DECAYS = (0.03, 0.1, 0.3, 1.0)  # L2 on the weights per training film; chosen by cross-validation


POLICY_DATA = "policy.safetensors"  # the out-of-fold probabilities and labels the statement policy was chosen on


def examples(nih_roots: Path | list[Path], iu_root: Path | None = None) -> list[LabelledFilm]:
    """Films of one or more NIH-layout folders (a patient in two folders is one group), then IU's."""
    roots = nih_roots if isinstance(nih_roots, list) else [nih_roots]
    out = [f for root in roots for f in LAYOUTS["nih"].read(root)]
    if iu_root is not None and (iu_root / "annotation.json").exists():
        for c in load_iu(iu_root, "train"):
            out += [LabelledFilm(p, f"iu:{c.id}", None, c.labels, "", "iu") for p in c.image_paths if c.labels]
    return out


def label_matrix(exs: list[LabelledFilm], findings: list[str]) -> np.ndarray:
    return np.array([[f in e.labels for f in findings] for e in exs], dtype=np.float32).reshape(len(exs), len(findings))


def fit(x: np.ndarray, y: np.ndarray, findings: list[str], weight_decay: float, seed: int = 0,
        steps: int = 200, groups: list[int] | None = None) -> FindingHead:
    """Full-batch L-BFGS on the weighted logistic loss: deterministic, and converged in seconds.
    `groups`: other feature groups than the shipped head's (each scaled 1)."""
    seed_everything(seed)
    config = FindingHeadConfig(findings=findings)
    if groups is not None:
        config.groups, config.group_scales = groups, [1.0] * len(groups)
    head = FindingHead(config)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    head.mean.copy_(torch.nanmean(xt, 0))
    centred = torch.nan_to_num(xt - head.mean)
    head.std.copy_(centred.pow(2).mean(0).sqrt().clamp_min(1e-6))
    torch.nn.init.zeros_(head.linear.weight)
    torch.nn.init.zeros_(head.linear.bias)
    fit_logistic(head.linear, head.standardise(xt), yt, weight_decay, steps)
    pos = yt.sum(0).clamp_min(1)
    with torch.no_grad():
        head.linear.bias.sub_(torch.log((len(yt) - pos) / pos))  # undo the up-weighting: calibrated to base rates
    return head.eval()


def macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    aucs = [a for a in (roc_auc(y[:, j], p[:, j]) for j in range(y.shape[1])) if a is not None]
    return float(np.mean(aucs)) if aucs else 0.0


def out_of_fold(x: np.ndarray, y: np.ndarray, findings: list[str], groups: list[str], weight_decay: float,
                folds: int = 5) -> np.ndarray:
    """Each film's probabilities from a head that never saw its patient (folds by a hash of the group)."""
    fold_of = np.array([int(hashlib.sha256(g.encode()).hexdigest()[8:16], 16) % folds for g in groups])
    p = np.zeros_like(y)
    for k in range(folds):
        tr, te = fold_of != k, fold_of == k
        with torch.no_grad():
            p[te] = torch.sigmoid(fit(x[tr], y[tr], findings, weight_decay)(torch.from_numpy(x[te]))).numpy()
    return p


def trained_findings(films: list[LabelledFilm]) -> list[str]:
    """The findings with enough positives among `films` to train an output for."""
    y = label_matrix(films, list(FINDINGS))
    return [f for j, f in enumerate(FINDINGS) if y[:, j].sum() >= MIN_POSITIVES]


def weight_decay_by_cv(x: np.ndarray, y: np.ndarray, findings: list[str],
                       groups: list[str]) -> tuple[float, dict[float, np.ndarray]]:
    """The weight decay of the best 5-fold grouped cross-validated macro AUC, and each one's out-of-fold
    probabilities (the statement policy is chosen on the best's)."""
    oof = {wd: out_of_fold(x, y, findings, groups, wd) for wd in WEIGHT_DECAYS}
    return max(oof, key=lambda wd: macro_auc(y, oof[wd])), oof


def per_finding(y: np.ndarray, p: np.ndarray, findings: list[str]) -> dict[str, dict]:
    """AUC with its bootstrap 95 % interval, ECE and the positives behind them, per finding."""
    rows = {}
    for j, f in enumerate(findings):
        ci = bootstrap_auc(y[:, j], p[:, j])
        rows[f] = {"auc": roc_auc(y[:, j], p[:, j]), "ci95": ci, "ece": expected_calibration_error(y[:, j], p[:, j]),
                   "positives": int(y[:, j].sum())}
    return rows


def policy(findings: list[str], y: np.ndarray, p: np.ndarray, chosen_on: str) -> Thresholds:
    """The statement policy from probabilities no head fit on their films (xr.thresholds.choose_all), its
    floors held at the films' prevalence and at the whole NIH sheet's."""
    cis = {f: bootstrap_auc(y[:, j], p[:, j], resamples=200) for j, f in enumerate(findings)}
    return choose_all(findings, y, p, cis, chosen_on + "; floors held at these films' prevalence and at the whole "
                      "ChestX-ray14 sheet's", NIH_PREVALENCE)


def train(nih_roots: list[Path], iu_root: Path | None, out: Path, encoder: VisionEncoder,
          progress: Callable[[str], None] = print) -> dict:
    exs = examples(nih_roots, iu_root)
    feats = encode_files(encoder, [e.path for e in exs], progress=progress)
    x_all = head_inputs(feats)
    held = np.array([is_validation(e.group) for e in exs])
    train_exs = [e for e, h in zip(exs, held, strict=True) if not h]
    val_exs = [e for e, h in zip(exs, held, strict=True) if h]
    findings = trained_findings(train_exs)
    x, y = x_all[~held], label_matrix(train_exs, findings)
    best, oof = weight_decay_by_cv(x, y, findings, [e.group for e in train_exs])
    cv = {wd: macro_auc(y, p) for wd, p in oof.items()}
    progress(f"weight decay {best} (5-fold CV macro AUC {cv[best]:.3f}; all: {cv})")
    held_out = fit(x, y, findings, best)  # measured once on the validation part, then refit on everything
    y_val = label_matrix(val_exs, findings)
    with torch.no_grad():
        p_val = torch.sigmoid(held_out(torch.from_numpy(x_all[held]))).numpy()
    held_out.save_pretrained(out / HOLDOUT)
    policy(findings, y, oof[best], f"out-of-fold probabilities of the {len(train_exs)}-film training part (5-fold, "
                                   f"patient-grouped)").save(out / HOLDOUT)
    p_unseen = np.zeros((len(exs), len(findings)), dtype=np.float32)  # each film's from a head that never saw its patient
    p_unseen[~held], p_unseen[held] = oof[best], p_val
    y_all = label_matrix(exs, findings)
    thresholds = policy(findings, y_all, p_unseen,
                        f"{len(exs)} films, each with the probability of a head that never saw its patient (5-fold "
                        f"patient-grouped out-of-fold for the {len(train_exs)}-film training part, the held-out "
                        f"head's for the {len(val_exs)}-film validation part)")
    head = fit(x_all, y_all, findings, best)
    head.save_pretrained(out)
    thresholds.save(out)
    save_file({"labels": y_all.astype(np.uint8), "probabilities": p_unseen}, str(out / POLICY_DATA))
    info = {"trained_on": f"{len(exs)} images ({sum(e.source == 'iu' for e in exs)} IU X-ray train, the rest NIH "
                          f"ChestX-ray14 from {', '.join(r.name for r in nih_roots)}): weight decay chosen by 5-fold patient-grouped "
                          f"cross-validation on the {len(train_exs)}-film training part, validation part "
                          f"({len(val_exs)} films) measured once by a head fit on the training part, then the shipped "
                          f"head refit on all films",
            "includes_validation_part": True,
            "weight_decay": best, "cv_macro_auc": cv, "findings": findings,
            "cv": {"images": len(train_exs), "macro_auc": cv[best], "per_finding": per_finding(y, oof[best], findings)},
            "val": {"images": len(val_exs), "macro_auc": macro_auc(y_val, p_val), "per_finding": per_finding(y_val, p_val, findings)},
            "not_trained": [f for f in FINDINGS if f not in findings],
            "policy": {f: asdict(c) for f, c in thresholds.cuts.items()}}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def evaluate(head: FindingHead, feats: list[ImageFeatures], exs: list[LabelledFilm]) -> dict:
    p = head.probabilities(feats)
    y = label_matrix(exs, head.config.findings)
    rows = per_finding(y, p, head.config.findings)
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


def auc_table(rows: dict[str, dict], macro: float) -> list[str]:
    lines = ["| finding | AUC | 95 % interval | ECE | positives |", "|---|---:|---:|---:|---:|"]
    for f, r in rows.items():
        auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f}"
        ci = "n/a" if r["ci95"] is None else f"{r['ci95'][0]:.2f}–{r['ci95'][1]:.2f}"
        lines.append(f"| {f} | {auc} | {ci} | {r['ece']:.3f} | {r['positives']} |")
    return lines + [f"| **macro** | **{macro:.3f}** | | | |"]


def format_markdown(result: dict) -> str:
    lines = [f"NIH-layout folder `{result['data']}`, part `{result['split']}` (patient-disjoint from training): "
             f"{result['images']} images.", "", *auc_table(result["per_finding"], result["macro_auc"]),
             f"ECE over all outputs {result['ece']:.3f}."]
    c = result["ctr_vs_cardiomegaly"]
    if c["auc"] is not None:
        lines += ["", f"Cardiothoracic ratio estimate vs the Cardiomegaly label: AUC {c['auc']:.3f} on {c['measured']} "
                      f"images with a measurable mask ({c['positives']} positives); median CTR "
                      f"{c['median_ctr_positive']:.2f} with cardiomegaly, {c['median_ctr_negative']:.2f} without."]
    return "\n".join(lines) + "\n"
