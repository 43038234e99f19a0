"""Make a draft say exactly what its finding prompt says (retrieve-then-edit at the sentence level).

The generator writes fluent text but may leave out a finding it was told, or keep the normal template's
"the lungs are clear" beside it. Each sentence is read with the labeler: one that states a finding the
prompt does not hold, hedges one it states, or rules out one it holds is taken out; each finding then
missing gets the site's sentence for it (xr.decode.wording) at its usual place, possible findings get the
hedged sentence, and the routine negatives for the absent findings are written as the site writes them;
a finding not assessed is not mentioned at all. A study without a prior keeps no comparison word
("stable", "unchanged"), a repeated word is said once and "there is" agrees with its noun. What remains
is checked once more (`contradictions`): the drafter shows any left to the reader.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from xr.decode.wording import COMPARISON, PARENCHYMA, Wording, sentence_labels
from xr.evaluate.labeler import NEGATIVE, POSITIVE, UNCERTAIN, label_report
from xr.findings import FINDINGS
from xr.report import sentences
from xr.thresholds import Stance

# "No acute disease", "normal chest": a sentence that clears the whole film, wrong beside any finding.
_ALL_CLEAR = re.compile(r"\b(?:no (?:\w+ ){0,2}(?:acute|active)|normal (?:chest|study|exam\w*|radiograph\w*)|"
                        r"negative (?:chest|study|exam\w*)|no (?:radiographic )?evidence of (?:acute|active))\b", re.I)
# What the labeler must read in the text for each stance.
_READ_AS: dict[Stance, set[int | None]] = {Stance.PRESENT: {POSITIVE}, Stance.POSSIBLE: {UNCERTAIN},
                                           Stance.ABSENT: {NEGATIVE, None}, Stance.NOT_ASSESSED: {None}}
PROMPT_OF = {Stance.PRESENT: 1.0, Stance.POSSIBLE: 0.5, Stance.ABSENT: 0.0, Stance.NOT_ASSESSED: 0.0}
_NOT_CARDIOPULMONARY = {"Support Devices", "Fracture"}
_REPEATED = re.compile(r"\b(\w+)(?:\s+\1\b)+", re.I)
# "There is mild degenerative changes": the plural nouns the site's reports put after "there is/are".
_PLURAL = re.compile(r"\b(?:changes|opacities|effusions|nodules|calcifications|granulomas|densities|markings|"
                     r"infiltrates|deformities|fractures|clips|wires|sutures|lesions|scars|osteophytes)\b", re.I)
_THERE_IS = re.compile(r"\b([Tt]here) (is|are) ([^.,;:]*)")
_PHRASE_END = re.compile(r"\s+(?:of|in|at|on|with|within|along|without|and|or|which|that|to|from|overlying|projecting)\b")


def stance_prompt(prompt: np.ndarray, stances: dict[str, Stance]) -> np.ndarray:
    """The generator's finding prompt as the draft will word it: 1 present, 0.5 possible, 0 otherwise, as
    it was trained (true labels near 1 and 0), instead of calibrated probabilities it would read as absent."""
    out = prompt.astype(np.float32).copy()
    for f, st in stances.items():
        out[FINDINGS.index(f)] = PROMPT_OF[st]
    out[FINDINGS.index("No Finding")] = float(not _abnormal(stances))
    return out


def _said_something(s: str) -> str:
    """One sentence made readable: a word said twice in a row once ("focal focal"), "there is" agreeing
    with a plural noun ("There is mild degenerative changes") and "there are" with a singular one."""
    s = _REPEATED.sub(r"\1", s)

    def agree(m: re.Match) -> str:
        words = [w.lower() for w in _PHRASE_END.split(m.group(3), 1)[0].split()]  # up to the noun's first complement
        if m.group(2) == "is" and words and _PLURAL.fullmatch(words[-1]):
            return f"{m.group(1)} are {m.group(3)}"
        if m.group(2) == "are" and words[:1] in (["a"], ["an"]) and words[1:2] not in (["few"], ["number"], ["couple"]):
            return f"{m.group(1)} is {m.group(3)}"
        return m.group(0)
    return _THERE_IS.sub(agree, s)


@dataclass(frozen=True)
class Written:
    findings: str
    impression: str
    hedged: list[str]  # sentences that hedge a finding (the editor highlights them)


def _abnormal(stances: dict[str, Stance]) -> bool:
    """Something is stated or hedged (a device does not count)."""
    return any(s in (Stance.PRESENT, Stance.POSSIBLE) for f, s in stances.items() if f != "Support Devices")


def _all_clear(stances: dict[str, Stance]) -> bool:
    """Every cardiopulmonary finding was looked at and is absent: only then may a sentence clear the film."""
    return all(s is Stance.ABSENT for f, s in stances.items() if f not in _NOT_CARDIOPULMONARY)


def _agrees(sentence: str, stances: dict[str, Stance]) -> bool:
    """True when nothing the sentence says goes against the prompt."""
    lab = sentence_labels(sentence)
    for f, v in lab.items():
        if v not in _READ_AS[stances.get(f, Stance.NOT_ASSESSED)]:
            return False
    if lab.get("Lung Opacity") == NEGATIVE and any(stances.get(f) is not Stance.ABSENT for f in PARENCHYMA):
        return False  # "the lungs are clear" beside atelectasis, or where a nodule was not looked for
    return not (_ALL_CLEAR.search(sentence) and not _all_clear(stances))


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
    """The sentences less those that only repeat what an earlier one said ("Mild cardiomegaly. Cardiomegaly.")
    or what another sentence says and more ("No pleural effusion." beside "No pneumothorax or pleural effusion.")."""
    labs = [set(sentence_labels(s).items()) for s in sents]
    out: list[str] = []
    said: set[tuple[str, int]] = set()
    for s, lab in zip(sents, labs, strict=True):
        if lab and (lab <= said or any(lab < other for other in labs)):
            continue
        said |= lab
        out.append(s)
    return out


def _keep(text: str, stances: dict[str, Stance], prior: bool) -> list[str]:
    """The generated sentences that agree with the stances, made readable, each finding said once; without
    a prior study, none that compares (\"stable\", \"unchanged\", \"again\")."""
    return _once([_said_something(s) for s in sentences(text)
                  if _agrees(s, stances) and (prior or not COMPARISON.search(s))])


def write(findings: str, impression: str, stances: dict[str, Stance], wording: Wording, prior: bool = False) -> Written:
    """The draft's sections, edited to state the present findings, hedge the possible ones, deny only the
    absent ones and mention no other, each once. `prior`: the study has a prior to compare with."""
    kept = _keep(findings, stances, prior)
    said = _stated(" ".join(kept))
    new: list[tuple[float, str]] = []
    for f, st in stances.items():
        if f in wording.stated and said.get(f) not in _READ_AS[st]:
            if st is Stance.PRESENT:
                new.append((wording.order[f], wording.stated[f]))
            elif st is Stance.POSSIBLE:
                new.append((wording.order[f], wording.hedged[f]))
    # routine negatives for absent findings the text does not yet rule out ("the lungs are clear" rules out
    # every finding of the lung itself), each time the sentence that rules out the most, the site's commonest;
    # never one that denies again what is already denied
    ruled_out = {f for f, v in said.items() if v == NEGATIVE} | (PARENCHYMA if said.get("Lung Opacity") == NEGATIVE else set())
    missing = {f for f in wording.routine if stances.get(f) is Stance.ABSENT} - ruled_out
    while missing:
        fits = [(len(missing & set(fs)), -i, s, fs) for i, (s, fs) in enumerate(wording.negatives)
                if set(fs) <= missing and _agrees(s, stances)]
        if not fits:
            break
        _, _, s, rules_out = max(fits)
        new.append((min(wording.order.get(f, 0.5) for f in rules_out), s))
        missing -= set(rules_out)
    body = _place(kept, new, wording.order)

    imp = _keep(impression, stances, prior)
    imp_said = _stated(" ".join(imp))
    lead = [wording.impression[f] for f, st in stances.items()
            if st is Stance.PRESENT and f in wording.impression and imp_said.get(f) != POSITIVE]
    lead += [wording.impression_hedged[f] for f, st in stances.items()
             if st is Stance.POSSIBLE and f in wording.impression_hedged and imp_said.get(f) != UNCERTAIN]
    imp = lead + imp
    if not imp and _all_clear(stances):  # otherwise the impression is the reader's: nothing was cleared
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
