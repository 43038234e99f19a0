"""A PACS over DICOMweb (dicomweb-client): QIDO-RS finds chest studies, WADO-RS fetches their films, STOW-RS
takes the signed report back into the same study. One setting, XR_PACS_URL; the user XR_PACS_USER and its
password from XR_PACS_PASSWORD_FILE or XR_PACS_PASSWORD (never the command line).

Identity stays in the PACS: a study is carried by its Study Instance UID sealed under the site secret,
films are read by the ordinary ingest (which keeps no identifier), and the patient and study attributes a
report needs are read when it is sent (`header`) and live in memory only."""
from __future__ import annotations

import io
import logging
import os
from datetime import date
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from xr.config import Settings, keyed_hash, seal, unseal
from xr.errors import UserError
from xr.ingest.errors import IngestError
from xr.ingest.source import StudyRef
from xr.ingest.study import IngestedStudy, read_image, study_of, uid_key

# dicomweb-client names the study's UID in its log lines, and urllib3 the URLs that carry it: never logged.
for _name in ("dicomweb_client", "urllib3.connectionpool"):
    logging.getLogger(_name).setLevel(logging.WARNING)

CHEST_MODALITIES = ("CR", "DX")  # what the watcher drafts ahead: computed and digital radiography
TIMEOUT_S = (5, 60)  # connect, read: a PACS that does not answer fails the call, it does not hang a sign-off


class PacsError(UserError):
    """The PACS did not answer, or refused: one line, no identifier in it."""


def _password() -> str | None:
    path = os.environ.get("XR_PACS_PASSWORD_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get("XR_PACS_PASSWORD")


def _date(value: object) -> str:
    text = str(value or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else ""


class _Session(requests.Session):
    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT_S)
        return super().request(method, url, *args, **kwargs)


class Pacs:
    """The study source (xr.ingest.sources) a PACS is, and where signed reports go back."""

    def __init__(self, s: Settings, url: str | None = None) -> None:
        self.s, self.url = s, (url or s.pacs_url or "").rstrip("/")
        if not self.url:
            raise UserError("no PACS is configured: set XR_PACS_URL to its DICOMweb root")
        session = _Session()
        if s.pacs_user:
            session.auth = (s.pacs_user, _password() or "")
        self.client = DICOMwebClient(self.url, session=session)
        self.client.set_http_retry_params(retry=False)  # the outbox retries, with its own backoff

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else "?"
            raise PacsError(f"the PACS refused to {what} (HTTP {code})") from None
        except requests.RequestException as e:
            raise PacsError(f"the PACS at {self.url} cannot be reached to {what} ({type(e).__name__})") from None
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # a malformed answer
            raise PacsError(f"the PACS's answer to {what} is not valid DICOMweb ({type(e).__name__})") from None

    # ---- the study source ---------------------------------------------------------------------------
    def studies(self, since: date | None = None, until: date | None = None, modality: str = "",
                accession: str = "") -> list[StudyRef]:
        """Chest radiography studies (CR, DX; or the one modality asked), newest first."""
        base: dict[str, str] = {}
        if since or until:
            base["StudyDate"] = f"{since.strftime('%Y%m%d') if since else ''}-{until.strftime('%Y%m%d') if until else ''}"
        if accession:
            base["AccessionNumber"] = accession
        found: dict[str, StudyRef] = {}
        for m in [modality] if modality else CHEST_MODALITIES:
            answers = self._call("search studies", self.client.search_for_studies,
                                 search_filters={**base, "ModalitiesInStudy": m},
                                 fields=["StudyDate", "ModalitiesInStudy"])
            for a in answers:
                ds = Dataset.from_json(a)
                uid = str(ds.get("StudyInstanceUID", ""))
                if uid and uid not in found:
                    found[uid] = StudyRef(f"PACS study {keyed_hash('pacs:' + uid, self.s)[:10]}", address=seal(uid, self.s),
                                          date=_date(ds.get("StudyDate")), modality=m)
        return sorted(found.values(), key=lambda r: r.date, reverse=True)

    def key(self, ref: StudyRef) -> str:
        """The study's key in our store, known before its films are fetched."""
        return uid_key(unseal(ref.address, self.s), self.s)

    def load(self, ref: StudyRef) -> IngestedStudy:
        """Its films through the ordinary ingest; refused whole, in one line, when an object is not a film
        we read, too large, or of another study."""
        uid = unseal(ref.address, self.s)
        instances = [Dataset.from_json(a) for a in self._call("list the study's images", self.client.search_for_instances,
                                                              study_instance_uid=uid, fields=["Rows", "Columns"])]
        if not instances:
            raise IngestError(f"{ref.name}: the PACS holds no image of it")
        if len(instances) > self.s.max_images:
            raise IngestError(f"{ref.name}: holds {len(instances)} objects; a study has at most {self.s.max_images} images")
        images = []
        for n, meta in enumerate(instances, 1):
            name = f"{ref.name} object {n}"
            rows, cols = int(meta.get("Rows") or 0), int(meta.get("Columns") or 0)
            if rows * cols > self.s.max_pixels:  # said before it is fetched
                raise IngestError(f"{name}: {cols}x{rows} pixels is over the limit of {self.s.max_pixels:,} pixels")
            ds = self._call("send an image", self.client.retrieve_instance, uid, str(meta.SeriesInstanceUID),
                            str(meta.SOPInstanceUID))
            buffer = io.BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=False)
            image = read_image(buffer.getvalue(), name + ".dcm", self.s)
            if image.study_uid != uid:
                raise IngestError(f"{name}: the PACS sent an object of another study")
            images.append(image)
        return study_of(images, self.s, origin=ref.address)

    # ---- reports back -------------------------------------------------------------------------------
    def header(self, address: str, fields: tuple[str, ...]) -> Dataset:
        """The study's attributes (`fields`, and its UID) as the PACS holds them now, for one report's header:
        in memory only."""
        uid = unseal(address, self.s)
        answers = self._call("describe the study", self.client.search_for_studies,
                             search_filters={"StudyInstanceUID": uid}, fields=list(fields))
        if len(answers) != 1:
            raise PacsError("the PACS no longer holds the study this report belongs to")
        return Dataset.from_json(answers[0])

    def store(self, report: Dataset) -> None:
        """STOW-RS into the report's study. An instance the PACS already holds (a resend after a lost answer)
        is the same SOP instance: it never makes a second report."""
        buffer = io.BytesIO()  # a conformant file (preamble, whole file meta), which the client then sends as it is
        dcmwrite(buffer, report, enforce_file_format=True)
        buffer.seek(0)
        self._call("store the report", self.client.store_instances, [dcmread(buffer)], str(report.StudyInstanceUID))
