"""The reading room as a radiologist, an annotator and an educator use it, in a real browser (issue 16):
what is signed is what was on screen, a refusal is one message, consumed uploads leave the box, edits are
not thrown away unasked, the views hang side by side at the screen's height with window/level by dragging
and keyboard shortcuts, and the quiz does not give the answer away."""
from __future__ import annotations

import io
import re
import sqlite3

import pytest
from PIL import Image

from tests.browser.conftest import DRAFT_WAIT, USERS, WAIT
from tests.conftest import SHARED
from xr.report import join_sections

pytest.importorskip("playwright", reason="playwright is not installed (pip install -r requirements-test.txt)")
from playwright.sync_api import Page, expect  # noqa: E402

expect.set_options(timeout=WAIT)
VIEWS = SHARED / "data" / "covid_cxr_views" / "images"
BADGES = "[data-testid=status-tracker] span.error"  # Gradio's red 'Error' over an output component
TOAST = "[data-testid=toast-body]"


def draft(page: Page, *files) -> None:
    page.locator("#study-files input[type=file]").set_input_files([str(f) for f in files])
    for f in files:  # each file listed (Gradio shows the stem and the extension apart)
        expect(page.locator("#study-files")).to_contain_text(f.stem)
    page.get_by_role("button", name="Draft report").click()
    expect(page.get_by_text("Drafted in")).to_be_visible(timeout=DRAFT_WAIT)


def sentence_box(page: Page, choice: str):
    """The checkbox of one draft sentence in its section ("F: ..." or "I: ..."): the same words may stand in both."""
    return page.locator("#draft-sentences").get_by_title(choice, exact=True)


def approvals(s) -> list[tuple[int, str]]:
    with sqlite3.connect(s.data_dir / "xr.sqlite3") as db:
        return list(db.execute("select study_id, text from approvals order by id"))


def test_what_is_signed_is_what_was_on_screen(open_page, live_app):
    """16.1: a sentence deleted by typing is unticked and stays out when other sentences are clicked; the
    approval holds exactly the editor's text. 16.3: the consumed upload leaves the box, and the next
    study's files draft without a stale-upload error. 16.8: a signed report is read-only until *Amend*."""
    from xr.report import draft_sentences

    _, s, _, dicom = live_app
    page = open_page("radiologist")
    draft(page, dicom)
    expect(page.locator("#study-files")).not_to_contain_text(dicom.stem)  # 16.3
    findings, impression = page.get_by_label("Findings", exact=True), page.get_by_label("Impression", exact=True)
    text = join_sections(findings.input_value(), impression.input_value())
    choices = draft_sentences(text)
    assert len(choices) >= 3, choices
    gone = next(c for c in reversed(choices) if c.startswith("I: "))
    box = impression if gone.startswith("I: ") else findings
    box.fill(box.input_value().replace(gone[3:], "").strip())  # deleted by typing
    expect(sentence_box(page, gone)).not_to_be_checked()
    other = next(c for c in choices if c.startswith("F: "))
    sentence_box(page, other).uncheck()
    expect(findings).not_to_have_value(re.compile(re.escape(other[3:])))
    sentence_box(page, other).check()
    expect(findings).to_have_value(re.compile(re.escape(other[3:])))
    page.wait_for_timeout(1500)  # any late event would have brought the deleted sentence back by now
    expect(impression).not_to_have_value(re.compile(re.escape(gone[3:])))
    expect(findings).not_to_have_value(re.compile(re.escape(gone[3:])))
    on_screen = join_sections(findings.input_value(), impression.input_value())
    page.get_by_label("I have reviewed the images and this report, and sign it off").check()
    page.locator("#signoff-password input").fill(USERS["radiologist"][1])
    page.get_by_role("button", name=re.compile("Approve and sign")).click()
    expect(page.get_by_text("Approved (approval #")).to_be_visible(timeout=DRAFT_WAIT)
    study_id, signed = approvals(s)[-1]
    assert signed == on_screen and gone[3:] not in signed
    expect(findings).not_to_be_editable()  # 16.8: signed means read-only ...
    expect(page.locator("#reporting-status")).not_to_contain_text("Saved")
    page.get_by_role("button", name="Amend the signed report").click()  # ... until amended
    expect(findings).to_be_editable()
    # 16.3: the next study's file drafts at once (the old upload is not listed, not re-sent).
    second = VIEWS / "p0022_00.png"
    draft(page, second)
    expect(page.get_by_role("heading", name=re.compile(rf"Study #(?!{study_id}\b)\d+ · drafted"))).to_be_visible()
    expect(page.locator(TOAST)).to_have_count(0)


