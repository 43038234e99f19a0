"""Read models: what the workspaces, the refiner, the similar-case index and the teaching view read of
stored studies, as typed records (the worklist's rows are the API's JSON)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select, true
from sqlalchemy.orm import Session, selectinload

from db.models import Approval, Delivery, Draft, Image, LibraryCase, Revision, Study
from db.session import transaction
from xr.config import Settings
from xr.result import DraftResult
from xr.store.common import STATUSES, StoreError, StudyStatus, correction_of, latest_approvals, latest_draft_row, study_row
from xr.store.deliveries import NOT_IN_PACS


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
        study_row(session, study_id)
        d = latest_draft_row(session, study_id)
        return StoredDraft(text=d.text, indication=d.indication, findings=dict(d.findings or {}),
                           similar=[c.get("report", "") for c in (d.similar_cases or []) if c.get("report")])


def approvals_not_in_library(s: Settings) -> list[tuple[int, int, str]]:
    """(study id, approval id, text) of every study whose latest approval the library does not hold."""
    latest = latest_approvals()
    with transaction(s.database_url, read_only=True) as session:
        rows = session.execute(
            select(Approval.study_id, Approval.id, Approval.text).join(latest, Approval.id == latest.c.id)
            .outerjoin(LibraryCase, LibraryCase.study_id == Approval.study_id)
            .where((LibraryCase.id.is_(None)) | (LibraryCase.approval_id != Approval.id)).order_by(Approval.id))
        return [(study_id, approval_id, text) for study_id, approval_id, text in rows]


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
        study = study_row(session, study_id)
        rows = [(d.created_at, "draft", f"{d.model} {d.model_version}", d.text) for d in study.drafts]
        rows += [(r.created_at, "edit", r.user.name, r.text) for r in study.revisions]
        rows += [(a.approved_at, "approval", a.user.name, a.text) for a in study.approvals]
        return [HistoryEntry(at=at.isoformat(timespec="seconds"), event=ev, by=by, text=text)
                for at, ev, by, text in sorted(rows, key=lambda r: r[0])]


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
    endpoint (id, status, views, indication, updated, age, sex, and `pacs`: "report not yet in PACS" while a
    signed report waits in the outbox), returned to API clients as they are."""
    q = worklist_query(status, search, limit).options(selectinload(Study.images))
    with transaction(s.database_url, read_only=True) as session:
        studies = list(session.scalars(q))
        waiting = {d.study_id for d in session.scalars(select(Delivery).where(
            Delivery.sent_at.is_(None), Delivery.study_id.in_([st.id for st in studies])))}
        return [{"id": st.id, "status": st.status, "views": " + ".join(i.view for i in st.images),
                 "indication": st.indication[:80], "updated": st.updated_at.strftime("%Y-%m-%d %H:%M"),
                 "age": st.age_years, "sex": st.sex or "", "pacs": NOT_IN_PACS if st.id in waiting else ""}
                for st in studies]


@dataclass(frozen=True)
class PriorStudy:
    """The same patient's most recent earlier study, as the comparison and the viewer read it."""
    study_id: int
    day: date | None  # its study date
    signed_text: str | None  # its latest signed report; None: not signed
    stances: dict[str, str]  # its latest draft's stances, {} without a draft
    frontal: str | None  # absolute path of its first frontal film (else its first film), None without films


def prior_study(s: Settings, patient: str | None, day: date | None, key: str) -> PriorStudy | None:
    """The most recent study of the patient (`patient`: the keyed link, never an ID) before `day` (the
    study date; without one on either side, stored before), other than the study `key` itself."""
    if not patient:
        return None
    with transaction(s.database_url, read_only=True) as session:
        return _prior(session, s, patient, day, key)


def _prior(session: Session, s: Settings, patient: str, day: date | None, key: str) -> PriorStudy | None:
    current = session.scalar(select(Study.id).where(Study.key == key))
    stored_before = Study.id < current if current is not None else true()
    earlier = (or_(and_(Study.study_date.is_not(None), Study.study_date < day), and_(Study.study_date.is_(None), stored_before))
               if day else stored_before)
    st = session.scalar(select(Study).where(Study.patient_link == patient, Study.key != key, earlier)
                        .order_by(Study.study_date.desc().nulls_last(), Study.id.desc()).limit(1))
    if st is None:
        return None
    draft = session.scalar(select(Draft).where(Draft.study_id == st.id).order_by(Draft.id.desc()).limit(1))
    frontal = next((i for i in st.images if i.view == "frontal"), st.images[0] if st.images else None)
    return PriorStudy(st.id, st.study_date, st.approvals[-1].text if st.approvals else None,
                      {f: v["stance"] for f, v in (draft.statements or {}).items()} if draft else {},
                      str(s.data_dir / frontal.storage_path) if frontal else None)


