"""Store: every user action as one database transaction. Image files are written first under their
content hash (atomic rename), and removed again if the transaction fails, so nothing is half-saved."""
from __future__ import annotations

import difflib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image as PILImage
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import Approval, AuditEvent, Draft, Image, LibraryCase, Revision, Study, User, utcnow
from db.session import transaction
from xr.config import Settings
from xr.draft.result import Draft as DraftResult
from xr.errors import UserError
from xr.ingest import IngestedStudy

if TYPE_CHECKING:
    from xr.retrieve.entry import LibraryEntry

ROLES = ("radiologist", "educator", "annotator", "admin")


class StoreError(UserError):
    """A refused action on stored studies."""


@dataclass(frozen=True)
class Actor:
    name: str
    role: str


def user_row(session: Session, actor: Actor) -> User:
    user = session.scalar(select(User).where(User.name == actor.name))
    if user is None:
        if actor.role not in ROLES:
            raise StoreError(f"unknown role '{actor.role}'")
        user = User(name=actor.name, role=actor.role)
        session.add(user)
        session.flush()
    return user


def audit(session: Session, user: User | None, action: str, study: Study | None = None, **detail) -> None:
    session.add(AuditEvent(user_id=user.id if user else None, action=action,
                           study_id=study.id if study else None, detail=detail))


def _write_png(directory: Path, content_hash: str, pixels) -> tuple[str, bool]:
    """Returns (path relative to the data dir, created now?)."""
    rel = Path("images") / content_hash[:2] / f"{content_hash}.png"
    path = directory / rel
    if path.exists():
        return str(rel), False
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(rel), True


def record_draft(s: Settings, study: IngestedStudy, draft: DraftResult, indication: str, actor: Actor) -> int:
    """Study, its images, the draft and the audit event: all or nothing. Returns the study id."""
    created: list[Path] = []
    try:
        written = []
        for im in study.images:
            rel, new = _write_png(s.data_dir, im.content_hash, im.pixels)
            written.append(rel)
            if new:
                created.append(s.data_dir / rel)
        with transaction(s.database_url) as session:
            user = user_row(session, actor)
            row = session.scalar(select(Study).where(Study.key == study.key))
            if row is None:
                row = Study(key=study.key, indication=indication)
                session.add(row)
                session.flush()
                audit(session, user, "ingest", row, images=len(study.images))
            known = {i.content_hash for i in row.images}
            for pos, (im, rel) in enumerate(zip(study.images, written)):
                if im.content_hash not in known:
                    session.add(Image(study_id=row.id, position=pos, content_hash=im.content_hash, view=im.view,
                                      width=im.pixels.shape[1], height=im.pixels.shape[0],
                                      pixel_spacing_mm=im.pixel_spacing_mm[0] if im.pixel_spacing_mm else None,
                                      source_format=im.source_format, storage_path=rel))
            d = draft.to_json()
            session.add(Draft(study_id=row.id, model=draft.model, model_version=draft.model_version,
                              indication=indication, text=draft.report, findings=draft.findings,
                              fusion_weights=d["fusion_weights"], similar_cases=d["similar_cases"],
                              timings=draft.timings, created_by=user.id))
            if row.status == "pending":
                row.status = "drafted"
            row.indication = indication or row.indication
            audit(session, user, "draft", row, model=draft.model, version=draft.model_version)
            return row.id
    except BaseException:
        for p in created:
            p.unlink(missing_ok=True)
        raise


def _latest_draft(session: Session, study_id: int) -> Draft:
    draft = session.scalar(select(Draft).where(Draft.study_id == study_id).order_by(Draft.id.desc()).limit(1))
    if draft is None:
        raise StoreError(f"study {study_id} has no draft yet")
    return draft


def diff_text(a: str, b: str, to: str = "edited") -> str:
    """Unified diff of the draft against an edited (or refined) text, line by line."""
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "draft", to, lineterm=""))


def latest_draft(s: Settings, study_id: int) -> dict:
    """What the refiner needs of a stored study's latest draft: text, indication, finding probabilities,
    the similar cases' reports."""
    with transaction(s.database_url) as session:
        _study(session, study_id)
        d = _latest_draft(session, study_id)
        return {"text": d.text, "indication": d.indication, "findings": dict(d.findings or {}),
                "similar": [c.get("report", "") for c in (d.similar_cases or []) if c.get("report")]}


def _revise(session: Session, study_id: int, text: str, user: User, tags: list[str]) -> Revision | None:
    """A revision row when the text differs from the last saved one; None when nothing changed."""
    draft = _latest_draft(session, study_id)
    last = session.scalar(select(Revision).where(Revision.study_id == study_id).order_by(Revision.id.desc()).limit(1))
    current = last.text if last and last.draft_id == draft.id else draft.text
    if text == current and not tags:
        return last if last and last.draft_id == draft.id else None
    rev = Revision(study_id=study_id, draft_id=draft.id, user_id=user.id, text=text,
                   diff=diff_text(draft.text, text), tags=list(tags))
    session.add(rev)
    session.flush()
    return rev


def _study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
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


def save_revision(s: Settings, study_id: int, text: str, actor: Actor, tags: list[str] = ()) -> int | None:
    text = check_text(text)
    with transaction(s.database_url) as session:
        study = _study(session, study_id)
        user = user_row(session, actor)
        rev = _revise(session, study_id, text, user, list(tags))
        audit(session, user, "edit", study, revision=rev.id if rev else None)
        return rev.id if rev else None