def test_a_refusal_is_one_message(open_page, live_app, tmp_path):
    """16.2: a correction without a reason tag and a bad file each give one toast; no error badge over any
    output, the text and images stay, and the reason checkboxes can be ticked at once."""
    page = open_page("annotator")
    page.get_by_role("tab", name="Corrections").click()
    text = page.get_by_label("Corrected report")
    expect(text).not_to_have_value("")
    before = text.input_value() + " Small left pleural effusion."
    text.fill(before)
    page.get_by_role("button", name="Save correction and next").click()
    expect(page.locator(TOAST).filter(has_text="tick at least one reason")).to_be_visible()
    page.wait_for_timeout(1000)
    expect(page.locator(BADGES)).to_have_count(0)
    expect(text).to_have_value(before)
    page.get_by_label("missed finding").check(timeout=3_000)  # clickable, no badge to close first
    expect(page.locator(".xr-viewer img").first).to_be_visible()

    rad = open_page("radiologist")
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"not an image at all")
    rad.locator("#study-files input[type=file]").set_input_files(str(bad))
    expect(rad.locator("#study-files")).to_contain_text("scan.png")
    rad.get_by_role("button", name="Draft report").click()
    expect(rad.locator(TOAST).filter(has_text="not a PNG, JPEG or DICOM")).to_be_visible()
    rad.wait_for_timeout(1000)
    expect(rad.locator(BADGES)).to_have_count(0)
    expect(rad.locator("#study-files")).not_to_contain_text("scan.png")  # consumed even when refused


def test_redraft_asks_before_replacing_edits_and_keeps_them(open_page, live_app):
    """16.5: *Draft this study again* on an edited study asks first; *Keep my edits* keeps them; replacing
    puts the edited text into the history. 16.8: '#N' in the search box opens study N."""
    from xr import store

    _, s, _, _ = live_app
    sid = next(r["id"] for r in store.worklist(s, "drafted", "fever"))
    page = open_page("radiologist")
    search = page.get_by_label("Search")
    search.fill(f"#{sid}")
    search.press("Enter")
    heading = page.get_by_role("heading", name=re.compile(rf"Study #{sid} · "))
    expect(heading).to_be_visible()
    findings = page.get_by_label("Findings", exact=True)
    edited = findings.input_value() + " Edited by hand before the redraft."
    findings.fill(edited)
    page.get_by_role("button", name="Draft this study again").click()
    confirm = page.locator("#redraft-confirm")
    expect(confirm).to_be_visible()
    expect(findings).to_have_value(edited)
    page.get_by_role("button", name="Keep my edits").click()
    expect(confirm).to_be_hidden()
    expect(findings).to_have_value(edited)
    page.get_by_role("button", name="Draft this study again").click()
    page.get_by_role("button", name="Replace my edits with a new draft").click()
    expect(page.get_by_text("Drafted in")).to_be_visible(timeout=DRAFT_WAIT)
    expect(findings).not_to_have_value(edited)
    page.get_by_text("History of this study").click()
    expect(page.locator("#history")).to_contain_text("Edited by hand before the redraft.")  # a table, not JSON
    assert any("Edited by hand" in h.text for h in store.history(s, sid) if h.event == "edit")


