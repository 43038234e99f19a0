"""The retrieval drafter: the first real drafter, before the DFFG generator.

Finding probabilities are a similarity-weighted vote of the nearest library images, shrunk towards the
library's base rates; the report is the library report whose findings are most probable under them
(ties broken by the indication and by how typical its wording is). Nothing is written by hand here:
every sentence comes from a real past report.
"""
from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np

from xr.draft.result import Draft, SimilarCase, ViewResult
from xr.encode.encoder import ImageEncoder
from xr.findings import FINDINGS
from xr.ingest import IngestedStudy
from xr.retrieve.library import CaseLibrary, embed

WORD = re.compile(r"[a-z]+")


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


class RetrievalDrafter:
    model = "retrieval-knn"
    version = "0.1.0"

    def __init__(self, encoder: ImageEncoder | None = None, library: CaseLibrary | None = None,
                 k: int = 15, temperature: float = 0.05, prior_weight: float = 3.0) -> None:
        self.encoder = encoder or ImageEncoder()
        self.library = library or CaseLibrary()
        self.k, self.temperature, self.prior_weight = k, temperature, prior_weight
        image_cases = sorted({im["case"] for im in self.library.images})
        self.prior = self.library.label_matrix([self.library.by_id[c] for c in image_cases]).mean(0)
        reports = self.library.reports
        self.report_words = [words(r["indication"]) for r in reports]
        df = Counter(w for r in reports for w in words(r["findings"] + " " + r["impression"]))
        typ = np.array([np.mean([df[w] for w in words(r["findings"] + " " + r["impression"])] or [0]) for r in reports])
        self.typicality = typ / max(typ.max(), 1.0)
        self.placeholder = np.array(["XXXX" in (r["findings"] + r["impression"]) for r in reports])

    def draft(self, study: IngestedStudy, indication: str = "") -> Draft:
        t0 = time.perf_counter()
        encoded = self.encoder.encode([im.pixels for im in study.images])
        t1 = time.perf_counter()

        votes, weight_sum, hits = np.zeros(len(FINDINGS)), 0.0, {}
        views = []
        for i, (im, enc) in enumerate(zip(study.images, encoded)):
            neighbours = self.library.search_images(enc.pooled, self.k)
            sims = np.array([n.similarity for n in neighbours])
            w = np.exp((sims - sims.max()) / self.temperature)
            w = w / w.sum() * len(neighbours)
            for n, wi in zip(neighbours, w):
                votes += wi * self.library.labels_of(n.case_id)
                if n.case_id not in hits or hits[n.case_id].similarity < n.similarity:
                    hits[n.case_id] = n
            weight_sum += w.sum()
            centre = w @ self.library.embeddings[[n.row for n in neighbours]]
            heat = embed(enc.regions, self.library.mean) @ (centre / (np.linalg.norm(centre) + 1e-8))
            heat = (heat - heat.min()) / (heat.max() - heat.min() + 1e-8)
            views.append(ViewResult(i, im.view, im.content_hash, np.round(heat, 3).tolist()))
        probs = (votes + self.prior_weight * self.prior * len(study.images)) / (
            weight_sum + self.prior_weight * len(study.images))
        t2 = time.perf_counter()

        best, agreement = self._choose_report(probs, indication)
        t3 = time.perf_counter()

        similar = [SimilarCase(n.case_id, round(n.similarity, 4), "image", self.library.by_id[n.case_id]["labels"],
                               self._report_text(self.library.by_id[n.case_id]), n.thumb)
                   for n in sorted(hits.values(), key=lambda n: -n.similarity)[:5]]
        similar.append(SimilarCase(best["id"], round(agreement, 4), "report", best["labels"], self._report_text(best)))
        return Draft(
            findings_text=best["findings"],
            impression=best["impression"],
            findings={f: round(float(p), 4) for f, p in zip(FINDINGS, probs)},
            views=views,
            similar_cases=similar,
            model=self.model,
            model_version=self.version,
            timings={"encode_ms": (t1 - t0) * 1e3, "retrieve_ms": (t2 - t1) * 1e3, "decode_ms": (t3 - t2) * 1e3},
            notes=["Retrieval draft: finding probabilities from the nearest library images; the text is the "
                   "library report that best matches them. Heatmaps show which regions drove the match."],
        )

    def _choose_report(self, probs: np.ndarray, indication: str) -> tuple[dict, float]:
        p = np.clip(probs, 1e-4, 1 - 1e-4)
        y = self.library.report_labels
        loglik = y @ np.log(p) + (1 - y) @ np.log(1 - p)
        q = words(indication)
        overlap = np.array([len(q & w) / len(q | w) if q and w else 0.0 for w in self.report_words])
        score = loglik + 0.5 * overlap + 0.1 * self.typicality - 1e3 * self.placeholder
        i = int(np.argmax(score))
        return self.library.reports[i], float(1 - np.abs(y[i] - probs).mean())

    @staticmethod
    def _report_text(case: dict) -> str:
        if case["findings"] or case["impression"]:
            return " ".join(x for x in (case["findings"], case["impression"]) if x)
        return "Labels: " + (", ".join(case["labels"]) or "none")
