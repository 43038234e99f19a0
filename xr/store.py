"""Store: every user action as one database transaction. Image files are written first under their
content hash (atomic rename), and removed again if the transaction fails, so nothing is half-saved."""
from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from safetensors.numpy import load, save
from sqlalchemy import Select, case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from db.models import Approval, AuditEvent, Draft, Image, LibraryCase, Revision, Study, User, utcnow
from db.session import transaction
from xr import access
from xr.config import Settings, keyed_hash
from xr.errors import UserError
from xr.files import Provisional, WriteError, discard, write_atomic
from xr.ingest import IngestedStudy
from xr.report import diff_text
from xr.result import DraftResult

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


def image_path(s: Settings, content_hash: str) -> str:
    """Where an image is kept, relative to the data dir: named by the keyed hash of its pixels (the bare
    hash could be computed by anyone holding the film, and the name leaves with the fine-tuning export)."""
    name = keyed_hash(content_hash, s)
    return f"images/{name[:2]}/{name}.png"


def _write_png(s: Settings, content_hash: str, pixels) -> tuple[str, bool]:
    """Returns (path relative to the data dir, created now?)."""
    rel = image_path(s, content_hash)
    path = s.data_dir / rel
    if path.exists():
        return rel, False
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    try:
        write_atomic(path, buf.getvalue())
    except WriteError as e:  # the file name is the image's content hash: nothing the user needs to read
        raise WriteError(f"cannot store the image: {e.reason}; nothing was saved", e.reason) from None
    return rel, True


def known_study(s: Settings, key: str) -> KnownStudy | None:
    """The stored study of these films, if it has a draft or a signature (a pending one is not: drafting
    it is what it waits for)."""
    with transaction(s.database_url, read_only=True) as session:
        study = session.scalar(select(Study).where(Study.key == key))
        if study is None or study.status == StudyStatus.PENDING:
            return None
        signed = study.approvals[-1].approved_at.isoformat(timespec="minutes") if study.approvals else None
        return KnownStudy(study.id, study.status, signed)


def record_study(s: Settings, study: IngestedStudy, indication: str, actor: Actor,
                 result: DraftResult | None = None, again: bool = False) -> int:
    """Study, its images, the drafting result if there is one, stored as a Draft row (else the study waits
    on the worklist as pending) and the audit events: all or nothing. Returns the study id. A synthetic
    film (xr.generate) is refused: it must never pass for a patient's image or join the similar cases.
    Films that are already a drafted or signed study raise KnownStudy and change nothing, unless `again`
    (the study drafted again on purpose), and a signed study takes no new draft in any case."""
    if any(im.synthetic for im in study.images):
        raise StoreError("a synthetic film (marked so by the generator) cannot be stored as a patient's study")
    created: list[Path] = []
    try:
        written = []
        for im in study.images:
            rel, new = _write_png(s, im.content_hash, im.pixels)
            written.append(rel)
            if new:
                created.append(s.data_dir / rel)
        with transaction(s.database_url) as session:
            user = user_row(session, actor)
            new = insert_new(session, Study, "key", key=study.key, indication=indication)
            row = session.scalar(select(Study).where(Study.key == study.key).with_for_update())
            assert row is not None  # inserted above, or already there
            if not new and (row.approvals or (row.status != StudyStatus.PENDING and not again)):
                raise KnownStudy(row.id, row.status,
                                 row.approvals[-1].approved_at.isoformat(timespec="minutes") if row.approvals else None)
            if new:
                audit(session, user, "ingest", row, images=len(study.images))
            known = {i.content_hash: i for i in row.images}
            for pos, (im, rel) in enumerate(zip(study.images, written, strict=False)):
                view = decided_view(im.view, result, pos)
                if im.content_hash in known:
                    if known[im.content_hash].view == "unknown":
                        known[im.content_hash].view = view
                    known[im.content_hash].burned_in |= im.burned_in
                else:
                    session.add(Image(study_id=row.id, position=pos, content_hash=im.content_hash, view=view,
                                      width=im.pixels.shape[1], height=im.pixels.shape[0],
                                      pixel_spacing_mm=im.pixel_spacing_mm[0] if im.pixel_spacing_mm else None,
                                      source_format=im.source_format, storage_path=rel, burned_in=im.burned_in))
            row.indication = indication or row.indication
            if result is not None:
                d = result.to_json()
                session.add(Draft(study_id=row.id, model=result.model, model_version=result.model_version,
                                  indication=indication, text=result.report, findings=result.findings,
                                  fusion_weights=d["fusion_weights"], similar_cases=d["similar_cases"],
                                  views=d["views"], timings=result.timings, statements=result.statements,
                                  notes=result.notes, created_by=user.id))
                if row.status == StudyStatus.PENDING:
                    row.status = StudyStatus.DRAFTED
                audit(session, user, "draft", row, model=result.model, version=result.model_version)
            return row.id
    except BaseException:
        for p in created:
            discard(p)
        raise


