"""What leaves the store: the fine-tuning file of approved and corrected studies, and a signed report in
an export format (xr/export/registry.py), each logged as an export in the transaction that writes it."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.models import Approval, Draft, Study, User
from db.session import transaction
from xr.config import Settings
from xr.export.approved import ApprovedReport
from xr.files import Provisional, write_atomic
from xr.report import split_sections
from xr.store.common import Actor, StoreError, StudyStatus, as_utc, audit, correction_of, latest_approvals, study_row, user_row
from xr.store.images import rename_images


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
        latest = latest_approvals()
        approvals = session.scalars(select(Approval).join(latest, Approval.id == latest.c.id).order_by(Approval.id)).all()
        lines = [_export_line(a.study, a.draft, a.text, "approval", a.user, a.approved_at, include_burned_in)
                 for a in approvals]
        approved = {a.study_id for a in approvals}
        for study in session.scalars(select(Study).where(Study.status == StudyStatus.DRAFTED).order_by(Study.id)):
            if study.id in approved or not study.drafts:
                continue
            rev = correction_of(study)
            if rev is not None:
                lines.append(_export_line(study, study.drafts[-1], rev.text, "correction", rev.user, rev.created_at,
                                          include_burned_in))
        audit(session, user_row(session, actor) if actor else None, "export", None, studies=len(lines))
        session.flush()
        write_atomic(files.add(out), "".join(json.dumps(line) + "\n" for line in lines).encode())
    return len(lines)


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


def approved_report(study: Study, a: Approval) -> ApprovedReport:
    """One approval of a study as every exporter (and the PACS outbox) sees it: text and sign-off only."""
    findings, impression = split_sections(a.text)
    earlier = [x for x in study.approvals if x.id < a.id]
    return ApprovedReport(study_key=study.key, approval_id=a.id, findings=findings, impression=impression,
                          approved_by=a.user.name, approved_at=as_utc(a.approved_at),
                          predecessor_id=earlier[-1].id if earlier else None, version=len(earlier) + 1,
                          model=a.draft.model, model_version=a.draft.model_version,
                          indication=a.draft.indication, views=tuple(i.view for i in study.images))


def export_report(s: Settings, study_id: int, fmt: str, directory: Path, actor: Actor) -> Path:
    """The study's latest approval as a file (DICOM SR, FHIR R4 JSON or text), logged as an export in the
    transaction during which it is written; removed again if that transaction then fails to commit, unless
    an earlier export had left a file by that name."""
    from xr.export.registry import FORMATS

    if fmt not in FORMATS:
        raise StoreError(f"unknown export format '{fmt}': one of {', '.join(FORMATS)}")
    with Provisional() as files, transaction(s.database_url) as session:
        study = study_row(session, study_id)
        if not study.approvals:
            raise StoreError(f"study {study_id} is not approved yet")
        a = study.approvals[-1]
        report = approved_report(study, a)
        user = user_row(session, actor)
        audit(session, user, "export", study, format=fmt, approval=a.id)
        session.flush()
        return FORMATS[fmt].write(report, files.add(Path(directory) / f"report-{study_id}-{a.id}{FORMATS[fmt].suffix}"))
