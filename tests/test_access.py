"""Log-in and roles on a real SQLite file (and PostgreSQL database) and the real app: passwords as scrypt hashes, users from the
CLI, every API endpoint checked against the caller's role on the server, log-ins and refusals audited."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from sqlalchemy import select

from db.models import AuditEvent
from db.session import engine_for
from tests.conftest import NIH, free_port, write_dicom
from xr import access
from xr.cli import main
from xr.config import ROOT, settings
from xr.generate.synthetic import provenance_of

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
    assert [u.name for u in access.list_users(db_env)] == ["dr.house"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("new-password\n"))
    assert main(["user", "passwd", "dr.house", "--password-stdin"]) == 0
    assert access.login(db_env, "dr.house", "new-password") and not access.login(db_env, "dr.house", "s3cret-pass")


def test_user_cli_disables_enables_and_changes_roles(db_env, monkeypatch, capsys):
    """Issue 21.3: an administrator ends a user's access, or changes their role, without deleting them."""
    access.add_user(db_env, "dr.house", "radiologist", "s3cret-pass")
    assert access.whoami(db_env, "dr.house") == ("dr.house", "radiologist")
    assert main(["user", "disable", "dr.house"]) == 0
    assert not access.login(db_env, "dr.house", "s3cret-pass")  # the right password no longer logs in
    with pytest.raises(access.AccessError, match="disabled"):
        access.whoami(db_env, "dr.house")  # a session already open is refused at its next request
    assert main(["user", "list"]) == 0 and capsys.readouterr().out.rstrip().endswith("\tdisabled")
    assert main(["user", "enable", "dr.house"]) == 0 and access.login(db_env, "dr.house", "s3cret-pass")
    assert main(["user", "role", "dr.house", "educator"]) == 0
    assert access.whoami(db_env, "dr.house") == ("dr.house", "educator")
    with pytest.raises(access.AccessError, match="an educator may not approve"):
        access.require(db_env, "dr.house", "approve")
    capsys.readouterr()
    assert main(["user", "disable", "nobody"]) == 2 and "no user 'nobody'" in capsys.readouterr().err


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


def test_a_lock_ends_on_time_whatever_is_tried_during_it(db_env):
    """Issue 21.2: tries made while locked do not count again, so the lock ends LOCK_MINUTES after the
    failures that caused it (before, one guess every few minutes kept an account locked for ever)."""
    from sqlalchemy import update

    access.add_user(db_env, "dr.house", "radiologist", "password-rad")
    for _ in range(access.LOCK_AFTER):
        assert not access.login(db_env, "dr.house", "guess")
    with engine_for(db_env.database_url).begin() as c:  # those failures were made 10 minutes ago
        c.execute(update(AuditEvent).values(at=datetime.now(UTC) - timedelta(minutes=10)))
    for _ in range(access.LOCK_AFTER):  # as many tries during the lock: before, they alone re-locked it
        assert not access.login(db_env, "dr.house", "guess")
    assert not access.login(db_env, "dr.house", "password-rad")  # still locked
    with engine_for(db_env.database_url).begin() as c:  # the causing failures leave the window
        c.execute(update(AuditEvent).where(AuditEvent.at < datetime.now(UTC) - timedelta(minutes=5))
                  .values(at=datetime.now(UTC) - timedelta(minutes=access.LOCK_MINUTES + 1)))
    assert access.login(db_env, "dr.house", "password-rad")  # released on time


def test_app_refuses_to_start_with_login_on_and_no_users(env, monkeypatch):
    r = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={"XR_DATA_DIR": str(env.data_dir), "XR_AUTH": "on", "PATH": "/usr/bin:/bin",
                            "PYTHONPATH": str(ROOT), "XR_SALT": "x"})
    assert r.returncode == 1 and "no users yet" in r.stderr and "python -m xr user add" in r.stderr


@pytest.fixture(scope="module")
def secured_app(tmp_path_factory, workstation_factory):
    """The app with log-in on and four users: (url, settings, a scratch folder, the Blocks)."""
    from app import build_app, launch

    with pytest.MonkeyPatch.context() as mp:
        data = tmp_path_factory.mktemp("secured")
        mp.setenv("XR_DATA_DIR", str(data / "data"))
        mp.setenv("XR_SALT", "test-salt")
        mp.setenv("XR_AUTH", "on")
        mp.setenv("XR_MAX_FILE_MB", "2")  # the upload cap (32 MB + framing) within a test's reach
        s = settings()
        for name, (role, password) in USERS.items():
            access.add_user(s, name, role, password)
        demo = build_app(workstation_factory(s))
        port = free_port()
        launch(demo, s, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/", s, data, demo
        finally:
            demo.close()


@pytest.fixture(scope="module")
def secured(secured_app):
    """The app with log-in on and four users: (url, settings, a scratch folder)."""
    return secured_app[:3]


def client(url: str, name: str) -> Client:
    return Client(url, auth=(name, USERS[name][1]), verbose=False)


def test_api_without_log_in_is_refused(secured):
    import httpx

    url, _, _ = secured
    assert httpx.get(url + "config", timeout=30).status_code == 401
    r = httpx.post(url + "gradio_api/call/worklist", json={"data": ["", ""]}, timeout=30)
    assert r.status_code in (401, 403)
    with pytest.raises(Exception):  # noqa: B017 (gradio_client raises a bare Exception for a refused log-in)
        Client(url, auth=("dr.house", "wrong-password"), verbose=False)


def test_an_address_that_keeps_failing_waits_twice_as_long_each_time():
    """The backoff itself, on a clock of our own: after 3 failures an address waits 1, 2, 4 ... s (429,
    no password check), right password or not; a success clears it."""
    import asyncio

    from xr.ui.throttle import AddressBackoff

    now, checked, answer = [0.0], [], [400]

    async def app(scope, receive, send):  # the log-in route: checks the password, answers 400 or 200
        checked.append(1)
        await send({"type": "http.response.start", "status": answer[0], "headers": []})
        await send({"type": "http.response.body", "body": b""})

    backoff = AddressBackoff(app, clock=lambda: now[0])

    def attempt() -> int:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "POST", "path": "/login", "client": ("10.0.0.7", 5000), "headers": []}
        asyncio.run(backoff(scope, receive, send))
        return sent[0]["status"]

    assert [attempt() for _ in range(4)] == [400, 400, 400, 400]  # 3 free, the 4th sets a 1 s wait
    assert attempt() == 429 and len(checked) == 4  # refused before any check
    now[0] += 1.01
    assert attempt() == 400 and attempt() == 429  # the 5th failure: now 2 s
    now[0] += 1.5
    answer[0] = 200
    assert attempt() == 429  # the right password too, until the wait is over
    now[0] += 0.6
    assert attempt() == 200 and attempt() == 200  # over: success clears the address


