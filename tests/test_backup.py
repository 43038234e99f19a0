"""`xr backup` / `xr restore`: an approved study survives backup -> wipe -> restore with the same rows and
files, on SQLite and PostgreSQL; a damaged backup or a non-empty target is refused before anything is
written."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace

import pytest
from sqlalchemy import select

from db.models import Approval, Image, Revision, Study
from db.scratch import scratch_database
from db.session import transaction
from tests.conftest import POSTGRES_URL, write_dicom
from xr import store
from xr.backup import BackupError, backup, restore
from xr.cli import main

RAD = store.Actor("dr_a", "radiologist")


def snapshot(s) -> dict:
    with transaction(s.database_url, read_only=True) as session:
        return {"studies": [(x.id, x.key, x.status, x.indication) for x in session.scalars(select(Study).order_by(Study.id))],
                "images": [(x.content_hash, x.storage_path) for x in session.scalars(select(Image).order_by(Image.id))],
                "revisions": [(x.text, x.diff) for x in session.scalars(select(Revision).order_by(Revision.id))],
                "approvals": [(x.text, x.user_id) for x in session.scalars(select(Approval).order_by(Approval.id))]}


@pytest.fixture
def approved(db_env, tmp_path, nih_pixels, workstation_factory):
    ws = workstation_factory(db_env)
    r = ws.draft([write_dicom(tmp_path / "a.dcm", nih_pixels)], "cough", RAD)
    store.save_revision(db_env, r.study_id, r.draft.report + " Small left effusion.", RAD)
    ws.approve(r.study_id, r.draft.report + " Small left effusion.", RAD)
    (db_env.data_dir / "salt").write_text("site-salt\n")
    return db_env


def test_backup_wipe_restore_gives_the_same_database_and_files(approved, tmp_path):
    s = approved
    before = snapshot(s)
    manifest = backup(s, tmp_path / "bk")
    assert manifest["counts"] == {"studies": 1, "images": 1, "approvals": 1}
    assert not (tmp_path / "bk.partial").exists()
    image = before["images"][0][1]
    with pytest.raises(BackupError, match="not empty"):
        backup(s, tmp_path / "bk")
    with pytest.raises(BackupError, match="target database is not empty"):
        restore(s, tmp_path / "bk")

    server = os.environ.get(POSTGRES_URL)
    target_url = server if s.database_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'new' / 'xr.sqlite3'}"
    with scratch_database(target_url) as url:
        fresh = replace(s, data_dir=tmp_path / "new", database_url=url)  # the wiped machine
        found = restore(fresh, tmp_path / "bk", deep=True)
        assert found["counts"] == manifest["counts"] and found["pixels_checked"]
        assert snapshot(fresh) == before
        assert (fresh.data_dir / image).read_bytes() == (s.data_dir / image).read_bytes()
        assert (fresh.data_dir / "salt").read_text() == "site-salt\n"
        assert oct((fresh.data_dir / "salt").stat().st_mode & 0o777) == "0o600"


def test_a_damaged_backup_is_refused_before_anything_is_restored(approved, tmp_path):
    s = approved
    backup(s, tmp_path / "bk")
    image = next(p for p in (tmp_path / "bk" / "images").rglob("*.png"))
    image.write_bytes(image.read_bytes()[:-10])
    fresh = replace(s, data_dir=tmp_path / "new", database_url=f"sqlite:///{tmp_path / 'new' / 'xr.sqlite3'}")
    with pytest.raises(BackupError, match="missing or changed since the backup"):
        restore(fresh, tmp_path / "bk")
    assert not (tmp_path / "new").exists()
    with pytest.raises(BackupError, match="not a backup"):
        restore(fresh, tmp_path)


def test_backup_refuses_a_data_directory_missing_images(approved, tmp_path):
    s = approved
    shutil.rmtree(s.data_dir / "images")
    with pytest.raises(BackupError, match="missing from"):
        backup(s, tmp_path / "bk")
    assert not (tmp_path / "bk").exists()


def test_cli_backup_and_restore(env, tmp_path, capsys, monkeypatch):
    with transaction(env.database_url):  # an installation with nothing in it yet: its backup still restores
        pass
    assert main(["backup", str(tmp_path / "bk")]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["studies"] == 0
    monkeypatch.setenv("XR_DATA_DIR", str(tmp_path / "new"))
    assert main(["restore", str(tmp_path / "bk"), "--verify"]) == 0
    assert json.loads(capsys.readouterr().out)["pixels_checked"] is True
    assert main(["restore", str(tmp_path / "nowhere")]) == 2
    assert "not a backup" in capsys.readouterr().err
