"""Log-in and roles on a real SQLite file (and PostgreSQL database) and the real app: passwords as scrypt hashes, users from the
CLI, every API endpoint checked against the caller's role on the server, log-ins and refusals audited."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest
from gradio_client import Client, handle_file
from sqlalchemy import select

from db.models import AuditEvent
from db.session import engine_for

from tests.conftest import write_dicom
from tests.test_app import free_port
from xr import access
from xr.cli import main
from xr.config import ROOT, settings

USERS = {"dr.house": ("radiologist", "password-rad"), "ed.teach": ("educator", "password-edu"),
         "ann.note": ("annotator", "password-ann"), "root.admin": ("admin", "password-adm")}


def test_password_hash_is_salted_scrypt_and_verifies():
    h1, h2 = access.hash_password("correct horse"), access.hash_password("correct horse")
    assert h1.startswith("scrypt$32768$8$1$") and h1 != h2  # a fresh salt each time
    assert access.verify_password("correct horse", h1) and access.verify_password("correct horse", h2)
    assert not access.verify_password("correct horsE", h1)
    assert not access.verify_password("correct horse", None) and not access.verify_password("x", "garbage")


def test_auth_is_on_by_default_beyond_localhost(monkeypatch):
    monkeypatch.delenv("XR_AUTH", raising=False)
    for host, on in (("127.0.0.1", False), ("localhost", False), ("0.0.0.0", True), ("10.1.2.3", True)):
        monkeypatch.setenv("XR_HOST", host)
        assert settings().auth is on
    monkeypatch.setenv("XR_AUTH", "off")
    assert settings().auth is False  # an explicit choice (the app logs a warning)
    monkeypatch.setenv("XR_HOST", "127.0.0.1")
    monkeypatch.setenv("XR_AUTH", "on")
    assert settings().auth is True
    monkeypatch.setenv("XR_AUTH", "maybe")
    with pytest.raises(ValueError, match="XR_AUTH must be 'on' or 'off'"):
        settings()


def test_user_cli_adds_lists_and_refuses(db_env, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass\n"))
    assert main(["user", "add", "dr.house", "--role", "radiologist", "--password-stdin"]) == 0
    assert main(["user", "list"]) == 0
    assert capsys.readouterr().out.startswith("dr.house\tradiologist\t")
    for argv, stdin, message in (
            (["user", "add", "dr.house", "--role", "educator"], "another-pass\n", "user 'dr.house' exists"),
            (["user", "add", "Dr House", "--role", "educator"], "another-pass\n", "not a valid user name"),
            (["user", "add", "local", "--role", "admin"], "another-pass\n", "reserved for single-user mode"),
            (["user", "add", "short", "--role", "admin"], "1234567\n", "at least 8 characters"),
            (["user", "passwd", "nobody"], "another-pass\n", "no user 'nobody'")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        assert main([*argv, "--password-stdin"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["user", "add", "x.y", "--role", "janitor", "--password-stdin"])  # argparse: not a role
    assert [u["name"] for u in access.list_users(db_env)] == ["dr.house"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("new-password\n"))
    assert main(["user", "passwd", "dr.house", "--password-stdin"]) == 0
    assert access.login(db_env, "dr.house", "new-password") and not access.login(db_env, "dr.house", "s3cret-pass")


def test_login_attempts_are_audited_without_the_typed_name(db_env):
    uid = access.add_user(db_env, "dr.house", "radiologist", "password-rad")
    assert access.login(db_env, "dr.house", "password-rad")
    assert not access.login(db_env, "dr.house", "wrong-password")
    assert not access.login(db_env, "password-rad", "dr.house")  # name and password swapped
    logins = [(u, d) for a, u, d in audit_of(db_env) if a == "login"]
    assert logins == [(uid, {"ok": True}), (uid, {"ok": False}), (None, {"ok": False})]
    assert "password-rad" not in str(audit_of(db_env))


def test_repeated_failed_log_ins_lock_the_account(db_env):
    access.add_user(db_env, "dr.house", "radiologist", "password-rad")
    access.add_user(db_env, "dr.cuddy", "radiologist", "password-cud")
    for _ in range(access.LOCK_AFTER):
        assert not access.login(db_env, "dr.house", "guess")
    assert not access.login(db_env, "dr.house", "password-rad")  # locked: the right password no longer opens it
    assert access.login(db_env, "dr.cuddy", "password-cud")  # others are not affected
    last = [d for a, _, d in audit_of(db_env) if a == "login"][-2]
    assert last == {"ok": False, "locked": True}


def test_app_refuses_to_start_with_login_on_and_no_users(env, monkeypatch):
    r = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={"XR_DATA_DIR": str(env.data_dir), "XR_AUTH": "on", "PATH": "/usr/bin:/bin",
                            "PYTHONPATH": str(ROOT), "XR_SALT": "x"})
    assert r.returncode == 1 and "no users yet" in r.stderr and "python -m xr user add" in r.stderr


@pytest.fixture(scope="module")
def secured(tmp_path_factory, workstation_factory):
    """The app with log-in on, four users, and one drafted study."""
    from app import build_app, launch

    with pytest.MonkeyPatch.context() as mp:
        data = tmp_path_factory.mktemp("secured")
        mp.setenv("XR_DATA_DIR", str(data / "data"))
        mp.setenv("XR_SALT", "test-salt")
        mp.setenv("XR_AUTH", "on")
        s = settings()
        for name, (role, password) in USERS.items():
            access.add_user(s, name, role, password)
        demo = build_app(workstation_factory(s))
        port = free_port()
        launch(demo, s, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/", s, data
        finally:
            demo.close()


def client(url: str, name: str) -> Client:
    return Client(url, auth=(name, USERS[name][1]), verbose=False)


def test_api_without_log_in_is_refused(secured):
    import httpx

    url, _, _ = secured
    assert httpx.get(url + "config", timeout=30).status_code == 401
    r = httpx.post(url + "gradio_api/call/worklist", json={"data": ["", ""]}, timeout=30)
    assert r.status_code in (401, 403)
    with pytest.raises(Exception):
        Client(url, auth=("dr.house", "wrong-password"), verbose=False)


def test_each_role_gets_only_its_endpoints(secured, nih_pixels):
    url, s, data = secured
    dcm = write_dicom(data / "pa.dcm", nih_pixels, view="PA", study_uid="1.2.826.0.1.77")
    rad, edu, ann, adm = (client(url, n) for n in USERS)
    drafted = rad.predict([handle_file(str(dcm))], "cough", api_name="/draft")
    sid = drafted["study_id"]
    refusals = [
        (edu, ([handle_file(str(dcm))], "x"), "/draft", "an educator may not draft studies"),
        (ann, ([handle_file(str(dcm))], "x"), "/draft", "an annotator may not draft studies"),
        (edu, (sid, "text"), "/approve", "an educator may not approve reports"),
        (ann, (sid, "text"), "/approve", "an annotator may not approve reports"),
        (ann, (sid, "text"), "/save_draft", "an annotator may not edit reports"),
        (edu, ("", ""), "/worklist", "an educator may not open the worklist"),
        (ann, (sid, "sr"), "/export_report", "an annotator may not export reports"),
        (rad, ("",), "/teaching", "a radiologist may not use the teaching view"),
        (ann, ("",), "/teaching", "an annotator may not use the teaching view"),
        (rad, (sid, "text", ["wording"]), "/correct", "a radiologist may not correct drafts"),
        (edu, (sid, "text", ["wording"]), "/correct", "an educator may not correct drafts"),
    ]
    for who, args, endpoint, message in refusals:
        with pytest.raises(Exception, match=message):
            who.predict(*args, api_name=endpoint)
    assert [r["id"] for r in rad.predict("drafted", "cough", api_name="/worklist")] == [sid]
    assert len(edu.predict("Cardiomegaly", api_name="/teaching")) > 0
    fixed = ann.predict(sid, drafted["report"] + " Mild cardiomegaly.", ["missed finding"], api_name="/correct")
    assert fixed["revision_id"] is not None
    assert rad.predict(sid, drafted["report"], api_name="/approve")["status"] == "approved"
    assert adm.predict("approved", "", api_name="/worklist")[0]["id"] == sid  # admin: every workspace
    denied = [d for a, _, d in audit_of(s) if a == "denied"]
    assert len(denied) == len(refusals)
    actions = [a for a, _, _ in audit_of(s)]
    assert actions.count("login") >= 4 and {"draft", "edit", "approve"} <= set(actions)


def audit_of(s) -> list[tuple]:
    with engine_for(s.database_url).connect() as c:
        return [tuple(r) for r in c.execute(select(AuditEvent.action, AuditEvent.user_id, AuditEvent.detail)
                                            .order_by(AuditEvent.id))]
