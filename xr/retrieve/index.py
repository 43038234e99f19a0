"""The similar-case index: the shipped case library plus every approved study, searched by image (pooled
lung-U-Net features) and by report text (MiniLM), answered as one ranked list.

The two lists are merged by reciprocal-rank fusion (Cormack et al., SIGIR 2009): a case scores the sum,
over the indices that found it, of 1 / (60 + its rank there). A cosine means different things in the
two spaces (a library item's 10 nearest neighbours: image 0.61-0.95, report text 0.69-1.00, 5th-95th
percentile; MiniLM rates "heart is not enlarged" close to "heart is enlarged"), and calibrating a
weighted mix needs queries with both an image and a report of known relevance, of which IU val has
one. Ranks need no calibration; a case both indices find rises above one found by either alone, and a
query with one kind of input ranks exactly as that index does. The score shown is divided by its
maximum, so 1.0 means first in every index queried.

Three rules then order the fused list (CaseIndex.search): a library film that is the query's own film
comes first; cases of another projection or age group come after the comparable ones; a report text
is listed once.
"""
from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from db.models import LibraryCase
from db.session import database_exists
from xr import store
from xr.config import Settings
from xr.result import SimilarCase
from xr.retrieve.entry import make_entry
from xr.retrieve.library import CaseLibrary, embed, new_index
from xr.retrieve.text import case_text, load_text_embeddings, report_text, text_embedder
from xr.store import LibraryEntry
from xr.views import FRONTAL

RRF_K = 60  # the constant of reciprocal-rank fusion; 60 is the published default
PRESENT = 0.5  # a finding the query is taken to have: its (calibrated) probability is at least even
DEPTH = 100  # candidates read from each index before fusion
# Image cosine at or above which a library image is the query's own film. Measured on nih:00000100_000: the
# same pixels 0.9999 (the library stores fp16), a JPEG re-save at quality 85 0.9996; the closest two
# distinct films of the library 0.989. A DICOM written from the PNG is re-windowed (0.98): not the same.
SAME_FILM = 0.999
ADULT = 18  # years: younger is paediatric
WORD = re.compile(r"[a-z0-9]+")


def study_case_id(study_key: str) -> str:
    """Library id of an approved study: a prefix of its salted key, which identifies no one."""
    return f"approved:{study_key[:12]}"


@dataclass(frozen=True)
class Query:
    images: np.ndarray  # (views, D) centred and L2-normalised (library.embed); (0, D) without images
    text: np.ndarray | None = None  # (384,) MiniLM embedding, or None
    findings: frozenset[str] = frozenset()  # what the query is taken to have: the "shared findings" of each hit
    views: tuple[str | None, ...] = ()  # per image row: "PA", "AP", "frontal", "lateral" or None (unknown)
    age: int | None = None  # years, where known


@dataclass(frozen=True)
class _Case:
    id: str
    source: str  # "iu", "nih" or "approved"
    labels: list[str]
    report: str  # "" when the case has labels only
    thumb: str | None  # its first image's thumbnail, relative to the library directory
    age: int | None = None  # years, where the source says

    @property
    def text_key(self) -> str:
        """Cases with the same report (case, spacing and punctuation aside) are one neighbour: IU holds
        the same normal report many times over. A case with labels only is its own."""
        return " ".join(WORD.findall(self.report.lower())) or self.id


@dataclass(frozen=True)
class _Part:
    """One faiss index, and for each of its rows the case it belongs to, a thumbnail and its view."""
    index: faiss.Index
    case: np.ndarray
    thumb: list[str | None]
    view: list[str | None]  # as Query.views

    @classmethod
    def of(cls, vectors: np.ndarray, case: list[int], thumb: list[str | None],
           view: list[str | None] | None = None) -> _Part:
        index = new_index(vectors.shape[1], len(vectors))
        index.add(np.ascontiguousarray(vectors, np.float32))
        return cls(index, np.asarray(case), thumb, view or [None] * len(case))

    def rank(self, queries: np.ndarray, depth: int, excluded: set[int]) -> list[tuple[int, float, int]]:
        """(case, best cosine over the queries and the case's rows, that row), best first."""
        sims, rows = self.index.search(np.ascontiguousarray(queries, np.float32), min(depth, self.index.ntotal))
        best: dict[int, tuple[float, int]] = {}
        for sim, row in zip(sims.ravel(), rows.ravel(), strict=False):
            case = int(self.case[row]) if row >= 0 else -1
            if row >= 0 and case not in excluded and (case not in best or sim > best[case][0]):
                best[case] = (float(sim), int(row))
        return [(c, sim, row) for c, (sim, row) in sorted(best.items(), key=lambda kv: -kv[1][0])]


@dataclass(frozen=True)
class _State:
    """Everything a search reads, swapped in whole when approved studies change: searches never lock."""
    cases: list[_Case]
    position: dict[str, int]
    images: _Part
    texts: _Part


