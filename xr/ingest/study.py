"""A study from what a user hands us: files, a folder or a zip. All-or-nothing: one bad file refuses
the whole study, so nothing half-ingested reaches the database."""
from __future__ import annotations

import hashlib
import lzma
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath

import numpy as np

from xr.config import Settings, keyed_hash, settings, study_salt
from xr.ingest.dicom import looks_like_dicom, read_dicom
from xr.ingest.errors import IngestError
from xr.ingest.image import IngestedImage
from xr.ingest.raster import JPEG_MAGIC, PNG_MAGIC, read_raster

EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".dcm": "dicom", ".dicom": "dicom", "": "dicom"}
SKIPPED_NAMES = {"DICOMDIR", "Thumbs.db", "desktop.ini"}
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, OSError,
              ValueError, zlib.error, lzma.LZMAError)  # damaged or encrypted archive, unknown compression


@dataclass(frozen=True)
class IngestedStudy:
    key: str  # salted hash of StudyInstanceUID, or of the pixels when there is none
    images: list[IngestedImage]
    origin: str = ""  # where its source finds it again, sealed (xr.config.seal; a PACS); '' for files
    patient: str | None = None  # keyed hash of the patient's ID (xr.config.keyed_hash): links a study to its priors
    study_date: date | None = None