def decided_view(header_view: str, result: DraftResult | None, position: int) -> str:
    """The one view decision for a stored image: the header's, else the drafter's (read off the image),
    so the worklist, the exports and the fine-tuning data say what the viewer says."""
    if header_view != "unknown" or result is None or position >= len(result.views):
        return header_view
    return result.views[position].view


def _latest_draft(session: Session, study_id: int) -> Draft:
    draft = session.scalar(select(Draft).where(Draft.study_id == study_id).order_by(Draft.id.desc()).limit(1))
    if draft is None:
        raise StoreError(f"study {study_id} has no draft yet")
    return draft


@dataclass(frozen=True)
class StoredDraft:
    """What the refiner needs of a stored study's latest draft (a db.models.Draft row)."""
    text: str
    indication: str
    findings: dict[str, float]  # finding -> probability
    similar: list[str]  # the similar cases' reports


def latest_draft(s: Settings, study_id: int) -> StoredDraft:
    """What the refiner needs of a stored study's latest draft: text, indication, finding probabilities,
    the similar cases' reports."""
    with transaction(s.database_url, read_only=True) as session:
        _study(session, study_id)
        d = _latest_draft(session, study_id)
        return StoredDraft(text=d.text, indication=d.indication, findings=dict(d.findings or {}),
                           similar=[c.get("report", "") for c in (d.similar_cases or []) if c.get("report")])


def _last_revision(session: Session, study_id: int) -> tuple[Draft, Revision | None, str]:
    """(latest draft, its latest revision or None, the study's current text)."""
    draft = _latest_draft(session, study_id)
    last = session.scalar(select(Revision).where(Revision.study_id == study_id).order_by(Revision.id.desc()).limit(1))
    if last is not None and last.draft_id != draft.id:
        last = None
    return draft, last, last.text if last else draft.text


def _check_unchanged(session: Session, study_id: int, seen: str | None) -> None:
    """Refuse when the study's text is no longer the one the caller's page last read or wrote (`seen`):
    someone saved another text since, and signing or saving now would put this one over it unseen."""
    if seen is None:
        return
    _, last, current = _last_revision(session, study_id)
    if current.strip() != seen.strip():
        who = f" by {last.user.name}" if last is not None else ""
        raise StoreError(f"study {study_id} was changed{who} since you opened it: open it again to see the change")


def _revise(session: Session, study_id: int, text: str, user: User, tags: list[str]) -> Revision | None:
    """A revision row when the text differs from the last saved one; None when nothing changed."""
    draft, last, current = _last_revision(session, study_id)
    if text == current and not tags:
        return last
    rev = Revision(study_id=study_id, draft_id=draft.id, user_id=user.id, text=text,
                   diff=diff_text(draft.text, text), tags=list(tags))
    session.add(rev)
    session.flush()
    return rev


def _study(session: Session, study_id: int, lock: bool = False) -> Study:
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


