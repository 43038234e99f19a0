"""The workstation on a real PACS in a real browser (issue 34): Orthanc started on 127.0.0.1 holds two
studies of one patient (a prior and a current one) and one of another; a radiologist searches the PACS
from the Reporting workspace, drafts the studies onto the worklist (age and sex on it), signs the prior,
opens the current study with the prior's film hung beside it and its signed report in the panel, signs
it, and its SR is found in the same Orthanc study, once, passing dciodvfy."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from app import build_app, launch
from tests.browser.conftest import DRAFT_WAIT, USERS, log_in, signed_in
from tests.conftest import dciodvfy, free_port
from tests.orthanc import orthanc  # noqa: F401 (the fixture)
from tests.test_pacs import put_study, srs
from xr import access, store
from xr.config import settings

pytestmark = pytest.mark.browser
PRIOR_UID, CURRENT_UID, OTHER_UID = "1.2.826.0.1.3680043.8.498.71", "1.2.826.0.1.3680043.8.498.72", "1.2.826.0.1.3680043.8.498.73"


@pytest.fixture
def pacs_app(tmp_path, env, orthanc, monkeypatch, workstation_factory):  # noqa: F811
    monkeypatch.setenv("XR_AUTH", "on")
    s = settings()
    name, password = USERS["radiologist"]
    access.add_user(s, name, "radiologist", password)
    demo = build_app(workstation_factory(s))
    port = free_port()
    launch(demo, s, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", s
    demo.close()


def sign(page, text: str) -> None:
    page.get_by_label("Findings", exact=True).fill(text)
    page.get_by_label("I have reviewed the images and this report, and sign it off").check()
    page.locator("#signoff-password input").fill(USERS["radiologist"][1])
    page.get_by_role("button", name=re.compile("Approve and sign")).click()
    expect(page.get_by_text("Approved (approval #")).to_be_visible(timeout=DRAFT_WAIT)


def test_studies_from_the_pacs_are_drafted_read_beside_their_prior_and_signed_back(
        tmp_path, browser, pacs_app, orthanc, nih_pixels, screenshots):  # noqa: F811
    url, s = pacs_app
    put_study(orthanc, tmp_path, nih_pixels, PRIOR_UID, "MRN-1", "Doe^Jane", views=("PA",), StudyDate="20260503",
              PatientAge="066Y")
    put_study(orthanc, tmp_path, nih_pixels[:, ::-1].copy(), CURRENT_UID, "MRN-1", "Doe^Jane", PatientAge="067Y")
    put_study(orthanc, tmp_path, nih_pixels[::-1].copy(), OTHER_UID, "MRN-2", "Roe^Rick", views=("PA",), PatientAge="045Y")
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    log_in(page, *USERS["radiologist"])
    expect(page.locator("#who")).to_contain_text(signed_in(USERS["radiologist"][0], "radiologist"))

    page.locator("#pacs").get_by_text("PACS").first.click()
    page.get_by_role("button", name="Search the PACS").click()
    expect(page.locator("#pacs-found")).to_contain_text("not yet")
    expect(page.locator("#pacs-found").get_by_text("not yet", exact=True).filter(visible=True)).to_have_count(3)
    expect(page.locator("#pacs-found")).to_contain_text("2026-05-03")
    page.get_by_role("button", name="Draft the studies not on the worklist").click()
    expect(page.locator("#pacs").get_by_text("3 studies drafted onto the worklist.")).to_be_visible(timeout=DRAFT_WAIT)
    worklist = page.locator("#worklist")
    for patient in ("66 F", "67 F", "45 F"):
        expect(worklist).to_contain_text(patient)
    rows = {r["age"]: r["id"] for r in store.worklist(s)}

    page.get_by_label("Search", exact=True).fill(f"#{rows[66]}")
    page.get_by_label("Search", exact=True).press("Enter")
    expect(page.get_by_role("heading", name=re.compile(rf"Study #{rows[66]} · drafted · 66 F · 3 May 2026"))).to_be_visible()
    sign(page, "Small right pleural effusion.")
    expect(page.locator("#prior-study")).to_contain_text("No prior study")

    page.get_by_label("Search", exact=True).fill(f"#{rows[67]}")
    page.get_by_label("Search", exact=True).press("Enter")
    expect(page.get_by_role("heading", name=re.compile(rf"Study #{rows[67]} · drafted · 67 F"))).to_be_visible()
    expect(page.locator("#prior-study")).to_contain_text(f"Prior: study #{rows[66]} of 3 May 2026")
    expect(page.locator("#prior-study")).to_contain_text("Small right pleural effusion.")
    expect(page.get_by_text(re.compile(rf"Prior: study #{rows[66]} of 3 May 2026 \(signed\)"))).to_be_visible()
    expect(page.locator(".xr-viewer img")).to_have_count(2)  # the current frontal | the prior's frontal
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshots / "pacs-prior-1400x1000.png"))
    sign(page, "No pleural effusion.")

    for uid in (PRIOR_UID, CURRENT_UID):
        [sr] = srs(orthanc, uid)
        path = tmp_path / f"{uid}.dcm"
        path.write_bytes(orthanc.file(sr["ID"]))
        dciodvfy(path)
    assert srs(orthanc, OTHER_UID) == []
    assert [r["pacs"] for r in store.worklist(s)] == ["", "", ""]
    assert not list(Path(s.data_dir).rglob("*.dcm"))  # no PACS object is kept as a file
