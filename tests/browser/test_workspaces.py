"""Each role's main flow in a real browser (Debian's chromium, driven by Playwright) against the real app
with log-in on: the radiologist drafts, edits, signs off and exports; the annotator corrects a draft with a
reason tag; the educator browses the case library and runs a quiz. Screenshots of each workspace go to
$XR_SCREENSHOTS (default: a pytest temporary folder)."""
from __future__ import annotations

import json
import re
import sqlite3

import pytest

from tests.browser.conftest import DRAFT_WAIT, USERS, WAIT, log_in, signed_in

pytest.importorskip("playwright", reason="playwright is not installed (pip install -r requirements-test.txt)")
from playwright.sync_api import Page, expect  # noqa: E402

WORKSPACES = ("Reporting", "Corrections", "Teaching", "Generate")
expect.set_options(timeout=WAIT)


def assert_only_tabs(page: Page, shown: tuple[str, ...]) -> None:
    for name in shown:
        expect(page.get_by_role("tab", name=name)).to_be_visible()
    for name in set(WORKSPACES) - set(shown):
        expect(page.get_by_role("tab", name=name)).to_be_hidden()


def test_login_page_refuses_a_wrong_password(open_page, screenshots):
    page = open_page()
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    expect(page.get_by_text("Log in with the account your administrator made")).to_be_visible()
    # issue 31: the product's name and the research-use line, and no Markdown shown as typed
    expect(page.get_by_text("XR — chest X-ray report drafting")).to_be_visible()
    expect(page.get_by_text("Research use only, not a medical device.")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("`")
    page.screenshot(path=str(screenshots / "login.png"), full_page=True)
    log_in(page, "dr.house", "not-the-password")
    expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
    expect(page.locator("#who")).to_have_count(0)
    # The right password then gets in, on the same page.
    log_in(page, *USERS["radiologist"])
    expect(page.locator("#who")).to_contain_text(signed_in("dr.house", "radiologist"))


def test_header_shows_the_name_in_bold(open_page):
    page = open_page("annotator")
    expect(page.locator("#who")).to_contain_text("signed in as ann.note (annotator)", timeout=5_000)
    expect(page.locator("#who b")).to_have_text("ann.note", timeout=1_000)


def test_approval_needs_the_sign_off_box(open_page, live_app):
    """A study opened from the worklist cannot be approved before the sign-off box is ticked, nor without
    the signer's password typed again (issue 21.3: a session left open is not a signature); each refusal
    is a toast, and the report stays on screen to be signed off."""
    page = open_page("radiologist")
    page.locator("#worklist").get_by_text("fever", exact=True).filter(visible=True).first.click()
    heading = page.get_by_role("heading", name=re.compile(r"Study #\d+ · drafted"))
    expect(heading).to_be_visible()
    findings = page.get_by_label("Findings", exact=True)
    expect(findings).not_to_have_value("")
    page.get_by_role("button", name="Approve and sign").click()
    expect(page.get_by_text("tick the sign-off box").first).to_be_visible()
    signoff = page.get_by_label("I have reviewed the images and this report, and sign it off")
    signoff.check(timeout=5_000)  # no error overlay over the editor: the refusal came before the approval
    expect(signoff).to_be_checked()
    page.locator("#signoff-password input").fill("not-my-password")
    page.get_by_role("button", name="Approve and sign").click()
    expect(page.get_by_text("that is not your password").first).to_be_visible()
    expect(heading).to_be_visible()  # still drafted: not signed


def test_radiologist_drafts_edits_signs_off_and_exports(open_page, live_app, screenshots):
    _, s, _, dicom = live_app
    page = open_page("radiologist")
    assert_only_tabs(page, ("Reporting", "Generate"))

    # Upload a DICOM, give the indication, draft.
    page.locator("#study-files input[type=file]").set_input_files(str(dicom))
    expect(page.locator("#study-files")).to_contain_text(dicom.name)
    page.get_by_placeholder("e.g. cough, fever").fill("cough, fever")
    page.get_by_role("button", name="Draft report").click()
    expect(page.get_by_text("Drafted in")).to_be_visible(timeout=DRAFT_WAIT)
    expect(page.locator("#worklist")).to_contain_text("cough, fever", timeout=WAIT)
    expect(page.locator("#worklist")).to_contain_text("drafted")

    # Take the first draft sentence out: it leaves its section, and the diff shows it removed.
    first = page.locator("#draft-sentences input[type=checkbox]").first
    expect(first).to_be_checked()
    label = page.locator("#draft-sentences label").first.inner_text().strip()
    section, sentence = label.split(": ", 1)
    box = page.get_by_label("Findings" if section == "F" else "Impression", exact=True)
    expect(box).to_have_value(re.compile(re.escape(sentence)))
    first.uncheck()
    expect(box).not_to_have_value(re.compile(re.escape(sentence)))
    diff = page.locator(".cm-content").filter(has_text=sentence).first
    expect(diff.locator(".cm-line").filter(has_text=re.compile(r"^-"))).not_to_have_count(0)

    # Click the image to zoom in 2x there.
    zoom = page.get_by_label("Zoom (click the image to centre)").and_(page.locator("input[type=number]"))
    expect(zoom).to_have_value("1")
    page.locator(".xr-viewer img").filter(visible=True).first.click()
    expect(zoom).to_have_value("2")

    # Sign off and approve (approving without the sign-off box: test_approval_needs_the_sign_off_box).
    page.get_by_label("I have reviewed the images and this report, and sign it off").check()
    page.locator("#signoff-password input").fill(USERS["radiologist"][1])
    page.get_by_role("button", name="Approve and sign").click()
    expect(page.get_by_text("Approved (approval #")).to_be_visible(timeout=DRAFT_WAIT)
    expect(page.locator("#worklist")).to_contain_text("approved")

    # Export as FHIR and download it.
    page.get_by_label("FHIR R4 (JSON)").check()
    page.get_by_role("button", name="Export").click()
    link = page.locator("a[download^='report-'][download$='.json']").filter(visible=True).first
    expect(link).to_be_visible()
    with page.expect_download() as dl:
        link.click()
    fhir = json.loads(open(dl.value.path(), encoding="utf-8").read())
    assert fhir["resourceType"] == "DiagnosticReport" and fhir["status"] == "final"
    assert sentence not in json.dumps(fhir)
    page.screenshot(path=str(screenshots / "reporting-signed.png"), full_page=True)


def test_annotator_corrects_a_draft_with_a_reason(open_page, live_app, screenshots, tmp_path):
    from xr import store

    _, s, _, _ = live_app
    total = store.corrections_queue(s).total
    page = open_page("annotator")
    assert_only_tabs(page, ("Corrections",))
    page.get_by_role("tab", name="Corrections").click()
    progress = page.locator("#corrections-progress")
    expect(progress).to_contain_text(f"0 of {total} drafts corrected")
    expect(page.get_by_role("heading", name=re.compile(r"Study #\d+"))).to_be_visible()
    study_id = int(re.search(r"#(\d+)", page.get_by_role("heading", name=re.compile(r"Study #\d+")).inner_text())[1])

    text = page.get_by_label("Corrected report")
    expect(text).not_to_have_value("")
    text.fill(text.input_value() + "\nSmall left pleural effusion.")
    page.get_by_label("missed finding").check()
    page.screenshot(path=str(screenshots / "corrections.png"), full_page=True)
    page.get_by_role("button", name="Save correction and next").click()
    expect(page.get_by_text(f"Saved the correction of study #{study_id}.").first).to_be_visible()
    expect(progress).to_contain_text(f"1 of {total} drafts corrected")

    with sqlite3.connect(s.data_dir / "xr.sqlite3") as db:
        tags = [json.loads(t) for (t,) in db.execute("select tags from revisions where tags is not null")]
    assert ["missed finding"] in tags
    out = tmp_path / "edits.jsonl"
    store.export_edits(s, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    corrections = [line for line in lines if line["source"] == "correction"]
    assert len(corrections) == 1, lines
    assert corrections[0]["tags"] == ["missed finding"] and corrections[0]["editor_role"] == "annotator"
    assert corrections[0]["target"].endswith("Small left pleural effusion.")
    assert study_id


def test_educator_browses_cases_and_takes_a_quiz(open_page, screenshots):
    page = open_page("educator")
    assert_only_tabs(page, ("Teaching", "Generate"))
    page.get_by_role("tab", name="Teaching").click()
    count = page.locator("#teaching-count")
    expect(count).to_contain_text(re.compile(r"\d+ cases"))
    all_cases = count.inner_text()

    page.get_by_label("Cases with this finding").click()
    page.get_by_role("option", name="Cardiomegaly", exact=True).click()
    expect(count).not_to_have_text(all_cases)
    expect(count).to_contain_text(re.compile(r"\d+ cases"))

    page.get_by_label("Quiz mode: hide the report and the model's draft").check()
    page.locator("#teaching-cases button:has(img)").first.click()
    expect(page.get_by_text("Quiz mode: read the images")).to_be_visible(timeout=DRAFT_WAIT)
    reference = page.locator("#teaching-reference")
    expect(reference).not_to_contain_text("Reference")
    # issue 31: neither the labels nor the case id (which names its source) until the answer is revealed
    expect(page.get_by_role("heading", name="Quiz case", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"(nih|iu|study):"))).to_have_count(0)

    page.get_by_label("Your reading").fill("Enlarged cardiac silhouette. No pleural effusion.")
    page.get_by_role("button", name="Reveal the report").click()
    expect(reference).to_contain_text("Reference", timeout=DRAFT_WAIT)
    case_id = page.get_by_role("heading", name=re.compile(r"^(nih|iu|study):\S+ · ")).inner_text().split(" · ")[0]
    expect(page.locator("#teaching-cases")).not_to_contain_text(case_id.split("_")[0])  # no captions in a quiz
    expect(page.get_by_text("model draft", exact=True).filter(visible=True).first).to_be_visible()
    expect(page.get_by_text("your reading", exact=True).filter(visible=True).first).to_be_visible()
    page.screenshot(path=str(screenshots / "teaching.png"), full_page=True)


def test_educator_generates_films_from_findings_and_drafts_a_report_from_them(open_page, screenshots):
    page = open_page("educator")
    page.get_by_role("tab", name="Generate").click()
    page.locator("#generate-findings").get_by_label("Cardiomegaly", exact=True).check()
    page.locator("#generate-go").click()
    about = page.locator("#generated-about")
    expect(about).to_contain_text("Synthetic frontal and lateral", timeout=DRAFT_WAIT)
    expect(about).to_contain_text("findings: Cardiomegaly")
    expect(about).to_contain_text("Report used (written from the ticked findings)")
    expect(page.locator("#generated-films button:has(img)")).to_have_count(2)
    page.locator("#generate-draft").click()
    expect(page.locator("#generated-report textarea")).to_have_value(re.compile(r"^\(Drafted from SYNTHETIC films\.\)"),
                                                                     timeout=DRAFT_WAIT)
    page.screenshot(path=str(screenshots / "generate.png"), full_page=True)


def test_educator_may_not_approve(open_page, live_app):
    from gradio_client import Client

    url = live_app[0]
    page = open_page("educator")
    expect(page.get_by_role("tab", name="Teaching")).to_be_visible()
    expect(page.get_by_role("tab", name="Reporting")).to_be_hidden()
    expect(page.get_by_role("button", name="Approve and sign")).to_be_hidden()
    client = Client(url, auth=USERS["educator"], verbose=False)
    with pytest.raises(Exception, match="may not approve"):
        client.predict(1, "FINDINGS: Normal.", api_name="/approve")