def test_foreign_hosts_and_other_sites_pages_are_refused(secured):
    """Issue 21.1: a Host the app does not serve (DNS rebinding) and a request from a page of another site
    (Origin) are refused before Gradio sees them, logged in or not; the app's own pages pass."""
    import httpx

    url, _, _ = secured
    own = url.rstrip("/")
    with httpx.Client(timeout=30) as http:
        assert http.get(url + "config", headers={"Host": "rebind.attacker.example"}).status_code == 400
        assert http.get(url, headers={"Host": "rebind.attacker.example:7860"}).status_code == 400
        for origin in ("https://evil.example", "http://127.0.0.1:1", "null"):
            r = http.post(url + "gradio_api/call/worklist", json={"data": ["", ""]}, headers={"Origin": origin})
            assert r.status_code == 403 and "other sites" in r.text, origin
        # issue 31: a browser's preflight is held to the same rules, before Gradio's CORS middleware answers it
        preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"}
        for host in ({}, {"Host": "evil.example"}):
            r = http.options(url + "gradio_api/call/worklist", headers={**preflight, **host})
            assert r.status_code in (400, 403) and "access-control-allow-origin" not in r.headers, (host, r.headers)
        r = http.options(url + "gradio_api/call/worklist", headers={**preflight, "Origin": own})
        assert r.status_code == 200  # the app's own page may still ask
        r = http.post(url + "login", data={"username": "dr.house", "password": USERS["dr.house"][1]},
                      headers={"Origin": "https://evil.example"})
        assert r.status_code == 403  # no log-in from another site's page either
        assert http.get(url + "config", headers={"Origin": own}).status_code == 401  # own page: on to log-in
        r = http.post(url + "login", data={"username": "dr.house", "password": USERS["dr.house"][1]}, headers={"Origin": own})
        assert r.status_code == 200


