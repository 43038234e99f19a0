"""Drafting ahead: the PACS polled for chest radiography studies it did not have before, each fetched,
drafted and stored before a radiologist opens it; every round also sends the signed reports that wait in
the outbox. `python -m xr pacs watch` (and the app, when XR_PACS_URL is set) runs it."""
from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from tqdm import tqdm

from xr import store
from xr.access import Role
from xr.deliver import Sent, send_reports
from xr.errors import UserError
from xr.ingest.pacs import Pacs
from xr.workstation import Workstation

log = logging.getLogger(__name__)
WATCHER = store.Actor("pacs-watcher", Role.RADIOLOGIST)  # drafts ahead; no password: it never logs in, never signs
LOOK_BACK = timedelta(days=1)  # each round searches studies of yesterday and today, unless told a date


@dataclass
class Round:
    drafted: list[int] = field(default_factory=list)  # study ids
    refused: list[str] = field(default_factory=list)  # one line each: the study is left out whole
    known: int = 0  # found, already on the worklist
    passed: int = 0  # found, refused in an earlier round of this watcher: not fetched again
    sent: Sent = field(default_factory=lambda: Sent(0, 0))

    def line(self) -> str:
        return (f"{len(self.drafted)} drafted ahead, {self.known} already on the worklist, {len(self.refused)} refused"
                + (f" ({self.passed} refused before, not fetched again)" if self.passed else "") + "; "
                f"reports: {self.sent.sent} sent, {self.sent.waiting} not yet in PACS")


def watch_once(ws: Workstation, pacs: Pacs | None = None, since: date | None = None,
               refused: set[str] | None = None) -> Round:
    """One round: every new chest study since `since` (default: yesterday) drafted, then the outbox sent.
    `refused`: the keys of studies refused in earlier rounds, which are not fetched again (a malformed study
    would otherwise be downloaded and refused every round); this round's refusals are added to it."""
    pacs, refused = pacs or Pacs(ws.settings), refused if refused is not None else set()
    found = [(ref, pacs.key(ref)) for ref in pacs.studies(since=since or date.today() - LOOK_BACK)]
    new = [(ref, key) for ref, key in found if store.known_study(ws.settings, key) is None]
    fresh = [(ref, key) for ref, key in new if key not in refused]
    done = Round(known=len(found) - len(new), passed=len(new) - len(fresh))
    with tqdm(total=len(fresh), desc="drafting ahead", unit="study", file=sys.stderr, disable=not fresh) as bar:
        done.drafted, done.refused = ws.draft_all(pacs, [ref for ref, _ in fresh], WATCHER,
                                                  lambda fraction, desc: bar.update(round(fraction * len(fresh)) - bar.n))
        bar.update(len(fresh) - bar.n)
    refused |= {key for _, key in fresh if store.known_study(ws.settings, key) is None}
    done.sent = send_reports(ws.settings, pacs)
    return done


class Watcher:
    """`watch_once` every `every` seconds on a daemon thread: the app's watcher when XR_PACS_URL is set.
    `line()` is what the Reporting workspace shows of it."""

    def __init__(self, ws: Workstation, every: float = 30.0) -> None:
        self.ws, self.every = ws, every
        self.last: Round | None = None
        self.at: datetime | None = None
        self.error = ""
        self.refused: set[str] = set()  # keys of the studies refused so far: not fetched again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pacs-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last, self.error = watch_once(self.ws, refused=self.refused), ""
                log.info("PACS watcher: %s", self.last.line())
            except UserError as e:  # the PACS unreachable, say: said, and tried again next round
                self.error = str(e)
                log.warning("PACS watcher: %s", e)
            self.at = datetime.now(UTC)
            self._stop.wait(self.every)

    def line(self) -> str:
        if self.at is None:
            return "The PACS watcher's first round is running: new chest studies are drafted ahead."
        when = f"{self.at:%H:%M} UTC"
        if self.error:
            return f"PACS watcher, {when}: {self.error}; tried again every {self.every:.0f} s."
        assert self.last is not None
        return f"PACS watcher, last round {when}: {self.last.line()}."