@dataclass(frozen=True)
class StudyImage:
    path: str  # absolute: under the data directory
    view: str
    content_hash: str


def draft_result(row: Draft) -> DraftResult:
    """A stored draft (a db.models.Draft row) as the drafter returned it: the same typed record, whole.
    Drafts stored before revisions 0008 / 0009 have no stances, notes or hedged sentences."""
    statements = row.statements or {}
    return DraftResult.from_json({
        "report": row.text, "findings": dict(row.findings or {}), "views": list(row.views or []),
        "fusion_weights": dict(row.fusion_weights or {}), "similar_cases": list(row.similar_cases or []),
        "model": row.model, "model_version": row.model_version, "timings": dict(row.timings or {}),
        "notes": list(row.notes or []), "hedged": list(row.hedged or []),
        "stances": {f: st["stance"] for f, st in statements.items()},
        "cuts": {f: st.get("cut", "") for f, st in statements.items()}})


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
class StudyRecord:
    """What a workspace shows of one stored study."""
    id: int
    key: str
    status: StudyStatus
    indication: str
    images: list[StudyImage]
    draft: DraftResult | None  # the latest draft, as the drafter returned it (xr.result)
    text: str  # the current text: the latest revision of the latest draft, else the draft, else ""
    approval: StudyApproval | None
    correction: StudyCorrection | None
    prior: PriorStudy | None = None  # the same patient's most recent earlier study: hung beside this one
    age_years: int | None = None
    sex: str | None = None
    day: date | None = None  # the study date
    patient_link: str | None = None  # keyed hash of the patient ID (never the ID): what links the prior
    not_in_pacs: str | None = None  # a signed report not yet stored in its PACS study: the last refusal ('' before a try)


def study_record(s: Settings, study_id: int) -> StudyRecord:
    """What a workspace shows of one stored study: its images, latest draft, current text and approval."""
    with transaction(s.database_url, read_only=True) as session:
        study = study_row(session, study_id)
        draft = study.drafts[-1] if study.drafts else None
        revs = [r for r in study.revisions if draft and r.draft_id == draft.id]
        approval = study.approvals[-1] if study.approvals else None
        correction = correction_of(study) if draft else None
        return StudyRecord(
            id=study.id, key=study.key, status=StudyStatus(study.status), indication=study.indication,
            images=[StudyImage(path=str(s.data_dir / i.storage_path), view=i.view, content_hash=i.content_hash)
                    for i in study.images],
            draft=None if draft is None else draft_result(draft),
            text=revs[-1].text if revs else (draft.text if draft else ""),
            approval=None if approval is None else StudyApproval(
                id=approval.id, by=approval.user.name, at=approval.approved_at.isoformat(timespec="minutes"),
                amendment=len(study.approvals) > 1),
            correction=None if correction is None else StudyCorrection(text=correction.text, tags=list(correction.tags)),
            prior=_prior(session, s, study.patient_link, study.study_date, study.key) if study.patient_link else None,
            age_years=study.age_years, sex=study.sex, day=study.study_date, patient_link=study.patient_link,
            not_in_pacs=session.scalar(select(Delivery.last_error).where(Delivery.study_id == study.id, Delivery.sent_at.is_(None))
                                       .order_by(Delivery.id.desc()).limit(1)),
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


@dataclass(frozen=True)
class SignedFilm:
    """A non-lateral film of a signed study, with what the signed report states (the labeler's positives
    on the approved text, kept with the library entry: never the machine draft's)."""
    study_key: str
    path: str  # absolute: under the data directory
    view: str
    labels: list[str]


def signed_films(s: Settings) -> list[SignedFilm]:
    """The films the eye may learn from: every frontal (or unknown-view) film of every study in the
    similar-case library, that is every signed study as last signed."""
    with transaction(s.database_url, read_only=True) as session:
        rows = session.execute(select(Study.key, LibraryCase.labels, Image.storage_path, Image.view)
                               .join(LibraryCase, LibraryCase.study_id == Study.id)
                               .join(Image, Image.study_id == Study.id)
                               .where(Image.view != "lateral").order_by(Study.id, Image.position, Image.id))
        return [SignedFilm(key, str(s.data_dir / path), view, list(labels)) for key, labels, path, view in rows]
