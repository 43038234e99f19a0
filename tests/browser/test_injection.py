"""User text is shown as text, never run or rendered as markup (real app, real chromium): a file name, an
indication and a report full of HTML, JavaScript and Markdown go through drafting, editing, approval, the
worklist, history, the diff, the similar-case panel of a later draft, the teaching case view and the
corrections queue; a refusal naming a file with markup comes up as a toast. Every payload sets
`window.__xss` if it ever runs."""
from __future__ import annotations

import re
import shutil
import zipfile

import pytest

from tests.browser.conftest import DRAFT_WAIT, USERS, WAIT
from tests.conftest import write_dicom

pytest.importorskip("playwright", reason="playwright is not installed (pip install -r requirements-test.txt)")
from playwright.sync_api import Page, expect  # noqa: E402

expect.set_options(timeout=WAIT)

FILE_NAME = "<img src=x onerror=window.__xss=1>.dcm"
SECOND_FILE_NAME = '"><svg onload=window.__xss=2>.dcm'
INDICATION = ('# heading <script>window.__xss=3</script> <img src=x onerror="window.__xss=4"> '
              "[click](javascript:window.__xss=5) **bold** cough")
FINDINGS = ('Heart size normal <img src=x onerror="window.__xss=6"> **bold** '
            "[click](javascript:window.__xss=7) <svg onload=window.__xss=8>")
IMPRESSION = "# heading <script>window.__xss=9</script> no acute disease"
BAD_ENTRY = "<img src=x onerror=window.__xss=10>.png"  # a zip entry: its name reaches the refusal unchanged

# What a payload would leave in the DOM had it been rendered as HTML or Markdown rather than as text.
DOM_CHECK = """() => {
    const all = [...document.querySelectorAll('*')];
    const attr = (e, test) => [...e.attributes].some(test);
    return {
        xss: typeof window.__xss === 'undefined' ? null : String(window.__xss),
        handlers: all.filter(e => attr(e, a => a.name.startsWith('on') && a.value.includes('__xss'))).length,
        js_links: all.filter(e => attr(e, a => /^\\s*javascript:/i.test(a.value))).length,
        scripts: [...document.scripts].filter(s => s.textContent.includes('__xss')).length,
        img_x: document.querySelectorAll('img[src="x"]').length,
        svg: [...document.querySelectorAll('svg')].filter(s => s.outerHTML.includes('__xss')).length,
        bold: [...document.querySelectorAll('strong, b, em')].filter(e => e.textContent.trim() === 'bold').length,
        heading: [...document.querySelectorAll('h1, h2, h3, h4, h5, h6')]
            .filter(e => e.textContent.trim().startsWith('heading')).length,
    };
}"""
CLEAN = {"xss": None, "handlers": 0, "js_links": 0, "scripts": 0, "img_x": 0, "svg": 0, "bold": 0, "heading": 0}


def dom_state(page: Page) -> dict:
    page.wait_for_timeout(500)  # an <img src=x onerror=...> would have failed to load and fired by now
    return page.evaluate(DOM_CHECK)


def assert_inert(page: Page, where: str) -> None:
    """Nothing ran, and nothing the payloads describe (image, svg, link, script, bold, heading) exists."""
    assert dom_state(page) == CLEAN, where


def shows_literally(locator, *texts: str) -> None:
    for text in texts:
        expect(locator).to_contain_text(text)


