"""The schema. Nothing here can hold a patient identifier: studies are keyed by a salted hash, images by
content hash, and no DICOM header text is kept beyond view and pixel spacing, the patient's age (90 and
over as 90) and sex (DICOM's "retain patient characteristics" option) and the study date ("retain
longitudinal temporal information"): a prior is compared by its date. A patient's studies are linked by a
keyed hash of their ID, never the ID; where a study lives in a PACS is kept only encrypted."""
from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A time with time zone, written as UTC and read back as naive UTC on every engine. SQLite keeps no
    zone and has always returned naive UTC; PostgreSQL would return the server's time zone, and the app
    shows these times as UTC."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # radiologist | educator | annotator | admin
    password_hash: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())  # no log-in, no request


class Study(Base):
    __tablename__ = "studies"
    # The worklist: newest first, all studies or those of one status (migration 0004).
    __table_args__ = (Index("ix_studies_updated", "updated_at", "id"),
                      Index("ix_studies_status_updated", "status", "updated_at", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # salted hash, never the UID itself
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|drafted|approved
    indication: Mapped[str] = mapped_column(Text, default="")
    age_years: Mapped[int | None] = mapped_column(Integer)  # from the films' header: 90 and over as 90
    sex: Mapped[str | None] = mapped_column(String(1))  # F | M | O, from the films' header
    patient_link: Mapped[str | None] = mapped_column(String(64), index=True)  # keyed hash of the patient ID: priors
    study_date: Mapped[date | None] = mapped_column(Date)  # when the films were taken: the comparison names it
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    images: Mapped[list[Image]] = relationship(back_populates="study", order_by="Image.position")
    drafts: Mapped[list[Draft]] = relationship(back_populates="study", order_by="Draft.id")
    revisions: Mapped[list[Revision]] = relationship(back_populates="study", order_by="Revision.id")
    approvals: Mapped[list[Approval]] = relationship(back_populates="study", order_by="Approval.id")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("study_id", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    view: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    pixel_spacing_mm: Mapped[float | None] = mapped_column(Float)
    source_format: Mapped[str] = mapped_column(String(8))
    storage_path: Mapped[str] = mapped_column(String(256))  # relative to the data directory
    # BurnedInAnnotation YES: kept out of teaching and of the fine-tuning export unless asked for
    burned_in: Mapped[bool] = mapped_column(default=False, server_default=false())
    study: Mapped[Study] = relationship(back_populates="images")


class Draft(Base):
    __tablename__ = "drafts"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    indication: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    findings: Mapped[dict[str, Any]] = mapped_column(JSON)
    fusion_weights: Mapped[dict[str, Any]] = mapped_column(JSON)  # view index -> grid
    similar_cases: Mapped[list[Any]] = mapped_column(JSON)
    views: Mapped[list[Any] | None] = mapped_column(JSON)  # per view: view, source, measurements, lung mask (RLE)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON)
    # finding -> {"stance": present | possible | absent | not assessed, "cut": the policy's cut behind it}
    statements: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notes: Mapped[list[Any] | None] = mapped_column(JSON)  # how the draft was made
    hedged: Mapped[list[Any] | None] = mapped_column(JSON)  # the sentences that hedge a finding
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    study: Mapped[Study] = relationship(back_populates="drafts")


class Revision(Base):
    __tablename__ = "revisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    diff: Mapped[str] = mapped_column(Text)  # unified diff against the draft
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)  # reason tags (annotators)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    study: Mapped[Study] = relationship(back_populates="revisions")
    user: Mapped[User] = relationship()


class Approval(Base):
    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    revision_id: Mapped[int | None] = mapped_column(ForeignKey("revisions.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    approved_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    study: Mapped[Study] = relationship(back_populates="approvals")
    draft: Mapped[Draft] = relationship()
    user: Mapped[User] = relationship()


class LoginSession(Base):
    """A logged-in browser or client: kept here, not in one process's memory, so that every app process on
    one database knows it, and a password change or `xr user disable` ends it everywhere. The token is
    stored only as its SHA-256: whoever reads the database cannot use it."""
    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[User] = relationship()


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_study_at", "study_id", "at"),
                      Index("ix_audit_user_action_at", "user_id", "action", "at"))  # failed log-ins of a user
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))  # ingest | draft | edit | approve | library | export | login | denied | user
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LibraryCase(Base):
    """An approved study in the similar-case library. Only what search needs: the salted study (by id),
    the approval it mirrors, embeddings, labels and the approved text; never pixels or header text (the
    pixels could carry burned-in names). One row per study: an amendment replaces it."""
    __tablename__ = "library_cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), unique=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approvals.id"))
    image_encoder: Mapped[str] = mapped_column(String(32))  # vectors from another encoder are not comparable
    image_features: Mapped[bytes] = mapped_column(LargeBinary)  # (views, D) float32 pooled, not yet centred
    text_embedding: Mapped[bytes] = mapped_column(LargeBinary)  # (384,) float32 MiniLM, L2-normalised
    labels: Mapped[list[Any]] = mapped_column(JSON)  # labeler positives on the approved text
    report: Mapped[str] = mapped_column(Text)  # the approved text
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    study: Mapped[Study] = relationship()


class PacsLink(Base):
    """Where a study drafted from the PACS lives there: its Study Instance UID sealed under the site secret
    (xr.config.seal), so a signed report can go back into it. Never shown, logged or exported."""
    __tablename__ = "pacs_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), unique=True)
    address: Mapped[str] = mapped_column(Text)


class Delivery(Base):
    """A signed report on its way into its PACS study (the outbox): written in the transaction of the
    sign-off, so a report is never lost between signing and sending, and sent until the PACS has it."""
    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    approval_id: Mapped[int] = mapped_column(ForeignKey("approvals.id"), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    sent_at: Mapped[datetime | None] = mapped_column()  # None: not yet in the PACS
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")  # the last refusal, one line, no identifier
