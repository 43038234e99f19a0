"""`python -m xr backup OUT` and `restore IN [--verify]`: everything a site cannot lose, copied while the
app runs. The database by SQLite's online backup API (a consistent copy, WAL included, without stopping
writers) or `pg_dump`; every stored image; the salt (without it, study keys no longer match their
studies). A manifest holds each file's sha256, so a damaged or partial backup is refused before anything
is restored, and a restore goes only into an empty data directory and is checked afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, make_url, select

from db.models import Approval, Image, Study
from db.session import database_exists, sqlalchemy_url, transaction
from xr.config import Settings
from xr.errors import UserError
from xr.files import write_atomic
from xr.ingest.image import pixel_hash

MANIFEST = "backup.json"
SQLITE_COPY, PG_DUMP = "xr.sqlite3", "xr.pgdump"


class BackupError(UserError):
    """A backup that cannot be made, or one that cannot be trusted to restore."""


def _sqlite_file(url: str) -> Path | None:
    url = sqlalchemy_url(url)
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _libpq(url: str) -> str:
    return make_url(sqlalchemy_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _counts(s: Settings) -> dict[str, int]:
    with transaction(s.database_url, read_only=True) as session:
        return {name: session.scalar(select(func.count()).select_from(table)) or 0
                for name, table in (("studies", Study), ("images", Image), ("approvals", Approval))}


def _stored_paths(s: Settings) -> list[str]:
    with transaction(s.database_url, read_only=True) as session:
        return sorted(set(session.scalars(select(Image.storage_path))))


def backup(s: Settings, out: Path) -> dict:
    """Write the backup to `out` (a new folder); returns the manifest."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out}: not empty; give a new folder")
    if not database_exists(s.database_url):
        raise BackupError(f"no database at {s.database_url}: nothing to back up")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    counts, paths = _counts(s), _stored_paths(s)
    missing = [p for p in paths if not (s.data_dir / p).is_file()]
    if missing:
        raise BackupError(f"{len(missing)} stored image(s) are missing from {s.data_dir}, e.g. {missing[0]}: "
                          "the data directory is already damaged")
    db_file = _sqlite_file(s.database_url)
    if db_file is not None:
        src, dst = sqlite3.connect(db_file), sqlite3.connect(partial / SQLITE_COPY)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        database = SQLITE_COPY
    else:
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={partial / PG_DUMP}", _libpq(s.database_url)])
        database = PG_DUMP
    for rel in paths:
        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s.data_dir / rel, partial / rel)
    salt = s.data_dir / "salt"
    if salt.is_file():
        shutil.copy2(salt, partial / "salt")
    files = {str(p.relative_to(partial)): _sha256(p) for p in sorted(partial.rglob("*")) if p.is_file()}
    manifest = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "database": database, "counts": counts,
                "salt": "salt" in files or ("XR_SALT (not in the backup: keep it with the backup)" if s.salt else "none"),
                "files": files}
    write_atomic(partial / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    os.replace(partial, out)
    return manifest


def _run(cmd: list[str]) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise BackupError(f"{cmd[0]} not found: install the PostgreSQL client tools") from None
    if r.returncode:
        raise BackupError(f"{cmd[0]} failed: {(r.stderr.strip().splitlines() or ['no message'])[-1]}")


def _read_manifest(src: Path) -> dict:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError(f"{src}: no readable {MANIFEST}: not a backup made by `xr backup`") from None
    bad = [rel for rel, digest in manifest["files"].items() if not (src / rel).is_file() or _sha256(src / rel) != digest]
    if bad:
        raise BackupError(f"{src}: {len(bad)} file(s) missing or changed since the backup, e.g. {bad[0]}: not restored")
    return manifest


def restore(s: Settings, src: Path, deep: bool = False) -> dict:
    """Restore a backup into this (empty) data directory, then check it (`deep`: every image's pixels
    against its recorded hash too). Returns what the check found."""
    src = Path(src)
    manifest = _read_manifest(src)
    if database_exists(s.database_url) and _counts(s)["studies"]:
        raise BackupError("the database already holds studies: restore into an empty data directory "
                          "(or an empty PostgreSQL database)")
    db_file = _sqlite_file(s.database_url)
    if (manifest["database"] == SQLITE_COPY) != (db_file is not None):
        raise BackupError(f"the backup holds a {'SQLite' if manifest['database'] == SQLITE_COPY else 'PostgreSQL'} "
                          "database; XR_DATABASE_URL names the other kind")
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        source, target = sqlite3.connect(src / SQLITE_COPY), sqlite3.connect(db_file)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
    else:
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={_libpq(s.database_url)}", str(src / PG_DUMP)])
    for rel in manifest["files"]:
        if rel.startswith("images/"):
            write_atomic(s.data_dir / rel, (src / rel).read_bytes())
    if "salt" in manifest["files"]:
        salt = s.data_dir / "salt"
        salt.unlink(missing_ok=True)
        fd = os.open(salt, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write((src / "salt").read_bytes())
            f.flush()
            os.fsync(f.fileno())
    found = verify(s, deep)
    if found["counts"] != manifest["counts"]:
        raise BackupError(f"restored {found['counts']} but the backup recorded {manifest['counts']}")
    return found


def verify(s: Settings, deep: bool = False) -> dict:
    """The database's own integrity check (SQLite), and every stored image present (`deep`: and its pixels
    hashing to the recorded content hash). Raises BackupError naming the first problems."""
    problems = []
    db_file = _sqlite_file(s.database_url)
    if db_file is not None:
        con = sqlite3.connect(db_file)
        try:
            result = con.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            con.close()
        if result != "ok":
            problems.append(f"database integrity: {result}")
    with transaction(s.database_url, read_only=True) as session:
        rows = list(session.execute(select(Image.storage_path, Image.content_hash)))
    for rel, content_hash in rows:
        path = s.data_dir / rel
        if not path.is_file():
            problems.append(f"missing {rel}")
        elif deep and pixel_hash(np.asarray(PILImage.open(path))) != content_hash:
            problems.append(f"pixels of {rel} do not match their hash")
    if problems:
        raise BackupError(f"{len(problems)} problem(s): " + "; ".join(problems[:3]))
    return {"counts": _counts(s), "images_checked": len(rows), "pixels_checked": deep}