def test_markup_in_file_name_indication_and_report_is_shown_as_text(open_page, live_app, nih_pixels, tmp_path):
    _, _, _, dicom = live_app
    upload = tmp_path / FILE_NAME
    shutil.copy(dicom, upload)
    page = open_page("radiologist")

    # Upload a study whose file name is markup, with an indication full of it, and draft it.
    page.locator("#study-files input[type=file]").set_input_files(str(upload))
    shows_literally(page.locator("#study-files"), FILE_NAME.removesuffix(".dcm"))  # name and extension apart
    page.get_by_placeholder("e.g. cough, fever").fill(INDICATION)
    page.get_by_role("button", name="Draft report").click()
    expect(page.get_by_text("Drafted in")).to_be_visible(timeout=DRAFT_WAIT)
    header = page.get_by_role("heading", name=re.compile(r"Study #\d+ · drafted"))
    shows_literally(header, INDICATION)
    worklist = page.locator("#worklist")
    shows_literally(worklist, '# heading <script>window.__xss=3</script> <img src=x onerror="window.__xss=4">')
    assert_inert(page, "drafted study")

    # Write the report as markup: the diff against the draft shows it as typed; save it, then sign it off.
    page.get_by_label("Findings", exact=True).fill(FINDINGS)
    page.get_by_label("Impression", exact=True).fill(IMPRESSION)
    shows_literally(page.locator(".cm-content").filter(has_text="Heart size normal").first,
                    '<img src=x onerror="window.__xss=6">', "<script>window.__xss=9</script>")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("Saved your edits.")).to_be_visible()
    page.get_by_text("History of this study").click()
    history = page.locator("#history")
    shows_literally(history, "<svg onload=window.__xss=8>", "<script>window.__xss=9</script>")
    page.get_by_label("I have reviewed the images and this report, and sign it off").check()
    page.locator("#signoff-password input").fill(USERS["radiologist"][1])
    page.get_by_role("button", name="Approve and sign").click()
    expect(page.get_by_text("Approved (approval #")).to_be_visible(timeout=DRAFT_WAIT)
    expect(worklist).to_contain_text("approved")
    shows_literally(page.get_by_role("heading", name=re.compile(r"Study #\d+ · approved")), INDICATION)
    assert_inert(page, "approved study")

    # A later draft of the same images (another study): the approved report is its nearest similar case.
    second = write_dicom(tmp_path / SECOND_FILE_NAME, nih_pixels, view="PA", study_uid="1.2.826.0.1.77")
    expect(page.locator("#study-files")).not_to_contain_text("window.__xss=1")  # consumed: the box is empty
    page.locator("#study-files input[type=file]").set_input_files(str(second))
    shows_literally(page.locator("#study-files"), SECOND_FILE_NAME.removesuffix(".dcm"))
    page.get_by_role("button", name="Draft report").click()
    expect(page.get_by_role("heading", name=re.compile(r"Study #\d+ · drafted"))).to_be_visible(timeout=DRAFT_WAIT)
    expect(page.get_by_text("Drafted in")).to_be_visible(timeout=DRAFT_WAIT)
    similar = page.locator("li").filter(has_text="Heart size normal")
    shows_literally(similar.first, '<img src=x onerror="window.__xss=6"> **bold** [click](javascript:window.__xss=7)',
                    "<svg onload=window.__xss=8>")
    assert_inert(page, "second draft with the approved report among its similar cases")

    # The educator's case view: the approved study is a teaching case with its report as the reference.
    teacher = open_page("educator")
    teacher.get_by_role("tab", name="Teaching").click()
    expect(teacher.locator("#teaching-count")).to_contain_text(re.compile(r"\d+ cases"))
    teacher.locator("#teaching-cases button:has(img)").first.click()
    reference = teacher.locator("#teaching-reference")
    expect(reference).to_contain_text("Reference (study:", timeout=DRAFT_WAIT)
    shows_literally(reference, FINDINGS, IMPRESSION)
    assert_inert(teacher, "teaching case view")

    # The annotator's queue: the second study (drafted, not approved) with its indication in the header.
    annotator = open_page("annotator")
    annotator.get_by_role("tab", name="Corrections").click()
    heading = annotator.get_by_role("heading", name=re.compile(r"Study #\d+"))
    expect(heading).to_be_visible()
    for _ in range(3):
        if "indication: # heading" in heading.inner_text():
            break
        before = heading.inner_text()
        annotator.get_by_role("button", name="Skip").click()
        expect(heading).not_to_have_text(before)
    shows_literally(heading, INDICATION)
    assert_inert(annotator, "corrections workspace")


def refuse(page: Page, tmp_path):
    """Add to the worklist a zip whose one entry, named with markup, is no image: refused with a toast."""
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(BAD_ENTRY, b"not an image at all")
    page.locator("#study-files input[type=file]").set_input_files(str(archive))
    expect(page.locator("#study-files")).to_contain_text("study")
    page.get_by_role("button", name="Add to worklist").click()
    toast = page.locator("[data-testid=toast-body]")
    expect(toast).to_contain_text("not a PNG, JPEG or DICOM file")
    return toast


def test_refusal_naming_a_file_with_markup_does_not_run_it(open_page, tmp_path):
    """The toast of a refused upload names the file, and Gradio renders toast messages as (sanitised) HTML:
    whatever the name holds, nothing of it runs."""
    page = open_page("radiologist")
    refuse(page, tmp_path)
    state = dom_state(page)
    assert {k: state[k] for k in ("xss", "handlers", "js_links", "scripts", "svg")} == \
        {"xss": None, "handlers": 0, "js_links": 0, "scripts": 0, "svg": 0}, state


def test_refusal_shows_the_file_name_as_typed(open_page, tmp_path):
    page = open_page("radiologist")
    toast = refuse(page, tmp_path)
    expect(toast).to_contain_text(BAD_ENTRY, timeout=5_000)
    assert dom_state(page)["img_x"] == 0
