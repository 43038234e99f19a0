"""The writer says what the finding prompt says: thresholds chosen from out-of-fold predictions, the
site's wording read back by the labeler, the faithful edit of a draft, the shipped model per finding, the
drafter's panel check, and the refiner's guard."""
from __future__ import annotations

import numpy as np
import pytest

from xr.config import ASSETS
from xr.decode.faithful import contradictions, stance_prompt, write
from xr.decode.processing import Example
from xr.decode.wording import PARENCHYMA, Wording, sentence_labels
from xr.evaluate.classification import choose_cut
from xr.evaluate.labeler import NEGATIVE, POSITIVE, UNCERTAIN, label_report
from xr.findings import FINDINGS
from xr.refine.guard import finding_changes
from xr.report import sentences
from xr.thresholds import NEVER, Stance, Thresholds

NORMAL = "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear."
WORDING = Wording.load(ASSETS / "dffg")
WRITTEN = sorted(WORDING.stated)  # every finding the writer can state


def stances(**which: Stance) -> dict[str, Stance]:
    out = {f: Stance.ABSENT for f in FINDINGS if f != "No Finding"}
    out.update({f.replace("_", " "): s for f, s in which.items()})
    return out


def positives(text: str) -> set[str]:
    return {f for f, v in label_report(text).items() if v == POSITIVE and f != "No Finding"}


# ---- thresholds ------------------------------------------------------------------------------------
def test_choose_cut_states_a_separable_finding_and_never_one_at_chance():
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.2
    good = np.where(y, rng.normal(0.7, 0.1, 400), rng.normal(0.3, 0.1, 400))
    state = choose_cut(y, good)
    assert state < NEVER
    said = good >= state
    assert 1 - said[~y].mean() >= 0.9 and said[y].mean() > 0.8  # specificity kept, most positives found
    noise = rng.random(400)
    assert choose_cut(y, noise) == NEVER  # its AUC interval reaches 0.5: never written
    assert choose_cut(np.zeros(50, bool), noise[:50]) == NEVER  # no positive to choose from
    weak = np.where(y, rng.normal(0.55, 0.2, 400), rng.normal(0.45, 0.2, 400))  # above chance, mostly wrong when said
    assert choose_cut(y, weak) < NEVER and choose_cut(y, weak, min_precision=0.5) == NEVER
    assert choose_cut(y, good, min_precision=0.5) == state  # right most of the time: kept


def test_shipped_thresholds_say_what_they_were_chosen_on():
    for folder in (ASSETS / "dffg", ASSETS / "finding_head", ASSETS / "finding_head" / "holdout"):
        t = Thresholds.load(folder)
        assert t.cuts and ("out-of-fold" in t.chosen_on or "leave-one-out" in t.chosen_on)
        assert all(0 <= c.absent and c.possible <= c.present <= NEVER for c in t.cuts.values())


# ---- wording ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("finding", WRITTEN)
def test_the_sites_sentences_say_one_thing_each(finding):
    assert sentence_labels(WORDING.stated[finding]) == {finding: POSITIVE}
    assert sentence_labels(WORDING.hedged[finding]) == {finding: UNCERTAIN}
    assert sentence_labels(WORDING.impression[finding]) == {finding: POSITIVE}
    assert sentence_labels(WORDING.impression_hedged[finding]) == {finding: UNCERTAIN}


def test_routine_negatives_only_rule_out():
    assert {"Cardiomegaly", "Pneumothorax", "Pleural Effusion", "Lung Opacity"} <= set(WORDING.routine)
    for sentence, findings in WORDING.negatives:
        assert set(sentence_labels(sentence).values()) == {NEGATIVE} and set(sentence_labels(sentence)) == set(findings)
    assert not positives(WORDING.normal_impression)


# ---- the faithful edit -----------------------------------------------------------------------------
@pytest.mark.parametrize("finding", WRITTEN)
def test_a_stated_finding_is_written_and_nothing_else(finding):
    st = stances(**{finding.replace(" ", "_"): Stance.PRESENT})
    w = write(NORMAL, "No acute cardiopulmonary abnormality.", st, WORDING)
    text = f"{w.findings} {w.impression}"
    assert positives(w.findings) == {finding} and positives(w.impression) == {finding}
    assert contradictions(text, st) == [] and w.hedged == []
    if finding in PARENCHYMA:  # "the lungs are clear" does not stand beside a finding of the lung
        assert "lungs are clear" not in w.findings.lower()
    if finding == "Cardiomegaly":
        assert "heart is normal" not in w.findings.lower()


@pytest.mark.parametrize("finding", WRITTEN)
def test_a_hedged_finding_is_hedged_and_listed_for_the_editor(finding):
    st = stances(**{finding.replace(" ", "_"): Stance.POSSIBLE})
    w = write(NORMAL, "No acute disease.", st, WORDING)
    assert label_report(w.findings)[finding] == UNCERTAIN and not positives(w.findings)
    assert WORDING.hedged[finding] in w.hedged and contradictions(f"{w.findings} {w.impression}", st) == []
    assert w.impression.startswith(WORDING.impression_hedged[finding]) and WORDING.impression_hedged[finding] in w.hedged


