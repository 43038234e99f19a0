"""Shared fixtures: the public data beside the checkout, an isolated data directory with a real SQLite
file (or a fresh PostgreSQL database), and real DICOM files written with pydicom."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from db.scratch import scratch_database
from db.session import sqlalchemy_url
from xr.config import Settings, settings

SHARED = settings().shared_dir
NIH = SHARED / "data" / "nih_cxr14_sample" / "images"
IU = SHARED / "data" / "iu_xray" / "images_openi"


# Modules whose tests take minutes on a 2-core machine (they start the app, worker processes or Ray, or
# train): `-m "not slow"` leaves them out of the fast loop; CI runs everything.
# (measured: `--durations` of a whole CI run, 2026-12-01; tests/load alone is 15 minutes of the 39)
SLOW_MODULES = {"test_app", "test_access", "test_batch", "test_start", "test_concurrency", "test_faults", "test_refiner", "test_onnx",
                "test_train_engine", "test_bad_input", "test_evaluate", "test_cli"}


def pytest_collection_modifyitems(config, items):
    """Markers by place: tests/browser are `browser`, tests/load are `load`, and both are `slow`."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in ("browser", "load"):
            item.add_marker(folder)
        if folder in ("browser", "load") or Path(str(item.fspath)).stem in SLOW_MODULES:
            item.add_marker("slow")


def free_port() -> int:
    """A port nothing listens on now, for an app a test starts on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dciodvfy(path: Path) -> list[str]:
    """dicom3tools' validator on a DICOM file the workstation wrote: fails the test on any 'Error' line,
    returns the warnings. Without dicom3tools the test is skipped, except under CI (.ci/run installs it)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        message = "dciodvfy not found (apt-get install dicom3tools)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (r.stdout + r.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, f"dciodvfy {path.name}:\n" + "\n".join(lines)
    return [line for line in lines if line.startswith("Warning")]


@pytest.fixture(scope="session")
def shared() -> Path:
    if not NIH.is_dir():
        pytest.skip(f"public data not found at {SHARED} (set XR_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def nih_pixels(shared) -> np.ndarray:
    return np.asarray(Image.open(NIH / "00000100_000.png").convert("L"))


@pytest.fixture
def env(tmp_path, monkeypatch) -> Settings:
    """A fresh data directory and SQLite file for one test."""
    monkeypatch.setenv("XR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("XR_DATABASE_URL", raising=False)
    monkeypatch.setenv("XR_SALT", "test-salt")
    return settings()


POSTGRES_URL = "XR_TEST_POSTGRES_URL"  # a server the tests may create databases on, e.g. postgresql://xr@127.0.0.1:5432/postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def db_env(request, env, monkeypatch) -> Iterator[Settings]:
    """`env` on each database engine: the SQLite file, or a database of its own on the PostgreSQL server
    at XR_TEST_POSTGRES_URL (dropped afterwards). Without that server the PostgreSQL runs are skipped,
    except under CI, where they fail: CI must not pass without having run them."""
    if request.param == "sqlite":
        yield env
        return
    server = os.environ.get(POSTGRES_URL)
    if not server:
        message = f"{POSTGRES_URL} is not set: no PostgreSQL server to test on (start one: source scripts/postgres.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with scratch_database(server) as url:
        engine = create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with engine.connect() as c:  # not UTC, so that a time read back in the server's zone shows
            c.execute(text(f"ALTER DATABASE \"{make_url(url).database}\" SET timezone TO 'America/New_York'"))
        engine.dispose()
        monkeypatch.setenv("XR_DATABASE_URL", url)
        yield settings()


@pytest.fixture(scope="session")
def workstation_factory(tmp_path_factory):
    """Models load once per session; each test gets its own Settings (and so its own database). The shared
    drafter has settings of its own: a scratch data folder for its feature cache, no ONNX export (eager)."""
    from xr.workstation import Workstation

    scratch = tmp_path_factory.mktemp("shared-models")
    shared_ws = Workstation(replace(settings(), data_dir=scratch, onnx_dir=scratch / "onnx",
                                    database_url=f"sqlite:///{scratch / 'xr.sqlite3'}"))

    def make(s: Settings) -> Workstation:
        ws = Workstation(s)
        ws._drafter, ws._index = shared_ws.drafter, shared_ws.index
        return ws

    return make


PATIENT = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "MRN-5550123",
    "PatientBirthDate": "19470203",
    "AccessionNumber": "ACC-99887766",
    "InstitutionName": "Saint Example Hospital",
    "ImageComments": "Patient Jane Doe, bed 12",
    "OtherPatientIDs": "OPID-4242",
    "PatientAddress": "12 Example Street, Springfield",
    "PatientTelephoneNumbers": "555-0199",
    "ReferringPhysicianName": "Referrer^Rita",
    "OperatorsName": "Radiographer^Ravi",
    "StudyID": "SID-31337",
    "StudyDescription": "Chest for Jane Doe",
}


def write_dicom(path: Path, pixels: np.ndarray, *, bits: int = 16, photometric: str = "MONOCHROME2",
                view: str | None = "PA", study_uid: str | None = "1.2.826.0.1.3680043.8.498.1",
                spacing: tuple[float, float] | None = (0.143, 0.143), slope: float = 1.0, intercept: float = 0.0,
                window: tuple[float, float] | None = None, frames: int = 1, with_pixels: bool = True,
                sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1", compress: str | None = None,
                identifiers: bool = True) -> Path:
    """A real DICOM file (Digital X-Ray by default) from an 8-bit image, stored at `bits` depth."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if identifiers:
        for k, v in PATIENT.items():
            setattr(ds, k, v)
    if study_uid:
        ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    if view:
        ds.ViewPosition = view
    if with_pixels:
        stored = pixels.astype(np.float64)
        if bits > 8:
            stored = stored * ((2 ** bits - 1) / 255.0)
        if photometric == "MONOCHROME1":
            stored = stored.max() - stored
        dtype = np.uint8 if bits <= 8 else np.uint16
        arr = np.round(stored).astype(dtype)
        if frames > 1:
            arr = np.stack([arr] * frames)
            ds.NumberOfFrames = frames
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 8 if bits <= 8 else 16
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if spacing:
            ds.PixelSpacing = list(spacing)
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = arr.tobytes()
        if compress:
            ds.compress(compress)
    ds.save_as(path, enforce_file_format=True)
    return path
