"""A full disk and a read-only data directory, on a real file system (a small tmpfs mounted for the test):
an upload or an export fails with one line naming the cause, leaves nothing half-saved (no partial rows,
no audit event, no temp or orphan file, a database that passes its integrity check), and works again once
the disk is writable. Mounting needs root or CAP_SYS_ADMIN; without it these tests are skipped."""
from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from db.session import DatabaseUnavailable, database_exists, engine_for
from tests.conftest import write_dicom
from xr import store
from xr.config import settings
from xr.errors import UserError
from xr.files import WriteError
from xr.ingest import load_study
from xr.store import Actor

RAD = Actor("dr_a", "radiologist")
PAGE = 4096  # tmpfs charges whole pages
NO_SPACE = r"no space left on device|disk holding the database is full"
READ_ONLY = r"read-only"
DB_FILES = {"xr.sqlite3", "xr.sqlite3-wal", "xr.sqlite3-shm"}
COUNTED = ("studies", "images", "drafts", "revisions", "approvals", "audit_events")


def _mount(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    except FileNotFoundError as e:
        return subprocess.CompletedProcess(["mount"], 127, "", str(e))


@contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (created), unmounted afterwards; the test is skipped when this
    process may not mount (not root, no CAP_SYS_ADMIN, no mount command)."""
    path.mkdir(parents=True, exist_ok=True)
    r = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {(r.stderr or r.stdout).strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # a file still open: detach it


def remount(path: Path, mode: str) -> None:
    r = _mount("-o", f"remount,{mode}", str(path))
    assert r.returncode == 0, f"remount,{mode} {path}: {r.stderr.strip()}"


class Disk:
    """The mounted tmpfs: fill it up, free it, make it read-only and writable again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ballast = root / "ballast"
        self.urls: list[str] = []  # databases on this disk: closed before a remount or the unmount

    def available(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Take every free page but `leave` bytes' worth. SQLite's write-ahead log is emptied first, so the
        next commit has to grow it: without that, a commit could reuse log space already on the disk."""
        for url in self.urls:
            con = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                assert con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
            finally:
                con.close()
        take = self.available() - leave
        with open(self.ballast, "ab") as f:
            os.posix_fallocate(f.fileno(), f.seek(0, io.SEEK_END), take)
        assert self.available() == leave

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def close_databases(self) -> None:
        for url in self.urls:
            if database_exists(url):  # else engine_for() would create it
                engine_for(url).dispose()

    def read_only(self) -> None:
        self.close_databases()  # a file open for writing keeps the remount from happening (EBUSY)
        remount(self.root, "ro")

    def read_write(self) -> None:
        remount(self.root, "rw")


@pytest.fixture
def disk(tmp_path) -> Iterator[Disk]:
    with tmpfs(tmp_path / "disk") as root:
        d = Disk(root)
        try:
            yield d
        finally:
            d.close_databases()


@pytest.fixture(scope="module")
def encoder_off_the_disk(workstation_factory, tmp_path_factory):
    """The shared drafter's encoder loaded before the tmpfs tests (its feature cache is in the shared
    models' own scratch folder, conftest's workstation_factory: never on a tmpfs these tests fill up)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XR_DATA_DIR", str(tmp_path_factory.mktemp("warm")))
        mp.setenv("XR_SALT", "test-salt")
        ws = workstation_factory(settings())
        getattr(ws.drafter, "encoder", None)


@pytest.fixture
def on_disk(disk, monkeypatch, encoder_off_the_disk):
    """Settings whose data directory (images and SQLite file) is on the tmpfs."""
    monkeypatch.setenv("XR_DATA_DIR", str(disk.root / "data"))
    monkeypatch.delenv("XR_DATABASE_URL", raising=False)
    monkeypatch.setenv("XR_SALT", "test-salt")
    s = settings()
    disk.urls.append(s.database_url)
    return s


@pytest.fixture
def studies(tmp_path, nih_pixels) -> tuple[Path, Path]:
    """Two DICOM studies (different pixels, different study UIDs), written outside the tmpfs."""
    return (write_dicom(tmp_path / "a.dcm", nih_pixels, study_uid="1.2.826.0.1.3680043.8.498.1"),
            write_dicom(tmp_path / "b.dcm", nih_pixels[::-1].copy(), study_uid="1.2.826.0.1.3680043.8.498.2"))


def db_path(s) -> Path:
    return Path(s.database_url.removeprefix("sqlite:///"))


def state(s) -> dict[str, int]:
    """Row counts, read with a connection of its own after checking the file's integrity."""
    con = sqlite3.connect(db_path(s))
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in COUNTED}
    finally:
        con.close()