def test_bad_log_ins_neither_stall_the_app_nor_run_at_machine_speed(tmp_path, workstation_factory, monkeypatch):
    """Issue 21.2: 50 bad log-ins at once leave an unrelated request as fast as idle (within 0.2 s): the
    check runs off the event loop, at most two at a time, and an address that keeps failing must wait
    (429) before any password is checked. An app of its own: the address's backoff would hold up the
    other tests' log-ins."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from app import build_app, launch

    monkeypatch.setenv("XR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XR_AUTH", "on")
    s = settings()
    access.add_user(s, "dr.house", "radiologist", "password-rad")
    demo = build_app(workstation_factory(s))
    port = free_port()
    launch(demo, s, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        with httpx.Client(timeout=60) as http:
            def page() -> float:
                t = time.perf_counter()
                assert http.get(url + "config").status_code == 401
                return time.perf_counter() - t

            idle = sorted(page() for _ in range(7))[3]
            with ThreadPoolExecutor(16) as pool:
                storm = [pool.submit(httpx.post, url + "login", data={"username": "dr.house", "password": f"guess-{i}"},
                                     timeout=120) for i in range(50)]
                time.sleep(0.3)
                during = sorted(page() for _ in range(7))[3]
                codes = [f.result().status_code for f in storm]
        assert during < idle + 0.2, (idle, during)
        assert codes.count(429) >= 25 and set(codes) <= {400, 401, 429}  # most never reached a password check
    finally:
        demo.close()


def test_log_ins_are_shared_by_app_processes_and_end_with_the_password(db_env, workstation_factory, monkeypatch):
    """Issue 21.3: two app processes on one database (two apps here, each with a memory of its own; SQLite
    and PostgreSQL): a log-in on one is known to the other and acts there; `xr user passwd` or
    `xr user disable` on one ends it on both; so does a session left idle."""
    import httpx
    from sqlalchemy import update

    from app import build_app, launch
    from db.models import LoginSession
    from xr.sessions import IDLE

    monkeypatch.setenv("XR_AUTH", "on")
    s = settings()
    access.add_user(s, "dr.house", "radiologist", "password-rad")
    apps, urls = [], []
    try:
        for _ in range(2):
            demo = build_app(workstation_factory(s))
            port = free_port()
            launch(demo, s, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
            apps.append(demo)
            urls.append(f"http://127.0.0.1:{port}/")
        one, other = urls
        with httpx.Client(timeout=60) as http:  # its cookies go to both ports: a cookie names no port
            assert http.post(one + "login", data={"username": "dr.house", "password": "password-rad"}).status_code == 200
            assert http.get(other + "config").status_code == 200  # logged in on one, known to the other
            assert http.get(other + "gradio_api/user").json() == "dr.house"
            worklist = [next(fn for fn in a.fns.values() if key_of(fn) == "xr.ui.api:Api.worklist") for a in apps]
            assert run_in_queue(http, other, browser_inputs(apps[1], worklist[1], 0))["success"]  # acts there
            access.set_password(s, "dr.house", "password-new")
            assert [http.get(u + "config").status_code for u in urls] == [401, 401]  # ended everywhere
            assert http.post(other + "login", data={"username": "dr.house", "password": "password-new"}).status_code == 200
            assert http.get(one + "config").status_code == 200
            access.set_disabled(s, "dr.house", True)  # `xr user disable`, run beside either process
            assert [http.get(u + "config").status_code for u in urls] == [401, 401]
            assert run_in_queue(http, one, browser_inputs(apps[0], worklist[0], 0)) == {"status": 401}
            access.set_disabled(s, "dr.house", False)
            assert http.post(one + "login", data={"username": "dr.house", "password": "password-new"}).status_code == 200
            with engine_for(s.database_url).begin() as c:  # then nothing for longer than the idle limit
                c.execute(update(LoginSession).values(last_seen=datetime.now(UTC) - IDLE - timedelta(minutes=1)))
            assert [http.get(u + "config").status_code for u in urls] == [401, 401]
    finally:
        for demo in apps:
            demo.close()


def test_each_role_gets_only_its_endpoints(secured, nih_pixels):
    url, s, data = secured
    dcm = write_dicom(data / "pa.dcm", nih_pixels, view="PA", study_uid="1.2.826.0.1.77")
    rad, edu, ann, adm = (client(url, n) for n in USERS)
    denied_before = len(denied_rows(s))  # other tests on this app may have been refused before
    drafted = rad.predict([handle_file(str(dcm))], "cough", api_name="/draft")
    sid = drafted["study_id"]
    refusals = [
        (edu, ([handle_file(str(dcm))], "x"), "/draft", "an educator may not draft studies"),
        (ann, ([handle_file(str(dcm))], "x"), "/draft", "403 Forbidden.*upload"),  # refused at the upload
        (edu, (sid, "text", "password-edu"), "/approve", "an educator may not approve reports"),
        (ann, (sid, "text", "password-ann"), "/approve", "an annotator may not approve reports"),
        (ann, (sid, "text"), "/save_draft", "an annotator may not edit reports"),
        (edu, ("", ""), "/worklist", "an educator may not open the worklist"),
        (ann, (sid, "sr"), "/export_report", "an annotator may not export reports"),
        (rad, ("",), "/teaching", "a radiologist may not use the teaching view"),
        (ann, ("",), "/teaching", "an annotator may not use the teaching view"),
        (rad, (sid, "text", ["wording"]), "/correct", "a radiologist may not correct drafts"),
        (edu, (sid, "text", ["wording"]), "/correct", "an educator may not correct drafts"),
        (ann, ("", ["Cardiomegaly"], None, None, ["frontal"], 0), "/generate",
         "an annotator may not generate synthetic films"),
    ]
    for who, args, endpoint, message in refusals:
        with pytest.raises(Exception, match=message):
            who.predict(*args, api_name=endpoint)
    assert [r["id"] for r in rad.predict("drafted", "cough", api_name="/worklist")] == [sid]
    assert len(edu.predict("Cardiomegaly", api_name="/teaching")) > 0
    files, made = edu.predict("", ["Pleural Effusion"], None, None, ["frontal"], 2, api_name="/generate")
    assert made["findings"] == ["Pleural Effusion"] and made["seed"] == 2 and len(files) == 1
    assert provenance_of(open(files[0], "rb").read())["given"] == ["report"]
    fixed = ann.predict(sid, drafted["report"] + " Mild cardiomegaly.", ["missed finding"], api_name="/correct")
    assert fixed["revision_id"] is not None
    with pytest.raises(Exception, match="not your password"):  # a session alone does not sign
        rad.predict(sid, drafted["report"], "password-edu", api_name="/approve")
    assert rad.predict(sid, drafted["report"], "password-rad", api_name="/approve")["status"] == "approved"
    assert sid in [r["id"] for r in adm.predict("approved", "", api_name="/worklist")]  # admin: every workspace
    assert len(denied_rows(s)) - denied_before == len(refusals)
    actions = [a for a, _, _ in audit_of(s)]
    assert actions.count("login") >= 4 and {"draft", "edit", "approve"} <= set(actions)


def audit_of(s) -> list[tuple]:
    with engine_for(s.database_url).connect() as c:
        return [tuple(r) for r in c.execute(select(AuditEvent.action, AuditEvent.user_id, AuditEvent.detail)
                                            .order_by(AuditEvent.id))]


# --- Every endpoint, found from the app itself ------------------------------------------------------------
# Handlers that read or write stored data -> the right (xr.access.PERMISSIONS) each must ask for. Keyed by
# the handler's module and qualified name; every registration of one is called, so a new registration of
# a known handler is checked too, and a handler that is in none of these tables fails the test.
ACTION_OF = {
    "xr.ui.api:Api.draft": "draft",
    "xr.ui.api:Api.save_draft": "edit",
    "xr.ui.api:Api.approve": "approve",
    "xr.ui.api:Api.refine": "refine",
    "xr.ui.api:Api.worklist": "worklist",
    "xr.ui.api:Api.export_report": "export_report",
    "xr.ui.api:Api.correct": "correct",
    "xr.ui.api:Api.teaching": "teach",
    "xr.ui.api:Api.generate": "generate",
    "xr.ui.api:Api.films_report": "generate",
    "xr.ui.api:Api.pacs_search": "draft",
    "xr.ui.api:Api.pacs_draft": "draft",
    "xr.ui.reporting:Reporting.on_load": "worklist",
    "xr.ui.reporting:Reporting.on_find": "worklist",
    "xr.ui.reporting:Reporting.on_pick": "worklist",
    "xr.ui.reporting:Reporting.step.<locals>.step_study": "worklist",
    "xr.ui.reporting:Reporting.on_draft": "draft",
    "xr.ui.reporting:Reporting.on_redraft": "draft",
    "xr.ui.reporting:Reporting.on_confirm_redraft": "draft",
    "xr.ui.reporting:Reporting.on_add": "draft",
    "xr.ui.reporting:Reporting.on_pacs_search": "draft",
    "xr.ui.reporting:Reporting.on_pacs_draft": "draft",
    "xr.ui.reporting:Reporting.on_refine": "refine",
    "xr.ui.reporting:Reporting.on_refining": "refine",
    "xr.ui.reporting:Reporting.on_save": "edit",
    "xr.ui.reporting:Reporting.on_approve": "approve",
    "xr.ui.reporting:Reporting.on_export": "export_report",
    "xr.ui.corrections:Corrections._wire.<locals>.start": "correct",
    "xr.ui.corrections:Corrections._wire.<locals>.save": "correct",
    "xr.ui.corrections:Corrections._wire.<locals>.fine": "correct",
    "xr.ui.corrections:Corrections._wire.<locals>.skip": "correct",
    "xr.ui.corrections:Corrections._wire.<locals>.export": "export_edits",
    "xr.ui.teaching:Teaching._wire.<locals>.browse": "teach",
    "xr.ui.teaching:Teaching._wire.<locals>.pick": "teach",
    "xr.ui.teaching:Teaching._wire.<locals>.reveal": "teach",
    "xr.ui.generation:Generation._wire.<locals>.ui_generate": "generate",
    "xr.ui.generation:Generation._wire.<locals>.ui_films_report": "generate",
}
# Handlers that only touch the caller's own UI state: no right needed. (number of registrations, why);
# the counts are exact, so another lambda in the same place does not slip through unchecked.
OWN_UI_STATE = {
    "xr.ui.viewer:Viewer._draw": (21, "redraws images already in the caller's session state (put there by a "
                                      "checked handler; gr.State never comes from the request)"),
    "xr.ui.viewer:Viewer._click": (3, "zooms the images already in the caller's session state"),
    "xr.ui.viewer:Viewer._click_other": (3, "the same, clicked on the second view"),
    "xr.ui.viewer:Viewer._drag": (3, "redraws the session's images at the window a drag chose"),
    "xr.ui.viewer:Viewer._next": (3, "picks the next of the session's views"),
    "xr.ui.viewer:Viewer._toggle": (3, "turns the overlay on or off"),
    "xr.ui.viewer:Viewer.__init__.<locals>.<lambda>": (3, "resets the window/zoom controls to constants"),
    "xr.ui.reporting:Reporting.use_refined": (1, "copies the refined text the browser holds into "
                                                                "the two report boxes"),
    "xr.ui.reporting:Reporting.choose": (1, "applies a clicked sentence to texts the browser sends"),
    "xr.ui.reporting:Reporting.follow": (2, "diffs the browser's text against the session's draft"),
    "xr.ui.reporting:Reporting.keep_edits": (1, "hides the redraft question"),
    "xr.ui.reporting:Reporting.amend": (1, "unlocks the editor; approving still checks the right"),
}
# Handlers that serve every role but only what that role has: checked by their own test below.
SCOPED = {"app:build_app.<locals>.enter": "shows each role its workspaces; worklist rows only with 'worklist'"}

# Routes that answer without a session (anything else must say 401/403, or 404 for nothing there), and why
# that is safe. A response from one of them must still not carry stored data (checked).
PUBLIC = {
    ("GET", "/"): "the log-in page (no app config without a session)",
    ("HEAD", "/"): "the log-in page",
    ("GET", "/gradio_api/runs"): "Gradio's run-history page: the log-in page without a session",
    ("GET", "/gradio_api/runs/"): "the same",
    ("POST", "/login"): "the log-in form itself",
    ("POST", "/login/"): "the log-in form itself",
    ("GET", "/logout"): "clears the caller's own cookies; without a session there is nothing to clear",
    ("GET", "/openapi.json"): "FastAPI's schema of Gradio's generic routes: names none of our endpoints",
    ("HEAD", "/openapi.json"): "the same",
    ("GET", "/svelte/{path:path}"): "the front end's static files",
    ("GET", "/static/{path:path}"): "the front end's static files",
    ("GET", "/assets/{path:path}"): "the front end's static files",
    ("GET", "/favicon.ico"): "static",
    ("GET", "/theme.css"): "static",
    ("GET", "/gradio_api/theme.css"): "static",
    ("GET", "/robots.txt"): "static",
    ("GET", "/pwa_icon"): "static",
    ("GET", "/pwa_icon/{size}"): "static",
    ("GET", "/manifest.json"): "static",
    ("GET", "/gradio_api/user"): "who is logged in: null without a session",
    ("GET", "/gradio_api/user/"): "the same",
    ("GET", "/gradio_api/token"): "the caller's own cookie: null without a session",
    ("GET", "/gradio_api/token/"): "the same",
    ("GET", "/gradio_api/app_id"): "an opaque id of this app instance",
    ("GET", "/gradio_api/app_id/"): "the same",
    ("GET", "/gradio_api/startup-events"): "starts Gradio's startup events once; launch already did (false)",
    ("POST", "/gradio_api/reset"): "a no-op in Gradio 6",
    ("POST", "/gradio_api/reset/"): "the same",
    ("POST", "/gradio_api/cancel"): "cancels a queued event only given its random session hash and event id; "
                                    "runs none of our code",
    ("GET", "/gradio_api/heartbeat/{session_hash}"): "keeps a session's state alive; the app has no unload "
                                                     "handlers (checked) that its end would run",
}
FAKE = "0nosuchthing0"  # a session hash / event id / key nobody has


def routes_of(routes, prefix: str = ""):
    """(method, path template, route) of every HTTP route, into included routers and mounts."""
    for r in routes:
        if hasattr(r, "original_router"):  # FastAPI's lazily included router
            yield from routes_of(r.original_router.routes, prefix + r.include_context.prefix)
        elif getattr(r, "methods", None):
            for method in sorted(r.methods):
                yield method, prefix + r.path, r
        elif hasattr(r, "routes"):  # a mounted app
            yield from routes_of(r.routes, prefix + r.path)
        else:
            raise AssertionError(f"a route this test does not know how to call: {r!r}")


def login_session(url: str, name: str, password: str):
    import httpx

    http = httpx.Client(timeout=120)
    r = http.post(url + "login", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return http


def key_of(fn) -> str:
    return f"{fn.fn.__module__}:{fn.fn.__qualname__}"


def browser_inputs(demo, fn, sid: int, by_type: dict | None = None) -> dict:
    """What the browser sends to run `fn` (POST /gradio_api/queue/join): each input's current value (the
    page's defaults, or by_type[its component type]; session state is the server's own), and for a select
    event the row/item picked."""
    components = {c["id"]: c for c in demo.config["components"]}
    by_type = by_type or {}
    data = [by_type.get(components[b._id]["type"], components[b._id]["props"].get("value")) for b in fn.inputs]
    for i, b in enumerate(fn.inputs):  # a single-file box takes one file, not a list of them
        if components[b._id]["props"].get("file_count") == "single" and isinstance(data[i], list):
            data[i] = data[i][0] if data[i] else None
    body = {"data": data, "fn_index": fn._id,
            "trigger_id": fn.targets[0][0] if fn.targets else None}
    target, event = fn.targets[0] if fn.targets else (None, None)
    if event == "select":
        body["event_data"] = {"index": [0, 0] if components[target]["type"] == "dataframe" else 0,
                              "value": sid, "row_value": [sid], "col_value": [sid], "selected": True}
    return body


def run_in_queue(http, url: str, body: dict, session: str | None = None) -> dict:
    """Join the queue like the browser (a fresh session each time, unless `session` names one) and read the
    SSE stream to the end of the event: the 'process_completed' message with the event's toasts under
    'logs', or {'status': code} if the join itself was refused."""
    import json
    import uuid

    session = session or uuid.uuid4().hex[:11]
    r = http.post(url + "gradio_api/queue/join", json={**body, "session_hash": session})
    if r.status_code != 200:
        return {"status": r.status_code}
    event = r.json()["event_id"]
    logs = []  # toasts (gr.Warning: the workspaces' refusals)
    with http.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "log" and msg.get("event_id") == event:
                    logs.append(msg)
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event:
                    return {**msg, "logs": logs}
    raise AssertionError(f"no result for {body}")


@pytest.fixture(scope="module")
def study(secured_app, nih_pixels) -> tuple[int, str]:
    """A drafted study: its id, and its indication, which no anonymous answer may contain."""
    url, _, data, _ = secured_app
    dcm = write_dicom(data / "sweep.dcm", nih_pixels, view="PA", study_uid="1.2.826.0.1.78")
    d = client(url, "dr.house").predict([handle_file(str(dcm))], "sweep-marker-7431", api_name="/draft")
    return d["study_id"], "sweep-marker-7431"


def user_ids(s) -> dict[str, int]:
    from db.models import User

    with engine_for(s.database_url).connect() as c:
        return {n: i for n, i in c.execute(select(User.name, User.id))}


def denied_rows(s) -> list[tuple]:
    return [(u, d) for a, u, d in audit_of(s) if a == "denied"]


def test_every_handler_is_checked_or_allowlisted(secured_app):
    """No dependency of the Blocks escapes the tables above (a new handler must be classified)."""
    _, _, _, demo = secured_app
    keys = [key_of(fn) for fn in demo.fns.values()]
    unknown = sorted({k for k in keys if k not in ACTION_OF and k not in OWN_UI_STATE and k not in SCOPED})
    assert not unknown, f"handlers neither role-checked (ACTION_OF) nor allowlisted (OWN_UI_STATE): {unknown}"
    assert {k: keys.count(k) for k in OWN_UI_STATE} == {k: n for k, (n, _) in OWN_UI_STATE.items()}
    assert set(ACTION_OF.values()) <= set(access.PERMISSIONS)
    assert len(demo.config["dependencies"]) == len(demo.fns)  # the page's list is the server's
    assert not [k for fn, k in zip(demo.fns.values(), keys, strict=False) if any(t[1] == "unload" for t in fn.targets)]


def test_no_route_and_no_handler_works_without_a_session(secured_app, study):
    """Every HTTP route of the running app, each with every handler (fn_index) and every api_name it can
    take, called without the log-in cookie: refused (401/403), nothing there (404), or a PUBLIC route; and
    nothing anywhere changed: the database's rows and the files under the data and upload folders."""
    import itertools
    import re

    import httpx
    from sqlalchemy import func

    from db.models import Base

    url, s, data, demo = secured_app
    app = demo.server_app
    sid, marker = study
    stored = str(sorted((s.data_dir / "images").rglob("*.*"))[0])  # a stored study image on disk

    # With a session the upload and the file route work: the anonymous refusals below are the session's doing.
    rad = login_session(url, "dr.house", USERS["dr.house"][1])
    up = rad.post(url + "gradio_api/upload", files={"files": ("a.png", (NIH / "00000100_000.png").read_bytes())})
    assert up.status_code == 200, up.text
    uploaded = up.json()[0]
    assert rad.get(url + f"gradio_api/file={uploaded}").status_code == 200
    assert rad.get(url + "config").status_code == 200

    def snapshot():
        with engine_for(s.database_url).connect() as c:
            rows = {t.name: c.execute(select(func.count()).select_from(t)).scalar() for t in Base.metadata.sorted_tables}
        files = {str(p): p.stat().st_size for folder in (s.data_dir, Path(app.uploaded_file_dir))
                 for p in folder.rglob("*") if p.is_file() and ".sqlite3" not in p.name}
        return rows, files, audit_of(s)

    def settled():  # background work of the signed-in calls above (Gradio moving an upload) ends first
        import time

        last = snapshot()
        for _ in range(20):
            time.sleep(0.5)
            now = snapshot()
            if now == last:
                return now
            last = now
        return last

    before = settled()
    api_names = sorted({fn.api_name for fn in demo.fns.values() if fn.api_name}) + ["no_such_endpoint"]
    values = {"api_name": api_names, "path_or_url": [uploaded, stored, "/etc/passwd"],
              "path": ["index.html", uploaded, stored], "url_path": ["http://127.0.0.1:9/x"],
              "component_id": ["0"], "environment": ["client"], "ext": ["ts"], "size": ["192"]}
    params = {"session_hash": FAKE, "upload_id": FAKE, "bucket": "a/b", "page": ""}
    anon = httpx.Client(timeout=60)
    answered, calls, templates = {}, 0, set()
    for method, template, _route in routes_of(app.routes):
        templates.add((method, template))
        names = re.findall(r"{(\w+)(?::\w+)?}", template)
        for combo in itertools.product(*[values.get(n, [FAKE]) for n in names]):
            path = template
            for n, v in zip(names, combo, strict=False):
                path = re.sub(r"{" + n + r"(?::\w+)?}", v.lstrip("/") if n == "path" else v, path, count=1)
            # one body valid for every JSON route (FastAPI's 422 would stop a call before any code runs)
            bodies = [{"json": {"data": [], "fn_index": 0, "session_hash": FAKE, "event_id": FAKE, "hash": FAKE,
                                "prompt": "x", "code": "x", "component_id": 0, "fn_name": "x", "bucket_id": "a/b"}}]
            if template.endswith("/queue/join"):  # each handler, as the browser would send it
                bodies = [{"json": {**browser_inputs(demo, fn, sid), "session_hash": FAKE}} for fn in demo.fns.values()]
            elif template.endswith("/upload"):
                bodies = [{"files": {"files": ("fill.png", b"\x89PNG" + b"\0" * 100_000)}}]
            elif template.startswith("/login"):
                bodies = [{"data": {}}]
            for body in bodies if method == "POST" else [{}]:
                with anon.stream(method, url.rstrip("/") + path, params=params, **body) as r:
                    content = b""
                    for chunk in r.iter_bytes():  # streaming routes (heartbeat) never end: the first bytes do
                        content += chunk
                        if len(content) > 1_000_000 or r.headers.get("content-type", "").startswith("text/event"):
                            break
                calls += 1
                if r.status_code in (401, 403, 404):
                    continue
                answered.setdefault((method, template), set()).add(r.status_code)
                assert marker.encode() not in content, (method, path)
    allowed = {k: v for k, v in answered.items() if k in PUBLIC}
    assert answered == allowed, f"answered without a session and not PUBLIC: {sorted(set(answered) - set(allowed))}"
    assert (("POST", "/gradio_api/upload") in templates and ("POST", "/gradio_api/queue/join") in templates
            and ("GET", "/gradio_api/file={path_or_url:path}") in templates and ("GET", "/config") in templates)
    assert calls > len(demo.fns) + len(api_names) * 8  # every handler and every api_name reached the server
    after = settled()
    assert after[0] == before[0] and after[2] == before[2], "rows added or audited without a session"
    assert after[1] == before[1], ("files changed without a session", set(after[1].items()) ^ set(before[1].items()))
    # The named ways in, one by one, for the record:
    assert anon.post(url + "gradio_api/upload", files={"files": ("x.png", b"x")}).status_code == 401
    assert anon.get(url + f"gradio_api/file={uploaded}").status_code in (401, 403)  # 403: not a file made for it
    assert anon.get(url + f"gradio_api/file={stored}").status_code == 401
    for path in ("config", "gradio_api/info", "gradio_api/openapi.json", "gradio_api/queue/status"):
        assert anon.get(url + path).status_code == 401, path
    for name in api_names:
        assert anon.post(url + f"gradio_api/call/{name}", json={"data": []}).status_code == 401, name
        assert anon.post(url + f"gradio_api/run/{name}", json={"data": []}).status_code == 401, name
    print(f"\n{len(templates)} route templates, {calls} anonymous calls ({len(demo.fns)} handlers through "
          f"queue/join, {len(api_names)} api_names), answered by PUBLIC routes: {sorted(answered)}")


