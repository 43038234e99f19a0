"""The report as radiologists edit it: sections, sentences accepted or rejected, sentence-level diffs."""
from __future__ import annotations

from xr.report import diff_text, draft_sentences, join_sections, present_choices, sentences, split_sections, toggle_choice

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
    f, i = toggle_choice(typed, impression, choices, "F: No effusion.", False)
    assert f == "The heart is normal in size. A 1.5 cm nodule, e.g. granuloma, in the right apex. Small hiatal hernia."
    assert i == "No acute disease."
    f, i = toggle_choice(f, i, choices, "I: No acute disease.", False)
    assert i == "" and "Small hiatal hernia." in f
    f, i = toggle_choice(f, i, choices, "F: No effusion.", True)  # back after the sentence it followed
    assert f.endswith("right apex. No effusion. Small hiatal hernia.")
    f, i = toggle_choice(f, i, choices, "I: No acute disease.", True)
    assert i == "No acute disease."
    f, _ = toggle_choice(f.replace("The heart is normal in size. ", ""), i, choices, "F: The heart is normal in size.", True)
    assert f.startswith("The heart is normal in size. A 1.5 cm")  # first again: before the draft sentence after it


def test_a_sentence_deleted_by_typing_never_comes_back():
    """Issue 16.1: typing a sentence away unticks it, and clicking another sentence leaves it out."""
    choices = draft_sentences(DRAFT)
    findings, impression = split_sections(DRAFT)
    impression = ""  # "No acute disease." deleted by typing
    assert present_choices(findings, impression, choices) == choices[:-1]
    f, i = toggle_choice(findings, impression, choices, "F: No effusion.", False)
    assert i == "" and "No effusion." not in f
    f, i = toggle_choice(f, i, choices, "F: No effusion.", True)
    assert i == "" and f == findings
    assert present_choices(f, i, choices) == choices[:-1]


def test_diff_shows_changed_sentences_as_themselves():
    findings, impression = split_sections(DRAFT)
    edited = join_sections(findings.replace(" No effusion.", ""), impression + " Mild cardiomegaly.")
    lines = diff_text(DRAFT, edited).splitlines()
    assert "-No effusion." in lines and "+Mild cardiomegaly." in lines
    assert not [x for x in lines if x.startswith(("-", "+")) and "heart" in x]  # untouched sentences stay context
