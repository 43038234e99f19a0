"""Train and evaluate the DFFG generator on IU X-ray (R2Gen split). Entry points: `train(...)`,
`evaluate_modes(...)`.

Training data: the `train` split's FINDINGS (+ IMPRESSION) as targets, teacher forcing. Inputs per case,
each dropped at random (modality dropout) so the model works without any of them:
  indication (words + MiniLM embedding); finding prompt = the reference's labeler labels with noise, or
  the labels of the retrieved reports (what text mode gives at test time); k reports retrieved by the
  indication's MiniLM embedding from the other training cases (never the case itself); the views'
  regional features where the study has images (only 4 train studies here).
Films without reports (NIH ChestX-ray14) join with a label-matched pseudo-report (`Data.add_films`), so that
the visual pathway learns from about a thousand films; `fusion_figures` measures what its gates then do on
the films' patient-disjoint validation part.
Model selection: val CIDEr of greedy decoding in text mode after every epoch; early stopping.
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from xr.config import ASSETS, settings
from xr.data.case import Case
from xr.data.films import load_films
from xr.data.layouts import load_cases
from xr.data.pseudo_reports import match_reports
from xr.decode.beam import beam_search, greedy
from xr.decode.faithful import stance_prompt, write
from xr.decode.generation import GENERATION_CONFIG, GenerationConfig
from xr.decode.model import DFFGConfig, DFFGModel
from xr.decode.processing import Example, collate
from xr.decode.vocab import Vocabulary
from xr.decode.wording import FILE as WORDING
from xr.decode.wording import Wording
from xr.draft.dffg import DFFG_DIR, FEW_STUDIES, ReportMemory, studies_with_films
from xr.draft.prepare import Films, example, prepare
from xr.encode.cache import FeatureCache
from xr.encode.finding_head import HOLDOUT, FindingHead
from xr.encode.text import TextEmbedder
from xr.encode.vision import VisionEncoder, lung_share
from xr.errors import UserError
from xr.evaluate.clinical import clinical_scores
from xr.evaluate.fusion import gate_statistics
from xr.evaluate.images import SCORED, score_images
from xr.evaluate.labeler import POSITIVE, label_report
from xr.findings import FINDINGS
from xr.ingest import read_pixels
from xr.ingest.image import IngestedImage
from xr.ingest.study import read_image
from xr.normalize import informative, normalize
from xr.report import split_sections
from xr.thresholds import FILE as THRESHOLDS
from xr.thresholds import Stance, Thresholds
from xr.train.edits import EditsError, edit_lines
from xr.train.engine import accelerator, agree, seed_everything, shard

IU_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "iu_xray"
FILM_PROMPT = 0.5  # a film with a pseudo-report: how often its prompt is that report's labels (else none: the regions must say them)


def labels_vector(text: str) -> np.ndarray:
    lab = label_report(text)
    return np.array([lab.get(f) == POSITIVE for f in FINDINGS], dtype=np.float32)


def films_of(paths, encoder, eye) -> Films:
    """A training study's films as the drafter prepares a study's (xr.draft.prepare: the same views, features
    and eye reading)."""
    return prepare([IngestedImage(read_pixels(p), "png") for p in paths], encoder, eye)


def read_edits(path: Path, data_dir: Path) -> list[Case]:
    """The lines of an edits export as cases: FINDINGS / IMPRESSION of the target text (the approved
    report, or an annotator's correction), the indication, the stored images that still exist."""
    cases = []
    for n, item in edit_lines(path, ("target",)):
        try:
            paths = tuple(data_dir / im["path"] for im in item.get("images") or [])
        except (KeyError, TypeError):
            raise EditsError(f"{Path(path).name} line {n}: not an export-edits line (its images need 'path')") from None
        findings, impression = split_sections(item["target"])
        if not (findings or impression):
            raise EditsError(f"{Path(path).name} line {n}: the target text is empty")
        cases.append(Case(f"edit:{n}", "train", findings, impression, item.get("indication") or "",
                          tuple(p for p in paths if p.exists())))
    return cases


class Data:
    """Everything training and evaluation need, computed once: vocabulary, retrieval memory, the
    MiniLM embeddings of every indication, labels, neighbours, image features."""

    def __init__(self, root: Path = IU_ROOT, k: int = 3, log=print, split: str = "val") -> None:
        """`split`: the studies measured (`val`, or `test` where the folder has it), kept as `self.val`."""
        t = time.time()
        (self.dataset, self.train), self.split = load_cases(root, "train"), split
        self.val = load_cases(root, split)[1]
        if not self.val:
            raise UserError(f"{root}: no {split} studies")
        self.vocab = Vocabulary.build([c.findings + " " + c.impression for c in self.train],
                                      [c.indication for c in self.train], min_freq=3)
        emb = TextEmbedder()
        self.embedder = emb
        self.train_q = self._embed(emb, self.train)
        self.val_q = self._embed(emb, self.val)
        f_emb = emb([c.findings for c in self.train])
        centre = f_emb.mean(0)
        typical = np.argsort(-(f_emb @ centre))[:50]
        labels = np.stack([labels_vector(c.findings) for c in self.train])
        ind_emb = np.stack([q if q is not None else np.zeros(384, np.float32) for q in self.train_q])
        self.memory = ReportMemory([c.id for c in self.train], [c.findings for c in self.train],
                                   [c.impression for c in self.train], ind_emb, labels, typical)
        self.train_labels = labels
        self.val_labels = np.stack([labels_vector(c.findings) for c in self.val])
        self.k = k
        self.train_nb = [self.memory.by_text(q, 2 * k, exclude=i) for i, q in enumerate(self.train_q)]
        self.val_nb = [self.memory.by_text(q, k) for q in self.val_q]
        self.eye = FindingHead.from_pretrained(ASSETS / "finding_head")  # the drafter's eye, as shipped
        self.images: dict[str, Films] = {}
        self.pseudo: set[str] = set()  # the training cases that are films with a pseudo-report (add_films)
        self.pseudo_row: dict[str, int] = {}  # a film's pseudo-report: its row in the training reports
        self.film_val: list[Case] = []
        self.film_eye: FindingHead | None = None  # the eye that never saw film_val's patients
        with_images = [c for c in self.train + self.val if c.image_paths]
        if with_images:
            enc = VisionEncoder.for_models()
            self.images = {c.id: films_of(c.image_paths, enc, self.eye) for c in with_images}
        log(f"data ready in {time.time() - t:.0f}s: {len(self.train)} train, {len(self.val)} {split}, vocab {len(self.vocab)}, "
            f"{len(self.images)} studies with images")

    @classmethod
    def from_edits(cls, path: Path, base: Path, data_dir: Path, k: int = 3, log=print) -> Data:
        """Approved studies exported by `python -m xr export-edits` as training cases for fine-tuning the
        model in `base`: its vocabulary and retrieval memory, the approved text as the target, the stored
        images (under `data_dir`) as the views."""
        self = cls.__new__(cls)
        self.train, self.val = read_edits(path, data_dir), []
        self.dataset, self.split = "approved studies", "train"
        self.vocab, self.memory, self.k = Vocabulary.load(base / "vocab.json"), ReportMemory.load(base), k
        self.embedder = TextEmbedder()
        self.train_q = self._embed(self.embedder, self.train)
        self.train_labels = np.stack([labels_vector(c.findings) for c in self.train])
        self.train_nb = [self.memory.by_text(q, 2 * k) for q in self.train_q]
        self.images, self.pseudo, self.pseudo_row, self.film_val, self.film_eye = {}, set(), {}, [], None
        if any(c.image_paths for c in self.train):
            enc, eye = VisionEncoder.for_models(), FindingHead.from_pretrained(ASSETS / "finding_head")
            self.images = {c.id: films_of(c.image_paths, enc, eye) for c in self.train if c.image_paths}
        log(f"{len(self.train)} approved studies from {path.name}, {len(self.images)} with images")
        return self

    def add_films(self, nih_roots: list[Path], seed: int = 0, log=print) -> None:
        """Labelled films without reports (NIH-layout folders) as studies whose text is a label-matched
        pseudo-report from the training reports (xr.data.pseudo_reports; compared on the findings the NIH labels
        name). The training part (the eye's, by patient: xr.data.split) joins `train`; the validation part is kept
        in `film_val` for `fusion_figures`, its eye reading from the finding head fit without it (`holdout/`)."""
        films = [f for root in nih_roots for f in load_films(nih=root)]
        held = [f.held_out for f in films]
        if all(held) or not any(held):
            raise UserError(f"{len(films)} labelled films, {'all' if all(held) else 'none'} of them in the validation part: "
                            "the films must give both a training and a validation part (more patients)")
        cols = [FINDINGS.index(f) for f in SCORED]
        y = np.array([[f in film.labels for f in SCORED] for film in films], dtype=np.float32)
        rows = match_reports(y, self.memory.labels[:, cols], np.random.default_rng(seed))
        s = settings()
        enc = VisionEncoder.for_models(cache=FeatureCache(s.data_dir / "cache"), s=s)
        self.film_eye = FindingHead.from_pretrained(ASSETS / "finding_head" / HOLDOUT)
        added = []
        for film, row in tqdm(list(zip(films, rows, strict=True)), desc="films", unit="film", file=sys.stderr, disable=None):
            case = Case(f"nih:{film.path.name}", "val" if film.held_out else "train", self.memory.findings[row],
                        self.memory.impressions[row], "", (film.path,), film.labels)
            image = read_image(film.path.read_bytes(), film.path.name, s)
            prepared = prepare([image], enc, self.film_eye if film.held_out else self.eye)
            self.pseudo_row[case.id] = int(row)
            if film.held_out:
                self.film_val.append(case)
            else:
                prepared.pixels = []  # training reads the regions only
                self.train.append(case)
                self.train_q.append(None)
                self.train_nb.append(self.memory.by_text(None, 2 * self.k, exclude=int(row)))  # never its own words
                self.pseudo.add(case.id)
                added.append(int(row))
            self.images[case.id] = prepared
        self.train_labels = np.vstack([self.train_labels, self.memory.labels[added]])
        log(f"{len(added)} films with pseudo-reports in training, {len(self.film_val)} kept to measure the fusion on "
            f"({len(set(rows.tolist()))} distinct training reports)")

    @staticmethod
    def _embed(emb: TextEmbedder, cases) -> list:
        ok = [i for i, c in enumerate(cases) if informative(c.indication)]
        e = emb([cases[i].indication for i in ok])
        out = [None] * len(cases)
        for i, v in zip(ok, e, strict=False):
            out[i] = v
        return out

    # ---- examples ------------------------------------------------------------------------------
    def train_example(self, i: int, rng: random.Random, p_true: float = 0.5, p_retrieved: float = 0.35) -> Example:
        c = self.train[i]
        nb = self.train_nb[i]
        pick = sorted(rng.sample(range(len(nb)), self.k)) if rng.random() < 0.5 else list(range(self.k))
        rows = [nb[j] for j in pick]
        ex = Example(target=self.vocab.encode_target(c.findings, c.impression, 100))
        if self.train_q[i] is not None and rng.random() > 0.25:
            ex.indication, ex.indication_emb = c.indication, self.train_q[i]
        if c.id in self.pseudo:
            p_true, p_retrieved = FILM_PROMPT, 0.0
        r = rng.random()
        if r < p_true:
            y = self.train_labels[i]
            p = np.where(y > 0, np.random.uniform(0.65, 1.0, y.shape), np.random.uniform(0.0, 0.25, y.shape))
            flip = np.random.random(y.shape) < 0.03
            ex.prompt = np.where(flip, 1 - p, p).astype(np.float32)
        elif r < p_true + p_retrieved:
            ex.prompt = self.memory.prompt_from(rows)
        if rng.random() > 0.1:
            ex.retrieved = [self.memory.findings[r] for r, _ in rows if rng.random() > 0.15]
        if c.id in self.images:  # each film dropped at random (the eye's reading is not a training input)
            films = self.images[c.id]  # a pseudo-report's film is always kept: without it the text is another patient's
            keep = [j for j in range(len(films.views)) if c.id in self.pseudo or rng.random() > 0.3] \
                if c.id in self.pseudo or rng.random() > 0.2 else []
            ex.regions, ex.views = [films.features[j].regions for j in keep], [films.names[j] for j in keep]
        return ex

    def val_example(self, i: int, mode: str) -> Example:
        """mode: "text" (indication + retrieved reports, prompt from their labels), "oracle" (prompt =
        the reference's labels), "image" (text inputs + the study's views, and the eye's probabilities over
        the prompt for the findings it reads, as the drafter has them)."""
        c = self.val[i]
        rows = self.val_nb[i]
        prompt = self.val_labels[i] if mode == "oracle" else self.memory.prompt_from(rows)
        indication, q = (c.indication, self.val_q[i]) if self.val_q[i] is not None else ("", None)
        return example(self.images.get(c.id) if mode == "image" else None, prompt,
                       [self.memory.findings[r] for r, _ in rows], indication, q)


def cider(refs: dict[str, str], preds: dict[str, str]) -> float:
    from pycocoevalcap.cider.cider import Cider
    ids = sorted(refs)
    score, _ = Cider().compute_score({i: [normalize(refs[i])] for i in ids}, {i: [normalize(preds[i])] for i in ids})
    return float(score)


def generate(model: DFFGModel, data: Data, idx: list[int], mode: str, generation: GenerationConfig,
             batch: int = 64, writer: tuple[Wording, Thresholds] | None = None) -> dict[str, str]:
    """Findings text per evaluated study: batched greedy decoding when `generation.num_beams` is 1, else
    beam search one study at a time. With a `writer` (the wording and the retrieval prompt's thresholds), as
    the drafter does: the prompt becomes stances (the oracle's labels by 0.5), the generator writes from
    them and the faithful writer makes the text say exactly that; without, the generator's own text."""
    model.eval()
    allowed = data.vocab.output_mask()
    device = next(model.parameters()).device
    out = {}
    for s in tqdm(range(0, len(idx), batch), desc=f"drafting {data.split}, {mode} mode", unit="batch", file=sys.stderr,
                  leave=False, disable=None):  # a bar on a terminal, nothing in a log file
        chunk = idx[s:s + batch]
        exs = [data.val_example(i, mode) for i in chunk]
        stances = [as_drafted(ex, thresholds_for(mode, data, writer[1])) for ex in exs] if writer else []
        if generation.num_beams == 1:
            b = collate(exs, data.vocab, model.config).to(device)
            with torch.inference_mode():
                seqs = greedy(model, model.encode(b), allowed, generation)
        else:
            seqs = []
            for ex in exs:
                b = collate([ex], data.vocab, model.config).to(device)
                with torch.inference_mode():
                    seqs.append(beam_search(model, model.encode(b), allowed, generation))
        for k, (i, sq) in enumerate(zip(chunk, seqs, strict=False)):
            findings, impression = data.vocab.decode(sq)
            out[data.val[i].id] = write(findings, impression, stances[k], writer[0]).findings if writer else findings
    return out


FUSION_PROMPTS = ("none", "eye")  # the films alone; the eye's stances, as the drafter gives them
FUSION_ROWS = ("dynamic", "fixed", "text")


def film_example(data: Data, case: Case, prompt: str) -> Example:
    """A validation film as the drafter would give it to the generator, with the typical training reports as
    its retrieved reports (as in training, never its own pseudo-report; the case library's image neighbours
    are not part of this measurement), and either no finding prompt or the stances of the eye that never saw
    the film's patient."""
    assert data.film_eye is not None  # add_films has run
    films = data.images[case.id]
    rows = data.memory.by_text(None, data.k, exclude=data.pseudo_row[case.id])
    ex = example(films, np.zeros(len(FINDINGS), np.float32) if prompt == "eye" else None,
                 [data.memory.findings[r] for r, _ in rows], target=data.vocab.encode_target(case.findings, case.impression, 100))
    if prompt == "eye":
        as_drafted(ex, data.film_eye.thresholds)
    return ex


def fusion_figures(model: DFFGModel, data: Data, batch: int = 32) -> dict:
    """On the films' validation part (patients neither the generator nor the eye reading them was fit on):
    the generator's own findings text (greedy; without the faithful writer, which makes a draft say the eye's
    stances whatever the gates do) scored against the films' labels (xr.evaluate.images), with the fusion
    dynamic, fixed at 0.5 or text only, and the prompt empty or the eye's stances; the teacher-forced loss of
    the pseudo-reports (how much the film tells the words); the dynamic gates' statistics (xr.evaluate.fusion)
    against the lung mask and the eye's evidence map."""
    model.eval()
    cases, grid = data.film_val, model.config.grid
    truth = [c.labels for c in cases]
    read = [data.images[c.id].read for c in cases]
    allowed, generation = data.vocab.output_mask(), GenerationConfig().replace(num_beams=1)
    lungs, evidence = _lungs_and_evidence(data, cases)
    out: dict = {"films": len(cases), "decoding": "greedy", "rows": {}}
    for prompt in FUSION_PROMPTS:
        exs = [film_example(data, c, prompt) for c in cases]
        for mode in FUSION_ROWS:
            model.fusion.mode = mode
            texts, gates, losses = [], [], []
            for s in range(0, len(exs), batch):
                b = collate(exs[s:s + batch], data.vocab, model.config)
                with torch.inference_mode():
                    fused = model.encode(b)
                    seqs = greedy(model, fused, allowed, generation)
                    losses.append(model(b).item() * len(seqs))
                texts += [data.vocab.decode(q)[0] for q in seqs]
                gates.append(fused.visual_gate.reshape(-1, grid, grid).numpy())
            scores = score_images(truth, texts, read)
            out["rows"][f"{prompt}/{mode}"] = {**{k: scores["drafts"][k] for k in ("micro", "macro", "macro_over")},
                                               "loss": sum(losses) / len(exs)}
            out.setdefault("floors", {k: scores[k] for k in ("constant", "eye_labels")})
            if mode == "dynamic":
                out.setdefault("gates", {})[prompt] = gate_statistics(np.concatenate(gates), lungs, evidence)
    model.fusion.mode = "dynamic"
    return out


def _lungs_and_evidence(data: Data, cases: list[Case]) -> tuple[np.ndarray, np.ndarray]:
    """Per film: each region's share in the lungs, and the eye's evidence map of its most probable finding."""
    assert data.film_eye is not None  # add_films has run
    lungs, evidence = [], []
    for c in cases:
        films = data.images[c.id]
        f = films.features[0]
        top = max((x for x in films.read if x != "No Finding"), key=lambda x: films.read[x])
        lungs.append(lung_share(f.mask))
        evidence.append(data.film_eye.evidence(films.pixels[0], f, [top])[top])
    return np.stack(lungs), np.stack(evidence)


def fusion_markdown(figures: dict[str, dict]) -> str:
    """One table of findings scores per model, then the gates' statistics (`figures`: model name -> figures)."""
    first = next(iter(figures.values()))
    lines = [f"{first['films']} validation films (patient-disjoint), generator's own findings text ({first['decoding']}), "
             "findings stated by the labeler against the NIH labels.", "",
             "| model | prompt | fusion | micro F1 | macro F1 | macro P | macro R | pseudo-report loss |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, f in figures.items():
        for key, r in f["rows"].items():
            prompt, mode = key.split("/")
            lines.append(f"| {name} | {prompt} | {mode} | {r['micro']['f1']:.3f} | {r['macro']['f1']:.3f} | "
                         f"{r['macro']['precision']:.3f} | {r['macro']['recall']:.3f} | {r['loss']:.4f} |")
    for floor, r in first["floors"].items():
        lines.append(f"| floor: {floor.replace('_', ' ')} | | | {r['micro']['f1']:.3f} | {r['macro']['f1']:.3f} | "
                     f"{r['macro']['precision']:.3f} | {r['macro']['recall']:.3f} | |")
    lines += ["", "| model | prompt | mean gate | s.d. within a film | p95 - p5 | inside lungs | outside | "
                  "correlation with the evidence map (in the lungs) |", "|---|---|---:|---:|---:|---:|---:|---:|"]

    def num(x):
        return "–" if x is None else f"{x:.3f}"
    for name, f in figures.items():
        for prompt, g in f["gates"].items():
            lines.append(f"| {name} | {prompt} | {num(g['mean_gate'])} | {num(g['sd_within_film'])} | "
                         f"{num(g['p95_minus_p5_within_film'])} | {num(g['inside_lungs'])} | {num(g['outside_lungs'])} | "
                         f"{num(g['evidence_correlation'])} ({g['correlated_films']} films) |")
    return "\n".join(lines) + "\n"


def thresholds_for(mode: str, data: Data, retrieval: Thresholds) -> Thresholds:
    """The oracle's labels are 0 or 1 (0.5 splits them); image mode, as the drafter: the eye's statement
    policy, nothing said of what it does not assess; text mode, the retrieval prompt's template."""
    if mode == "oracle":
        return Thresholds.uniform(0.5, FINDINGS, "the oracle's labels: 0 or 1")
    return data.eye.thresholds if mode == "image" else retrieval


def as_drafted(ex: Example, thresholds: Thresholds) -> dict[str, Stance]:
    """What the drafter does before decoding (xr.draft.dffg): the prompt's probabilities become stances by
    the thresholds, and the prompt the generator reads says them. Returns the stances for the writer."""
    assert ex.prompt is not None  # every evaluated example has one
    stances = thresholds.stances({f: float(ex.prompt[j]) for j, f in enumerate(FINDINGS)})
    ex.prompt = stance_prompt(ex.prompt, stances)
    return stances


def plot_curve(history: list[dict], path: Path) -> None:
    """Training loss and the val scores per epoch (loss on the left axis, scores on the right)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, loss_ax = plt.subplots(figsize=(7.2, 3.8), dpi=100)
    score_ax = loss_ax.twinx()
    for ax, key, colour, label in [(loss_ax, "train_loss", "tab:blue", "train loss"),
                                   (score_ax, "val_cider_text", "tab:red", "val CIDEr, text mode (greedy)"),
                                   (score_ax, "val_cider_oracle", "tab:orange", "val CIDEr, oracle prompt (greedy)"),
                                   (score_ax, "val_ce_f1_macro_oracle", "tab:green", "val CE-F1 macro, oracle prompt")]:
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", color=colour, label=label)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss")
    score_ax.set_ylabel("val score")
    lines = loss_ax.get_legend_handles_labels(), score_ax.get_legend_handles_labels()
    loss_ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_epoch(model: torch.nn.Module, data: Data, order: list[int], rng: random.Random, opt, sched, batch_size: int,
              p_true: float, p_retrieved: float, acc: Accelerator, epoch: int = 1) -> float:
    """One pass of teacher forcing over this process's shard of `order` (shuffled in place, alike in every
    process); the mean loss (of this process's batches)."""
    model.train()
    rng.shuffle(order)
    mine = shard(order, acc)
    config = acc.unwrap_model(model).config
    losses = []
    for s in tqdm(range(0, len(mine), batch_size), desc=f"epoch {epoch}", unit="batch", file=sys.stderr,
                  disable=not acc.is_main_process, leave=False):
        b = collate([data.train_example(i, rng, p_true, p_retrieved) for i in mine[s:s + batch_size]], data.vocab,
                    config).to(acc.device)
        loss = model(b)
        opt.zero_grad()
        acc.backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def finetune_from_edits(edits: Path, out_dir: Path, base: Path = DFFG_DIR, data_dir: Path | None = None,
                        epochs: int = 3, lr: float = 2e-4, batch_size: int = 16, seed: int = 0, threads: int = 2,
                        log=print) -> dict:
    """Continue training the model in `base` on approved studies (an export-edits file), at a low learning
    rate, keeping its vocabulary and retrieval memory; save the result (and provenance) to `out_dir`.
    Words the vocabulary lacks are learnt as <unk>: the vocabulary changes only with a full retraining."""
    torch.set_num_threads(threads)
    rng = seed_everything(seed)
    net = DFFGModel.from_pretrained(base)
    data = Data.from_edits(Path(edits), Path(base), data_dir or settings().data_dir, k=net.config.k, log=log)
    return finetune(net, data, Path(base), Path(out_dir), {"edits": Path(edits).name}, epochs, lr, batch_size, seed,
                    rng, log)


def finetune_on_films(nih_roots: list[Path], out_dir: Path, root: Path = IU_ROOT, base: Path = DFFG_DIR, epochs: int = 6,
                      lr: float = 3e-4, batch_size: int = 32, seed: int = 0, threads: int = 2, log=print) -> tuple[dict, Data]:
    """Continue the model in `base` on IU train plus the labelled films of `nih_roots` with label-matched
    pseudo-reports (`Data.add_films`), abnormal cases seen twice per epoch, as the model was trained. The visual
    gate starts again from its initialisation where the base saw fewer than FEW_STUDIES studies with films
    (saturated near 1, it would barely move). The number of epochs and the learning rate are set beforehand,
    not chosen on a measured figure."""
    torch.set_num_threads(threads)
    rng = seed_everything(seed)
    net = DFFGModel.from_pretrained(base)
    if studies_with_films(base) < FEW_STUDIES:
        net.fusion.reset_gates(text=False)
    data = Data(root, k=net.config.k, log=log)
    data.vocab = Vocabulary.load(Path(base) / "vocab.json")  # the model's own words
    data.add_films([Path(r) for r in nih_roots], seed, log)
    info = finetune(net, data, Path(base), Path(out_dir), {"films": [Path(r).name for r in nih_roots],
                                                          "pseudo_reports": len(data.pseudo)},
                    epochs, lr, batch_size, seed, rng, log, abnormal_repeat=2, base_data=True)
    return info, data


def finetune(net: DFFGModel, data: Data, base: Path, out_dir: Path, provenance: dict, epochs: int, lr: float,
             batch_size: int, seed: int, rng: random.Random, log=print, abnormal_repeat: int = 1,
             base_data: bool = False) -> dict:
    """Teacher forcing from `net` (loaded from `base`) at a constant learning rate; the weights, the base's
    vocabulary, retrieval memory, words and thresholds, `finetune.json` (provenance) and `history.json` (the
    base's, with the studies with films counted up: the drafter says whether its gate map means anything by it)
    written to `out_dir`. `rng`: the data order's, from the caller's seeding (before the model and data were
    read). `base_data`: `data` includes the base's own training studies (not counted twice)."""
    import shutil

    acc = accelerator()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    order = list(range(len(data.train)))
    order += [i for i in order if data.train_labels[i][1:].any()] * (abnormal_repeat - 1)  # [0] is No Finding
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)  # constant: a few small steps
    model = acc.prepare_model(net)
    history, t0 = [], time.time()
    for epoch in range(1, epochs + 1):
        loss = run_epoch(model, data, order, rng, opt, sched, batch_size, 0.85, 0.1, acc, epoch)
        history.append({"epoch": epoch, "train_loss": loss, "minutes": (time.time() - t0) / 60})
        log(f"epoch {epoch} train_loss {loss:.3f}")
    base_history = json.loads((base / "history.json").read_text()) if (base / "history.json").is_file() else {}
    with_images = sum(c.id in data.images for c in data.train)
    info = {"fine_tuned_from": str(base), **provenance, "studies": len(data.train), "with_images": with_images,
            "epochs": epochs, "lr": lr, "seed": seed, "minutes": (time.time() - t0) / 60, "history": history,
            **({"processes": acc.num_processes} if acc.num_processes > 1 else {})}
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        net.save_pretrained(out_dir, dtype=torch.float16)
        for name in ("vocab.json", "retrieval.json", "retrieval.safetensors", GENERATION_CONFIG, WORDING, THRESHOLDS):
            if (base / name).exists() and (base / name).resolve() != (out_dir / name).resolve():
                shutil.copyfile(base / name, out_dir / name)
        (out_dir / "finetune.json").write_text(json.dumps(info, indent=1) + "\n")
        (out_dir / "history.json").write_text(json.dumps(
            {**base_history, "with_images": with_images + (0 if base_data else studies_with_films(base)),
             "fine_tuning": [*base_history.get("fine_tuning", []), {k: v for k, v in info.items() if k != "history"}]},
            indent=1) + "\n")
    acc.wait_for_everyone()
    return info


def train(root: Path = IU_ROOT, out_dir: Path = DFFG_DIR, epochs: int = 20, batch_size: int = 32, lr: float = 1e-3,
          d: int = 192, n_layers: int = 3, k: int = 3, patience: int = 3, seed: int = 0, threads: int = 2,
          max_minutes: float = 60.0, eval_every: int = 2, data: Data | None = None, log=print,
          p_true_prompt: float = 0.85, p_retrieved_prompt: float = 0.1, abnormal_repeat: int = 2,
          prompt_prefix: bool = True) -> dict:
    """Train on IU `train`, select on IU `val` (greedy decoding every `eval_every` epochs; score = CIDEr in
    text mode + CIDEr with the oracle prompt, so that a model which ignores the prompt is not chosen),
    save to `out_dir` (config.json, model.safetensors fp16, generation_config.json (the defaults of
    `GenerationConfig`), vocab.json, retrieval.*, history.json, training_curve.png). The defaults reproduce
    the shipped model.
    `p_true_prompt` / `p_retrieved_prompt`: how often the training prompt is the (noisy) reference labels /
    the retrieved reports' labels (else none); `abnormal_repeat`: studies with a finding are seen this many
    times per epoch; `prompt_prefix`: the finding prompt also as the decoder's prefix."""
    torch.set_num_threads(threads)
    rng = seed_everything(seed)
    acc = accelerator()
    data = data or Data(root, k=k, log=log)
    config = DFFGConfig(vocab_size=len(data.vocab), d=d, n_layers=n_layers, k=k, prompt_prefix=prompt_prefix)
    net = DFFGModel(config)
    generation = GenerationConfig()
    log(f"model: {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    order = list(range(len(data.train)))
    order += [i for i in order if data.train_labels[i][1:].any()] * (abnormal_repeat - 1)  # [0] is No Finding
    order += [i for i, c in enumerate(data.train) if c.id in data.images] * 5  # the few image studies, oversampled
    steps_per_epoch = (len(shard(order, acc)) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    val_idx = list(range(len(data.val)))
    refs = {data.val[i].id: data.val[i].findings for i in val_idx}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = acc.prepare_model(net)
    best, best_epoch, history, t0 = -1.0, 0, [], time.time()
    for epoch in range(1, epochs + 1):
        loss = run_epoch(model, data, order, rng, opt, sched, batch_size, p_true_prompt, p_retrieved_prompt, acc, epoch)
        row = {"epoch": epoch, "train_loss": loss, "minutes": (time.time() - t0) / 60}
        out_of_time = agree(acc, (time.time() - t0) / 60 > max_minutes)
        if epoch % eval_every == 0 or epoch == epochs or out_of_time:  # every process alike: same model, same data
            for mode in ("text", "oracle"):
                preds = generate(net, data, val_idx, mode, generation.replace(num_beams=1))
                ce, _ = clinical_scores(refs, preds)
                row[f"val_cider_{mode}"] = cider(refs, preds)
                row[f"val_ce_f1_macro_{mode}"] = ce["macro"]["f1"]
            score = row["val_cider_text"] + row["val_cider_oracle"]
            if score > best:
                best, best_epoch = score, epoch
                if acc.is_main_process:
                    net.save_pretrained(out_dir, dtype=torch.float16)
        history.append(row)
        log(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        if epoch - best_epoch >= patience * eval_every or out_of_time:
            log("early stop" if not out_of_time else "time budget reached")
            break
    if acc.is_main_process:
        generation.save_pretrained(out_dir)
        data.vocab.save(out_dir / "vocab.json")
        data.memory.save(out_dir)
        (out_dir / "history.json").write_text(json.dumps(
            {"history": history, "best_epoch": best_epoch, "best_score": best, "seed": seed,
             "minutes": (time.time() - t0) / 60, "with_images": sum(c.id in data.images for c in data.train)},
            indent=1) + "\n")
        plot_curve(history, out_dir / "training_curve.png")
    acc.wait_for_everyone()
    return {"best_epoch": best_epoch, "best_score": best, "history": history, "minutes": (time.time() - t0) / 60}


def evaluate_modes(directory: Path = DFFG_DIR, root: Path = IU_ROOT, modes=("text", "oracle", "image"),
                   ablation_modes=("text", "oracle"), beam: int | None = None, data: Data | None = None,
                   threads: int = 2, split: str = "val", log=print) -> dict:
    """Drafts for every study of `split` in each mode, decoded as the model folder's generation config says
    (`beam` overrides its beam width; 1: greedy), written as the drafter writes them (generator + faithful
    writer, xr.decode.faithful), scored with `xr.evaluate.run.evaluate`, next to three floors (the constant
    report, the nearest-text report, the label-matched report with the oracle's findings) and to the
    generator's own text without the writer. Ablation: the fusion switched to fixed 0.5 gates, visual-only,
    text-only."""
    from xr.evaluate.baselines import baseline_predictions, label_matched_predictions
    from xr.evaluate.run import evaluate
    torch.set_num_threads(threads)
    data = data or Data(root, log=log, split=split)
    data.vocab = Vocabulary.load(Path(directory) / "vocab.json")  # the model's own words, whatever the folder's train split gives
    model = DFFGModel.from_pretrained(directory)
    writer = (Wording.load(directory), Thresholds.load(directory))

    def scored(cases, preds, source):
        return evaluate(data.dataset, data.split, cases, preds, source)

    results = {f"floor/{name}": scored(data.val, baseline_predictions(name, data.train, data.val), f"floor: {name} report")
               for name in ("constant", "nearest-text")}
    results["floor/label-matched"] = scored(data.val, label_matched_predictions(data.train, data.train_labels, data.val,
                                                                                data.val_labels),
                                            "floor: label-matched report (the oracle's findings)")
    generation = decoding(directory, beam)
    for mode in modes:
        idx = list(range(len(data.val))) if mode != "image" else [i for i, c in enumerate(data.val) if c.id in data.images]
        if not idx:
            continue
        cases = [data.val[i] for i in idx]
        model.fusion.mode = "dynamic"
        preds = generate(model, data, idx, mode, generation, writer=writer)
        results[f"{mode}/dynamic"] = scored(cases, preds, f"DFFG {mode} mode")
        if mode == "image":  # the same studies without their images, for comparison
            preds = generate(model, data, idx, "text", generation, writer=writer)
            results["image/without-images"] = scored(cases, preds, "DFFG same studies, text mode")
        if mode in ablation_modes:
            preds = generate(model, data, idx, mode, generation)
            results[f"{mode}/generator-alone"] = scored(cases, preds, f"DFFG {mode} mode, generator alone (no faithful writer)")
            for fm in ("fixed", "visual", "text"):
                model.fusion.mode = fm
                preds = generate(model, data, idx, mode, generation, writer=writer)
                results[f"{mode}/{fm}"] = scored(cases, preds, f"DFFG {mode} mode, fusion={fm}")
            model.fusion.mode = "dynamic"
        log(f"{mode} done")
    return results


def predictions(results: dict) -> list[dict]:
    """The drafts as the app would make them, one per study: image mode where the study has its images,
    else text mode (`python -m xr eval --predictions` reads these lines)."""
    by_id = {i: {"id": i, "report": c["prediction"], "mode": "text"} for i, c in results["text/dynamic"].per_case.items()}
    if "image/dynamic" in results:
        by_id.update({i: {"id": i, "report": c["prediction"], "mode": "image"} for i, c in results["image/dynamic"].per_case.items()})
    return [by_id[i] for i in sorted(by_id)]


def decoding(directory: Path, beam: int | None = None) -> GenerationConfig:
    """The generation config of the model in `directory`, with beam width `beam` where given."""
    generation = GenerationConfig.from_pretrained(directory)
    return generation if beam is None else generation.replace(num_beams=beam)


def write_evaluation(results: dict, directory: Path, beam: int | None = None, split: str = "val") -> Path:
    """EVAL.json (every figure, no per-case rows) and EVAL.md (one table per set of studies), or
    EVAL-<split>.* for another split than val; `beam` as given to `evaluate_modes`. Returns the .md path."""
    from xr.evaluate.run import to_markdown
    directory = Path(directory)
    stem = "EVAL" if split == "val" else f"EVAL-{split}"
    (directory / f"{stem}.json").write_text(json.dumps({k: r.to_json() for k, r in results.items()}, indent=1) + "\n")
    groups: dict[int, list] = {}
    for r in results.values():
        groups.setdefault(r.studies, []).append(r)
    g = decoding(directory, beam)
    n = g.no_repeat_ngram_size
    text = (f"Decoding: beam {g.num_beams}, no-repeat {'trigrams' if n == 3 else f'{n}-grams'}, "
            f"{g.min_new_tokens}..{g.max_new_tokens} tokens; drafts written by the faithful writer from the finding "
            f"prompt (oracle: the reference's labels) unless the row says otherwise. Written by `python -m xr eval-generator`.\n\n")
    md = directory / f"{stem}.md"
    md.write_text(text + "\n".join(to_markdown(rs) for _, rs in sorted(groups.items(), reverse=True)))
    return md