def test_views_hang_side_by_side_with_keys_and_drag(open_page, live_app, screenshots):
    """16.9: at 1600x1000 *Draft report* is above the fold; frontal and lateral hang side by side, taller
    than 600 px, on black; V, O and dragging change the view, the overlay and the window. 16.8: no lung
    mask on the lateral view, no huge heading over the finding probabilities."""
    page = open_page("radiologist")
    page.set_viewport_size({"width": 1600, "height": 1000})
    button = page.get_by_role("button", name="Draft report").bounding_box()
    assert button["y"] + button["height"] <= 1000, button
    draft(page, VIEWS / "p0020_01.png", VIEWS / "p0020_00.png")  # lateral first: hung frontal-left all the same
    panes = page.locator(".xr-viewer img").filter(visible=True)
    expect(panes).to_have_count(2)
    left, right = (panes.nth(i).bounding_box() for i in (0, 1))
    assert abs(left["y"] - right["y"]) < 2 and left["x"] + left["width"] <= right["x"] + 1, (left, right)
    assert min(left["height"], right["height"]) > 600, (left, right)
    which = page.locator(".xr-viewer-group").filter(visible=True).first
    expect(which.get_by_label("1: frontal")).to_be_checked()
    page.screenshot(path=str(screenshots / "reporting.png"))
    colour = page.locator(".xr-viewer").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(0, 0, 0)", colour
    expect(page.locator("#finding-probabilities .output-class")).to_have_count(0)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("o")
    expect(which.get_by_label("evidence")).to_be_checked()
    page.keyboard.press("o")
    expect(which.get_by_label("none")).to_be_checked()
    page.keyboard.press("v")
    expect(which.get_by_label("2: lateral")).to_be_checked()
    which.get_by_label("lung mask").check()
    expect(page.get_by_text("No lung mask on a lateral view")).to_be_visible()
    which.get_by_label("none").check()
    centre = page.get_by_label("Window centre (level; drag up/down)").and_(page.locator("input[type=number]"))
    width = page.get_by_label("Window width (drag left/right)").and_(page.locator("input[type=number]"))
    zoom = page.get_by_label("Zoom (click the image to centre)").and_(page.locator("input[type=number]"))
    box = panes.nth(0).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 60, y + 40, steps=8)
    page.mouse.up()
    expect(width).to_have_value("195")
    expect(centre).to_have_value("168")
    expect(zoom).to_have_value("1")  # the drag's closing click does not zoom
    panes.nth(0).hover()
    page.locator(".xr-viewer").filter(visible=True).first.get_by_role("button", name="Fullscreen").click()
    page.wait_for_timeout(1000)
    shot = Image.open(io.BytesIO(page.screenshot())).convert("L")
    assert shot.getpixel((5, 500)) < 10 and shot.getpixel((1590, 500)) < 10  # the margins of a fullscreen film: black


def test_quiz_gives_nothing_away(open_page):
    """16.7: in quiz mode the gallery has no captions, the finding filter is gone and no overlay is on."""
    page = open_page("educator")
    page.get_by_role("tab", name="Teaching").click()
    gallery = page.locator("#teaching-cases")
    expect(gallery).to_contain_text(re.compile(r"(nih|iu|study):"))  # captioned outside quiz mode
    page.get_by_label("Quiz mode: hide the report and the model's draft").check()
    expect(page.get_by_label("Cases with this finding")).to_be_hidden()
    expect(gallery).not_to_contain_text(re.compile(r"(nih|iu|study):|Cardiomegaly|Effusion|no finding"))
    page.locator("#teaching-cases button:has(img)").first.click()
    expect(page.get_by_text("Quiz mode: read the images")).to_be_visible(timeout=DRAFT_WAIT)
    viewer = page.locator(".xr-viewer-group").filter(visible=True).first
    expect(viewer.get_by_label("none")).to_be_checked()


