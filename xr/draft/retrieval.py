"""The retrieval drafter: the first real drafter, before the DFFG generator.

Finding probabilities come from the finding head on the frontal views (it was trained on frontal
films); findings it was not trained for get the report library's base rate. The report is the library
report whose findings are most probable under them (ties broken by the indication and by how typical
its wording is), then held to the eye's statement policy by the faithful writer (xr.decode.faithful): a
sentence of the past report that says more than the eye backs is taken out, and the site's sentence
stands for what the eye does back.

Similar cases come from the CaseIndex (shipped library plus approved studies) queried with the views and
the draft text. The draft text, not the indication: on IU val a report's findings text retrieves cases
sharing its findings far more often than its indication does (docs/retrieval.md).
"""
from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np

from xr.config import ASSETS, Settings, settings
from xr.decode.faithful import write
from xr.decode.wording import Wording
from xr.draft.explain import explain
from xr.draft.prepare import prepare
from xr.encode.cache import FeatureCache
from xr.encode.eye import Eye
from xr.encode.eyes import eye_for
from xr.encode.vision import VisionEncoder
from xr.findings import FINDINGS
from xr.ingest import IngestedStudy
from xr.result import DraftResult
from xr.retrieve.index import CaseIndex, study_case_id
from xr.retrieve.library import embed
from xr.retrieve.text import case_text
from xr.views import FRONTAL

WORD = re.compile(r"[a-z]+")


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


class RetrievalDrafter:
    model = "retrieval-knn"
    version = "0.4.0"  # 0.4: held to the eye's statement policy

    def __init__(self, encoder: VisionEncoder | None = None, index: CaseIndex | None = None,
                 eye: Eye | None = None, k: int = 15, temperature: float = 0.05, s: Settings | None = None) -> None:
        s = s or settings()
        self.encoder = encoder or VisionEncoder(cache=FeatureCache(s.data_dir / "cache"), s=s)
        self.index = index or CaseIndex()
        self.library = self.index.library
        self.eye = eye or eye_for(s)
        self.k, self.temperature = k, temperature
        reports = self.library.reports
        self.base_rate = self.library.report_labels.mean(0)
        self.report_words = [words(r["indication"]) for r in reports]
        df = Counter(w for r in reports for w in words(r["findings"] + " " + r["impression"]))
        typ = np.array([np.mean([df[w] for w in words(r["findings"] + " " + r["impression"])] or [0]) for r in reports])
        self.typicality = typ / max(typ.max(), 1.0)
        self.placeholder = np.array(["XXXX" in (r["findings"] + r["impression"]) for r in reports])
        self.wording = Wording.load(ASSETS / "dffg")  # the site's words, read off its reports (train-writer)

    def draft(self, study: IngestedStudy, indication: str = "", exclude: frozenset[str] = frozenset()) -> DraftResult:
        """prepare -> write -> explain. `exclude`: library cases the draft may not use (a teaching case
        drafted from its own film)."""
        t0 = time.perf_counter()
        films = prepare(study.images, self.encoder, self.eye)
        t1 = time.perf_counter()
        for v, f in zip(films.views, films.features, strict=True):
            v.fusion_weights = self._match_map(f)
        probs = self.base_rate.copy()
        for name, p in films.read.items():
            probs[FINDINGS.index(name)] = p
        t2 = time.perf_counter()

        findings = {name: round(float(probs[FINDINGS.index(name)]), 4) for name in self.eye.findings}
        best = self._choose_report(probs, indication, exclude)
        stances = self.eye.thresholds.stances({f: float(probs[j]) for j, f in enumerate(FINDINGS)})
        written = write(best["findings"], best["impression"], stances, self.wording)
        t3 = time.perf_counter()

        similar = explain(films, self.eye, self.index, case_text(written.findings, written.impression), findings,
                          {study_case_id(study.key), *exclude})
        notes = [f"Retrieval draft: the text is library report {best['id']}, the one that best matches the finding "
                 "probabilities, less what the eye does not back. Heatmaps show which regions drove the image match.",
                 f"Finding probabilities from the frontal views by {self.eye.name}."]
        if FRONTAL not in films.names:
            notes.append("No frontal view: finding probabilities come from a model trained on frontal films.")
        return DraftResult(
            findings_text=written.findings,
            impression=written.impression,
            findings=findings,
            views=films.views,
            similar_cases=similar,
            model=self.model,
            model_version=self.version,
            timings={"encode_ms": (t1 - t0) * 1e3, "retrieve_ms": (t2 - t1) * 1e3, "decode_ms": (t3 - t2) * 1e3,
                     "similar_ms": (time.perf_counter() - t3) * 1e3, "eye": self.eye.name},
            notes=notes,
            stances={f: st.value for f, st in stances.items()},
            cuts={f: self.eye.thresholds.describe(f) for f in stances},
            hedged=written.hedged,
        )

    def _match_map(self, f) -> list[list[float]]:
        """Which regions of a film drove its image match: each region's similarity to the neighbours' centre."""
        neighbours = self.library.search_images(f.pooled, self.k)
        sims = np.array([n.similarity for n in neighbours])
        w = np.exp((sims - sims.max()) / self.temperature)
        centre = (w / w.sum()) @ self.library.embeddings[[n.row for n in neighbours]]
        heat = embed(f.search_regions(), self.library.mean) @ (centre / (np.linalg.norm(centre) + 1e-8))
        heat = (heat - heat.min()) / (heat.max() - heat.min() + 1e-8)
        return np.round(heat, 3).tolist()

    def _choose_report(self, probs: np.ndarray, indication: str, exclude: frozenset[str]) -> dict:
        p = np.clip(probs, 1e-4, 1 - 1e-4)
        y = self.library.report_labels
        loglik = y @ np.log(p) + (1 - y) @ np.log(1 - p)
        q = words(indication)
        overlap = np.array([len(q & w) / len(q | w) if q and w else 0.0 for w in self.report_words])
        score = loglik + 0.5 * overlap + 0.1 * self.typicality - 1e3 * self.placeholder
        score[[i for i, r in enumerate(self.library.reports) if r["id"] in exclude]] = -np.inf
        return self.library.reports[int(np.argmax(score))]
