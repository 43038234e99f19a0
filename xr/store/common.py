"""What every job of the store shares: its errors, statuses, the acting user, the library entry, and the
helpers each transaction uses (the user row, the audit event, the study row)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
from safetensors.numpy import load, save
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from db.models import Approval, AuditEvent, Draft, LibraryCase, Revision, Study, User
from xr import access
from xr.errors import UserError

# Why an annotator changed a draft; carried into the fine-tuning export. "no correction" marks a draft
# checked and found right, so it leaves the corrections queue too.
REASON_TAGS = ("missed finding", "false finding", "wrong location or severity", "wording", "no correction")


class StoreError(UserError):
    """A refused action on stored studies."""


class KnownStudy(StoreError):
    """These films are already a study that has a draft or a signature: it is opened, never merged into.
    `message` says so in one line ("these films are study #3, signed 2026-12-06 12:04 UTC: nothing was changed")."""

    def __init__(self, study_id: int, status: str, signed_at: str | None) -> None:
        self.study_id, self.status, self.signed_at = study_id, status, signed_at
        what = f"signed {signed_at.replace('T', ' ')} UTC" if signed_at else status
        super().__init__(f"these films are study #{study_id}, {what}: nothing was changed")


class StudyStatus(StrEnum):
    """Where a study is on the worklist. Stored as its string value (studies.status): no schema change."""
    PENDING = "pending"  # on the worklist, not drafted yet
    DRAFTED = "drafted"
    APPROVED = "approved"


STATUSES = tuple(StudyStatus)


@dataclass(frozen=True)
class Actor:
    name: str
    role: str


@dataclass(frozen=True)
class LibraryEntry:
    image_encoder: str  # features from another encoder are not comparable, and are not searched
    image_features: np.ndarray  # (views, D) float32 pooled image features (D: the encoder's), raw: centred at load on the library mean
    text_embedding: np.ndarray  # (384,) float32 MiniLM of the report text
    labels: list[str]  # labeler positives on the approved text

    def columns(self) -> dict:
        """The library_cases columns, arrays as self-describing safetensors bytes (dtype and shape kept)."""
        return {"image_encoder": self.image_encoder, "labels": list(self.labels),
                "image_features": save({"x": np.asarray(self.image_features, np.float32)}),
                "text_embedding": save({"x": np.asarray(self.text_embedding, np.float32)})}

    @classmethod
    def from_row(cls, row: LibraryCase) -> LibraryEntry:
        return cls(row.image_encoder, load(row.image_features)["x"], load(row.text_embedding)["x"], list(row.labels))


def insert_new(session: Session, model, unique: str, **values) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING: two first actions at once (the same new user, the same new
    study) must both go through, not one fail on the unique key. True when this one inserted the row."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(model).values(**values).on_conflict_do_nothing(index_elements=[unique])
    return bool(session.execute(stmt.returning(model.id)).first())


def user_row(session: Session, actor: Actor) -> User:
    user = session.scalar(select(User).where(User.name == actor.name))
    if user is None:
        if actor.role not in access.ROLES:
            raise StoreError(f"unknown role '{actor.role}'")
        insert_new(session, User, "name", name=actor.name, role=actor.role)
        user = session.scalar(select(User).where(User.name == actor.name))
        assert user is not None  # inserted just now, or by a concurrent first action
    return user


def audit(session: Session, user: User | None, action: str, study: Study | None = None, **detail) -> None:
    session.add(AuditEvent(user_id=user.id if user else None, action=action,
                           study_id=study.id if study else None, detail=detail))


def latest_draft_row(session: Session, study_id: int) -> Draft:
    draft = session.scalar(select(Draft).where(Draft.study_id == study_id).order_by(Draft.id.desc()).limit(1))
    if draft is None:
        raise StoreError(f"study {study_id} has no draft yet")
    return draft


def study_row(session: Session, study_id: int, lock: bool = False) -> Study:
    """With `lock`, the study's row stays locked until the transaction ends: actions that must see each
    other's writes (approvals of one study) run one after the other. SQLite needs no row lock: its one
    writer at a time does the same."""
    study = session.get(Study, study_id, with_for_update=lock)
    if study is None:
        raise StoreError(f"no study {study_id}")
    return study


def check_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise StoreError("the report is empty")
    if len(text) > 20_000:
        raise StoreError("the report is over 20,000 characters")
    return text


def latest_approvals():
    return select(Approval.study_id, func.max(Approval.id).label("id")).group_by(Approval.study_id).subquery()


def correction_of(study: Study) -> Revision | None:
    """The latest tagged revision of the study's latest draft: an annotator's correction."""
    draft = study.drafts[-1]
    tagged = [r for r in study.revisions if r.draft_id == draft.id and r.tags]
    return tagged[-1] if tagged else None


def as_utc(at: datetime) -> datetime:
    """Stored times come back naive on every engine (db.models.UTCDateTime); every one of them is UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