def test_the_editor_says_what_the_text_states_and_marks_hedges(open_page, live_app):  # live_app: the page's server
    """Issue 19: beside the editor, what the report on screen states (the labeler's reading), and each
    hedged sentence marked for the radiologist to confirm or take out; it follows typing."""
    page = open_page("radiologist")
    draft(page, VIEWS / "p0023_00.png")  # a study of its own: the shared DICOM's may be signed by another test
    says = page.locator("#text-says")
    expect(says).to_contain_text("The report states:")
    findings, impression = page.get_by_label("Findings", exact=True), page.get_by_label("Impression", exact=True)
    impression.fill("Mild cardiomegaly.")
    findings.fill("Mild cardiomegaly. A small pleural effusion cannot be excluded. No pneumothorax.")
    expect(says).to_contain_text("The report states: Cardiomegaly.")
    expect(says).to_contain_text("Hedged, check it: A small pleural effusion cannot be excluded.")
    findings.fill("Mild cardiomegaly. No pneumothorax.")
    expect(says).not_to_contain_text("Hedged")


def _study_number(page: Page) -> int:
    return int(re.search(r"Study #(\d+)", page.locator("#study-header").inner_text())[1])


def test_one_study_per_screen_and_signed_stays_signed(open_page, live_app):
    """Issue 31: after *Add to worklist*, a draft, a sign-off, an export and a study switch, every part of
    the screen (header, films, panel, report, export link) is the study the header names; films that are
    already a signed study open it with a notice and change neither its indication nor its text."""
    from xr import store
    from xr.findings import FINDINGS

    _, s, _, _ = live_app
    page = open_page("radiologist")
    header, findings = page.locator("#study-header"), page.get_by_label("Findings", exact=True)
    panes = page.locator(".xr-viewer img").filter(visible=True)
    export_link = page.locator("a[download^='report-']").filter(visible=True)
    page.locator("#worklist").get_by_text("fever", exact=True).filter(visible=True).first.click()
    expect(header).to_contain_text(re.compile(r"Study #\d+ · drafted"))
    fever = _study_number(page)
    expect(panes).to_have_count(1)

    # Add to worklist: the new study is opened, its two films, no draft, no panel
    page.locator("#study-files input[type=file]").set_input_files([str(VIEWS / "p0089_00.png"), str(VIEWS / "p0089_01.png")])
    expect(page.locator("#study-files")).to_contain_text("p0089_01")
    page.get_by_role("button", name="Add to worklist").click()
    expect(header).to_contain_text("is on the worklist, not drafted yet")
    pending = _study_number(page)
    assert pending != fever
    expect(header).to_contain_text(f"Study #{pending} · pending")
    expect(panes).to_have_count(2)
    expect(findings).to_have_value("")
    expect(page.locator("#finding-panel")).to_contain_text("No draft yet")

    # Draft another study: the panel lists every finding with what the draft says of it; the technical
    # paragraph is in a closed "How this draft was made", not over the report
    draft(page, VIEWS / "p0093_00.png", VIEWS / "p0093_01.png")
    drafted = _study_number(page)
    panel = page.locator("#finding-panel")
    for f in FINDINGS[1:]:
        expect(panel).to_contain_text(f)
    expect(panel).to_contain_text(re.compile("absent|present|possible|not assessed"))
    expect(header).not_to_contain_text("DFFG draft")
    expect(page.locator("#draft-notes")).to_be_hidden()
    page.get_by_text("How this draft was made").click()
    expect(page.locator("#draft-notes")).to_contain_text("DFFG draft")

    # Sign it and export it; switching study takes the export link away
    signed_text = join_sections(findings.input_value(), page.get_by_label("Impression", exact=True).input_value())
    page.get_by_label("I have reviewed the images and this report, and sign it off").check()
    page.locator("#signoff-password input").fill(USERS["radiologist"][1])
    page.get_by_role("button", name=re.compile("Approve and sign")).click()
    expect(page.get_by_text("Approved (approval #")).to_be_visible(timeout=DRAFT_WAIT)
    expect(header).to_contain_text(f"Study #{drafted} · approved")
    expect(header).to_contain_text("Signed off by dr.house")
    page.get_by_label("Plain text").check()
    page.get_by_role("button", name="Export").click()
    expect(export_link).to_have_attribute("download", re.compile(rf"^report-{drafted}-\d+\.txt$"))
    with page.expect_download() as dl:  # fetched, so the server deletes it (an export is handed out once)
        export_link.click()
    assert signed_text in open(dl.value.path(), encoding="utf-8").read()  # the export is the signed text
    page.locator("#worklist").get_by_text("fever", exact=True).filter(visible=True).first.click()
    expect(header).to_contain_text(f"Study #{fever} · drafted")
    expect(export_link).to_have_count(0)
    expect(panes).to_have_count(1)

    # The signed study's films again, with a new indication: it opens as signed, nothing changed
    page.locator("#study-files input[type=file]").set_input_files([str(VIEWS / "p0093_00.png"), str(VIEWS / "p0093_01.png")])
    expect(page.locator("#study-files")).to_contain_text("p0093_01")
    page.get_by_placeholder("e.g. cough, fever").fill("a new indication")
    page.get_by_role("button", name="Draft report").click()
    expect(header).to_contain_text(f"These films are study #{drafted}, signed", timeout=DRAFT_WAIT)
    expect(header).to_contain_text(f"Study #{drafted} · approved")
    expect(header).not_to_contain_text("a new indication")
    expect(findings).not_to_be_editable()
    assert join_sections(findings.input_value(), page.get_by_label("Impression", exact=True).input_value()) == signed_text
    view = store.study_record(s, drafted)
    assert view.indication != "a new indication" and view.text == signed_text
    assert [h.event for h in store.history(s, drafted)].count("draft") == 1


