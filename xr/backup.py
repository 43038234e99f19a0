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
from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.pool import NullPool

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


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """(libpq URL without the password, the environment that carries it): a password on a command line
    is shown to every user of the machine by `ps`."""
    u = make_url(sqlalchemy_url(url)).set(drivername="postgresql")
    env = {**os.environ, **({"PGPASSWORD": u.password} if u.password else {})}
    return u.set(password=None).render_as_string(hide_password=False), env


_COUNTS = {"studies": "SELECT count(*) FROM studies", "images": "SELECT count(*) FROM images",
           "approvals": "SELECT count(*) FROM approvals"}
_PATHS = "SELECT DISTINCT storage_path FROM images ORDER BY storage_path"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def backup(s: Settings, out: Path) -> dict:
    """Write the backup to `out` (a new folder, readable by its owner only); returns the manifest. The
    counts and the image list come from the same snapshot as the database copy, so a study drafted
    meanwhile is either wholly in the backup or not at all."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out}: not empty; give a new folder")
    if not database_exists(s.database_url):
        raise BackupError(f"no database at {s.database_url}: nothing to back up")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, mode=0o700)
    db_file = _sqlite_file(s.database_url)
    if db_file is not None:
        src, dst = sqlite3.connect(db_file), sqlite3.connect(partial / SQLITE_COPY)
        try:
            src.backup(dst)
            counts = {k: dst.execute(q).fetchone()[0] for k, q in _COUNTS.items()}
            paths = [p for (p,) in dst.execute(_PATHS)]
        finally:
            src.close()
            dst.close()
        database = SQLITE_COPY
    else:
        engine = create_engine(sqlalchemy_url(s.database_url), isolation_level="REPEATABLE READ", poolclass=NullPool)
        with engine.connect() as conn:  # pg_dump reads the snapshot this transaction holds open
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            counts = {k: conn.execute(text(q)).scalar_one() for k, q in _COUNTS.items()}
            paths = [p for (p,) in conn.execute(text(_PATHS))]
            url, env = _libpq(s.database_url)
            _run(["pg_dump", "--format=custom", "--no-owner", f"--snapshot={snapshot}", f"--file={partial / PG_DUMP}",
                  url], env)
        engine.dispose()
        database = PG_DUMP
    missing = [p for p in paths if not (s.data_dir / p).is_file()]
    if missing:
        shutil.rmtree(partial, ignore_errors=True)
        raise BackupError(f"{len(missing)} stored image(s) are missing from {s.data_dir}, e.g. {missing[0]}: "
                          "the data directory is already damaged")
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


def _run(cmd: list[str], env: dict[str, str]) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    except FileNotFoundError:
        raise BackupError(f"{cmd[0]} not found: install the PostgreSQL client tools") from None
    if r.returncode:
        raise BackupError(f"{cmd[0]} failed: {(r.stderr.strip().splitlines() or ['no message'])[-1]}")


def _read_manifest(src: Path) -> dict:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError(f"{src}: no readable {MANIFEST}: not a backup made by `xr backup`") from None
    names = list(manifest.get("files", {}))
    strange = [r for r in names if r not in (SQLITE_COPY, PG_DUMP, "salt")
               and not (r.startswith("images/") and ".." not in Path(r).parts and not Path(r).is_absolute())]
    if strange or manifest.get("database") not in names:
        raise BackupError(f"{src}: the manifest names {strange[0] if strange else 'no database'}: not a backup made by "
                          "`xr backup`")
    bad = [rel for rel, digest in manifest["files"].items() if not (src / rel).is_file() or _sha256(src / rel) != digest]
    if bad:
        raise BackupError(f"{src}: {len(bad)} file(s) missing or changed since the backup, e.g. {bad[0]}: not restored")
    return manifest


def restore(s: Settings, src: Path, deep: bool = False) -> dict:
    """Restore a backup into this (empty) data directory, then check it (`deep`: every image's pixels
    against its recorded hash too). Returns what the check found."""
    src = Path(src)
    manifest = _read_manifest(src)
    if not _empty(s):
        raise BackupError("the target database is not empty: restore into an empty data directory "
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
        url, env = _libpq(s.database_url)
        _run(["pg_restore", "--single-transaction", "--exit-on-error", "--no-owner", f"--dbname={url}",
              str(src / PG_DUMP)], env)
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


def _empty(s: Settings) -> bool:
    """No table with a row in it (SQLite), no table at all (PostgreSQL); read without migrating, which
    would create the current schema under the backup's."""
    db_file = _sqlite_file(s.database_url)
    if db_file is not None:
        if not db_file.exists():
            return True
        con = sqlite3.connect(db_file)
        try:
            tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return all(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] == 0 for t in tables if t != "alembic_version")
        finally:
            con.close()
    engine = create_engine(sqlalchemy_url(s.database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return not conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")).scalar_one()
    finally:
        engine.dispose()


def _counts(s: Settings) -> dict[str, int]:
    with transaction(s.database_url, read_only=True) as session:
        return {name: session.scalar(select(func.count()).select_from(table)) or 0
                for name, table in (("studies", Study), ("images", Image), ("approvals", Approval))}


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
