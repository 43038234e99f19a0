"""Drafting ahead: the PACS polled for chest radiography studies it did not have before, each fetched,
drafted and stored before a radiologist opens it; every round also sends the signed reports that wait in
the outbox. `python -m xr pacs watch` (and the app, when XR_PACS_URL is set) runs it."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta

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
    refused: list[str] = field(default_factory=list)  # one line each: the study is left out, tried next round
    known: int = 0  # found, already on the worklist
    sent: Sent = field(default_factory=lambda: Sent(0, 0))

    def line(self) -> str:
        return (f"{len(self.drafted)} drafted ahead, {self.known} already on the worklist, {len(self.refused)} refused; "
                f"reports: {self.sent.sent} sent, {self.sent.waiting} not yet in PACS")


def watch_once(ws: Workstation, pacs: Pacs | None = None, since: date | None = None) -> Round:
    """One round: every new chest study since `since` (default: yesterday) drafted, then the outbox sent."""
    pacs = pacs or Pacs(ws.settings)
    found = pacs.studies(since=since or date.today() - LOOK_BACK)
    new = [ref for ref in found if store.known_study(ws.settings, pacs.key(ref)) is None]
    done = Round(known=len(found) - len(new))
    for ref in tqdm(new, desc="drafting ahead", unit="study", file=sys.stderr, disable=not new):
        try:
            study_id = ws.draft_from(pacs, ref, actor=WATCHER).study_id
        except UserError as e:
            done.refused.append(f"{ref.name}: {e}")
            log.warning("%s: not drafted (%s)", ref.name, e)
            continue
        assert study_id is not None  # stored: drafted by an actor
        done.drafted.append(study_id)
    done.sent = send_reports(ws.settings, pacs)
    return done
