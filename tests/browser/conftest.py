"""Fixtures for the real-browser tests: the real app (log-in on) started once per module on 127.0.0.1,
users of each role, a study waiting in the annotators' queue, and Debian's chromium driven by Playwright."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import free_port, write_dicom

CHROMIUM = Path(os.environ.get("XR_CHROMIUM", "/usr/bin/chromium"))
USERS = {"radiologist": ("dr.house", "password-rad"), "educator": ("ed.teach", "password-edu"),
         "annotator": ("ann.note", "password-ann")}
ANNOTATOR_STUDY_UID = "1.2.826.0.1.99"
WAIT = 30_000  # ms: a shared 2-core machine is slow
DRAFT_WAIT = 180_000  # ms: drafting a study runs the models on CPU



@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the workspace screenshots go: $XR_SCREENSHOTS, else a pytest temporary folder."""
    where = os.environ.get("XR_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -r requirements-test.txt)")
    if not CHROMIUM.exists() and not shutil.which(str(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                               args=["--no-sandbox", "--disable-background-networking",
                                     "--disable-component-update", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, workstation_factory, nih_pixels):
    """The app as `python app.py` serves it (log-in on), in this process on a free localhost port.
    Yields (url, settings, workstation, a DICOM file to upload)."""
    from app import build_app, launch
    from xr import access, store
    from xr.config import settings
    from xr.findings import FINDINGS
    from xr.thresholds import Thresholds

    tmp = tmp_path_factory.mktemp("browser-app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XR_DATA_DIR", str(tmp / "data"))
        mp.delenv("XR_DATABASE_URL", raising=False)
        mp.setenv("XR_SALT", "test-salt")
        mp.setenv("XR_AUTH", "on")
        s = settings()
        assert s.auth
        for role, (name, password) in USERS.items():
            access.add_user(s, name, role, password)
        ws = workstation_factory(s)
        # The browser tests drive the screens, not the eye's judgement (tests/test_policy.py): with the shipped
        # policy most films are drafted empty, and there would be no sentence to tick or correct. A policy the
        # test makes (every finding assessed, present from 0.5, absent below) gives drafts text to work on.
        mp.setattr(ws.drafter.eye, "thresholds",
                   Thresholds.uniform(0.5, FINDINGS, "browser tests: every finding assessed, present from 0.5"))
        # A drafted study for the annotators' queue (the radiologist's own study gets approved).
        queued = write_dicom(tmp / "queued.dcm", nih_pixels, view="PA", study_uid=ANNOTATOR_STUDY_UID)
        ws.draft([queued], "fever", store.Actor(USERS["radiologist"][0], "radiologist"))
        upload = write_dicom(tmp / "chest-pa.dcm", nih_pixels, view="PA")
        demo = build_app(ws)
        port = free_port()
        launch(demo, s, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/", s, ws, upload
        finally:
            demo.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Lets the page fixture know whether the test failed (it then keeps the page's HTML and a screenshot)."""
    outcome = yield
    setattr(item, "rep_" + outcome.get_result().when, outcome.get_result())


@pytest.fixture
def open_page(browser, live_app, request, tmp_path):
    """open_page(role) -> a logged-in page in a fresh browser context (no role: the log-in page). On
    failure the page's HTML and a screenshot are kept in the test's tmp_path."""
    from playwright.sync_api import expect

    url = live_app[0]
    contexts, pages = [], []

    def open_(role: str | None = None):
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        ctx.set_default_timeout(WAIT)
        contexts.append(ctx)
        page = ctx.new_page()
        pages.append(page)
        page.goto(url)
        if role is not None:
            log_in(page, *USERS[role])
            expect(page.locator("#who")).to_contain_text(signed_in(USERS[role][0], role), timeout=WAIT)
        return page

    yield open_
    failed = getattr(request.node, "rep_call", None)
    for i, page in enumerate(pages):
        if failed is not None and failed.failed:
            try:
                page.screenshot(path=str(tmp_path / f"failure-{i}.png"), full_page=True)
                (tmp_path / f"failure-{i}.html").write_text(page.content())
            except Exception:  # noqa: BLE001 - best effort
                pass
    for ctx in contexts:
        ctx.close()


def signed_in(name: str, role: str) -> str:
    return f"signed in as {name} ({role})"


def log_in(page, name: str, password: str) -> None:
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
