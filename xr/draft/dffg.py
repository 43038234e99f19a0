"""The DFFG drafter: indication + finding prompt + retrieved similar reports (+ the views' regional
features when there are images) -> dynamic fusion -> transformer decoder -> findings and impression.

Retrieval of similar training reports: by image embedding (the case library's faiss index) when the
study has images and the library has reports for the neighbours, else by the MiniLM (all-MiniLM-L6-v2,
offline) embedding of the indication against the training indications; with neither, the most typical
training reports. Finding probabilities (the prompt): the finding head where it is shipped and there
are images, else the similarity-weighted labels of the retrieved cases. The similar cases shown with
the draft come from the workstation's CaseIndex (images + report text, approved studies included),
queried with the views and the generated report.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from xr.config import ASSETS, Settings, settings
from xr.decode.beam import beam_search
from xr.decode.faithful import Written, contradictions, stance_prompt, write
from xr.decode.generation import GenerationConfig
from xr.decode.model import DFFGModel
from xr.decode.onnx import generator_for
from xr.decode.processing import Example, collate
from xr.decode.vocab import Vocabulary
from xr.decode.wording import FILE as WORDING
from xr.decode.wording import Wording
from xr.draft.explain import explain
from xr.draft.prepare import Films, example, prepare
from xr.encode.eye import Eye
from xr.encode.eyes import eye_for
from xr.findings import FINDINGS
from xr.normalize import informative
from xr.onnx.runtime import describe
from xr.report import compose_report
from xr.result import DraftResult
from xr.retrieve.index import CaseIndex, study_case_id
from xr.retrieve.library import Neighbour
from xr.retrieve.text import case_text
from xr.thresholds import Stance, Thresholds

DFFG_DIR = ASSETS / "dffg"
FEW_STUDIES = 100  # trained on fewer studies with films than this, the fusion-weight map is nearly flat


# ---- the retrieval memory of training reports -----------------------------------------------------
@dataclass
class ReportMemory:
    ids: list[str]  # IU study ids (training split)
    findings: list[str]
    impressions: list[str]
    indication_emb: np.ndarray  # (N, 384) MiniLM of each indication (zeros where none)
    labels: np.ndarray  # (N, 17) labeler POSITIVE on the findings
    typical: np.ndarray  # indices of the most typical reports (nearest the findings centroid)

    def save(self, directory: Path) -> None:
        save_file({"indication_emb": self.indication_emb.astype(np.float16), "labels": self.labels.astype(np.uint8),
                   "typical": self.typical.astype(np.int64)}, str(directory / "retrieval.safetensors"))
        (directory / "retrieval.json").write_text(json.dumps(
            {"ids": self.ids, "findings": self.findings, "impressions": self.impressions}) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ReportMemory:
        t = load_file(str(directory / "retrieval.safetensors"))
        d = json.loads((directory / "retrieval.json").read_text())
        return cls(d["ids"], d["findings"], d["impressions"], t["indication_emb"].astype(np.float32),
                   t["labels"].astype(np.float32), t["typical"])

    def by_text(self, query_emb: np.ndarray | None, k: int, exclude: int | None = None) -> list[tuple[int, float]]:
        """(row, similarity) of the k training reports nearest the indication embedding (typical ones when
        there is no usable indication); `exclude` is never returned (the case itself, in training)."""
        if query_emb is None:
            rows = [int(i) for i in self.typical if i != exclude][:k]
            return [(r, 0.0) for r in rows]
        sims = self.indication_emb @ query_emb
        if exclude is not None:
            sims[exclude] = -np.inf
        top = np.argpartition(-sims, k)[:k]
        top = top[np.argsort(-sims[top])]
        return [(int(i), float(sims[i])) for i in top]

    def prompt_from(self, rows: list[tuple[int, float]], temperature: float = 0.1) -> np.ndarray:
        """Finding probabilities from retrieved reports: their labels, weighted by similarity, shrunk
        towards the base rate."""
        if not rows:
            return self.labels.mean(0)
        sims = np.array([s for _, s in rows])
        w = np.exp((sims - sims.max()) / temperature)
        w = w / w.sum()
        p = w @ self.labels[[r for r, _ in rows]]
        return (0.8 * p + 0.2 * self.labels.mean(0)).astype(np.float32)


# ---- the drafter -------------------------------------------------------------------------------------
def studies_with_films(directory: Path) -> int:
    """How many training studies had films, as training wrote it (`history.json`): below FEW_STUDIES the
    gate map means little."""
    path = Path(directory) / "history.json"
    return json.loads(path.read_text()).get("with_images", 0) if path.is_file() else 0


class DFFGDrafter:
    model = "dffg"
    version = "0.4.0"  # 0.3: the faithful writer; 0.4: the statement policy (xr.thresholds)

    def __init__(self, directory: Path = DFFG_DIR, encoder=None, index=None, eye: Eye | None = None,
                 generation: GenerationConfig | None = None, s: Settings | None = None) -> None:
        """`eye`: where finding probabilities come from (xr.encode.eye); `generation`: how to decode, by
        default the model folder's generation_config.json. `s`: the settings of the entry point (backend,
        ONNX folder, feature cache, DenseNet weights), else read now."""
        self.settings = s or settings()
        self.net = DFFGModel.from_pretrained(directory)
        self.decoder, self.decoder_part = generator_for(self.net, directory / "model.safetensors", self.settings)
        self.vocab = Vocabulary.load(directory / "vocab.json")
        self.memory = ReportMemory.load(directory)
        self.allowed = self.vocab.output_mask()
        self._encoder, self._index, self._eye = encoder, index, eye
        self.generation = generation or GenerationConfig.from_pretrained(directory)
        self.row_of = {("iu:" + i): r for r, i in enumerate(self.memory.ids)}
        # the faithful writer's words and the retrieval prompt's thresholds (train-writer); a copy of the model
        # without its own words uses the shipped ones
        self.wording = Wording.load(directory if (directory / WORDING).is_file() else DFFG_DIR)
        self.thresholds = Thresholds.load(directory)
        # how many training studies had films (train-generator writes it): the gate map means little below a few
        self.with_images = studies_with_films(directory)

    # lazily built collaborators: a text-only draft never loads the vision models
    @property
    def encoder(self):
        if self._encoder is None:
            from xr.encode.cache import FeatureCache
            from xr.encode.vision import VisionEncoder
            self._encoder = VisionEncoder(cache=FeatureCache(self.settings.data_dir / "cache"), s=self.settings)
        return self._encoder

    @property
    def index(self):
        """The similar-case index (shipped library + approved studies), shared with the workstation."""
        if self._index is None:
            self._index = CaseIndex()
        return self._index

    @property
    def eye(self) -> Eye:
        if self._eye is None:
            self._eye = eye_for(self.settings)
        return self._eye

    @eye.setter
    def eye(self, eye: Eye) -> None:
        self._eye = eye

    def generate(self, example: Example) -> tuple[str, str, np.ndarray, np.ndarray]:
        """(findings, impression, visual gates (V, 16, 16), text gates (Nt,)) for one prepared example."""
        b = collate([example], self.vocab, self.net.config)
        with torch.inference_mode():
            fused = self.decoder.encode(b)
            ids = beam_search(self.decoder, fused, self.allowed, self.generation)
        findings, impression = self.vocab.decode(ids)
        g = self.net.config.grid
        vis = fused.visual_gate[0].reshape(-1, g, g).numpy() if fused.visual_gate.shape[1] else np.zeros((0, g, g))
        return findings, impression, vis, fused.text_gate[0].numpy()

    def write(self, example: Example, probabilities: dict[str, float],
              thresholds: Thresholds) -> tuple[Written, dict[str, Stance], np.ndarray]:
        """(text, stances, visual gates): the probabilities become what the draft says of each finding
        (present, possible, absent or not assessed, by the statement policy), the generator writes from
        that, and the faithful writer makes the text say exactly that (xr.decode.faithful)."""
        stances = thresholds.stances(probabilities)
        assert example.prompt is not None  # every drafted example has one
        example.prompt = stance_prompt(example.prompt, stances)
        findings, impression, vis, _ = self.generate(example)
        return write(findings, impression, stances, self.wording), stances, vis

    def _neighbour_prompt(self, films: Films, exclude: frozenset[str]) -> tuple[np.ndarray, list[tuple[int, float]]]:
        """Finding prompt and retrievable training reports (row, similarity) from the films' neighbours in
        the case library: their labels, weighted by similarity (the eye goes over it in `example`)."""
        library = self.index.library
        hits: dict[str, Neighbour] = {}
        for pooled in films.pooled:
            for n in library.search_images(pooled, 30):
                if n.case_id in exclude:
                    continue
                if n.case_id not in hits or hits[n.case_id].similarity < n.similarity:
                    hits[n.case_id] = n
        ranked = sorted(hits.values(), key=lambda n: -n.similarity)
        rows = [(self.row_of[n.case_id], n.similarity) for n in ranked if n.case_id in self.row_of]
        top = ranked[:15]
        sims = np.array([n.similarity for n in top])
        w = np.exp((sims - sims.max()) / 0.05)
        lab = np.stack([library.labels_of(n.case_id) for n in top])
        return (0.8 * (w / w.sum()) @ lab + 0.2 * self.memory.labels.mean(0)).astype(np.float32), rows

    def inputs(self, films: Films, indication: str, exclude: frozenset[str]) -> tuple[Example, list[str]]:
        """The generator's input for a study, and the notes on where its prompt came from: the k similar
        training reports (the films' neighbours first, then by the indication), the finding prompt (the
        neighbours' labels under the eye's probabilities; without films, the retrieved reports' labels)."""
        k = self.net.config.k
        q = self.index.embed_text([indication])[0] if informative(indication) else None
        rows: list[tuple[int, float]] = []
        prompt, notes = None, []
        if films.features:
            prompt, rows = self._neighbour_prompt(films, exclude)
            rows = rows[:k]
        if len(rows) < k:
            have = {r for r, _ in rows}
            rows += [(r, s) for r, s in self.memory.by_text(q, k + len(rows)) if r not in have][: k - len(rows)]
        if prompt is None:
            prompt = self.memory.prompt_from(rows)
            notes.append("No image: the finding prompt comes from the labels of the retrieved similar reports.")
        return example(films, prompt, [self.memory.findings[r] for r, _ in rows],
                       indication if informative(indication) else "", q), notes

    def draft(self, study, indication: str = "", exclude: frozenset[str] = frozenset()) -> DraftResult:
        """prepare -> write -> explain. `exclude`: library cases the draft may not learn from (a teaching case
        drafted from its own film: its labels would otherwise become the prompt)."""
        t0 = time.perf_counter()
        images = list(getattr(study, "images", []) or [])
        films = prepare(images, self.encoder, self.eye) if images else Films()
        t1 = time.perf_counter()
        ex, notes = self.inputs(films, indication, exclude)
        assert ex.prompt is not None  # every drafted example has one
        t2 = time.perf_counter()
        probabilities = {name: round(float(ex.prompt[j]), 4) for j, name in enumerate(FINDINGS)}
        # from films, the eye's statement policy alone: a finding it has no cut for is not assessed; without
        # films (text mode: the evaluation of reports, not a clinical draft), the retrieval prompt's template
        thresholds = self.eye.thresholds if films.features else self.thresholds
        written, stances, vis_gates = self.write(ex, probabilities, thresholds)
        findings, impression = written.findings, written.impression
        t3 = time.perf_counter()
        for v, g in zip(films.views, vis_gates, strict=False):
            v.fusion_weights = np.round(g, 3).tolist()
        key = getattr(study, "key", None)
        similar = explain(films, self.eye, self.index, case_text(findings, impression), probabilities,
                          {*exclude, *([study_case_id(key)] if key else [])})
        t4 = time.perf_counter()
        return DraftResult(
            findings_text=findings,
            impression=impression,
            findings=probabilities,
            views=films.views,
            similar_cases=similar,
            model=self.model,
            model_version=self.version,
            timings={"encode_ms": (t1 - t0) * 1e3, "retrieve_ms": (t2 - t1 + t4 - t3) * 1e3, "decode_ms": (t3 - t2) * 1e3,
                     "backend": describe({**(self.encoder.parts if images else {}), "generator": self.decoder_part}),
                     **({"eye": self.eye.name} if films.features else {})},
            notes=self._notes(notes, films, written, stances, thresholds),
            stances={f: st.value for f, st in stances.items()},
            cuts={f: thresholds.describe(f) for f in stances},
            hedged=written.hedged,
        )

    def _notes(self, notes: list[str], films: Films, written: Written, stances: dict[str, Stance],
               thresholds: Thresholds) -> list[str]:
        """How the draft was made, first why it is empty or text-only, last any disagreement with the panel."""
        if films.features and not (written.findings or written.impression):
            notes.insert(0, "Nothing is written: on this film the eye backs no statement the site's reports make (a "
                            "finding present or possible, or its routine negative) at the policy's floors. Every "
                            "finding is on the panel with what the eye read of it.")
        if not films.features:
            notes.insert(0, "No film was read: a text-mode draft (for evaluating reports), written on the site's "
                            "template, not a clinical draft.")
        gates = ("The fusion-weight map (per-region gate, 1 = drawn from the image, 0 = from the text) is nearly flat: "
                 f"the visual pathway was trained on {self.with_images} studies with images."
                 if self.with_images < FEW_STUDIES else "")
        notes.append("DFFG draft: generated from the views (when present), the indication, the finding prompt and "
                     "similar past reports. Evidence maps show where in the lungs the most probable findings' "
                     "probabilities come from." + (" " + gates if gates else ""))
        if films.features:
            notes.append(f"Finding probabilities from the frontal views by {self.eye.name}; what the draft says of each "
                         f"finding by its statement policy ({thresholds.chosen_on}).")
        said = {st: [f for f, x in stances.items() if x is st] for st in Stance}
        notes.append("; ".join(f"{st.value}: {', '.join(said[st]) or 'none'}" for st in Stance) + ".")
        notes += [f"Check against the finding panel: {c}." for c in
                  contradictions(compose_report(written.findings, written.impression), stances)]
        return notes
