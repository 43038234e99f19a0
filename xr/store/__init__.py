"""Store: every user action on studies as one database transaction, split by job: `commands` (what users
do), `queries` (what the workspaces read), `images` (the image files), `exports` (what leaves),
`deliveries` (signed reports on their way to the PACS). Callers use `from xr import store;
store.approve(...)`: the names below are the store's whole interface."""
from xr.store.commands import add_to_library, approve, known_study, record_study, save_revision
from xr.store.common import (
    REASON_TAGS,
    STATUSES,
    Actor,
    KnownStudy,
    LibraryEntry,
    StoreError,
    StudyStatus,
    check_text,
)
from xr.store.deliveries import NOT_IN_PACS, DeliveryJob, delivered, due_deliveries, not_delivered
from xr.store.exports import export_edits, export_report
from xr.store.images import image_path, rename_images, study_images
from xr.store.queries import (
    CorrectionsQueue,
    HistoryEntry,
    PriorStudy,
    SignedFilm,
    StoredDraft,
    StudyApproval,
    StudyCorrection,
    StudyImage,
    StudyRecord,
    TeachingStudy,
    approvals_not_in_library,
    corrections_queue,
    draft_result,
    history,
    latest_draft,
    library_cases,
    prior_study,
    signed_films,
    study_record,
    teaching_studies,
    worklist,
    worklist_query,
)

__all__ = ["NOT_IN_PACS", "DeliveryJob", "delivered", "due_deliveries", "not_delivered",
           "REASON_TAGS", "STATUSES", "Actor", "CorrectionsQueue", "HistoryEntry", "KnownStudy", "LibraryEntry", "PriorStudy",
           "prior_study",
           "SignedFilm", "StoreError", "StoredDraft", "StudyApproval", "StudyCorrection", "StudyImage", "StudyStatus",
           "StudyRecord", "TeachingStudy", "add_to_library", "approvals_not_in_library", "approve", "check_text",
           "corrections_queue", "draft_result", "export_edits", "export_report", "history", "image_path", "known_study", "latest_draft",
           "library_cases", "record_study", "rename_images", "save_revision", "signed_films", "study_images", "study_record",
           "teaching_studies", "worklist", "worklist_query"]