def save_revision(s: Settings, study_id: int, text: str, actor: Actor, tags: Sequence[str] = (),
                  seen: str | None = None) -> int | None:
    """A radiologist's edit, or an annotator's correction with its reason tags. With `seen` (the text the
    caller's page last read or wrote), refused if the study's text has changed since."""
    text = check_text(text)
    unknown = sorted(set(tags) - set(REASON_TAGS))
    if unknown:
        raise StoreError(f"unknown reason tag '{unknown[0]}': one of {', '.join(REASON_TAGS)}")
    with transaction(s.database_url) as session:
        study = _study(session, study_id, lock=True)  # a save and a sign-off of one study, one after the other
        user = user_row(session, actor)
        if study.status == StudyStatus.APPROVED and (tags or not access.allowed(user.role, "approve")):
            raise StoreError(f"study {study_id} is signed: corrections are taken on drafts, not on signed reports")
        _check_unchanged(session, study_id, seen)
        rev = _revise(session, study_id, text, user, list(tags))
        audit(session, user, "edit", study, revision=rev.id if rev else None)
        return rev.id if rev else None


def approve(s: Settings, study_id: int, text: str, actor: Actor, library_entry: LibraryEntry | None = None,
            seen: str | None = None) -> int:
    """Approve the given text. Approving again (an amendment) adds a row: nothing is overwritten. Approving
    the text of the study's latest approval again, with no edit since (a double click, a client's retry),
    is that approval: no second row, and the report is not marked amended. With `seen` (the text the
    signer's page last read or wrote), refused if another text was saved since: nobody signs over an edit
    they have not seen.

    With a library entry (computed from this text beforehand), the study joins the similar-case library in
    the same transaction, replacing its earlier entry. Without one, an earlier entry is removed: the
    library never shows a superseded report (`python -m xr index add` fills the gap)."""
    text = check_text(text)
    with transaction(s.database_url) as session:
        study = _study(session, study_id, lock=True)  # else two approvals could both take the library's slot
        user = user_row(session, actor)
        if not access.allowed(user.role, "approve"):
            raise StoreError(f"role '{user.role}' cannot approve reports")
        signed = session.scalar(select(Approval).where(Approval.study_id == study_id).order_by(Approval.id.desc()).limit(1))
        _check_unchanged(session, study_id, seen)
        rev = _revise(session, study_id, text, user, [])
        if (signed is not None and signed.text == text and signed.user_id == user.id
                and (rev.id if rev else None) == signed.revision_id):
            return signed.id
        draft = _latest_draft(session, study_id)
        approval = Approval(study_id=study_id, draft_id=draft.id, revision_id=rev.id if rev else None,
                            user_id=user.id, text=text)
        session.add(approval)
        study.status = StudyStatus.APPROVED
        session.flush()
        if library_entry is None:
            session.execute(delete(LibraryCase).where(LibraryCase.study_id == study_id))
        else:
            _put_library_case(session, approval, library_entry)
        audit(session, user, "approve", study, approval=approval.id, library=library_entry is not None)
        return approval.id


def _put_library_case(session: Session, approval: Approval, entry: LibraryEntry) -> None:
    row = session.scalar(select(LibraryCase).where(LibraryCase.study_id == approval.study_id))
    if row is None:
        row = LibraryCase(study_id=approval.study_id)
        session.add(row)
    for name, value in entry.columns().items():
        setattr(row, name, value)
    row.approval_id, row.report, row.added_at = approval.id, approval.text, utcnow()


def study_images(s: Settings, study_id: int) -> list[tuple[str, str]]:
    """(content hash, stored path relative to the data directory) of each image of a study."""
    with transaction(s.database_url, read_only=True) as session:
        return [(i.content_hash, i.storage_path) for i in _study(session, study_id).images]


def _latest_approvals():
    return select(Approval.study_id, func.max(Approval.id).label("id")).group_by(Approval.study_id).subquery()


