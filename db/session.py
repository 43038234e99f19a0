"""Engine and sessions, on SQLite or PostgreSQL. SQLite gets WAL (readers never block the writer), and
every write transaction takes the write lock when it begins (BEGIN IMMEDIATE) and waits up to a busy
timeout for it: a deferred transaction that reads and then writes fails at once with 'database is locked'
when another writer committed in between, which no timeout helps. PostgreSQL goes through psycopg 3
whichever way its URL is spelled. A database that cannot be written (disk full, read-only, unreachable)
is one line for the user, never a traceback."""
from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from xr.errors import UserError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30
MIGRATION_LOCK = 0x7872  # PostgreSQL advisory lock key ('xr') held while migrating
READ_ONLY = "xr_read_only"  # execution option: a transaction that only reads begins without the write lock


_migrating = threading.Lock()


class DatabaseUnavailable(UserError):
    """The database refused a transaction for a reason outside the action itself; nothing was saved."""


def sqlalchemy_url(url: str) -> str:
    """`postgresql://` (and Heroku-style `postgres://`) mean psycopg 3, the driver installed; SQLAlchemy
    would otherwise pick psycopg2."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


@cache
def engine_for(url: str) -> Engine:
    url = sqlalchemy_url(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # the driver's own BEGIN is deferred: we begin ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
            # FULL: a committed approval survives a power loss or an OS crash (NORMAL in WAL mode may lose
            # the last commits then); the cost is one more fsync per commit
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    migrate(url, engine)
    return engine


def database_exists(url: str) -> bool:
    """False for a SQLite file not created yet: commands that only read must not create one."""
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()


def migrate(url: str, engine: Engine) -> None:
    """One migrator at a time: threads of this process by a lock, processes by the database (SQLite's
    write lock, PostgreSQL's advisory lock); two at once deadlock creating the same tables. A SQLite
    database that holds an older schema is first copied beside itself (`xr.sqlite3.before-0006`), by
    the online backup API, so a failed or unwanted upgrade can be undone (PostgreSQL: `xr backup` first)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if url.startswith("sqlite:///"):
        with _migrating, engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current is not None and current != head:
            path = Path(url.removeprefix("sqlite:///"))
            before = path.with_name(f"{path.name}.before-{head}")
            os.close(os.open(before, os.O_WRONLY | os.O_CREAT, 0o600))  # the owner's only, like the database
            source, copy = sqlite3.connect(path), sqlite3.connect(before)
            try:
                source.backup(copy)
            finally:
                source.close()
                copy.close()
    with _migrating, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def transaction(url: str, read_only: bool = False) -> Iterator[Session]:
    """One user action, one transaction: commit on success, roll back everything on any error."""
    try:
        engine = engine_for(url)  # the first use creates and migrates the database: it can fail the same ways
    except OperationalError as e:
        raise DatabaseUnavailable(unavailable(e, url)) from None
    session = sessionmaker(engine.execution_options(**{READ_ONLY: True}) if read_only else engine,
                           expire_on_commit=False)()
    try:
        with session.begin():
            yield session
    except OperationalError as e:
        raise DatabaseUnavailable(unavailable(e, url)) from None
    finally:
        session.close()


def unavailable(e: OperationalError, url: str) -> str:
    """The user's line for a database failure: what happened, and that nothing was saved."""
    text = str(e.orig).lower()
    if "locked" in text or "busy" in text:
        reason = f"the database stayed busy for over {BUSY_TIMEOUT_S} s"
    elif "readonly" in text or "read-only" in text or _on_read_only_disk(url):
        reason = "the database is read-only"
    elif "full" in text or "no space" in text:
        reason = "the disk holding the database is full"
    elif "unable to open" in text or "connect" in text or "server closed" in text:
        reason = "the database cannot be reached"
    else:
        reason = f"the database failed ({type(e.orig).__name__})"
    return f"{reason}; nothing was saved"


def _on_read_only_disk(url: str) -> bool:
    """SQLite on a read-only file system says only 'unable to open database file' (it needs its -shm file)."""
    if not url.startswith("sqlite:///"):
        return False
    try:
        return bool(os.statvfs(Path(url.removeprefix("sqlite:///")).parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False
