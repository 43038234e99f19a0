"""`python -m xr eval-generation`: generated films against held-out real ones, each figure beside what
it should be read against.

- **Distribution** (report -> frontal, one film per held-out frontal, from its report): Frechet distance
  and KID in two feature spaces, ImageNet Xception (pooled exit flow) and our chest encoder (the eye's
  lung-pooled features, fitted on the same NIH training films as the generator: flagged), against the
  real-vs-real floor (as many training films) and a degraded baseline (those films blurred), all at the
  same n, with bootstrap intervals; precision and recall of the generated set. The held-out films passed
  through the autoencoder are the best the decoder can give back: the generator's ceiling.
- **Memorisation**: each generated film's distance to its nearest training film against each held-out
  real film's distance to its nearest training film (Xception features).
- **Finding consistency**: for each finding the eye writes, films generated for it against films
  generated for the normal report, scored by the eye (AUC with its interval).
- **Frontal -> lateral (and back)** on held-out patients with both views: the generated film's distance
  to the true one against the mean training film of that view.

Every film is scored as the generator makes it, at its size, before the "synthetic" mark is burned in.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.transforms import GaussianSmooth
from tqdm import tqdm

from xr.config import ASSETS
from xr.decode.wording import Wording
from xr.encode.finding_head import HOLDOUT, FindingHead
from xr.encode.view_head import view_of
from xr.encode.vision import VisionEncoder, batch, xception_transform
from xr.encode.xception import grey_to_input
from xr.evaluate.classification import bootstrap_auc, roc_auc
from xr.evaluate.generation import (
    bootstrap_interval,
    frechet_distance,
    kernel_inception_distance,
    memorisation,
    nearest_distances,
    precision_recall,
)
from xr.generate.anytoany import FilmMaker, report_for, through_frontal
from xr.generate.filmset import FilmSet
from xr.generate.model import GUIDANCE, Condition, FilmGenerator, FindingGuide
from xr.generate.synthetic import watermark
from xr.thresholds import Cut
from xr.views import FRONTAL, LATERAL, VIEWS

BLUR_SIGMA = 2.0  # pixels at the generator's size: the degraded baseline


def _uint8(films: torch.Tensor) -> list[np.ndarray]:
    return [np.round(f[0].numpy() * 255).astype(np.uint8) for f in films]


class Features:
    """The two feature spaces, and the eye for finding consistency."""

    def __init__(self) -> None:
        self.vision = VisionEncoder.for_models()
        self.xception = self.vision.xception
        self.eye = FindingHead.from_pretrained(ASSETS / "finding_head")
        # the head train-findings fit without the held-out patients (the same split as the films'): the shipped
        # eye was refit on every NIH film here, held-out ones too, so only this one reads them unseen
        self.unseen_eye = FindingHead.from_pretrained(ASSETS / "finding_head" / HOLDOUT)

    @torch.inference_mode()
    def imagenet(self, films: list[np.ndarray]) -> np.ndarray:
        out = [self.xception(grey_to_input(torch.from_numpy(batch(xception_transform(), films[s:s + 16])))).numpy()
               for s in range(0, len(films), 16)]
        return np.concatenate(out)

    def chest(self, films: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lung-pooled features, the eye's probabilities, the unseen eye's) of each film."""
        feats = [f for s in range(0, len(films), 16) for f in self.vision.encode(films[s:s + 16])]
        return np.stack([f.pooled for f in feats]), self.eye.read(films, feats), self.unseen_eye.read(films, feats)


def _sample(model: FilmGenerator, cond: Condition, seed: int, steps: int, guidance: float, guide: FindingGuide | None,
            size: int = 16, through: bool = False) -> list[np.ndarray]:
    """Films for `cond` in batches of `size`; `through`: laterals made through their frontals, as the
    product makes a lateral from a report (`through_frontal`)."""
    out: list[np.ndarray] = []
    n = cond.view.shape[0]
    for s in tqdm(range(0, n, size), desc="generating", unit="batch", file=sys.stderr, leave=False):
        part, generator = cond.rows(s, s + size), torch.Generator().manual_seed(seed + s)
        out += _uint8(through_frontal(model, part, generator, steps, guidance, guide)[1] if through else
                      model.sample(part, generator, steps=steps, guidance=guidance, guide=guide))
    return out


