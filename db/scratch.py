"""Throwaway databases for tests and benchmarks: each gets a database of its own on a PostgreSQL server
(or a new SQLite file), so nothing left by one run is seen by the next, and it is removed afterwards."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from db.session import sqlalchemy_url


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """For a PostgreSQL server URL, the URL of a new database on that server, dropped at exit (its open
    connections closed by force). For `sqlite:///FILE`, the same URL: FILE must not exist yet, and it is
    deleted at exit."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.exists():
            raise FileExistsError(f"{path} exists: a scratch database must be new")
        try:
            yield url
        finally:
            for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                p.unlink(missing_ok=True)
        return
    server = make_url(sqlalchemy_url(url))
    name = f"xr_scratch_{secrets.token_hex(6)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