def test_every_data_handler_refuses_roles_without_the_right(secured_app, study):
    """Each handler that reads or writes stored data, called the way the browser calls it (queue/join with
    the log-in cookie) by each role: a role without the right gets 'a/an <role> may not ...' and one
    audited 'denied' row naming the action; a role with it is not refused."""
    url, s, data, demo = secured_app
    sid, _ = study
    ids = user_ids(s)
    roles = ("dr.house", "ed.teach", "ann.note")
    sessions = {n: login_session(url, n, USERS[n][1]) for n in roles}
    png = (NIH / "00000100_000.png").read_bytes()
    refused = allowed = 0
    for fn in demo.fns.values():
        action = ACTION_OF.get(key_of(fn))
        if action is None:
            continue
        for name in roles:
            role = USERS[name][0]
            valid = None  # an allowed role gets the page's defaults (so nothing is drafted or saved)
            where = f"{key_of(fn)} (fn_index {fn._id}) as {role}"
            if not access.allowed(role, action):  # refused for the role, with inputs that would otherwise do
                r = sessions[name].post(url + "gradio_api/upload", files={"files": ("pa.png", png)})
                if access.allowed(role, "upload"):
                    file = [{"path": r.json()[0], "orig_name": "pa.png", "meta": {"_type": "gradio.FileData"}}]
                else:  # a role that uploads nothing is refused at the upload itself
                    assert r.status_code == 403, where
                    file = None
                valid = {"file": file, "number": sid, "json": ["wording"]}
            denied = denied_rows(s)
            msg = run_in_queue(sessions[name], url, browser_inputs(demo, fn, sid, valid))
            error = (msg.get("output") or {}).get("error") or ""
            toasts = [m["log"] for m in msg.get("logs", []) if m["level"] == "warning"]
            if access.allowed(role, action):
                assert "may not" not in error + " ".join(toasts) and denied_rows(s) == denied, where
                allowed += 1
            else:
                refusal = f"{'an' if role[0] in 'aeiou' else 'a'} {role} may not {access.PERMISSIONS[action][1]}"
                if key_of(fn).startswith("xr.ui.api:"):  # the API: an error gradio_client raises
                    assert msg.get("success") is False and error == refusal, (where, msg)
                else:  # a workspace: one toast, and no output changes but an emptied upload box
                    assert msg.get("success") and toasts == [refusal], (where, msg)
                    assert all(unchanged(o) for o in msg["output"]["data"]), (where, msg["output"]["data"])
                assert denied_rows(s) == [*denied, (ids[name], {"action": action})], where
                refused += 1
    assert refused > len(ACTION_OF) and allowed > len(ACTION_OF) // 2
    print(f"\n{refused} refusals and {allowed} allowed calls over "
          f"{sum(key_of(f) in ACTION_OF for f in demo.fns.values())} handlers")


