"""The workstation's use cases, shared by the app, the CLI and the API: ingest -> draft -> store ->
approve, the approved study joining the similar-case library; and synthetic films, which join nothing."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch

from xr import access, store
from xr.config import Settings, settings
from xr.deliver import send_reports
from xr.draft.compare import compare
from xr.draft.registry import Drafter, make_drafter
from xr.errors import UserError
from xr.ingest import IngestedStudy, load_study, read_pixels
from xr.ingest.image import IngestedImage
from xr.ingest.pacs import Pacs
from xr.ingest.source import StudyRef, StudySource
from xr.ingest.sources import Files
from xr.result import DraftResult
from xr.retrieve.index import CaseIndex
from xr.views import FRONTAL, LATERAL, VIEWS


class RequestError(UserError):
    """A use case asked for with what it cannot take (no film where one is needed, no reason tag)."""


log = logging.getLogger(__name__)
SYNTHETIC_LINE = "SYNTHETIC FILM, made by the film generator: not a patient's image."
LOCAL_USER = store.Actor(access.LOCAL_USER_NAME, access.Role.ADMIN)  # single-user mode: one person, every workspace


@dataclass(frozen=True)
class Drafted:
    study_id: int | None  # None when not stored
    study: IngestedStudy
    draft: DraftResult


class Workstation:
    def __init__(self, s: Settings | None = None) -> None:
        self.settings = s or settings()
        self._drafter: Drafter | None = None
        self._index: CaseIndex | None = None
        self._refiner = None
        self._lock = threading.Lock()
        self._refiner_lock = threading.Lock()  # its own: loading the LLM must not hold up drafting
        self._film_maker = None
        self._film_lock = threading.Lock()
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))

    @property
    def drafter(self) -> Drafter:
        with self._lock:  # load the models once, even when the first requests arrive together
            if self._drafter is None:
                self._index = CaseIndex()
                self._drafter = make_drafter(self.settings, self._index)
            return self._drafter

    @property
    def index(self) -> CaseIndex:
        """The similar-case index the drafter searches (built with it)."""
        _ = self.drafter  # built together with the index
        assert self._index is not None
        return self._index

    @property
    def refiner(self):
        with self._refiner_lock:  # loaded on first use: most sessions never refine
            if self._refiner is None:
                from xr.refine.refiner import REFINER_DIR, Refiner

                self._refiner = Refiner(self.settings.refiner_dir or REFINER_DIR)
            return self._refiner

    @property
    def film_maker(self):
        with self._film_lock:  # loaded on first use: only the Generate workspace needs it
            if self._film_maker is None:
                from xr.config import ASSETS
                from xr.generate.anytoany import FilmMaker

                self._film_maker = FilmMaker.from_pretrained(ASSETS / "film_generator", ASSETS / "dffg")
            return self._film_maker

    def generate(self, views: Sequence[str], report: str = "", findings: Sequence[str] = (),
                 frontal: str | Path | None = None, lateral: str | Path | None = None, seed: int = 0,
                 progress=lambda fraction, desc: None):
        """Synthetic films from a report, findings and/or the other view's file. Nothing is stored: the
        films go back to the caller only, never into a study or the similar-case library."""
        given = {}
        for view, path in zip(VIEWS, (frontal, lateral), strict=True):
            if path:
                study = load_study([path], self.settings)
                if len(study.images) != 1:
                    raise RequestError(f"give one {view} film, not {len(study.images)} images")
                given[view] = study.images[0].pixels
        progress(0.05, "Loading the film generator")
        maker = self.film_maker
        return maker.make(views, report=report, findings=findings, frontal=given.get(FRONTAL),
                          lateral=given.get(LATERAL), seed=seed, progress=lambda f: progress(0.1 + 0.85 * f, "Sampling"))

    def actor(self, username: str | None, action: str) -> store.Actor:
        """The user behind a request, if their role may do `action` (xr.access); else AccessError."""
        return store.Actor(*access.require(self.settings, username, action))

    def refine(self, study_id: int | None = None, text: str = "", indication: str = ""):
        """Refine a stored study's latest draft (with its finding probabilities and similar reports, so
        contradictions can be flagged) or, without a study, a draft text alone (no finding checks)."""
        from xr.refine.examples import RefineExample

        if study_id is not None:
            d = store.latest_draft(self.settings, study_id)
            ex = RefineExample(indication=d.indication, draft=d.text, findings=d.findings, similar=d.similar)
        else:
            ex = RefineExample(indication=indication.strip(), draft=store.check_text(text))
        return self.refiner.refine(ex)

    def draft(self, paths: Sequence[str | Path], indication: str = "", actor: store.Actor | None = LOCAL_USER,
              progress=lambda fraction, desc: None, exclude: frozenset[str] = frozenset()) -> Drafted:
        """Draft a study; with an actor, store it (study, images, draft) in one transaction. `exclude`:
        library cases the draft may not use (a teaching case is drafted without itself)."""
        return self.draft_from(Files(paths, self.settings), None, indication, actor, progress, exclude)

    def draft_from(self, source: StudySource, ref: StudyRef | None = None, indication: str = "",
                   actor: store.Actor | None = LOCAL_USER, progress=lambda fraction, desc: None,
                   exclude: frozenset[str] = frozenset()) -> Drafted:
        """Draft a study of a source (xr.ingest.sources: files, a folder; a PACS); `ref`: which one, by
        default its first. The indication given, else the one the source holds."""
        t0 = time.perf_counter()
        progress(0.05, "Reading images")
        if ref is None:
            refs = source.studies()
            if not refs:
                raise RequestError("the source holds no study")
            ref = refs[0]
        return self._draft(source.load(ref), indication or ref.indication, actor, progress, t0, exclude)

    def draft_all(self, source: StudySource, refs: Sequence[StudyRef], actor: store.Actor,
                  progress=lambda fraction, desc: None) -> tuple[list[int], list[str]]:
        """Studies of a source drafted and stored one by one: (their study ids, a study already drafted
        counted as its own; one line per study refused, which is left out whole)."""
        drafted, refused = [], []
        for n, ref in enumerate(refs):
            progress(n / max(len(refs), 1), f"Drafting {ref.name} ({n + 1} of {len(refs)})")
            try:
                study_id = self.draft_from(source, ref, actor=actor).study_id
            except store.KnownStudy as known:
                study_id = known.study_id
            except UserError as e:
                refused.append(f"{ref.name}: {e}")
                log.warning("%s: not drafted (%s)", ref.name, e)
                continue
            assert study_id is not None  # stored: drafted by an actor
            drafted.append(study_id)
        return drafted, refused

    def draft_ingested(self, study: IngestedStudy, indication: str = "", actor: store.Actor | None = None) -> Drafted:
        """Draft a study already read into pixels (a batch worker elsewhere gets those, never the files)."""
        return self._draft(study, indication, actor, lambda fraction, desc: None, time.perf_counter())

    def draft_stored(self, study_id: int, actor: store.Actor, progress=lambda fraction, desc: None) -> Drafted:
        """Draft (again) a study already on the worklist, from its stored images and their recorded views."""
        t0 = time.perf_counter()
        view = store.study_record(self.settings, study_id)
        if not view.images:
            raise store.StoreError(f"study {study_id} has no images")
        # A view the last draft read off the image is read again, not passed off as the header's.
        read = {v.content_hash for v in (view.draft.views if view.draft else []) if v.view_source == "image"}
        images = [IngestedImage(pixels=read_pixels(im.path, self.settings), source_format="png",
                                view="unknown" if im.content_hash in read else im.view) for im in view.images]
        if view.approval is not None:
            raise store.StoreError(f"study #{study_id} is signed: amend its report instead of drafting it again")
        study = IngestedStudy(key=view.key, images=images, patient=view.patient_link, study_date=view.day)
        return self._draft(study, view.indication, actor, progress, t0, again=True)

    def _draft(self, study: IngestedStudy, indication: str, actor: store.Actor | None, progress, t0: float,
               exclude: frozenset[str] = frozenset(), again: bool = False) -> Drafted:
        if actor is not None and not again:  # films already drafted or signed: opened, never drafted over
            known = store.known_study(self.settings, study.key)
            if known is not None:
                raise known
        self.index.sync(self.settings)  # approvals made since the last draft, here or in another process
        t1 = time.perf_counter()
        progress(0.3, "Encoding and retrieving similar cases")
        draft = self.drafter.draft(study, indication.strip(), exclude)
        if any(im.synthetic for im in study.images):  # said first, wherever the text goes
            draft.findings_text = f"{SYNTHETIC_LINE} {draft.findings_text}".strip()
        # A stored draft compares with the same patient's earlier study (new, unchanged, resolved); a draft
        # that stores nothing reads no database either.
        prior = store.prior_study(self.settings, study.patient, study.study_date, study.key) if actor else None
        if prior is not None:
            compare(draft, prior)
        draft.timings = {"ingest_ms": (t1 - t0) * 1e3, **draft.timings}
        study_id = None
        if actor is not None:
            progress(0.9, "Saving")
            t2 = time.perf_counter()
            study_id = store.record_study(self.settings, study, indication.strip(), actor, draft, again=again)
            draft.timings["store_ms"] = (time.perf_counter() - t2) * 1e3
        draft.timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        draft.timings = {k: round(v, 1) if isinstance(v, float) else v for k, v in draft.timings.items()}
        progress(1.0, "Done")
        return Drafted(study_id, study, draft)

    def add_study(self, paths: Sequence[str | Path], indication: str, actor: store.Actor) -> int:
        """Put a study on the worklist as pending, to be drafted when someone opens it (KnownStudy where
        these films are already a drafted or signed study)."""
        return store.record_study(self.settings, load_study(paths, self.settings), indication.strip(), actor)

    def approve(self, study_id: int, text: str, actor: store.Actor = LOCAL_USER, seen: str | None = None) -> int:
        """Approve, the study joining the similar-case library in the same transaction. Its library entry
        (features from the cache, text embedding, labels) is computed first: a failed approval adds nothing,
        and no model pass runs while the database is locked for writing. `seen`: see store.approve. A study
        from the PACS has its report sent back into it at once (xr.deliver), or queued when that fails."""
        entry = self.index.entry(self.settings, study_id, text, self.drafter.encoder)
        approval = store.approve(self.settings, study_id, text, actor, library_entry=entry, seen=seen)
        self.index.sync(self.settings)
        if self.settings.pacs_url:  # into its PACS study now; a refusal leaves it in the outbox, tried again later
            send_reports(self.settings)
        return approval

    def desk(self, user: str | None) -> Desk:
        """The workstation as the user behind a request reaches it (the app's workspaces and API)."""
        return Desk(self, user)


class Desk:
    """The use cases as one user reaches them: each checks the user's right first (xr.access; a refusal is
    an AccessError, audited), and a signature asks for their password again. The Gradio handlers and the
    API endpoints are adapters over these. `user`: the log-in name, None in single-user mode."""

    def __init__(self, ws: Workstation, user: str | None) -> None:
        self.ws, self.user, self.settings = ws, user, ws.settings

    def may(self, right: str) -> store.Actor:
        """The user as an actor, if their role has `right`."""
        return self.ws.actor(self.user, right)

    # ---- reading ------------------------------------------------------------------------------------
    def worklist(self, status: str = "", search: str = "") -> list[dict]:
        self.may("worklist")
        return store.worklist(self.settings, status, search)

    def study(self, study_id: int) -> store.StudyRecord:
        self.may("worklist")
        return store.study_record(self.settings, study_id)

    def history(self, study_id: int) -> list[store.HistoryEntry]:
        self.may("worklist")
        return store.history(self.settings, study_id)

    # ---- drafting -----------------------------------------------------------------------------------
    def draft(self, paths: Sequence[str | Path], indication: str = "", progress=lambda fraction, desc: None) -> Drafted:
        """Draft and store a study (KnownStudy where these films are one already: it is opened instead)."""
        return self.ws.draft(paths, indication, self.may("draft"), progress=progress)

    def add(self, paths: Sequence[str | Path], indication: str = "") -> int:
        return self.ws.add_study(paths, indication, self.may("draft"))

    def draft_again(self, study_id: int, keep: str = "", progress=lambda fraction, desc: None) -> Drafted:
        """A stored study drafted again; `keep`: the edited text, kept in its history as a revision first."""
        actor = self.may("draft")
        if keep.strip():
            store.save_revision(self.settings, study_id, keep, self.may("edit"))
        return self.ws.draft_stored(study_id, actor, progress=progress)

    def pacs_search(self, since: date | None = None, until: date | None = None, modality: str = "",
                    accession: str = "") -> list[tuple[StudyRef, int | None]]:
        """Chest studies in the PACS, each with its study number here (None: not on the worklist yet)."""
        self.may("draft")
        pacs = Pacs(self.settings)
        found = []
        for ref in pacs.studies(since, until, modality, accession):
            known = store.known_study(self.settings, pacs.key(ref))
            found.append((ref, known.study_id if known else None))
        return found

    def pacs_draft(self, refs: Sequence[StudyRef], progress=lambda fraction, desc: None) -> tuple[list[int], list[str]]:
        """PACS studies fetched, drafted and put on the worklist: (study ids, one line per study refused)."""
        return self.ws.draft_all(Pacs(self.settings), refs, self.may("draft"), progress)

    def films_report(self, paths: Sequence[str | Path], progress=lambda fraction, desc: None) -> Drafted:
        """A report drafted from films, real or synthetic, storing nothing (the Generate workspace)."""
        self.may("generate")
        return self.ws.draft(paths, "", actor=None, progress=progress)

    def refine(self, study_id: int | None = None, text: str = "", indication: str = ""):
        self.may("refine")
        if study_id is None and not text.strip():
            raise RequestError("give a study_id or a draft text to refine")
        return self.ws.refine(study_id, text, indication)

    def generate(self, views: Sequence[str], report: str = "", findings: Sequence[str] = (),
                 frontal: str | Path | None = None, lateral: str | Path | None = None, seed: int = 0,
                 progress=lambda fraction, desc: None):
        self.may("generate")
        return self.ws.generate(views, report, findings, frontal, lateral, seed, progress)

    # ---- editing and signing ------------------------------------------------------------------------
    def save(self, study_id: int, text: str, seen: str | None = None) -> int | None:
        """An edit of the study's text (None: nothing changed); `seen`: see store.save_revision."""
        return store.save_revision(self.settings, study_id, text, self.may("edit"), seen=seen)

    def approve(self, study_id: int, text: str, password: str, seen: str | None = None) -> int:
        """The user's signature: their right, then their password again (a session alone does not sign)."""
        actor = self.may("approve")
        access.reauthenticate(self.settings, actor.name, password or "")
        return self.ws.approve(study_id, text, actor, seen=seen)

    def export(self, study_id: int, fmt: str, folder: Path) -> Path:
        """The study's signed report in an export format (xr/export/registry.py), into `folder`."""
        return store.export_report(self.settings, study_id, fmt, folder, self.may("export_report"))

    # ---- corrections --------------------------------------------------------------------------------
    def corrections(self, after: int | None = None) -> store.CorrectionsQueue:
        self.may("correct")
        return store.corrections_queue(self.settings, after)

    def to_correct(self, study_id: int) -> store.StudyRecord:
        """A drafted study as the corrections queue shows it (an annotator has no worklist)."""
        self.may("correct")
        record = store.study_record(self.settings, study_id)
        if record.status != store.StudyStatus.DRAFTED:
            raise store.StoreError(f"study {study_id} is {record.status}: only drafted studies are corrected")
        return record

    def correct(self, study_id: int, text: str, tags: Sequence[str]) -> int | None:
        """An annotator's correction, with at least one reason tag ("no correction": the draft is right)."""
        actor = self.may("correct")
        if not tags:
            raise RequestError("give at least one reason tag")
        return store.save_revision(self.settings, study_id, text, actor, tags=list(tags))

    def export_edits(self, out: Path) -> int:
        return store.export_edits(self.settings, out, self.may("export_edits"))

    # ---- teaching -----------------------------------------------------------------------------------
    def teaching_studies(self) -> list[store.TeachingStudy]:
        self.may("teach")
        return store.teaching_studies(self.settings)

    def teaching_study(self, study_id: int) -> store.StudyRecord:
        """An approved study of the similar-case library, as a teaching case (an educator has no worklist)."""
        self.may("teach")
        record = store.study_record(self.settings, study_id)
        if record.approval is None:
            raise store.StoreError(f"study {study_id} is not a teaching case: it is not approved")
        return record