def approvals_not_in_library(s: Settings) -> list[tuple[int, int, str]]:
    """(study id, approval id, text) of every study whose latest approval the library does not hold."""
    latest = _latest_approvals()
    with transaction(s.database_url, read_only=True) as session:
        rows = session.execute(
            select(Approval.study_id, Approval.id, Approval.text).join(latest, Approval.id == latest.c.id)
            .outerjoin(LibraryCase, LibraryCase.study_id == Approval.study_id)
            .where((LibraryCase.id.is_(None)) | (LibraryCase.approval_id != Approval.id)).order_by(Approval.id))
        return [(study_id, approval_id, text) for study_id, approval_id, text in rows]


def add_to_library(s: Settings, approval_id: int, entry: LibraryEntry) -> bool:
    """Backfill one approval into the library; False (nothing written) when the study has been amended since."""
    with transaction(s.database_url) as session:
        approval = session.get(Approval, approval_id)
        assert approval is not None  # an id from approvals_not_in_library: approvals are never deleted
        _study(session, approval.study_id, lock=True)  # no approval of the study may land between check and write
        latest = session.scalar(select(func.max(Approval.id)).where(Approval.study_id == approval.study_id))
        if approval_id != latest:
            return False
        _put_library_case(session, approval, entry)
        audit(session, None, "library", approval.study, approval=approval_id)
        return True


def library_cases(s: Settings, known: tuple | None = None) -> tuple[tuple, list[tuple[LibraryCase, str]] | None]:
    """(fingerprint, [(row, study key)]) of the library's approved studies; the rows are None when the
    fingerprint (row count, newest id, newest change) equals `known`: nothing changed since that read."""
    with transaction(s.database_url, read_only=True) as session:
        fingerprint = tuple(session.execute(select(func.count(LibraryCase.id), func.max(LibraryCase.id),
                                                   func.max(LibraryCase.added_at))).one())
        if fingerprint == known:
            return fingerprint, None
        rows = session.execute(select(LibraryCase, Study.key).join(Study).order_by(LibraryCase.id)).all()
        return fingerprint, [(row, key) for row, key in rows]


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a study's history panel."""
    at: str  # ISO time, seconds, UTC
    event: str  # "draft", "edit" or "approval"
    by: str  # the model and its version for a draft, else the user's name
    text: str


def history(s: Settings, study_id: int) -> list[HistoryEntry]:
    """Draft, revisions and approvals of a study in time order, for the history panel."""
    with transaction(s.database_url, read_only=True) as session:
        study = _study(session, study_id)
        rows = [(d.created_at, "draft", f"{d.model} {d.model_version}", d.text) for d in study.drafts]
        rows += [(r.created_at, "edit", r.user.name, r.text) for r in study.revisions]
        rows += [(a.approved_at, "approval", a.user.name, a.text) for a in study.approvals]
        return [HistoryEntry(at=at.isoformat(timespec="seconds"), event=ev, by=by, text=text)
                for at, ev, by, text in sorted(rows, key=lambda r: r[0])]


def export_edits(s: Settings, out: Path, actor: Actor | None = None, include_burned_in: bool = False) -> int:
    """One JSON line per approved or corrected study: the fine-tuning data. The target is the latest
    approval, else the latest tagged correction of the latest draft. The file is written to a temporary
    name and renamed inside the transaction that logs the export: a failed write leaves neither a
    truncated file nor an audit event behind, and a file written by a transaction whose commit then fails
    (the database's disk full) is removed again, unless an earlier export had left one by that name.
    Images whose header says text is burned into the pixels are left out (`images_withheld` counts them)
    unless `include_burned_in`: someone has checked them."""

    out = Path(out)
    rename_images(s)  # the names that leave are the keyed ones
    with Provisional() as files, transaction(s.database_url) as session:
        latest = _latest_approvals()
        approvals = session.scalars(select(Approval).join(latest, Approval.id == latest.c.id).order_by(Approval.id)).all()
        lines = [_export_line(a.study, a.draft, a.text, "approval", a.user, a.approved_at, include_burned_in)
                 for a in approvals]
        approved = {a.study_id for a in approvals}
        for study in session.scalars(select(Study).where(Study.status == StudyStatus.DRAFTED).order_by(Study.id)):
            if study.id in approved or not study.drafts:
                continue
            rev = _correction(study)
            if rev is not None:
                lines.append(_export_line(study, study.drafts[-1], rev.text, "correction", rev.user, rev.created_at,
                                          include_burned_in))
        audit(session, user_row(session, actor) if actor else None, "export", None, studies=len(lines))
        session.flush()
        write_atomic(files.add(out), "".join(json.dumps(line) + "\n" for line in lines).encode())
    return len(lines)


