"""What users do to stored studies, each one transaction: record a study and its draft, save an edit,
approve (the study joining the similar-case library), backfill the library."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import Approval, Delivery, Draft, Image, LibraryCase, PacsLink, Revision, Study, User, utcnow
from db.session import transaction
from xr import access
from xr.config import Settings
from xr.files import discard
from xr.ingest import IngestedStudy
from xr.report import diff_text
from xr.result import DraftResult
from xr.store.common import (
    REASON_TAGS,
    Actor,
    KnownStudy,
    LibraryEntry,
    StoreError,
    StudyStatus,
    audit,
    check_text,
    insert_new,
    latest_draft_row,
    study_row,
    user_row,
)
from xr.store.images import write_png


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
            rel, new = write_png(s, im.content_hash, im.pixels)
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
            row.age_years = next((im.age_years for im in study.images if im.age_years is not None), row.age_years)
            row.sex = next((im.sex for im in study.images if im.sex), row.sex)
            row.patient_link, row.study_date = study.patient or row.patient_link, study.study_date or row.study_date
            if study.origin and not session.scalar(select(PacsLink).where(PacsLink.study_id == row.id)):
                session.add(PacsLink(study_id=row.id, address=study.origin))
            if result is not None:
                d = result.to_json()
                session.add(Draft(study_id=row.id, model=result.model, model_version=result.model_version,
                                  indication=indication, text=result.report, findings=result.findings,
                                  fusion_weights=d["fusion_weights"], similar_cases=d["similar_cases"],
                                  views=d["views"], timings=result.timings, statements=result.statements,
                                  notes=result.notes, hedged=result.hedged, created_by=user.id))
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


def _last_revision(session: Session, study_id: int) -> tuple[Draft, Revision | None, str]:
    """(latest draft, its latest revision or None, the study's current text)."""
    draft = latest_draft_row(session, study_id)
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


def save_revision(s: Settings, study_id: int, text: str, actor: Actor, tags: Sequence[str] = (),
                  seen: str | None = None) -> int | None:
    """A radiologist's edit, or an annotator's correction with its reason tags. With `seen` (the text the
    caller's page last read or wrote), refused if the study's text has changed since."""
    text = check_text(text)
    unknown = sorted(set(tags) - set(REASON_TAGS))
    if unknown:
        raise StoreError(f"unknown reason tag '{unknown[0]}': one of {', '.join(REASON_TAGS)}")
    with transaction(s.database_url) as session:
        study = study_row(session, study_id, lock=True)  # a save and a sign-off of one study, one after the other
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
        study = study_row(session, study_id, lock=True)  # else two approvals could both take the library's slot
        user = user_row(session, actor)
        if not access.allowed(user.role, "approve"):
            raise StoreError(f"role '{user.role}' cannot approve reports")
        signed = session.scalar(select(Approval).where(Approval.study_id == study_id).order_by(Approval.id.desc()).limit(1))
        _check_unchanged(session, study_id, seen)
        rev = _revise(session, study_id, text, user, [])
        if (signed is not None and signed.text == text and signed.user_id == user.id
                and (rev.id if rev else None) == signed.revision_id):
            return signed.id
        draft = latest_draft_row(session, study_id)
        approval = Approval(study_id=study_id, draft_id=draft.id, revision_id=rev.id if rev else None,
                            user_id=user.id, text=text)
        session.add(approval)
        study.status = StudyStatus.APPROVED
        session.flush()
        if session.scalar(select(PacsLink.id).where(PacsLink.study_id == study_id)) is not None:
            session.add(Delivery(approval_id=approval.id, study_id=study_id))  # into its PACS study, until it is there
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


def add_to_library(s: Settings, approval_id: int, entry: LibraryEntry) -> bool:
    """Backfill one approval into the library; False (nothing written) when the study has been amended since."""
    with transaction(s.database_url) as session:
        approval = session.get(Approval, approval_id)
        assert approval is not None  # an id from approvals_not_in_library: approvals are never deleted
        study_row(session, approval.study_id, lock=True)  # no approval of the study may land between check and write
        latest = session.scalar(select(func.max(Approval.id)).where(Approval.study_id == approval.study_id))
        if approval_id != latest:
            return False
        _put_library_case(session, approval, entry)
        audit(session, None, "library", approval.study, approval=approval_id)
        return True
