"""The Alembic migrations build exactly the schema the ORM models describe, on SQLite and PostgreSQL."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.models import Base
from db.session import engine_for, sqlalchemy_url


def test_migration_matches_models(db_env):
    engine = engine_for(db_env.database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    assert diff == []
    assert {"users", "studies", "images", "drafts", "revisions", "approvals", "audit_events", "library_cases",
            "alembic_version"} == tables


def test_migrating_twice_is_a_no_op(db_env):
    engine_for.cache_clear()
    engine_for(db_env.database_url)
    engine_for.cache_clear()
    engine_for(db_env.database_url)  # a restart of the app on an existing database


def test_postgresql_urls_use_psycopg_3():
    for url in ("postgresql://xr@db:5432/xr", "postgres://xr@db:5432/xr", "postgresql+psycopg://xr@db:5432/xr"):
        assert sqlalchemy_url(url) == "postgresql+psycopg://xr@db:5432/xr"
    assert sqlalchemy_url("postgresql://xr:p%40ss@db/xr") == "postgresql+psycopg://xr:p%40ss@db/xr"
    assert sqlalchemy_url("sqlite:////data/xr.sqlite3") == "sqlite:////data/xr.sqlite3"
