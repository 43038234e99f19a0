"""The report as radiologists edit it: sections, sentences accepted or rejected, sentence-level diffs."""
from __future__ import annotations

from xr.report import apply_choices, draft_sentences, join_sections, sentences, split_sections
from xr.store import diff_text

DRAFT = ("FINDINGS: The heart is normal in size. A 1.5 cm nodule, e.g. granuloma, in the right apex. "
         "No effusion.\n\nIMPRESSION: No acute disease.")


def test_sections_and_sentences_round_trip():
    findings, impression = split_sections(DRAFT)
    assert impression == "No acute disease."
    assert sentences(findings) == ["The heart is normal in size.", "A 1.5 cm nodule, e.g. granuloma, in the right apex.",
                                   "No effusion."]
    assert join_sections(findings, impression) == DRAFT
    assert split_sections("Typed without headings. Two sentences.") == ("Typed without headings. Two sentences.", "")
    assert split_sections("IMPRESSION: only this.") == ("", "only this.")


def test_rejecting_and_restoring_sentences_keeps_typed_text():
    choices = draft_sentences(DRAFT)
    assert choices[0] == "F: The heart is normal in size." and choices[-1] == "I: No acute disease."
    findings, impression = split_sections(DRAFT)
    typed = findings + " Small hiatal hernia."
    f, i = apply_choices(typed, impression, choices, [c for c in choices if c != "F: No effusion."])
    assert f == "The heart is normal in size. A 1.5 cm nodule, e.g. granuloma, in the right apex. Small hiatal hernia."
    assert i == "No acute disease."
    f, i = apply_choices(f, i, choices, [c for c in choices if not c.startswith("I: ")])
    assert i == "" and "Small hiatal hernia." in f
    f, i = apply_choices(f, i, choices, choices)  # ticked again: back at the end of their section
    assert f.endswith("Small hiatal hernia. No effusion.") and i == "No acute disease."


def test_diff_shows_changed_sentences_as_themselves():
    findings, impression = split_sections(DRAFT)
    edited = join_sections(findings.replace(" No effusion.", ""), impression + " Mild cardiomegaly.")
    lines = diff_text(DRAFT, edited).splitlines()
    assert "-No effusion." in lines and "+Mild cardiomegaly." in lines
    assert not [x for x in lines if x.startswith(("-", "+")) and "heart" in x]  # untouched sentences stay context
