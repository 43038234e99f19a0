"""The site's words for each finding, read off its training reports with the labeler: the sentence that
states it, the hedged one, the routine negatives ("No pneumothorax or pleural effusion."), where in the
findings each finding is usually written, and the impression's phrases. The faithful writer
(xr.decode.faithful) uses them to make a draft say exactly what the finding prompt says.

A sentence is taken from the reports only when the site used it at least `MIN_USES` times, states one
finding and nothing else, and carries no comparison ("stable", "again") or de-identification mark
(XXXX); otherwise the finding's own short template below, which the tests read back with the labeler.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from xr.evaluate.labeler import NEGATIVE, POSITIVE, UNCERTAIN, label_report
from xr.files import write_atomic
from xr.findings import FINDINGS
from xr.report import sentences

FILE = "wording.json"
MIN_USES = 4
MAX_WORDS = 12
ROUTINE_SHARE = 0.25  # a finding whose absence at least this share of normal-for-it reports state is a routine negative

# A noun phrase per finding: "There is {phrase}." states it; "{Phrase} cannot be excluded." hedges it.
PHRASES = {
    "Enlarged Cardiomediastinum": "enlargement of the cardiomediastinal silhouette",
    "Cardiomegaly": "mild cardiomegaly",
    "Lung Opacity": "a focal airspace opacity",
    "Lung Lesion": "a pulmonary nodule",
    "Edema": "mild pulmonary edema",
    "Consolidation": "focal consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "subsegmental atelectasis",
    "Pneumothorax": "a small pneumothorax",
    "Pleural Effusion": "a small pleural effusion",
    "Pleural Other": "pleural thickening",
    "Fracture": "a rib fracture",
    "Support Devices": "a support device in place",
    "Emphysema": "emphysema",
    "Fibrosis": "pulmonary fibrosis",
    "Hernia": "a hiatal hernia",
}
# Findings of the lung itself: a draft that states one of them may not also say the lungs are clear.
PARENCHYMA = frozenset({"Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
                        "Emphysema", "Fibrosis"})
# Words that compare with an earlier study: a draft without a prior may not use them.
COMPARISON = re.compile(r"\b(?:stable|unchanged|again|prior|previous\w*|compar\w*|redemonstrat\w*|interval|persist\w*|"
                        r"increas\w*|decreas\w*|new|newly|improv\w*|wors\w*|resolv\w*|since|now|remain\w*)\b", re.I)
_DEIDENTIFIED = re.compile(r"\bxxxx\b", re.I)
# Where: a draft written from finding probabilities does not know the side or the lobe.
_PLACE = re.compile(r"\b(?:right|left|bilateral\w*|both|lobes?|lingula\w*|ap(?:ex|ices|ical)|bases?|basilar|bibasilar|"
                    r"upper|lower|middle|mid|hilar|perihilar|retrocardiac)\b", re.I)
NORMAL_IMPRESSION = "No acute cardiopulmonary abnormality."


def sentence_labels(sentence: str) -> dict[str, int]:
    """What one sentence says of each finding (labeler POSITIVE / UNCERTAIN / NEGATIVE), No Finding left out."""
    return {f: v for f, v in label_report(sentence).items() if v is not None and f != "No Finding"}


def stated_template(finding: str) -> str:
    phrase = PHRASES[finding]
    return f"There is {phrase}."


def hedged_impression(finding: str) -> str:
    """"Possible small pleural effusion.": the impression's hedge, not the findings' sentence again."""
    phrase = re.sub(r"^(?:a|an) ", "", PHRASES[finding])
    return f"Possible {phrase}."


def hedged_template(finding: str) -> str:
    if finding == "Support Devices":  # a device is seen or not; "cannot be excluded" would read oddly
        return "Possible support device."
    phrase = PHRASES[finding]
    return f"{phrase[0].upper()}{phrase[1:]} cannot be excluded."


def _usable(sentence: str) -> bool:
    return len(sentence.split()) <= MAX_WORDS and not COMPARISON.search(sentence) and not _DEIDENTIFIED.search(sentence) \
        and not _PLACE.search(sentence) \
        and sentence.endswith(".") \
        and not sentence.endswith("..") and not sentence[0].isdigit()


@dataclass
class Wording:
    stated: dict[str, str]  # finding -> the sentence that states it
    hedged: dict[str, str]  # finding -> the sentence that hedges it
    impression: dict[str, str]  # finding -> the impression's sentence for it
    impression_hedged: dict[str, str]  # finding -> the impression's hedge ("Possible small pleural effusion.")
    negatives: list[tuple[str, list[str]]]  # routine negative sentences, most used first, with the findings each rules out
    routine: list[str]  # findings whose absence the site's reports usually state
    order: dict[str, float]  # finding -> mean position of its sentences in the findings (0 first, 1 last)
    normal_impression: str = NORMAL_IMPRESSION

    @classmethod
    def build(cls, findings_texts: list[str], impressions: list[str]) -> Wording:
        uses: Counter[str] = Counter()
        positions: dict[str, list[float]] = defaultdict(list)
        negated: Counter[str] = Counter()
        mentioned_positive: Counter[str] = Counter()
        labels_of: dict[str, dict[str, int]] = {}
        for text in findings_texts:
            sents = sentences(text)
            said: dict[str, set[int]] = defaultdict(set)
            for i, s in enumerate(sents):
                uses[s] += 1
                lab = labels_of.setdefault(s, sentence_labels(s))
                for f, v in lab.items():
                    positions[f].append(i / max(len(sents) - 1, 1))
                    said[f].add(v)
            for f, vs in said.items():
                if POSITIVE in vs or UNCERTAIN in vs:
                    mentioned_positive[f] += 1
                elif NEGATIVE in vs:
                    negated[f] += 1
        n = len(findings_texts)

        def best(pool: Counter[str], want: int, finding: str) -> str | None:
            ok = [(c, -len(s), s) for s, c in pool.items()
                  if c >= MIN_USES and _usable(s) and sentence_labels(s) == {finding: want}]
            return max(ok)[2] if ok else None

        stated = {f: best(uses, POSITIVE, f) or stated_template(f) for f in PHRASES}
        imp_uses = Counter(s for t in impressions for s in sentences(t))
        impression = {f: best(imp_uses, POSITIVE, f) or f"{PHRASES[f][0].upper()}{PHRASES[f][1:]}." for f in PHRASES}
        routine = [f for f in FINDINGS if f in PHRASES and negated[f] >= ROUTINE_SHARE * max(n - mentioned_positive[f], 1)]
        negatives = []
        for s, c in uses.most_common():
            lab = labels_of[s]
            if c >= MIN_USES and _usable(s) and lab and set(lab.values()) == {NEGATIVE}:
                negatives.append((s, sorted(lab, key=FINDINGS.index)))
        order = {f: float(sum(positions[f]) / len(positions[f])) if positions[f] else 0.5 for f in PHRASES}
        normal = [s for s, c in imp_uses.most_common(20) if _usable(s) and not sentence_labels(s)]
        return cls(stated, {f: hedged_template(f) for f in PHRASES}, impression, {f: hedged_impression(f) for f in PHRASES},
                   negatives, routine, order,
                   normal[0] if normal else NORMAL_IMPRESSION)

    def save(self, directory: Path) -> None:
        write_atomic(Path(directory) / FILE, (json.dumps(asdict(self), indent=1) + "\n").encode())

    @classmethod
    def load(cls, directory: Path) -> Wording:
        d = json.loads((Path(directory) / FILE).read_text())
        d["negatives"] = [(s, list(fs)) for s, fs in d["negatives"]]
        return cls(**d)
