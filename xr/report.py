"""A report as radiologists edit it: a Findings and an Impression section, each a list of sentences that
can be accepted or rejected one by one. The stored text stays one string (`compose_report`'s layout), so
drafts, revisions, approvals and exports all agree on it."""
from __future__ import annotations

import difflib
import re

# Backslash-escapable ASCII punctuation (CommonMark) except & < >, which become HTML entities instead.
_MARKDOWN_PUNCT = re.compile(r"([!\"#$%'()*+,\-./:;=?@\[\\\]^_`{|}~])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}

# A sentence ends at . ! or ? followed by a space and a capital letter, digit or list number; not at
# "e.g." or decimals like "1.5 cm".
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")
SECTION = re.compile(r"^\s*([A-Z][A-Z /&]+):", re.MULTILINE)


def compose_report(findings: str, impression: str) -> str:
    return f"FINDINGS: {findings.strip()}\n\nIMPRESSION: {impression.strip()}".strip()


def sections(report: str) -> dict[str, str]:
    """'FINDINGS: ... IMPRESSION: ...' -> {'FINDINGS': ..., 'IMPRESSION': ...}, whitespace collapsed."""
    heads = list(SECTION.finditer(report))
    out = {}
    for h, nxt in zip(heads, heads[1:] + [None], strict=False):
        body = report[h.end(): nxt.start() if nxt else len(report)]
        out[h.group(1).strip()] = " ".join(body.split())
    return out


def literal_markdown(text: str | None) -> str:
    """User text (report, indication, file name) put into a gr.Markdown/gr.HTML string so that it shows
    exactly as typed: Markdown punctuation backslash-escaped, HTML special characters as entities, so no
    emphasis, heading, link, tag or script comes of it. Line breaks are kept, indentation is not (it would
    make a code block); normal words look the same."""
    text = "\n".join(line.lstrip() for line in str(text or "").split("\n"))
    text = _MARKDOWN_PUNCT.sub(r"\\\1", text)
    return "".join(_HTML.get(ch, ch) for ch in text)


def split_sections(text: str) -> tuple[str, str]:
    """(findings, impression), whitespace collapsed. Text without either heading is all findings, as a
    radiologist may type it."""
    sec = sections(text or "")
    if "FINDINGS" not in sec and "IMPRESSION" not in sec:
        return " ".join((text or "").split()), ""
    return sec.get("FINDINGS", ""), sec.get("IMPRESSION", "")


def join_sections(findings: str, impression: str) -> str:
    return compose_report(findings or "", impression or "")


def sentences(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", (text or "").strip())
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()] if text else []


def draft_sentences(report: str) -> list[str]:
    """The draft's sentences as choices, each marked with its section ("F: ..." / "I: ...")."""
    findings, impression = split_sections(report)
    return [f"F: {s}" for s in sentences(findings)] + [f"I: {s}" for s in sentences(impression)]


def present_choices(findings: str, impression: str, choices: list[str]) -> list[str]:
    """The draft sentences the editor's text holds now: the checkboxes show the text, never the other way
    round, so a sentence deleted by typing is unticked and no later tick can bring it back unasked."""
    have = {"F: " + s for s in sentences(findings)} | {"I: " + s for s in sentences(impression)}
    return [c for c in choices if c in have]


def toggle_choice(findings: str, impression: str, choices: list[str], choice: str, on: bool) -> tuple[str, str]:
    """The editor's sections after one checkbox click: `choice` taken out (on=False) or put back (on=True)
    after the nearest earlier draft sentence still there, so it returns to its place; nothing else moves."""
    if choice not in choices:
        return findings, impression
    tag, sentence = choice[:3], choice[3:]
    sections = {"F: ": sentences(findings), "I: ": sentences(impression)}
    current = sections[tag]
    if not on:
        current[:] = [s for s in current if s != sentence]
    elif sentence not in current:
        mine = [c[3:] for c in choices if c.startswith(tag)]
        earlier = [s for s in mine[:mine.index(sentence)] if s in current]
        later = [s for s in mine[mine.index(sentence) + 1:] if s in current]
        at = current.index(earlier[-1]) + 1 if earlier else current.index(later[0]) if later else len(current)
        current.insert(at, sentence)
    return " ".join(sections["F: "]), " ".join(sections["I: "])


def sentence_lines(text: str) -> list[str]:
    """The report one sentence per line, for diffs that show a changed sentence as itself."""
    findings, impression = split_sections(text)
    return ["FINDINGS:", *sentences(findings), "", "IMPRESSION:", *sentences(impression)]


def diff_text(a: str, b: str, to: str = "edited") -> str:
    """Unified diff of the draft against an edited (or refined) text, sentence by sentence."""
    return "\n".join(difflib.unified_diff(sentence_lines(a), sentence_lines(b), "draft", to, lineterm=""))