def unchanged(output) -> bool:
    """An output a refused workspace handler sends: a skip (an update with no properties), or None (a
    state left as it was, or an upload box emptied because the refused action consumed its files)."""
    return output is None or (output.get("__type__") == "update"
                              and not set(output) - {"__type__", "props"}
                              and not set(output.get("props") or {}) - {"__type__"})


def test_the_page_shows_each_role_only_what_it_may_see(secured_app, study):
    """`enter` (the page load) asks no right of its own: it hides the workspaces a role lacks and gives
    the worklist's rows only to a role that may open it."""
    url, s, data, demo = secured_app
    sid, _ = study
    enter = next(fn for fn in demo.fns.values() if key_of(fn) in SCOPED)
    for name, (role, password) in USERS.items():
        msg = run_in_queue(login_session(url, name, password), url, browser_inputs(demo, enter, sid))
        assert msg["success"], msg
        out = msg["output"]["data"]  # who, the four tabs (reporting, corrections, teaching, generate), tabs, worklist
        visible = [o["visible"] for o in out[1:5]]
        assert visible == [access.allowed(role, r) for r in ("worklist", "correct", "teach", "generate")], (role, visible)
        rows = [r[0] for r in out[-1]["data"]]
        assert (sid in rows if access.allowed(role, "worklist") else rows == []), (role, out[-1])