def approve(s: Settings, study_id: int, text: str, actor: Actor, library_entry: LibraryEntry | None = None) -> int:
    """Approve the given text. Approving again (an amendment) adds a row: nothing is overwritten.

    With a library entry (computed from this text beforehand), the study joins the similar-case library in
    the same transaction, replacing its earlier entry. Without one, an earlier entry is removed: the
    library never shows a superseded report (`python -m xr index add` fills the gap)."""
    text = check_text(text)
    with transaction(s.database_url) as session:
        study = _study(session, study_id)
        user = user_row(session, actor)
        if user.role not in ("radiologist", "admin"):
            raise StoreError(f"role '{user.role}' cannot approve reports")
        rev = _revise(session, study_id, text, user, [])
        draft = _latest_draft(session, study_id)
        approval = Approval(study_id=study_id, draft_id=draft.id, revision_id=rev.id if rev else None,
                            user_id=user.id, text=text)
        session.add(approval)
        study.status = "approved"
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
    with transaction(s.database_url) as session:
        return [(i.content_hash, i.storage_path) for i in _study(session, study_id).images]


def _latest_approvals():
    return select(Approval.study_id, func.max(Approval.id).label("id")).group_by(Approval.study_id).subquery()


def approvals_not_in_library(s: Settings) -> list[tuple[int, int, str]]:
    """(study id, approval id, text) of every study whose latest approval the library does not hold."""
    latest = _latest_approvals()
    with transaction(s.database_url) as session:
        rows = session.execute(
            select(Approval.study_id, Approval.id, Approval.text).join(latest, Approval.id == latest.c.id)
            .outerjoin(LibraryCase, LibraryCase.study_id == Approval.study_id)
            .where((LibraryCase.id.is_(None)) | (LibraryCase.approval_id != Approval.id)).order_by(Approval.id))
        return [tuple(r) for r in rows]


def add_to_library(s: Settings, approval_id: int, entry: LibraryEntry) -> bool:
    """Backfill one approval into the library; False (nothing written) when the study has been amended since."""
    with transaction(s.database_url) as session:
        approval = session.get(Approval, approval_id)
        latest = session.scalar(select(func.max(Approval.id)).where(Approval.study_id == approval.study_id))
        if approval_id != latest:
            return False
        _put_library_case(session, approval, entry)
        audit(session, None, "library", approval.study, approval=approval_id)
        return True


def library_cases(s: Settings, known: tuple | None = None) -> tuple[tuple, list[tuple[LibraryCase, str]] | None]:
    """(fingerprint, [(row, study key)]) of the library's approved studies; the rows are None when the
    fingerprint (row count, newest id, newest change) equals `known`: nothing changed since that read."""
    with transaction(s.database_url) as session:
        fingerprint = tuple(session.execute(select(func.count(LibraryCase.id), func.max(LibraryCase.id),
                                                   func.max(LibraryCase.added_at))).one())
        if fingerprint == known:
            return fingerprint, None
        rows = session.execute(select(LibraryCase, Study.key).join(Study).order_by(LibraryCase.id)).all()
        return fingerprint, [(row, key) for row, key in rows]


def history(s: Settings, study_id: int) -> list[dict]:
    """Draft, revisions and approvals of a study in time order, for the history panel."""
    with transaction(s.database_url) as session:
        study = _study(session, study_id)
        rows = [(d.created_at, "draft", f"{d.model} {d.model_version}", d.text) for d in study.drafts]
        rows += [(r.created_at, "edit", r.user.name, r.text) for r in study.revisions]
        rows += [(a.approved_at, "approval", a.user.name, a.text) for a in study.approvals]
        return [{"at": at.isoformat(timespec="seconds"), "event": ev, "by": by, "text": text}
                for at, ev, by, text in sorted(rows, key=lambda r: r[0])]


def export_edits(s: Settings, out: Path) -> int:
    """One JSON line per approved study (its latest approval): the fine-tuning data. The file is written
    to a temporary name and renamed inside the transaction that logs the export: a failed write leaves
    neither a truncated file nor an audit event behind."""
    out = Path(out)
    with transaction(s.database_url) as session:
        latest = _latest_approvals()
        approvals = session.scalars(select(Approval).join(latest, Approval.id == latest.c.id).order_by(Approval.id)).all()
        lines = [json.dumps(_export_line(a)) + "\n" for a in approvals]
        audit(session, None, "export", None, studies=len(lines))
        session.flush()
        _atomic_write(out, "".join(lines))
    return len(lines)


def _export_line(a: Approval) -> dict:
    return {
        "study": a.study.key,
        "images": [{"content_hash": i.content_hash, "path": i.storage_path, "view": i.view} for i in a.study.images],
        "indication": a.draft.indication,
        "model": a.draft.model,
        "model_version": a.draft.model_version,
        "draft": a.draft.text,
        "approved": a.text,
        "editor_role": a.user.role,
        "approved_at": a.approved_at.isoformat(timespec="seconds"),
        "tags": sorted({t for r in a.study.revisions for t in (r.tags or [])}),
    }


def _atomic_write(out: Path, text: str) -> None:
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {out.name}: {e.strerror or e}") from None