def rename_images(s: Settings) -> int:
    """Images stored under their bare pixel hash (before names were keyed) take their keyed names: a link
    under the new name, every row moved in one transaction, then the old name removed. Safe to run twice
    or in two processes at once. Returns how many names moved."""
    with transaction(s.database_url) as session:
        rows = session.execute(select(Image.storage_path, Image.content_hash).distinct()).all()
        moves = {old: image_path(s, h) for old, h in rows if old != image_path(s, h)}
        for old, new in moves.items():
            source, target = s.data_dir / old, s.data_dir / new
            if source.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, target)
                except FileExistsError:
                    pass  # another process moved it first
                except OSError:  # a file system without hard links
                    write_atomic(target, source.read_bytes())
            session.execute(update(Image).where(Image.storage_path == old).values(storage_path=new))
    for old in moves:
        discard(s.data_dir / old)
    return len(moves)


def _correction(study: Study) -> Revision | None:
    """The latest tagged revision of the study's latest draft: an annotator's correction."""
    draft = study.drafts[-1]
    tagged = [r for r in study.revisions if r.draft_id == draft.id and r.tags]
    return tagged[-1] if tagged else None


def _export_line(study: Study, draft: Draft, text: str, source: str, user: User, at: datetime,
                 include_burned_in: bool = False) -> dict[str, Any]:
    images = [i for i in study.images if include_burned_in or not i.burned_in]
    return {
        "study": study.key,
        "images": [{"path": i.storage_path, "view": i.view} for i in images],  # keyed names (image_path)
        "images_withheld": len(study.images) - len(images),  # burned-in annotation: not exported unchecked
        "indication": draft.indication,
        "model": draft.model,
        "model_version": draft.model_version,
        "draft": draft.text,
        "target": text,
        "source": source,  # "approval" or "correction"
        "editor_role": user.role,
        "at": at.isoformat(timespec="seconds"),
        "tags": sorted({t for r in study.revisions if r.draft_id == draft.id for t in (r.tags or [])}),
    }


