"""Make a draft say exactly what its finding prompt says (retrieve-then-edit at the sentence level).

The generator writes fluent text but may leave out a finding it was told, or keep the normal template's
"the lungs are clear" beside it. Each sentence is read with the labeler: one that states a finding the
prompt does not hold, hedges one it states, or rules out one it holds is taken out; each finding then
missing gets the site's sentence for it (xr.decode.wording) at its usual place, hedged findings get the
hedged sentence, and the routine negatives for the absent findings are written as the site writes them.
What remains is checked once more (`contradictions`): the drafter shows any left to the reader.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from xr.decode.wording import PARENCHYMA, Wording, sentence_labels
from xr.evaluate.labeler import NEGATIVE, POSITIVE, UNCERTAIN, label_report
from xr.findings import FINDINGS
from xr.report import sentences
from xr.thresholds import Stance

# "No acute disease", "normal chest": a sentence that clears the whole film, wrong beside any finding.
_ALL_CLEAR = re.compile(r"\b(?:no (?:\w+ ){0,2}(?:acute|active)|normal (?:chest|study|exam\w*|radiograph\w*)|"
                        r"negative (?:chest|study|exam\w*)|no (?:radiographic )?evidence of (?:acute|active))\b", re.I)
# What the labeler must read in the text for each stance.
_READ_AS: dict[Stance, set[int | None]] = {Stance.STATED: {POSITIVE}, Stance.HEDGED: {UNCERTAIN}, Stance.ABSENT: {NEGATIVE, None}}


PROMPT_OF = {Stance.STATED: 1.0, Stance.HEDGED: 0.5, Stance.ABSENT: 0.0}


def stance_prompt(prompt: np.ndarray, stances: dict[str, Stance]) -> np.ndarray:
    """The generator's finding prompt as the draft will word it: 1 stated, 0.5 hedged, 0 not stated, as
    it was trained (true labels near 1 and 0), instead of calibrated probabilities it would read as absent."""
    out = prompt.astype(np.float32).copy()
    for f, st in stances.items():
        out[FINDINGS.index(f)] = PROMPT_OF[st]
    out[FINDINGS.index("No Finding")] = float(not _abnormal(stances))
    return out


@dataclass(frozen=True)
class Written:
    findings: str
    impression: str
    hedged: list[str]  # sentences that hedge a finding (the editor highlights them)


def _abnormal(stances: dict[str, Stance]) -> bool:
    return any(s is not Stance.ABSENT for f, s in stances.items() if f != "Support Devices")


def _agrees(sentence: str, stances: dict[str, Stance]) -> bool:
    """True when nothing the sentence says goes against the prompt."""
    lab = sentence_labels(sentence)
    for f, v in lab.items():
        st = stances.get(f, Stance.ABSENT)
        if (v == POSITIVE and st is not Stance.STATED) or (v == UNCERTAIN and st is not Stance.HEDGED) \
                or (v == NEGATIVE and st is not Stance.ABSENT):
            return False
    if lab.get("Lung Opacity") == NEGATIVE and any(stances.get(f, Stance.ABSENT) is not Stance.ABSENT for f in PARENCHYMA):
        return False  # "the lungs are clear" beside atelectasis or a nodule
    return not (_ALL_CLEAR.search(sentence) and _abnormal(stances))


def _place(kept: list[str], new: list[tuple[float, str]], order: dict[str, float]) -> list[str]:
    """Insert each new sentence before the first kept one that the site writes later (by the mean position
    of the findings each mentions; a sentence that mentions none keeps its neighbour's)."""
    keys, last = [], 0.0
    for s in kept:
        lab = sentence_labels(s)
        last = min((order[f] for f in lab if f in order), default=last)
        keys.append(last)
    out = list(zip(keys, kept, strict=True))
    for key, s in sorted(new):
        at = next((i for i, (k, _) in enumerate(out) if k > key), len(out))
        out.insert(at, (key, s))
    return [s for _, s in out]


def _stated(text: str) -> dict[str, int | None]:
    return {f: v for f, v in label_report(text).items() if f != "No Finding"}


def _once(sents: list[str]) -> list[str]:
    """The sentences less those that only repeat what an earlier one said ("Mild cardiomegaly. Cardiomegaly.")."""
    out: list[str] = []
    said: set[tuple[str, int]] = set()
    for s in sents:
        lab = set(sentence_labels(s).items())
        if lab and lab <= said:
            continue
        said |= lab
        out.append(s)
    return out


def write(findings: str, impression: str, stances: dict[str, Stance], wording: Wording) -> Written:
    """The draft's sections, edited to state the STATED findings, hedge the HEDGED ones and state no other,
    each once."""
    kept = _once([s for s in sentences(findings) if _agrees(s, stances)])
    said = _stated(" ".join(kept))
    new: list[tuple[float, str]] = []
    for f, st in stances.items():
        if f in wording.stated and said.get(f) not in _READ_AS[st]:
            if st is Stance.STATED:
                new.append((wording.order[f], wording.stated[f]))
            elif st is Stance.HEDGED:
                new.append((wording.order[f], wording.hedged[f]))
    # routine negatives for absent findings the text does not yet rule out ("the lungs are clear" rules out
    # every finding of the lung itself), each time the sentence that rules out the most, the site's commonest
    ruled_out = {f for f, v in said.items() if v == NEGATIVE} | (PARENCHYMA if said.get("Lung Opacity") == NEGATIVE else set())
    missing = {f for f in wording.routine if stances.get(f, Stance.ABSENT) is Stance.ABSENT} - ruled_out
    while missing:
        fits = [(len(missing & set(fs)), -i, s, fs) for i, (s, fs) in enumerate(wording.negatives)
                if set(fs) & missing and set(fs) <= missing | ruled_out and _agrees(s, stances)]
        if not fits:
            break
        _, _, s, rules_out = max(fits)
        new.append((min(wording.order.get(f, 0.5) for f in rules_out), s))
        missing -= set(rules_out)
    body = _place(kept, new, wording.order)

    imp = _once([s for s in sentences(impression) if _agrees(s, stances)])
    imp_said = _stated(" ".join(imp))
    lead = [wording.impression[f] for f, st in stances.items()
            if st is Stance.STATED and f in wording.impression and imp_said.get(f) != POSITIVE]
    lead += [wording.impression_hedged[f] for f, st in stances.items()
             if st is Stance.HEDGED and f in wording.impression_hedged and imp_said.get(f) != UNCERTAIN]
    imp = lead + imp
    if not imp:
        imp = [wording.normal_impression]
    hedged = list(dict.fromkeys(s for s in body + imp if UNCERTAIN in sentence_labels(s).values()))
    return Written(" ".join(body), " ".join(imp), hedged)


def contradictions(text: str, stances: dict[str, Stance]) -> list[str]:
    """One line per finding where the text and the finding panel disagree (empty when they agree)."""
    said = _stated(text)
    out = []
    for f, st in stances.items():
        if said.get(f) not in _READ_AS[st]:
            reads = {POSITIVE: "states it", UNCERTAIN: "hedges it", NEGATIVE: "rules it out", None: "does not mention it"}
            out.append(f"{f}: {st.value} on the panel, but the text {reads[said.get(f)]}")
    return out
