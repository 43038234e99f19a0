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
    assert {"users", "studies", "images", "drafts", "revisions", "approvals", "audit_events", "library_cases", "sessions",
            "pacs_links", "deliveries",
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


def test_a_populated_older_database_upgrades_with_its_rows_and_a_copy_first(db_env):
    """Issue 21.5: a database of revision 0004 holding a signed study upgrades to head at the next start,
    every row kept and the new columns at their defaults; on SQLite a copy of the old file is made first."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from db.session import MIGRATIONS

    url = sqlalchemy_url(db_env.database_url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    command.upgrade(cfg, "0004")
    old = create_engine(url, poolclass=NullPool)
    with old.begin() as c:
        c.execute(text("INSERT INTO users (id, name, role, password_hash, created_at) "
                       "VALUES (1, 'dr.a', 'radiologist', 'scrypt$x', '2026-11-01 10:00:00')"))
        c.execute(text("INSERT INTO studies (id, key, status, indication, created_at, updated_at) "
                       "VALUES (1, 'k1', 'approved', 'cough', '2026-11-01 10:00:00', '2026-11-01 10:05:00')"))
        c.execute(text("INSERT INTO images (id, study_id, position, content_hash, view, width, height, source_format, "
                       "storage_path) VALUES (1, 1, 0, 'abc', 'frontal', 10, 10, 'png', 'images/ab/abc.png')"))
    old.dispose()
    engine_for.cache_clear()
    engine = engine_for(db_env.database_url)  # the app's next start
    with engine.connect() as c:
        assert c.execute(text("SELECT name, disabled FROM users")).all() == [("dr.a", False)]
        assert c.execute(text("SELECT key, status, indication FROM studies")).all() == [("k1", "approved", "cough")]
        assert c.execute(text("SELECT storage_path, burned_in FROM images")).all() == [("images/ab/abc.png", False)]
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        copy = create_engine(f"sqlite:///{path.with_name(path.name + '.before-' + head)}", poolclass=NullPool)
        with copy.connect() as c:
            assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
            assert c.execute(text("SELECT key FROM studies")).all() == [("k1",)]
        copy.dispose()
