"""Signed reports back into their PACS studies: the outbox (xr.store.deliveries) sent over STOW-RS, each
report as a DICOM SR in the original study, its patient and study attributes read from the PACS at send
time and kept in memory only. A report the PACS already holds is the same SOP instance (its UID is
derived from the sign-off), so a resend after a lost answer never makes a second report; a failed send
stays in the outbox and is tried again, later each time, by the watcher or the next sign-off."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from xr import store
from xr.config import Settings
from xr.export.sr import ORIGINAL, to_dicom_sr
from xr.ingest.pacs import Pacs, PacsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sent:
    sent: int
    waiting: int  # still not in the PACS after this round
    reason: str = ""  # the last refusal, one line


def send_reports(s: Settings, pacs: Pacs | None = None, every: bool = False) -> Sent:
    """Send the reports whose wait is over (`every`: all not yet in the PACS)."""
    jobs = store.due_deliveries(s, every=every)
    if not jobs:
        return Sent(0, 0)
    pacs = pacs or Pacs(s)
    sent, reason = 0, ""
    for job in jobs:
        try:
            pacs.store(to_dicom_sr(job.report, s, pacs.header(job.address, ORIGINAL)))
        except PacsError as e:
            reason = str(e)
            due = store.not_delivered(s, job.id, reason)
            log.warning("study #%d: report not yet in PACS (%s); next try %s UTC", job.study_id, reason,
                        due.strftime("%H:%M:%S"))
            continue
        store.delivered(s, job.id)
        log.info("study #%d: report (approval %d) stored in its PACS study", job.study_id, job.report.approval_id)
        sent += 1
    return Sent(sent, len(jobs) - sent, reason)