class CaseIndex:
    def __init__(self, library: CaseLibrary | None = None, embedder=None) -> None:
        self.library = library or CaseLibrary()
        self._embedder = embedder  # MiniLM, loaded on the first text query
        self._text_lock = threading.Lock()  # the tokenizer must not be used by two threads at once
        self._sync_lock = threading.Lock()
        self._report_vectors = load_text_embeddings(self.library.directory, self.library.reports)
        first_thumb: dict[str, str] = {}
        for im in self.library.images:
            first_thumb.setdefault(im["case"], f"thumbs/{im['thumb']}")
        self._shipped = [_Case(c["id"], c["source"], list(c["labels"]), case_text(c["findings"], c["impression"]),
                               first_thumb.get(c["id"]), c.get("age")) for c in self.library.cases]
        self._loaded: tuple[str, tuple | None] | None = None  # (database url, fingerprint) of the approved part
        self._state = self._build([])

    # ---- contents -------------------------------------------------------------------------------------
    def _build(self, rows: list) -> _State:
        lib = self.library
        cases = list(self._shipped)
        position = {c.id: i for i, c in enumerate(cases)}
        image_vectors, image_case = [lib.embeddings], [position[im["case"]] for im in lib.images]
        image_thumb: list[str | None] = [f"thumbs/{im['thumb']}" for im in lib.images]
        image_view: list[str | None] = [im.get("position") or im["view"] for im in lib.images]
        text_vectors, text_case = [self._report_vectors], [position[c["id"]] for c in lib.reports]
        for row, key in rows:
            entry, i = LibraryEntry.from_row(row), len(cases)
            cases.append(_Case(study_case_id(key), "approved", entry.labels, row.report, None))
            position[cases[-1].id] = i
            if entry.image_encoder == lib.encoder and len(entry.image_features):
                image_vectors.append(embed(entry.image_features, lib.mean))
                image_case += [i] * len(entry.image_features)
                image_thumb += [None] * len(entry.image_features)
                image_view += [None] * len(entry.image_features)
            text_vectors.append(entry.text_embedding[None])
            text_case.append(i)
        return _State(cases, position, _Part.of(np.concatenate(image_vectors), image_case, image_thumb, image_view),
                      _Part.of(np.concatenate(text_vectors), text_case, [cases[i].thumb for i in text_case]))

    def sync(self, s: Settings) -> None:
        """Load this database's approved studies if they changed since the last look: at start-up, after an
        approval here or in another process, or on another database. One small query when nothing did; a
        database not created yet is not created."""
        url = s.database_url
        fingerprint: tuple | None
        rows: list[tuple[LibraryCase, str]] | None
        with self._sync_lock:
            if not database_exists(url):
                fingerprint, rows = None, []
                if self._loaded == (url, None):
                    return
            else:
                known = self._loaded[1] if self._loaded and self._loaded[0] == url else None
                fingerprint, rows = store.library_cases(s, known)
                if rows is None:
                    return
            self._state = self._build(rows)
            self._loaded = (url, fingerprint)

    def entry(self, s: Settings, study_id: int, text: str, encoder) -> LibraryEntry:
        """What approving `text` for this stored study adds to the library (compute before approving)."""
        return make_entry(s, study_id, text, encoder, self.embed_text)

    def add_approved(self, s: Settings, encoder) -> int:
        """Backfill: every approved study whose latest approval the library does not hold (approved before
        the library took approvals, or approved without an entry). Returns how many were added."""
        added = 0
        for study_id, approval_id, text in store.approvals_not_in_library(s):
            added += store.add_to_library(s, approval_id, self.entry(s, study_id, text, encoder))
        self.sync(s)
        return added

    def stats(self, s: Settings) -> dict:
        """Counts after loading this database's approved studies."""
        self.sync(s)
        st = self._state

        def by_source(positions) -> dict[str, int]:
            return dict(Counter(st.cases[i].source for i in positions))

        waiting = len(store.approvals_not_in_library(s)) if database_exists(s.database_url) else 0
        return {
            "cases": by_source(range(len(st.cases))),
            "with_images": by_source(set(st.images.case.tolist())),
            "with_reports": by_source(set(st.texts.case.tolist())),
            "image_index": {"type": type(st.images.index).__name__, "dim": st.images.index.d,
                            "vectors": st.images.index.ntotal},
            "text_index": {"type": type(st.texts.index).__name__, "dim": st.texts.index.d,
                           "vectors": st.texts.index.ntotal},
            "approved": {"in_library": sum(c.source == "approved" for c in st.cases), "waiting": waiting},
        }

    # ---- queries --------------------------------------------------------------------------------------
    def embed_text(self, texts: list[str]) -> np.ndarray:
        with self._text_lock:
            if self._embedder is None:
                self._embedder = text_embedder()
            return self._embedder(texts)

    def query(self, pooled: Sequence[np.ndarray] = (), text: str = "",
              probabilities: Mapping[str, float] | None = None, views: Sequence[str] = ()) -> Query:
        """From a study's pooled image features (any number of views), its text, finding probabilities and
        whether each view is "frontal" or "lateral" ("unknown": not known). A written report is embedded
        as library reports are (section headings dropped)."""
        images = (embed(np.stack(pooled), self.library.mean) if len(pooled)
                  else np.zeros((0, self.library.embeddings.shape[1]), np.float32))
        vector = self.embed_text([report_text(text)])[0] if text.strip() else None
        return Query(images, vector, frozenset(f for f, p in (probabilities or {}).items() if p >= PRESENT),
                     tuple(None if v == "unknown" else v for v in views))

    def search(self, q: Query, k: int = 10, exclude: Collection[str] = ()) -> list[SimilarCase]:
        """The k most similar cases, best first; cases in `exclude` (ids) are never returned."""
        st = self._state
        excluded = {st.position[c] for c in exclude if c in st.position}
        same, q = self._same_film(st, q, excluded)
        lists = [(name, part, vectors) for name, part, vectors in
                 (("image", st.images, q.images), ("report", st.texts, None if q.text is None else q.text[None]))
                 if vectors is not None and len(vectors)]
        score: dict[int, float] = {}
        found: dict[int, dict[str, tuple[float, int]]] = {}  # case -> index name -> (cosine, row)
        for name, part, vectors in lists:
            for rank, (case, sim, row) in enumerate(part.rank(vectors, max(DEPTH, 4 * k), excluded), 1):
                score[case] = score.get(case, 0.0) + 1.0 / (RRF_K + rank)
                found.setdefault(case, {})[name] = (sim, row)
        best = len(lists) / (RRF_K + 1)
        ranked = sorted(score, key=lambda c: (c not in same, not self._comparable(st, c, found[c], q), -score[c],
                                              -max(sim for sim, _ in found[c].values())))
        top, texts = [], set()
        for c in ranked:
            if st.cases[c].text_key not in texts:
                texts.add(st.cases[c].text_key)
                top.append(c)
            if len(top) == k:
                break
        return [self._similar(st, c, same[c] if c in same else score[c] / best, found[c], q.findings) for c in top]

    @staticmethod
    def _same_film(st: _State, q: Query, excluded: set[int]) -> tuple[dict[int, float], Query]:
        """Library films that are one of the query's own views (cosine >= SAME_FILM): case -> cosine. Such a
        case is not a neighbour but the study itself, and the library knows it: it is listed first, and its
        labels, projection and age become the query's (better than the model's probabilities; the rest of
        the list then shares findings with what the film has)."""
        if not len(q.images):
            return {}, q
        sims, rows = st.images.index.search(np.ascontiguousarray(q.images, np.float32), 1)
        same: dict[int, float] = {}
        views = list(q.views) + [None] * (len(q.images) - len(q.views))
        for i, (sim, row) in enumerate(zip(sims[:, 0], rows[:, 0], strict=False)):
            case = int(st.images.case[row]) if row >= 0 else -1
            if row >= 0 and sim >= SAME_FILM and case not in excluded:
                same[case] = max(same.get(case, 0.0), min(float(sim), 1.0))
                views[i] = st.images.view[row] or views[i]
        if not same:
            return same, q
        ages = [st.cases[c].age for c in same if st.cases[c].age is not None]
        labels = frozenset(f for c in same for f in st.cases[c].labels)
        return same, Query(q.images, q.text, labels, tuple(views), ages[0] if ages else q.age)

    @staticmethod
    def _comparable(st: _State, i: int, found: dict[str, tuple[float, int]], q: Query) -> bool:
        """Whether a case is of the query's age group and, when found by image, of one of its projections,
        as far as both sides are known. The rest are listed after: an AP film (portable, supine, the heart
        magnified) or a child's chest looks unlike an adult PA film for reasons that are not disease, so
        it is a poor example of what the study shows."""
        age = st.cases[i].age
        if q.age is not None and age is not None and (q.age < ADULT) != (age < ADULT):
            return False
        if "image" not in found or not any(q.views):
            return True
        view = st.images.view[found["image"][1]]
        return any(_same_projection(view, v) for v in q.views)

    def similar_cases(self, pooled: Sequence[np.ndarray] = (), text: str = "",
                      probabilities: Mapping[str, float] | None = None, k: int = 5,
                      exclude: Collection[str] = (), views: Sequence[str] = ()) -> list[SimilarCase]:
        """The drafters' one call: a study's views (pooled features, and frontal/lateral where known), its
        text (indication and/or draft) and its finding probabilities in, the ranked similar cases out."""
        return self.search(self.query(pooled, text, probabilities, views), k, exclude)

    @staticmethod
    def _similar(st: _State, i: int, score: float, found: dict[str, tuple[float, int]],
                 findings: frozenset[str]) -> SimilarCase:
        case = st.cases[i]
        matched = "image" if "image" in found else "report"  # an image hit shows the image that matched
        thumb = (st.images if matched == "image" else st.texts).thumb[found[matched][1]]
        return SimilarCase(case.id, round(score, 4), "+".join(found), list(case.labels),
                           case.report or "Labels: " + (", ".join(case.labels) or "none"), thumb,
                           [f for f in case.labels if f in findings],
                           {name: round(sim, 4) for name, (sim, _) in found.items()})


def _same_projection(a: str | None, b: str | None) -> bool:
    """Unknown matches anything, and a frontal film of unknown projection either PA or AP."""
    return a is None or b is None or a == b or {a, b} in ({FRONTAL, "PA"}, {FRONTAL, "AP"})
