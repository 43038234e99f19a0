"""Engine and sessions, on SQLite or PostgreSQL. SQLite gets WAL and a busy timeout so readers never
block the writer and concurrent writers wait instead of failing with 'database is locked'; PostgreSQL
goes through psycopg 3 whichever way its URL is spelled."""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    """`postgresql://` (and Heroku-style `postgres://`) mean psycopg 3, the driver installed; SQLAlchemy
    would otherwise pick psycopg2."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


@lru_cache(maxsize=None)
def engine_for(url: str) -> Engine:
    url = sqlalchemy_url(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    migrate(url, engine)
    return engine


def database_exists(url: str) -> bool:
    """False for a SQLite file not created yet: commands that only read must not create one."""
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()


def migrate(url: str, engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def transaction(url: str) -> Iterator[Session]:
    """One user action, one transaction: commit on success, roll back everything on any error."""
    session = sessionmaker(engine_for(url), expire_on_commit=False)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()