def sniff(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if looks_like_dicom(data):
        return "dicom"
    return None


def read_image(data: bytes, name: str, s: Settings) -> IngestedImage:
    if not data:
        raise IngestError(f"{name}: file is empty")
    _check_size(name, len(data), s)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in EXTENSIONS:
        raise IngestError(f"{name}: '{suffix}' files are not images; give PNG, JPEG or DICOM")
    declared, found = EXTENSIONS[suffix], sniff(data)
    if found is None and declared == "dicom":
        found = "dicom"  # DICOM without the 128-byte preamble: pydicom decides
    if found is None:
        raise IngestError(f"{name}: not a PNG, JPEG or DICOM file")
    if suffix and found != declared:
        raise IngestError(f"{name}: content is {found.upper()} but the extension says {declared.upper()}")
    if found == "dicom":
        return read_dicom(data, name, s.max_pixels)
    return read_raster(data, name, found, s.max_pixels)


def read_pixels(path: Path | str, s: Settings | None = None) -> np.ndarray:
    """One file's display pixels exactly as a drafted study's (16-bit PNG and DICOM windowed, MONOCHROME1
    inverted): the one image path of training, evaluation, library building and serving."""
    path = Path(path)
    return read_image(path.read_bytes(), path.name, s or settings()).pixels


def _entries(path: Path, s: Settings) -> list[tuple[str, bytes]]:
    """(display name, bytes) for each candidate image under a path; refuses unsafe archives."""
    if not path.exists():
        raise IngestError(f"{path.name}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not skipped_name(p.name))
        _check_count(len(files), path.name, s)
        out = []
        for p in files:
            _check_size(p.name, p.stat().st_size, s)
            out.append((p.name, p.read_bytes()))
        return out
    if path.suffix.lower() == ".zip":
        return _zip_entries(path, s)
    _check_size(path.name, path.stat().st_size, s)
    return [(path.name, path.read_bytes())]


def _check_count(n: int, name: str, s: Settings) -> None:
    if n > s.max_images:
        raise IngestError(f"{name}: holds {n} files; a study has at most {s.max_images} images")


def _check_size(name: str, size: int, s: Settings) -> None:
    if size > s.max_file_bytes:
        raise IngestError(f"{name}: {size / 2**20:.1f} MB is over the limit of {s.max_file_bytes / 2**20:.0f} MB per file")


def skipped_name(name: str) -> bool:
    """Hidden and system files (macOS resource forks, Thumbs.db, ...): never part of a study."""
    return name.startswith(".") or name in SKIPPED_NAMES or name.startswith("__MACOSX")


def _zip_entries(path: Path, s: Settings) -> list[tuple[str, bytes]]:
    size, limit = path.stat().st_size, s.max_archive_bytes
    if size > limit:
        raise IngestError(f"{path.name}: {size / 2**20:.1f} MB is over the limit of {limit / 2**20:.0f} MB per archive")
    try:
        with zipfile.ZipFile(path) as zf:
            n = sum(not i.filename.endswith("/") for i in zf.infolist())
            if n > s.max_zip_entries:
                raise IngestError(f"{path.name}: archive has {n} entries, over the limit of {s.max_zip_entries}")
            wanted = [(_shown(parts[-1]), info) for parts, info in archive_entries(zf, path.name)]
            _check_count(len(wanted), path.name, s)
            out = []
            for leaf, info in wanted:
                _check_size(leaf, info.file_size, s)
                with zf.open(info) as f:  # read at most the limit: the declared size may lie
                    data = f.read(s.max_file_bytes + 1)
                out.append((leaf, data))
            return out
    except IngestError:  # a ValueError too, but already the reason to give
        raise
    except ZIP_ERRORS:
        raise IngestError(f"{path.name}: not a readable zip archive") from None


def _shown(leaf: str) -> str:
    """An entry's name as messages may show it: one short line, whatever the archive holds."""
    leaf = "".join(c if c.isprintable() else "?" for c in leaf)
    return leaf if len(leaf) <= 80 else f"{leaf[:40]}...{leaf[-37:]}"


def archive_entries(zf: zipfile.ZipFile, name: str) -> list[tuple[tuple[str, ...], zipfile.ZipInfo]]:
    """The entries of archive `name` that may be unpacked, with their path parts. An entry that would land
    outside the folder it is unpacked into, or a link, refuses the whole archive (one line); folders, hidden
    and system files are left out. The one place these rules are written: the ingest and the batch's
    archive of studies both read archives through it."""
    out = []
    for info in zf.infolist():
        if info.filename.endswith("/"):  # a folder (is_dir() fails on "")
            continue
        if _unsafe(info):
            raise IngestError(f"{name}: archive entry with an unsafe path refused")
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if parts and not any(skipped_name(p) for p in parts):
            out.append((parts, info))
    return out


def _unsafe(info: zipfile.ZipInfo) -> bool:
    """Entries that would land outside a folder they were unpacked into, or links: never images."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    return (name.startswith("/") or ".." in parts or (len(name) > 1 and name[1] == ":")
            or stat.S_IFMT(info.external_attr >> 16) == stat.S_IFLNK)


def load_study(paths: Sequence[Path | str], s: Settings | None = None) -> IngestedStudy:
    s = s or settings()
    if not paths:
        raise IngestError("no files given: a study is one or more PNG, JPEG or DICOM images")
    entries: list[tuple[str, bytes]] = []
    for p in paths:
        entries.extend(_entries(Path(p), s))
        if len(entries) > s.max_images:
            raise IngestError(f"a study has at most {s.max_images} images; {len(entries)} or more given")
    if not entries:
        raise IngestError("no image files found in what was given")
    return study_of([read_image(data, name, s) for name, data in entries], s)


def study_of(images: list[IngestedImage], s: Settings, origin: str = "") -> IngestedStudy:
    """One study of the films read: its key, its patient's link to their other studies, its date."""
    patients = {im.patient_id for im in images if im.patient_id}
    if len(patients) > 1:
        raise IngestError(f"the files belong to {len(patients)} different patients; upload one study at a time")
    taken = sorted({im.study_date for im in images if im.study_date})
    return IngestedStudy(key=study_key(images, s), images=unique_images(images), origin=origin,
                         patient=keyed_hash("patient:" + patients.pop(), s) if patients else None,
                         study_date=_day(taken[0]) if taken else None)


def _day(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def unique_images(images: list[IngestedImage]) -> list[IngestedImage]:
    seen, out = set(), []
    for im in images:
        if im.content_hash not in seen:
            seen.add(im.content_hash)
            out.append(im)
    return out


def study_key(images: list[IngestedImage], s: Settings) -> str:
    uids = {im.study_uid for im in images if im.study_uid}
    if len(uids) > 1:
        raise IngestError(f"the files belong to {len(uids)} different studies; upload one study at a time")
    if uids:
        return uid_key(uids.pop(), s)
    h = hashlib.sha256(study_salt(s))
    h.update(b"pixels:" + ",".join(sorted(im.content_hash for im in images)).encode())
    return h.hexdigest()


def uid_key(study_uid: str, s: Settings) -> str:
    """The study key of a Study Instance UID: a PACS's study is known before its films are fetched."""
    h = hashlib.sha256(study_salt(s))
    h.update(b"uid:" + study_uid.encode())
    return h.hexdigest()