def _rows(model: FilmGenerator, data: FilmSet, idx: list[int], view: str, report: bool,
          latents: torch.Tensor | None = None, own: bool = False) -> Condition:
    """Conditions for films of `view` made for the films `idx`: from their reports and/or (with `latents`)
    their other views (`own`: `latents` are the films' own, row for row, not their partners')."""
    c = model.config
    if latents is None:
        other = torch.zeros(len(idx), c.latent_channels, c.latent_size, c.latent_size)
    else:
        other = latents if own else torch.stack([latents[data.partner[i]] for i in idx])
    return Condition(torch.full((len(idx),), VIEWS.index(view)), data.report[idx], data.findings[idx], other,
                     torch.full((len(idx),), report), torch.full((len(idx),), latents is not None))


def _set_scores(real: np.ndarray, fake: np.ndarray, resamples: int) -> dict:
    kid, kid_sd = kernel_inception_distance(real, fake, subset_size=max(2, min(len(real), len(fake)) // 2))
    return {"fd": frechet_distance(real, fake), "fd_interval": bootstrap_interval(frechet_distance, real, fake, resamples),
            "kid": kid, "kid_sd": kid_sd}


def evaluate_generation(model: FilmGenerator, data: FilmSet, wording: Wording, seed: int = 0, steps: int = 30,
                        guidance: float = GUIDANCE, guide: FindingGuide | None = None, per_finding: int = 16,
                        resamples: int = 200, figures: Path | None = None, laterals: bool = True,
                        log: Callable[[str], None] = print) -> dict:
    """`per_finding`: films generated for each finding the eye writes, and for the normal report. With
    `figures`, a folder: laterals.png and findings.png there. Without `laterals`, the frontal side alone:
    the lateral side samples twice as many films again, so on a CPU the two can be run one after the
    other (`evaluate_laterals`, `eval-generation --frontals` then `--laterals`)."""
    model = model.eval()
    feats = Features()
    rng = np.random.default_rng(seed)
    held = np.flatnonzero(data.held_out)
    train = np.flatnonzero(~data.held_out)
    frontal = data.view.numpy() == VIEWS.index(FRONTAL)
    held_f, train_f = [int(i) for i in held if frontal[i]], [int(i) for i in train if frontal[i]]
    if len(held_f) < 2:
        from xr.errors import UserError
        raise UserError(f"{len(held_f)} held-out frontal films: too few to measure")
    n = len(held_f)
    log(f"report -> frontal: {n} held-out frontal films, {n} generated from their reports, {n} training films as the floor")
    generated = _sample(model, _rows(model, data, held_f, FRONTAL, True), seed, steps, guidance, guide)
    real = [data.films[i, 0].numpy() for i in held_f]
    floor_idx = [int(i) for i in rng.choice(train_f, size=min(n, len(train_f)), replace=False)]
    floor = [data.films[i, 0].numpy() for i in floor_idx]
    blur = GaussianSmooth(sigma=BLUR_SIGMA)
    blurred = [np.round(np.asarray(blur(f[None].astype(np.float32)))[0]).astype(np.uint8) for f in floor]
    with torch.inference_mode():  # what the decoder can give back at best: the held-out films through it
        ceiling = [f for s in range(0, n, 64) for f in _uint8(model.decode(model.encode(data.pixels(held_f[s:s + 64]))))]
    sets = {"generated": generated, "real (training films)": floor, "blurred real": blurred,
            "held-out films through the autoencoder": ceiling}
    spaces: dict[str, dict] = {}
    imagenet = {k: feats.imagenet(v) for k, v in {"held-out": real, **sets}.items()}
    chest_out = {k: feats.chest(v) for k, v in {"held-out": real, **sets}.items()}
    chest = {k: v[0] for k, v in chest_out.items()}
    for space, x in (("ImageNet Xception", imagenet), ("chest encoder (fitted on the training films)", chest)):
        spaces[space] = {k: _set_scores(x["held-out"], x[k], resamples) for k in sets}
    k = min(3, n - 1)  # neighbours of the manifold balls: 3, fewer for a handful of films
    precision, recall = precision_recall(imagenet["held-out"], imagenet["generated"], k=k)

    train_films = [data.films[i, 0].numpy() for i in train_f]
    train_feats = feats.imagenet(train_films)
    memo = memorisation(nearest_distances(imagenet["generated"], train_feats),
                        nearest_distances(imagenet["held-out"], train_feats))

    made_for: dict[str, list[np.ndarray]] = {}
    consistency = finding_consistency(model, feats, wording, per_finding, seed + 1000, steps, guidance, guide, made_for)
    _judge_on_real_films(consistency, model, data, held_f, chest_out["held-out"][2], feats)
    if figures is not None:
        plot_findings(figures, {f or "normal report": v[0] for f, v in made_for.items()}, model.config.version)
    return {"films": {"held_out_frontal": n, "train_frontal": len(train_f)},
            "decoding": {"steps": steps, "guidance": guidance, "seed": seed, "sampler": "DDIM",
                         "guide_scale": guide.config.scale if guide is not None else 0.0},
            "distribution": spaces, "precision_recall": {"precision": precision, "recall": recall, "k": k}, "memorisation": memo,
            "finding_consistency": consistency, "model": model.config.version, "size": model.config.size,
            **(evaluate_laterals(model, data, seed, steps, guidance, guide, figures, feats) if laterals else {})}


def evaluate_laterals(model: FilmGenerator, data: FilmSet, seed: int = 0, steps: int = 30, guidance: float = GUIDANCE,
                      guide: FindingGuide | None = None, figures: Path | None = None, feats: Features | None = None) -> dict:
    """The lateral side of eval-generation alone: the view rule on laterals made for the held-out
    frontals, and each held-out patient's one view made from the other (with `figures`: laterals.png).
    `eval-generation --laterals` runs it by itself where only the way laterals are made changed: the
    frontals, made by the same weights, seeds and decoding, would come out the same."""
    feats = feats or Features()
    held_f = [int(i) for i in np.flatnonzero(data.held_out) if data.view[i] == VIEWS.index(FRONTAL)]
    shown: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pairs = _view_pairs(model, data, feats, seed, steps, guidance, guide, shown)
    if figures is not None:
        plot_laterals(figures, shown, model.config.version)
    return {"laterals_read_as_lateral": _laterals_read(model, data, held_f, feats, seed, steps, guidance, guide),
            "view_pairs": pairs}


GUIDE_SCALES = (0.0, 2.0, 8.0)  # the finding guide's candidates, set before any run
CHOICE_SEED, CHOICE_PER_FINDING = 7, 12  # eval-generation's seeds start at 0 (films from reports) and 1000 (findings)


def choose_guide_scale(model: FilmGenerator, guide: FindingGuide, data: FilmSet, val_frontal: list[int], wording: Wording,
                       log: Callable[[str], None] = print, scales: tuple[float, ...] = GUIDE_SCALES,
                       steps: int = 30) -> tuple[float, list[dict]]:
    """The finding guide's scale, on validation patients and films made for ticked findings, never on the
    held-out films: the scale whose films for each finding the eye tells best from films for the normal
    report (mean AUC), among those whose frontals made from the validation patients' reports stay within
    10 % of the unguided films' Xception FD from those patients' real frontals (a guide that draws the
    finding by wrecking the film is no use to an educator). Returns the scale and every candidate's
    figures."""
    feats = Features()
    real = feats.imagenet([data.films[i, 0].numpy() for i in val_frontal])
    rows: list[dict] = []
    for scale in scales:
        guide.config.scale = scale
        consistency = finding_consistency(model, feats, wording, CHOICE_PER_FINDING, CHOICE_SEED, steps, GUIDANCE, guide)
        made = _sample(model, _rows(model, data, val_frontal, FRONTAL, True), CHOICE_SEED, steps, GUIDANCE, guide)
        row = {"scale": scale, "mean_auc": float(np.mean([c["auc"] for c in consistency.values()])),
               "fd": frechet_distance(real, feats.imagenet(made)), "auc": {f: c["auc"] for f, c in consistency.items()}}
        log(f"finding guide {scale:g}: mean AUC {row['mean_auc']:.3f}, validation FD {row['fd']:.1f}")
        rows.append(row)
    fit = [r for r in rows if r["fd"] <= 1.1 * rows[0]["fd"]]
    return max(fit, key=lambda r: r["mean_auc"])["scale"], rows


def finding_consistency(model: FilmGenerator, feats: Features, wording: Wording, per_finding: int, seed: int,
                        steps: int, guidance: float, guide: FindingGuide | None,
                        films: dict[str, list[np.ndarray]] | None = None) -> dict:
    """For each finding the eye reads, films generated for it against films for the normal report ("" in
    `films`, which keeps every film made): the eye's AUC."""
    maker = FilmMaker(model, wording)
    # the findings the eye reads: its statement policy says anything at all of them (its AUC interval excludes chance)
    seen = [f for f in feats.eye.findings if f in model.config.findings and feats.eye.thresholds.cuts.get(f, Cut()) != Cut()]
    films = {} if films is None else films
    for f in ["", *seen]:
        cond = maker.condition([FRONTAL] * per_finding, report_for([f] if f else [], wording), {})
        films[f] = _sample(model, cond, seed, steps, guidance, guide)
    read = {f: feats.chest(v)[1] for f, v in films.items()}  # the eye's probabilities of every film
    out = {}
    for f in seen:
        j = feats.eye.findings.index(f)
        p = np.concatenate([read[f][:, j], read[""][:, j]])
        y = np.r_[np.ones(per_finding, bool), np.zeros(per_finding, bool)]
        out[f] = {"auc": roc_auc(y, p), "interval": bootstrap_auc(y, p, resamples=200), "films": per_finding}
    return out


def _judge_on_real_films(consistency: dict, model: FilmGenerator, data: FilmSet, held: list[int], probs: np.ndarray,
                         feats: Features) -> None:
    """The judge's own reach at the generator's size: on the real held-out films (at that size), the AUC of the
    eye fit without them, films with the finding against those with none. Where it cannot tell them apart
    either, films generated for a finding cannot be shown to carry it, whatever the generator does."""
    labels = data.findings[held].numpy() > 0.5
    normal = ~labels.any(1)
    for f, c in consistency.items():
        pos = labels[:, model.config.findings.index(f)]
        keep = pos | normal
        y, p = pos[keep], probs[keep, feats.unseen_eye.findings.index(f)]
        enough = pos.sum() >= 2 and normal.sum() >= 2
        c["real"] = {"auc": roc_auc(y, p) if enough else None,
                     "interval": bootstrap_auc(y, p, resamples=200) if enough else None,
                     "with": int(pos.sum()), "normal": int(normal.sum())}


def _laterals_read(model: FilmGenerator, data: FilmSet, held_f: list[int], feats: Features, seed: int, steps: int,
                   guidance: float, guide: FindingGuide | None) -> dict:
    """How many generated laterals the product's view rule (the view head, for a film without a header)
    reads as lateral: made from each held-out frontal film's report (through the frontal made from it, as
    the product makes them), and from the frontal film itself."""
    with torch.inference_mode():
        latents = torch.cat([model.encode(data.pixels(held_f[s:s + 64])) for s in range(0, len(held_f), 64)])
    out = {}
    for source, cond, through in (("report", _rows(model, data, held_f, LATERAL, True), True),
                                  ("frontal", _rows(model, data, held_f, LATERAL, False, latents, own=True), False)):
        made = _sample(model, cond, seed + 3000, steps, guidance, guide, through=through)
        read = [view_of("unknown", f)[0] for s in range(0, len(made), 16) for f in feats.vision.encode(made[s:s + 16])]
        out[source] = {"films": len(made), "lateral": sum(v == LATERAL for v in read)}
    return out


def _view_pairs(model: FilmGenerator, data: FilmSet, feats: Features, seed: int, steps: int, guidance: float,
                guide: FindingGuide | None, shown: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """Each held-out patient's one view made from the other; distances in pixels (RMSE, 0..1) and in
    ImageNet features, against the mean training film of the target view. Adds (frontal, its real lateral,
    the lateral made from the frontal) of each patient to `shown`."""
    latents = data.latents(model)
    out: dict = {"pairs": 0}
    for target, source in ((LATERAL, FRONTAL), (FRONTAL, LATERAL)):
        v = VIEWS.index(target)
        idx = [int(i) for i in np.flatnonzero(data.held_out) if data.view[i] == v and data.partner[i] >= 0]
        train_v = [int(i) for i in np.flatnonzero(~data.held_out) if data.view[i] == v]
        if not idx or not train_v:
            continue
        made = _sample(model, _rows(model, data, idx, target, False, latents), seed + 2000, steps, guidance, guide)
        true = [data.films[i, 0].numpy() for i in idx]
        if target == LATERAL:
            shown += [(data.films[data.partner[i], 0].numpy(), t, m) for i, t, m in zip(idx, true, made, strict=True)]
        mean = np.round(data.pixels(train_v).mean(0)[0].numpy() * 255).astype(np.uint8)
        rmse = [float(np.sqrt(np.mean((m / 255 - t / 255) ** 2))) for m, t in zip(made, true, strict=True)]
        base = [float(np.sqrt(np.mean((mean / 255 - t / 255) ** 2))) for t in true]
        fm, ft, fb = feats.imagenet(made), feats.imagenet(true), feats.imagenet([mean])[0]
        fdist = np.linalg.norm(fm - ft, axis=1)
        bdist = np.linalg.norm(ft - fb, axis=1)
        out[f"{source} -> {target}"] = {
            "pairs": len(idx), "rmse": float(np.mean(rmse)), "mean_film_rmse": float(np.mean(base)),
            "closer_than_mean_film_pixels": int(sum(r < b for r, b in zip(rmse, base, strict=True))),
            "feature_distance": float(fdist.mean()), "mean_film_feature_distance": float(bdist.mean()),
            "closer_than_mean_film_features": int((fdist < bdist).sum())}
        out["pairs"] = max(out["pairs"], len(idx))
    return out


def plot_laterals(folder: Path, pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], model: str) -> None:
    """laterals.png: each held-out patient's frontal, its real lateral and the lateral made from the
    frontal, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    titles = ("held-out frontal (given)", "its real lateral", "lateral made from the frontal")
    fig, axes = plt.subplots(max(1, len(pairs)), 3, figsize=(7.5, 2.6 * max(1, len(pairs))), dpi=100, squeeze=False)
    for r, row in enumerate(pairs):
        for c, film in enumerate(row):
            axes[r, c].imshow(watermark(film) if c == 2 else film, cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_title(titles[c] if r == 0 else "", fontsize=9)
    _save(fig, f"{model}: SYNTHETIC laterals beside real ones (patients never trained on)", folder / "laterals.png")


def plot_findings(folder: Path, made_for: dict[str, np.ndarray], model: str) -> None:
    """findings.png: a frontal made for the normal report and for each finding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    cols = min(5, len(made_for))
    rows = -(-len(made_for) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), dpi=100, squeeze=False)
    for ax, (name, film) in zip(axes.flat, made_for.items(), strict=False):
        ax.imshow(watermark(film), cmap="gray", vmin=0, vmax=255)
        ax.set_title(name, fontsize=9)
    _save(fig, f"{model}: SYNTHETIC frontals made for ticked findings (one seed each)", folder / "findings.png")


def _save(fig, title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_markdown(r: dict) -> str:
    f = r["films"]
    d = r["decoding"]
    lines = [f"Model `{r['model']}`; DDIM {d['steps']} steps, guidance {d['guidance']}, finding guide {d['guide_scale']:g}, "
             f"seed {d['seed']}. "
             f"{r['size']}-px films. Report -> frontal on **{f['held_out_frontal']} held-out frontal films** (patients never trained on), "
             f"one generated from each film's report; floor: as many training films.", "",
             "| feature space | set vs held-out real | FD | FD 95 % interval (bootstrap) | KID ± sd (half-size subsets) |",
             "|---|---|---:|---:|---:|"]
    for space, rows in r["distribution"].items():
        for name, s in rows.items():
            lo, hi = s["fd_interval"]
            lines.append(f"| {space} | {name} | {s['fd']:.1f} | {lo:.1f}-{hi:.1f} | {s['kid']:.3g} ± {s['kid_sd']:.2g} |")
    pr, m = r["precision_recall"], r["memorisation"]
    lines += ["", f"Precision {pr['precision']:.2f}, recall {pr['recall']:.2f} (ImageNet Xception, k = {pr['k']}).", "",
              f"Memorisation (ImageNet Xception): median distance to the nearest training film, generated "
              f"{m['generated_median']:.1f} vs held-out real {m['heldout_median']:.1f}; generated films closer to a "
              f"training film than any held-out real film is: {m['closer_than_any_heldout']}.", "",
              "| finding (films generated for it vs for the normal report) | eye AUC | 95 % interval | films each | "
              f"real held-out films ({r['size']} px), with it vs none: AUC of the eye fit without them | 95 % interval | "
              "films (with / none) |",
              "|---|---:|---:|---:|---:|---:|---:|"]

    def interval(ci) -> str:
        return "-" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}"
    for name, c in r["finding_consistency"].items():
        real = c.get("real") or {}
        auc = "-" if real.get("auc") is None else f"{real['auc']:.2f}"
        lines.append(f"| {name} | {c['auc']:.2f} | {interval(c['interval'])} | {c['films']} | {auc} | "
                     f"{interval(real.get('interval'))} | {real.get('with', '-')} / {real.get('normal', '-')} |")
    if "laterals_read_as_lateral" not in r:
        return "\n".join([*lines, "", "Laterals: not measured yet for this model (`python -m xr eval-generation --laterals`)."]) + "\n"
    lat = r["laterals_read_as_lateral"]
    measured = f" (measured {r['laterals_measured']})" if r.get("laterals_measured") else ""
    lines += ["", f"Generated laterals read as lateral by the view rule (the view head){measured}: "
              + "; ".join(f"from the held-out frontals' {k}s {v['lateral']}/{v['films']}" for k, v in lat.items()) + "."]
    lines += ["", "| task (held-out patients) | pairs | RMSE | mean-film RMSE | closer (pixels) | feature dist. | "
                  "mean-film feature dist. | closer (features) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for task, p in r["view_pairs"].items():
        if task == "pairs":
            continue
        lines.append(f"| {task} | {p['pairs']} | {p['rmse']:.3f} | {p['mean_film_rmse']:.3f} | "
                     f"{p['closer_than_mean_film_pixels']}/{p['pairs']} | {p['feature_distance']:.1f} | "
                     f"{p['mean_film_feature_distance']:.1f} | {p['closer_than_mean_film_features']}/{p['pairs']} |")
    return "\n".join(lines) + "\n"
