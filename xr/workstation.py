"""The workstation's use cases, shared by the app, the CLI and the API: ingest -> draft -> store."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from xr import store
from xr.config import Settings, settings
from xr.draft.result import Draft
from xr.draft.retrieval import RetrievalDrafter
from xr.ingest import IngestedStudy, load_study

LOCAL_USER = store.Actor("local", "radiologist")  # single-user mode until log-in lands
DRAFTERS = ("retrieval", "dffg")
# The DFFG generator stays opt-in until it beats the clinical floors (README, "Report generator").
DEFAULT_DRAFTER = "retrieval"


def make_drafter(name: str):
    if name == "retrieval":
        return RetrievalDrafter()
    if name == "dffg":
        from xr.draft.dffg import DFFGDrafter

        return DFFGDrafter()
    raise ValueError(f"XR_DRAFTER must be one of {', '.join(DRAFTERS)}, not '{name}'")


@dataclass(frozen=True)
class Drafted:
    study_id: int | None  # None when not stored
    study: IngestedStudy
    draft: Draft


class Workstation:
    def __init__(self, s: Settings | None = None) -> None:
        self.settings = s or settings()
        self._drafter = None
        self._lock = threading.Lock()
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))

    @property
    def drafter(self):
        with self._lock:  # load the models once, even when the first requests arrive together
            if self._drafter is None:
                self._drafter = make_drafter(os.environ.get("XR_DRAFTER", DEFAULT_DRAFTER))
            return self._drafter

    def draft(self, paths: list[str | Path], indication: str = "", actor: store.Actor | None = LOCAL_USER,
              progress=lambda fraction, desc: None) -> Drafted:
        """Draft a study; with an actor, store it (study, images, draft) in one transaction."""
        t0 = time.perf_counter()
        progress(0.05, "Reading images")
        study = load_study(paths, self.settings)
        t1 = time.perf_counter()
        progress(0.3, "Encoding and retrieving similar cases")
        draft = self.drafter.draft(study, indication.strip())
        draft.timings = {"ingest_ms": (t1 - t0) * 1e3, **draft.timings}
        study_id = None
        if actor is not None:
            progress(0.9, "Saving")
            t2 = time.perf_counter()
            study_id = store.record_draft(self.settings, study, draft, indication.strip(), actor)
            draft.timings["store_ms"] = (time.perf_counter() - t2) * 1e3
        draft.timings["total_ms"] = (time.perf_counter() - t0) * 1e3
        draft.timings = {k: round(v, 1) for k, v in draft.timings.items()}
        progress(1.0, "Done")
        return Drafted(study_id, study, draft)
