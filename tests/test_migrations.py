"""The Alembic migration builds exactly the schema the ORM models describe."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.models import Base
from db.session import engine_for


def test_migration_matches_models(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    assert diff == []
    assert {"users", "studies", "images", "drafts", "revisions", "approvals", "audit_events", "library_cases",
            "alembic_version"} == tables


def test_migrating_twice_is_a_no_op(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    engine_for.cache_clear()
    engine_for(url)
    engine_for.cache_clear()
    engine_for(url)  # a restart of the app on an existing database