def test_log_out_ends_the_session(secured_app):
    """After /logout the cookie is dead on the server too: replaying it is refused everywhere."""
    import httpx

    url, s, _, demo = secured_app
    access.add_user(s, "out.user", "educator", "password-out")
    http = login_session(url, "out.user", "password-out")
    token = {k: v for k, v in http.cookies.items() if k.startswith("access-token")}
    assert token and http.get(url + "config").status_code == 200
    teach = next(fn for fn in demo.fns.values() if key_of(fn) == "xr.ui.api:Api.teaching")
    assert run_in_queue(http, url, browser_inputs(demo, teach, 0))["success"]
    r = http.get(url + "logout", follow_redirects=False)
    assert r.status_code == 302
    assert http.get(url + "config").status_code == 401
    replay = httpx.Client(timeout=60, cookies=token)  # the old cookie, as a copy of it would send it
    assert replay.get(url + "config").status_code == 401
    assert run_in_queue(replay, url, browser_inputs(demo, teach, 0)) == {"status": 401}
    assert replay.get(url + "gradio_api/user").json() is None


def test_gradio_run_history_is_off(secured_app):
    _, _, _, demo = secured_app
    assert not any("run-history" in t for _, t, _ in routes_of(demo.server_app.routes))


def test_a_page_session_belongs_to_the_user_who_opened_it(secured_app):
    """Issue 21.7: Gradio keys a page's state by a session hash the browser makes up. Reused by another
    user, it is refused on every route that takes one; its owner goes on using it."""
    url, _, _, demo = secured_app
    enter = next(fn for fn in demo.fns.values() if key_of(fn) == "app:build_app.<locals>.enter")
    rad = login_session(url, "dr.house", "password-rad")
    edu = login_session(url, "ed.teach", "password-edu")
    session = "foreign-hash-1"
    assert run_in_queue(rad, url, browser_inputs(demo, enter, 0), session)["success"]
    assert run_in_queue(edu, url, browser_inputs(demo, enter, 0), session) == {"status": 403}
    assert edu.get(url + "gradio_api/queue/data", params={"session_hash": session}).status_code == 403
    assert edu.post(url + "gradio_api/cancel", json={"session_hash": session, "fn_index": 0,
                                                     "event_id": "x"}).status_code == 403
    with edu.stream("GET", url + f"gradio_api/heartbeat/{session}") as r:
        assert r.status_code == 403
    assert run_in_queue(rad, url, browser_inputs(demo, enter, 0), session)["success"]  # still its owner's