def test_what_the_prompt_rules_out_is_taken_out_and_the_routine_negatives_written():
    draft = "Mild cardiomegaly. There is a small right pleural effusion. No pneumothorax."
    w = write(draft, "Cardiomegaly and effusion.", stances(Cardiomegaly=Stance.PRESENT), WORDING)
    assert positives(w.findings) == {"Cardiomegaly"} and "effusion" not in w.impression.replace("No pleural effusion", "")
    said = label_report(w.findings)
    assert said["Pleural Effusion"] == NEGATIVE and said["Pneumothorax"] == NEGATIVE and said["Lung Opacity"] == NEGATIVE
    assert w.findings.startswith("Mild cardiomegaly.")  # the generator's own words are kept where they agree
    normal = write(NORMAL, "No acute disease.", stances(), WORDING)
    assert positives(normal.findings) == set() and normal.impression == "No acute disease."


def test_each_finding_is_said_once():
    draft = "Mild cardiomegaly. Cardiomegaly. The lungs are clear. No pneumothorax or pleural effusion. No pleural effusion."
    w = write(draft, "Cardiomegaly. Mild cardiomegaly.", stances(Cardiomegaly=Stance.PRESENT), WORDING)
    assert w.findings == ("Mild cardiomegaly. The mediastinum is unremarkable. The lungs are clear. "
                          "No pneumothorax or pleural effusion.")  # the routine mediastinum added, the repeats gone
    assert w.impression == "Cardiomegaly."


def test_the_panel_check_names_each_disagreement():
    st = stances(Cardiomegaly=Stance.PRESENT, Pleural_Effusion=Stance.POSSIBLE, Edema=Stance.NOT_ASSESSED)
    found = contradictions("The heart is normal in size. There is a large pneumothorax. No pulmonary edema.", st)
    assert found == ["Cardiomegaly: present on the panel, but the text rules it out",
                     "Edema: not assessed on the panel, but the text rules it out",
                     "Pneumothorax: absent on the panel, but the text states it",
                     "Pleural Effusion: possible on the panel, but the text does not mention it"]


def test_what_the_eye_did_not_assess_is_neither_denied_nor_mentioned():
    """Issue 31: a finding not assessed gets no routine negative ("No pneumothorax") and no sentence of the
    generator's that mentions it; the film is not cleared ("No acute ...") unless every finding was
    looked at and is absent."""
    st = stances(Pneumothorax=Stance.NOT_ASSESSED, Lung_Opacity=Stance.NOT_ASSESSED)
    w = write("The heart is normal in size. The lungs are clear. No pneumothorax or pleural effusion.",
              "No acute cardiopulmonary abnormality.", st, WORDING)
    said = label_report(f"{w.findings} {w.impression}")
    assert said["Pneumothorax"] is None and said["Lung Opacity"] is None
    assert said["Cardiomegaly"] == NEGATIVE and said["Pleural Effusion"] == NEGATIVE  # assessed and absent: denied
    assert "No acute" not in w.impression and w.impression == ""  # nothing to clear the film with
    assert contradictions(f"{w.findings} {w.impression}", st) == []
    everything = write(NORMAL, "", stances(), WORDING)
    assert everything.impression == WORDING.normal_impression  # all looked at, all absent


def test_wording_a_radiologist_would_sign():
    """Issue 31: no comparison without a prior, no repeated word, "there is" agreeing with its noun, and no
    finding denied twice."""
    draft = ("The mediastinum is stable. There is focal focal airspace disease. There is mild degenerative changes "
             "of the spine. No pleural effusion. No pneumothorax or pleural effusion.")
    st = stances(Lung_Opacity=Stance.PRESENT)
    w = write(draft, "Unchanged appearance of the chest.", st, WORDING)
    assert "stable" not in w.findings and "Unchanged" not in w.impression
    assert "focal focal" not in w.findings and "There is focal airspace disease." in w.findings
    assert "There are mild degenerative changes of the spine." in w.findings
    said = [s for s in w.findings.split(". ") if "effusion" in s.lower()]
    assert len(said) == 1, w.findings  # effusion denied once
    with_prior = write(draft, "", st, WORDING, prior=True)
    assert "The mediastinum is stable." in with_prior.findings


def test_the_generator_reads_the_stances_not_the_calibrated_probabilities():
    prompt = np.full(len(FINDINGS), 0.3, np.float32)
    out = stance_prompt(prompt, stances(Cardiomegaly=Stance.PRESENT, Edema=Stance.POSSIBLE))
    assert out[FINDINGS.index("Cardiomegaly")] == 1.0 and out[FINDINGS.index("Edema")] == 0.5
    assert out[FINDINGS.index("Pneumothorax")] == 0.0 and out[FINDINGS.index("No Finding")] == 0.0
    assert stance_prompt(prompt, stances())[FINDINGS.index("No Finding")] == 1.0