@pytest.mark.parametrize("width, height", [(1600, 1000), (1920, 1080)])
def test_film_and_draft_side_by_side(open_page, live_app, screenshots, width, height):
    """Issue 31: at reading-room sizes the films hang on the left at the screen's height and the report
    editor, sign-off and finding panel stand beside them, all in view without scrolling. The film is
    drafted with the shipped statement policy (the screenshots of README and docs/using.md show what a draft really says)."""
    from xr import store
    from xr.config import ASSETS
    from xr.thresholds import Thresholds

    _, _, ws, _ = live_app
    film = SHARED / "data" / "nih_cxr14_sample" / "images" / "00000442_000.png"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ws.drafter.eye, "thresholds", Thresholds.load(ASSETS / "finding_head"))
        try:
            sid = ws.draft([film], "cough", store.Actor(USERS["radiologist"][0], "radiologist")).study_id
        except store.KnownStudy as known:  # drafted at the other screen size
            sid = known.study_id
    page = open_page("radiologist")
    page.set_viewport_size({"width": width, "height": height})
    search = page.get_by_label("Search")
    search.fill(f"#{sid}")
    search.press("Enter")
    expect(page.locator("#study-header")).to_contain_text(f"Study #{sid} · drafted")
    expect(page.locator("#finding-panel")).to_contain_text("not assessed by the model — check")
    page.evaluate("window.scrollTo(0, 0)")  # as the page opens: the worklist click may have scrolled it
    page.wait_for_timeout(300)
    film = page.locator(".xr-viewer img").filter(visible=True).first.bounding_box()
    editor = page.get_by_label("Findings", exact=True).bounding_box()
    approve = page.get_by_role("button", name=re.compile("Approve and sign")).bounding_box()
    panel = page.locator("#finding-panel").bounding_box()
    assert editor["x"] >= film["x"] + film["width"] - 1, (film, editor)  # beside, not below
    assert film["y"] < height and film["height"] > height / 2, film
    for box in (editor, approve):
        assert box["y"] + box["height"] <= height, (box, height)
    # the panel is in view whole (it scrolls inside itself, the film stays where it is)
    assert panel["y"] + panel["height"] <= height and panel["x"] >= film["x"] + film["width"] - 1, (panel, height)
    page.screenshot(path=str(screenshots / f"reading-{width}x{height}.png"))