def test_files_are_for_whom_they_were_made(secured_app, nih_pixels):
    """Issue 21.7, 21.8: an upload or a file handed out opens only for its user, and cannot be sent back
    as another user's input; an annotator (nothing to upload) cannot upload; one upload is at most a
    study's worth, refused before a byte is written."""
    url, s, data, demo = secured_app
    folder = Path(os.environ["GRADIO_TEMP_DIR"])
    dcm = write_dicom(data / "owned.dcm", nih_pixels, view="PA", study_uid="1.2.826.0.1.79")
    rad = login_session(url, "dr.house", "password-rad")
    edu = login_session(url, "ed.teach", "password-edu")
    ann = login_session(url, "ann.note", "password-ann")
    with open(dcm, "rb") as f:
        (path,) = rad.post(url + "gradio_api/upload", files={"files": ("owned.dcm", f)}).json()
    assert Path(path).parent.parent == folder
    assert edu.get(url + f"gradio_api/file={path}").status_code == 403
    assert rad.get(url + f"gradio_api/file={path}").status_code == 200
    films_report = next(fn for fn in demo.fns.values() if key_of(fn) == "xr.ui.api:Api.films_report")
    stolen = browser_inputs(demo, films_report, 0, {"file": [{"path": path, "meta": {"_type": "gradio.FileData"}}]})
    assert run_in_queue(edu, url, stolen) == {"status": 403}
    assert run_in_queue(rad, url, stolen)["success"]
    with open(dcm, "rb") as f:
        assert ann.post(url + "gradio_api/upload", files={"files": ("owned.dcm", f)}).status_code == 403
    before = sorted(folder.rglob("*"))
    big = io.BytesIO(bytes(s.max_archive_bytes + 2 * 2**20))
    r = rad.post(url + "gradio_api/upload", files={"files": ("big.zip", big)})
    assert r.status_code == 413 and "an upload is at most" in r.text
    assert sorted(folder.rglob("*")) == before