def _utc(at: datetime) -> datetime:
    """Stored times come back naive on every engine (db.models.UTCDateTime); every one of them is UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def worklist_query(status: str = "", search: str = "", limit: int = 200) -> Select[Study]:
    """The worklist's query. The search is a case-insensitive substring match on both engines (lower()
    LIKE, with % and _ taken literally); newest first, by status, through ix_studies_status_updated."""
    if status and status not in STATUSES:
        raise StoreError(f"unknown status '{status}': one of {', '.join(STATUSES)}")
    q = select(Study).order_by(Study.updated_at.desc(), Study.id.desc()).limit(limit)
    if status:
        q = q.where(Study.status == status)
    search = (search or "").strip()
    if search.startswith("#") and search[1:].isdigit():
        q = q.where(Study.id == int(search[1:]))
    elif search:
        q = q.where(Study.indication.icontains(search, autoescape=True)
                    | select(Draft.id).where(Draft.study_id == Study.id,
                                             Draft.text.icontains(search, autoescape=True)).exists()
                    | select(Revision.id).where(Revision.study_id == Study.id,
                                                Revision.text.icontains(search, autoescape=True)).exists())
    return q


def worklist(s: Settings, status: str = "", search: str = "", limit: int = 200) -> list[dict[str, Any]]:
    """Studies newest first, by status and a search over the indication and the report texts ('#12'
    finds study 12). Plain dicts, not dataclasses: they are the JSON rows of the app's `/worklist` API
    endpoint (id, status, views, indication, updated), returned to API clients as they are."""
    q = worklist_query(status, search, limit).options(selectinload(Study.images))
    with transaction(s.database_url, read_only=True) as session:
        return [{"id": st.id, "status": st.status, "views": " + ".join(i.view for i in st.images),
                 "indication": st.indication[:80], "updated": st.updated_at.strftime("%Y-%m-%d %H:%M")}
                for st in session.scalars(q)]


@dataclass(frozen=True)
class StudyImage:
    path: str  # absolute: under the data directory
    view: str
    content_hash: str


@dataclass(frozen=True)
class StudyDraft:
    """A study's latest stored draft (a db.models.Draft row), with its overlays and similar cases."""
    id: int
    text: str
    model: str
    model_version: str
    findings: dict[str, float]  # finding -> probability
    fusion_weights: dict[str, Any]  # view index -> gate grid
    views: list[dict[str, Any]]  # per view: view, view source, content hash, measurements, lung mask (RLE)
    similar_cases: list[dict[str, Any]]
    statements: dict[str, dict[str, str]]  # finding -> stance and the cut behind it (empty before revision 0008)
    notes: list[str]  # how the draft was made


@dataclass(frozen=True)
class StudyApproval:
    """The study's latest approval."""
    id: int
    by: str
    at: str  # ISO time, minutes, UTC
    amendment: bool  # an earlier approval exists


@dataclass(frozen=True)
class StudyCorrection:
    """An annotator's correction of the latest draft: the latest tagged revision."""
    text: str
    tags: list[str]


@dataclass(frozen=True)
class StudyView:
    """What a workspace shows of one stored study."""
    id: int
    key: str
    status: StudyStatus
    indication: str
    images: list[StudyImage]
    draft: StudyDraft | None
    text: str  # the current text: the latest revision of the latest draft, else the draft, else ""
    approval: StudyApproval | None
    correction: StudyCorrection | None


def study_view(s: Settings, study_id: int) -> StudyView:
    """What a workspace shows of one stored study: its images, latest draft, current text and approval."""
    with transaction(s.database_url, read_only=True) as session:
        study = _study(session, study_id)
        draft = study.drafts[-1] if study.drafts else None
        revs = [r for r in study.revisions if draft and r.draft_id == draft.id]
        approval = study.approvals[-1] if study.approvals else None
        correction = _correction(study) if draft else None
        return StudyView(
            id=study.id, key=study.key, status=StudyStatus(study.status), indication=study.indication,
            images=[StudyImage(path=str(s.data_dir / i.storage_path), view=i.view, content_hash=i.content_hash)
                    for i in study.images],
            draft=None if draft is None else StudyDraft(
                id=draft.id, text=draft.text, model=draft.model, model_version=draft.model_version,
                findings=dict(draft.findings or {}), fusion_weights=dict(draft.fusion_weights or {}),
                views=list(draft.views or []), similar_cases=list(draft.similar_cases or []),
                statements=dict(draft.statements or {}), notes=list(draft.notes or [])),
            text=revs[-1].text if revs else (draft.text if draft else ""),
            approval=None if approval is None else StudyApproval(
                id=approval.id, by=approval.user.name, at=approval.approved_at.isoformat(timespec="minutes"),
                amendment=len(study.approvals) > 1),
            correction=None if correction is None else StudyCorrection(text=correction.text, tags=list(correction.tags)),
        )


@dataclass(frozen=True)
class CorrectionsQueue:
    """How far the annotators' queue is, and the study to correct next."""
    total: int  # drafted, not yet approved studies
    done: int  # of those, the ones whose latest draft has a tagged revision
    next: int | None  # the study to correct next; None when all are done