# ---- the shipped model, per finding ----------------------------------------------------------------
@pytest.fixture(scope="module")
def drafter(shared):
    from xr.draft.dffg import DFFGDrafter
    return DFFGDrafter()


@pytest.mark.parametrize("finding", WRITTEN)
def test_shipped_drafter_states_each_finding_it_is_given(drafter, finding):
    """Text inputs of a normal study and a prompt with this one finding above its threshold: the draft
    states it, no other, and agrees with the panel; at 0 it is not stated."""
    rows = drafter.memory.by_text(None, drafter.net.config.k)
    for p, want in ((0.99, {finding}), (0.0, set())):
        probabilities = {f: (p if f == finding else 0.0) for f in FINDINGS}
        ex = Example(indication="", prompt=np.array([probabilities[f] for f in FINDINGS], np.float32),
                     retrieved=[drafter.memory.findings[r] for r, _ in rows])
        written, st, _ = drafter.write(ex, probabilities, Thresholds.uniform(0.5, FINDINGS, "a test"))
        assert positives(written.findings) == want
        assert contradictions(f"{written.findings} {written.impression}", st) == []


def test_drafts_of_films_agree_with_their_finding_panel(drafter, shared):
    from xr.ingest import load_study
    from xr.thresholds import Stance as S
    nih = shared / "data" / "nih_cxr14_sample" / "images"
    for name in ("00000100_000.png", "00000353_000.png", "00000442_000.png"):
        d = drafter.draft(load_study([nih / name]), "")
        st = {f: S(v) for f, v in d.stances.items()}
        assert st == drafter.eye.thresholds.stances(d.findings)  # the panel's probabilities by the eye's policy
        assert set(st) == set(FINDINGS) - {"No Finding"}  # every finding has a stance, not the top few
        assert contradictions(d.report, st) == []
        assert not any(n.startswith("Check against the finding panel") for n in d.notes)
        said = label_report(d.report)
        for f, s in st.items():  # issue 31: nothing said of what the eye does not assess
            if s is S.NOT_ASSESSED:
                assert said[f] is None, (name, f)
        assert d.cuts["Support Devices"] == "no cut: not told from chance"  # the eye has no output for it


# ---- the refiner's guard ---------------------------------------------------------------------------
def test_refiner_guard_names_every_changed_finding():
    draft = "FINDINGS: Mild cardiomegaly. No pleural effusion.\n\nIMPRESSION: Cardiomegaly."
    assert finding_changes(draft, "FINDINGS: The heart is mildly enlarged. No effusion.\n\nIMPRESSION: Cardiomegaly.") == []
    assert finding_changes(draft, "FINDINGS: Normal heart. Small pleural effusion cannot be excluded.") == [
        "Cardiomegaly: the draft states it, the rewrite does not state it",
        "Pleural Effusion: the draft does not state it, the rewrite hedges it"]


def test_wording_over_drafts_of_shared_films(drafter, shared):
    """Issue 31: over drafts of films from every shared source (NIH, the second NIH folder, COVID collection,
    IU X-ray), under a policy that assesses every finding (so the drafts have text to read): no comparison
    word without a prior, no word twice in a row, "there is" never before a plural, each finding said once
    per section."""
    import re

    from xr.decode.wording import COMPARISON
    from xr.ingest import load_study

    data = shared / "data"
    films = [data / "nih_cxr14_sample" / "images" / n for n in ("00000100_000.png", "00000075_000.png", "00000442_000.png")]
    films += sorted((data / "nih_cxr14_more" / "images").glob("*.jpg"))[:3]
    films += [data / "covid_cxr_views" / "images" / "p0022_00.png", data / "iu_xray" / "images_openi" / "CXR1000_IM-0003-1001.png"]
    policy = Thresholds.uniform(0.5, FINDINGS, "a test: every finding assessed")
    saved = drafter.eye.thresholds
    drafter.eye.thresholds = policy
    try:
        drafts = [drafter.draft(load_study([f]), "") for f in films]
    finally:
        drafter.eye.thresholds = saved
    for f, d in zip(films, drafts, strict=True):
        assert d.findings_text, f.name
        for section in (d.findings_text, d.impression):
            assert not COMPARISON.search(section), (f.name, section)
            assert not re.search(r"\b(\w+)\s+\1\b", section, re.I), (f.name, section)
            assert not re.search(r"\bthere is (?:\w+ ){0,3}(?:changes|opacities|effusions|nodules)\b", section, re.I)
            said = [tuple(sorted(sentence_labels(s).items())) for s in sentences(section)]
            mentioned = [f for labels in said for f, _ in labels]
            assert len(mentioned) == len(set(mentioned)), (f.name, section)