def leftovers(s) -> list[str]:
    """Files in the data directory that nothing refers to: temp files, images without a row."""
    con = sqlite3.connect(db_path(s))
    try:
        stored = {p for p, in con.execute("select storage_path from images")}
    finally:
        con.close()
    files = {p.relative_to(s.data_dir).as_posix() for p in s.data_dir.rglob("*") if p.is_file()}
    assert stored <= files, f"image rows without their file: {sorted(stored - files)}"
    return sorted(files - stored - DB_FILES)


def one_line(e: pytest.ExceptionInfo, cause: str) -> str:
    """The user's line: a UserError (shown as it is, no traceback), one line, naming the cause."""
    msg = str(e.value)
    assert isinstance(e.value, UserError), f"{type(e.value).__name__} escaped: {msg}"
    assert "\n" not in msg and msg.strip() == msg and msg
    assert re.search(cause, msg, re.IGNORECASE), msg
    return msg


def png_size(s, dicom: Path) -> int:
    """Bytes of the image file the store will write for this upload (its pixels encoded as the store does)."""
    buf = io.BytesIO()
    Image.fromarray(load_study([dicom], s).images[0].pixels).save(buf, format="PNG")
    return len(buf.getvalue())


def pages(n: int) -> int:
    return -(-n // PAGE) * PAGE


# --- upload -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fails_on", ["image", "database"])
def test_upload_to_a_full_disk(fails_on, on_disk, disk, studies, workstation_factory):
    """No room for the image file: refused before the database is touched. Room for the image file but
    none for the database's write-ahead log: the transaction fails at its commit, and the image file
    written for it is removed again."""
    ws = workstation_factory(on_disk)
    first, second = studies
    ws.draft([first], "cough", RAD)
    before = state(on_disk)
    disk.fill(leave=PAGE if fails_on == "image" else pages(png_size(on_disk, second)))
    with pytest.raises(UserError) as e:
        ws.draft([second], "fever", RAD)
    assert one_line(e, NO_SPACE) == {
        "image": "cannot store the image: No space left on device; nothing was saved",
        "database": "the disk holding the database is full; nothing was saved"}[fails_on]
    assert isinstance(e.value, DatabaseUnavailable) == (fails_on == "database")
    disk.free()
    assert state(on_disk) == before
    assert leftovers(on_disk) == []
    again = ws.draft([second], "fever", RAD)
    assert again.study_id is not None
    assert state(on_disk) == {**before, "studies": 2, "images": 2, "drafts": 2, "audit_events": before["audit_events"] + 2}
    assert leftovers(on_disk) == []


def test_first_upload_to_a_full_disk_cannot_create_the_database(on_disk, disk, studies, workstation_factory):
    """A new installation: room for the image, none for creating the database file and its tables."""
    ws = workstation_factory(on_disk)
    first, _ = studies
    on_disk.data_dir.mkdir()
    disk.fill(leave=pages(png_size(on_disk, first)))
    with pytest.raises(Exception) as e:
        ws.draft([first], "cough", RAD)
    disk.free()
    assert not list(on_disk.data_dir.rglob("*.png")) and not list(on_disk.data_dir.rglob("*.tmp"))
    assert ws.draft([first], "cough", RAD).study_id is not None
    assert state(on_disk)["drafts"] == 1 and leftovers(on_disk) == []
    assert isinstance(e.value, UserError), f"{type(e.value).__name__} escaped: {e.value}"
    assert one_line(e, NO_SPACE) == "the disk holding the database is full; nothing was saved"


def test_upload_to_a_read_only_data_directory(on_disk, disk, studies, workstation_factory):
    ws = workstation_factory(on_disk)
    first, second = studies
    ws.draft([first], "cough", RAD)
    before = state(on_disk)
    disk.read_only()
    with pytest.raises(UserError) as e:
        ws.draft([second], "fever", RAD)
    msg = one_line(e, r"\w")
    disk.close_databases()
    disk.read_write()
    assert state(on_disk) == before
    assert leftovers(on_disk) == []
    again = ws.draft([second], "fever", RAD)
    assert again.study_id is not None and state(on_disk)["studies"] == before["studies"] + 1
    assert leftovers(on_disk) == []
    assert re.search(READ_ONLY, msg, re.IGNORECASE), msg


# --- export -----------------------------------------------------------------------------------------------

@pytest.fixture
def approved(env, studies, workstation_factory, encoder_off_the_disk):
    """An approved study in an ordinary data directory (not on the tmpfs)."""
    ws = workstation_factory(env)
    sid = ws.draft([studies[0]], "cough", RAD).study_id
    store.approve(env, sid, "FINDINGS: Heart normal.\n\nIMPRESSION: No acute disease.", RAD)
    return env, sid


def exports(s, sid: int):
    """(name, export into a directory, returning the file's path) of every export a user can make."""
    def edits(d: Path) -> Path:
        store.export_edits(s, d / "edits.jsonl", RAD)
        return d / "edits.jsonl"

    return [("edits", edits)] + [
        (fmt, lambda d, fmt=fmt: store.export_report(s, sid, fmt, d, RAD)) for fmt in ("sr", "fhir", "text")]


def audit_events(s) -> int:
    return state(s)["audit_events"]


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_export_to_a_full_or_read_only_directory(approved, disk, fault):
    s, sid = approved
    out = disk.root / "exports"
    out.mkdir()
    events = audit_events(s)
    if fault == "full":
        disk.fill()
    else:
        disk.read_only()
    for name, export in exports(s, sid):
        with pytest.raises(WriteError) as e:
            export(out)
        one_line(e, NO_SPACE if fault == "full" else READ_ONLY)
        assert audit_events(s) == events, f"{name}: a failed export was logged"
        assert list(out.iterdir()) == [], f"{name}: left a file behind"
    if fault == "full":
        disk.free()
    else:
        disk.read_write()
    written = [export(out).name for _, export in exports(s, sid)]
    assert sorted(p.name for p in out.iterdir()) == sorted(written) and len(written) == 4
    assert all((out / n).stat().st_size > 0 for n in written)
    assert audit_events(s) == events + 4


@pytest.fixture
def approved_on_disk(on_disk, studies, workstation_factory):
    ws = workstation_factory(on_disk)
    sid = ws.draft([studies[0]], "cough", RAD).study_id
    store.approve(on_disk, sid, "FINDINGS: Heart normal.\n\nIMPRESSION: No acute disease.", RAD)
    return on_disk, sid


def test_export_whose_audit_event_cannot_be_saved_leaves_no_file(approved_on_disk, disk, tmp_path):
    """The file is written (elsewhere), then logging the export fails on the full database disk: the
    export did not happen, so its file must not stay behind either."""
    s, sid = approved_on_disk
    out = tmp_path / "out"
    out.mkdir()
    before = state(s)
    disk.fill()
    for name, export in exports(s, sid):
        with pytest.raises(DatabaseUnavailable) as e:
            export(out)
        assert one_line(e, NO_SPACE) == "the disk holding the database is full; nothing was saved"
        assert list(out.iterdir()) == [], f"{name}: the file of an export that was not logged stayed"
    disk.free()
    assert state(s) == before and leftovers(s) == []
    assert len([export(out) for _, export in exports(s, sid)]) == len(list(out.iterdir())) == 4
    assert state(s)["audit_events"] == before["audit_events"] + 4
    disk.fill()  # the same exports again: the files of the earlier, logged ones stay
    for _name, export in exports(s, sid):
        with pytest.raises(DatabaseUnavailable):
            export(out)
    disk.free()
    assert len(list(out.iterdir())) == 4 and all(p.stat().st_size > 0 for p in out.iterdir())
    assert state(s)["audit_events"] == before["audit_events"] + 4