def corrections_queue(s: Settings, after: int | None = None) -> CorrectionsQueue:
    """The annotators' queue: drafted, not yet approved studies; done when the latest draft has a tagged
    revision. Returns counts and the next study to correct (the first after `after`, to skip one; None
    when all are done)."""
    newest_draft = select(func.max(Draft.id)).where(Draft.study_id == Revision.study_id).scalar_subquery()
    corrected = select(Revision.id).where(Revision.study_id == Study.id, Revision.draft_id == newest_draft,
                                          func.json_array_length(Revision.tags) > 0).exists()
    todo = select(Study.id).where(Study.status == StudyStatus.DRAFTED, ~corrected).order_by(Study.id).limit(1)
    with transaction(s.database_url, read_only=True) as session:
        total, done = session.execute(select(func.count(), func.coalesce(func.sum(case((corrected, 1), else_=0)), 0))
                                      .where(Study.status == StudyStatus.DRAFTED)).one()
        later = session.scalar(todo.where(Study.id > after)) if after is not None else None
        return CorrectionsQueue(total=total, done=done, next=later or session.scalar(todo))


def export_report(s: Settings, study_id: int, fmt: str, directory: Path, actor: Actor) -> Path:
    """The study's latest approval as a file (DICOM SR, FHIR R4 JSON or text), logged as an export in the
    transaction during which it is written; removed again if that transaction then fails to commit, unless
    an earlier export had left a file by that name."""
    from xr.export.approved import ApprovedReport
    from xr.export.registry import FORMATS
    from xr.report import split_sections

    if fmt not in FORMATS:
        raise StoreError(f"unknown export format '{fmt}': one of {', '.join(FORMATS)}")
    with Provisional() as files, transaction(s.database_url) as session:
        study = _study(session, study_id)
        if not study.approvals:
            raise StoreError(f"study {study_id} is not approved yet")
        a = study.approvals[-1]
        findings, impression = split_sections(a.text)
        report = ApprovedReport(study_key=study.key, approval_id=a.id, findings=findings, impression=impression,
                                approved_by=a.user.name, approved_at=_utc(a.approved_at),
                                predecessor_id=study.approvals[-2].id if len(study.approvals) > 1 else None,
                                version=len(study.approvals),
                                model=a.draft.model, model_version=a.draft.model_version,
                                indication=a.draft.indication, views=tuple(i.view for i in study.images))
        user = user_row(session, actor)
        audit(session, user, "export", study, format=fmt, approval=a.id)
        session.flush()
        return FORMATS[fmt].write(report, files.add(Path(directory) / f"report-{study_id}-{a.id}{FORMATS[fmt].suffix}"))


@dataclass(frozen=True)
class TeachingStudy:
    """An approved study of the similar-case library, as the teaching view lists it."""
    study_id: int
    labels: list[str]  # labeler positives on the approved text
    report: str  # the approved text
    image: str  # its first image, absolute: under the data directory


def teaching_studies(s: Settings) -> list[TeachingStudy]:
    """Approved studies of the similar-case library, as the teaching view lists them; not a study with an
    image whose header says text is burned into its pixels (it may name the patient)."""
    first_image = (select(Image.storage_path).where(Image.study_id == LibraryCase.study_id)
                   .order_by(Image.position, Image.id).limit(1).scalar_subquery())
    burned = select(Image.study_id).where(Image.burned_in.is_(True))
    with transaction(s.database_url, read_only=True) as session:  # columns, not objects: the library holds every approved study
        rows = session.execute(select(LibraryCase.study_id, LibraryCase.labels, LibraryCase.report, first_image)
                               .where(LibraryCase.study_id.not_in(burned)).order_by(LibraryCase.id))
        return [TeachingStudy(study_id=study_id, labels=list(labels), report=report, image=str(s.data_dir / path))
                for study_id, labels, report, path in rows if path is not None]