def test_exports_are_private_and_go_once_downloaded(secured_app, nih_pixels):
    """Issue 21.6: Gradio's files live in a folder of this process, owner-only; an export is deleted with
    its folder once downloaded."""
    url, s, data, _ = secured_app
    folder = Path(os.environ["GRADIO_TEMP_DIR"])
    assert folder.name.startswith("xr-") and folder.stat().st_mode & 0o777 == 0o700
    rad = client(url, "dr.house")
    dcm = write_dicom(data / "export.dcm", nih_pixels, view="PA", study_uid="1.2.826.0.1.80")
    drafted = rad.predict([handle_file(str(dcm))], "cough", api_name="/draft")
    sid = drafted["study_id"]
    rad.predict(sid, drafted["report"], "password-rad", api_name="/approve")
    got = Path(rad.predict(sid, "fhir", api_name="/export_report"))  # the client downloads it
    assert got.stat().st_size > 0
    assert not [p for p in folder.rglob(got.name)], "the export is still on the server after its download"
    assert not [p for p in folder.glob("xr-export-*") if not any(p.iterdir())]  # none left by a refused export


def test_every_ingest_waits_in_one_queue(secured_app):
    """Issue 21.8: every event that takes uploaded files shares one concurrency limit, from the UI or the API."""
    _, s, _, demo = secured_app
    uploads = {b._id for b in demo.blocks.values() if isinstance(b, gr.File) and b.interactive is not False}
    ingests = [fn for fn in demo.fns.values() if any(b._id in uploads for b in fn.inputs)]
    assert len(ingests) >= 7  # draft and add (UI), draft, films_report, generate (API), generate, films -> report (UI)
    assert {fn.concurrency_id for fn in ingests} == {"ingest"}
    assert all(fn.concurrency_limit == "default" for fn in ingests) and demo._queue.default_concurrency_limit == s.concurrency


@pytest.mark.skipif(os.getuid() != 0 or not Path("/proc/net/tcp").exists(),
                    reason="needs root (to connect as another account) and Linux's socket table")
def test_single_user_mode_answers_only_the_account_that_started_it(tmp_path, workstation_factory, monkeypatch):
    """Issue 21.1: with no log-in every caller is admin, so another account on the same machine reaching
    127.0.0.1 must not be one: refused (403); the app's own account is answered."""
    import socket

    import httpx

    from app import build_app, launch

    monkeypatch.setenv("XR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XR_AUTH", "off")
    s = settings()
    demo = build_app(workstation_factory(s))
    port = free_port()
    launch(demo, s, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/config", timeout=60).status_code == 200
        pid = os.fork()
        if pid == 0:  # the child: another account (nobody), asking the same thing
            try:
                os.setgid(65534)
                os.setuid(65534)
                with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
                    c.sendall(f"GET /config HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                    status = c.recv(64).split(b" ")[1]
                os._exit(0 if status == b"403" else 1)
            except BaseException:
                os._exit(2)
        _, code = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(code) == 0, "another account was answered (or could not ask)"
    finally:
        demo.close()
