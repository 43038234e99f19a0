"""An approved report as the exporters see it: text and sign-off only, nothing that identifies a patient."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from xr.access import LOCAL_USER_NAME
from xr.config import Settings
from xr.report import compose_report

_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ApprovedReport:
    study_key: str  # the salted study hash, never a DICOM UID: every export is keyed by it
    approval_id: int
    findings: str
    impression: str
    approved_by: str  # staff user name of the radiologist who signed it off ('local' in single-user mode)
    approved_at: datetime  # UTC
    predecessor_id: int | None  # the approval this one amends (the study's previous one), None for the first
    version: int  # 1 for the first approval of the study, 2 for its first amendment, ...
    model: str
    model_version: str
    indication: str
    views: tuple[str, ...]

    def __post_init__(self) -> None:
        # Checked here because a UID slipping into study_key would leak into every export, and SQLite hands
        # back naive datetimes that would be written as local time.
        if not _KEY.fullmatch(self.study_key):
            raise ValueError("study_key must be the 64-hex-digit salted study hash")
        if self.approved_at.utcoffset() != timedelta(0):
            raise ValueError("approved_at must be timezone-aware UTC")

    @property
    def amended(self) -> bool:
        return self.predecessor_id is not None

    @property
    def text(self) -> str:
        return compose_report(self.findings, self.impression)


def signer_name(account: str, s: Settings) -> str:
    """Who signed, as exports and the screen name them: the account name, or in single-user mode the
    configured name of the person at the machine (XR_LOCAL_USER), never the placeholder account 'local'."""
    return s.local_user if account == LOCAL_USER_NAME else account


def signer(r: ApprovedReport, s: Settings) -> str:
    return signer_name(r.approved_by, s)
