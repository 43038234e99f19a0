"""The outbox of signed reports going back into their PACS studies (db.models.Delivery): a row is written
in the sign-off's transaction (commands.approve), so nothing is lost between signing and sending or across
a restart; here, which are due, what each carries, and what became of a try. A failed try waits twice as
long as the one before, from 30 seconds up to an hour."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from db.models import Approval, Delivery, PacsLink, Study, utcnow
from db.session import transaction
from xr.config import Settings
from xr.export.approved import ApprovedReport
from xr.store.exports import approved_report

FIRST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=1)
NOT_IN_PACS = "report not yet in PACS"


@dataclass(frozen=True)
class DeliveryJob:
    id: int
    study_id: int
    address: str  # sealed (xr.config.seal): the study's UID in the PACS
    report: ApprovedReport


def due_deliveries(s: Settings, now: datetime | None = None, every: bool = False) -> list[DeliveryJob]:
    """The reports not yet in the PACS whose wait is over (`every`: all of them, as `xr pacs send` asks),
    oldest sign-off first."""
    now = now or utcnow()
    with transaction(s.database_url, read_only=True) as session:
        q = select(Delivery, PacsLink.address).join(PacsLink, PacsLink.study_id == Delivery.study_id) \
            .where(Delivery.sent_at.is_(None)).order_by(Delivery.approval_id)
        if not every:
            q = q.where(Delivery.next_attempt_at <= now)
        jobs = []
        for d, address in session.execute(q).all():
            study = session.get(Study, d.study_id)
            approval = session.get(Approval, d.approval_id)
            assert study is not None and approval is not None  # foreign keys
            jobs.append(DeliveryJob(d.id, d.study_id, address, approved_report(study, approval)))
        return jobs


def delivered(s: Settings, delivery_id: int) -> None:
    with transaction(s.database_url) as session:
        d = session.get(Delivery, delivery_id)
        assert d is not None
        d.sent_at, d.attempts, d.last_error = utcnow(), d.attempts + 1, ""


def not_delivered(s: Settings, delivery_id: int, reason: str) -> datetime:
    """Record a failed try (`reason`: one line, no identifier); returns when the next is due."""
    with transaction(s.database_url) as session:
        d = session.get(Delivery, delivery_id)
        assert d is not None
        d.attempts += 1
        d.next_attempt_at = utcnow() + min(FIRST_WAIT * 2 ** (d.attempts - 1), LONGEST_WAIT)
        d.last_error = reason[:500]
        return d.next_attempt_at
