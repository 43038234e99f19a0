"""Rule-based labeler: CheXpert observations (plus the NIH extras) from free-text chest X-ray reports.

Our own rules, written for IU X-ray / MIMIC style findings and impressions. A report is cut into
sentences and clauses so that a negation or a hedge never reaches across them; each observation has
one table of mention patterns; every mention is then read in its clause (uncertainty first, then
negation), and the report label is the strongest one found: POSITIVE > UNCERTAIN > NEGATIVE > None.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from xr.findings import FINDINGS

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
Label = int | None

# How strongly each label speaks for a finding when a report says several things about it.
_RANK = {POSITIVE: 3, UNCERTAIN: 2, NEGATIVE: 1}


def _words(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One word-bounded alternation, so a pattern never matches inside a longer word."""
    return re.compile(r"\b(?:" + "|".join(patterns) + r")\b")


def _rx(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """_words, or None for an empty table."""
    return _words(patterns) if patterns else None


@dataclass(frozen=True)
class Observation:
    """The mention table of one finding.

    mention: read in context (negated, hedged or positive). weak: a sign rather than the finding
    (blunted costophrenic angle), so at most UNCERTAIN. normal: a statement of normality that rules
    the finding out by itself ("heart size is normal"). ignore: look-alikes blanked out first
    ("pericardial effusion" is not a pleural effusion).
    """
    mention: tuple[str, ...]
    weak: tuple[str, ...] = ()
    normal: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    def compiled(self) -> tuple[re.Pattern[str] | None, ...]:
        return _rx(self.mention), _rx(self.weak), _rx(self.normal), _rx(self.ignore)


_W = r"(?:[\w'/-]+ )"  # one word and its space, for "up to n words" gaps
_NORMAL = r"(?:normal|within (?:normal )?limits(?: of normal)?|unremarkable)"
_HEART = r"(?:heart|cardiac)"
_MEDIASTINUM = r"(?:cardio ?mediastin\w*|mediastin\w*)"

# Mention patterns per observation. "No Finding" has none: it is derived from all the others.
OBSERVATIONS: dict[str, Observation] = {
    "Enlarged Cardiomediastinum": Observation(
        mention=(
            rf"(?:widen\w*|enlarge\w*|prominen\w*|fullness) {_W}{{0,3}}{_MEDIASTINUM}",
            rf"{_MEDIASTINUM} {_W}{{0,4}}(?:widen\w*|wide|enlarged|enlargement|prominen\w*)",
            r"mediastinal (?:lymph)?adenopathy",
            r"(?:widen\w*|enlarge\w*|prominen\w*|fullness) (?:of |adjacent to )?(?:the )?(?:right )?"
            r"paratracheal",
            rf"paratracheal {_W}{{0,2}}(?:widen\w*|prominen\w*|fullness)",
        ),
        normal=(
            rf"{_MEDIASTINUM}[^,]*? {_NORMAL}",
            rf"normal {_W}{{0,4}}{_MEDIASTINUM}",
        ),
    ),
    "Cardiomegaly": Observation(
        mention=(
            r"cardiomegaly",
            rf"{_HEART} {_W}{{0,4}}(?:enlarged|enlargement|large|increased in size)",
            rf"(?:enlarged|enlargement of the|large|increased) {_HEART}",
            rf"increase\w* in (?:the )?(?:size of the )?{_HEART}",
            r"cardiac enlargement",
        ),
        weak=(rf"{_HEART} {_W}{{0,4}}borderline", r"borderline (?:heart size|cardiac size)"),
        normal=(
            rf"(?:{_HEART}|cardio ?mediastinal)[^,]*? {_NORMAL}",
            rf"normal {_W}{{0,4}}(?:{_HEART}|cardio ?mediastinal)",
        ),
    ),
    "Lung Opacity": Observation(
        mention=(
            r"opacit\w*", r"opacif\w*", r"infiltrat\w*", r"streak\w*", r"air ?space (?:disease|process)",
            r"densit(?:y|ies)", r"haz(?:e|y|iness)", r"ground[- ]glass",
            rf"(?:increased|prominent|coarse\w*|accentuated|irregular) {_W}{{0,2}}markings?",
            r"interstitial (?:markings?|prominence|pattern|lung disease|disease|process)",
            r"reticul\w*",
        ),
        normal=(
            rf"lungs? {_W}{{0,3}}clear", r"clear lungs?",
        ),
        ignore=(
            r"(?:bone|bony|osseous|sclerotic|calcif\w*|nipple|breast) densit(?:y|ies)",
        ),
    ),
    "Lung Lesion": Observation(
        mention=(
            r"nodul\w*", r"mass(?:es)?", r"mass-?like", r"lesions?", r"tumou?rs?", r"neoplas\w*",
            r"malignan\w*", r"carcinoma", r"cancer", r"metasta\w*", r"cavitary", r"cavitation",
        ),
        ignore=(
            r"mass effect", r"(?:bone|bony|osseous|lytic|sclerotic|blastic|skin|cutaneous) lesions?",
            r"soft tissue mass(?:es)?", r"reticul\w*[- ]?nodul\w*",
            rf"metasta\w* {_W}{{0,2}}(?:to|of|in) the (?:bone|bones|spine|skeleton)",
        ),
    ),
    "Edema": Observation(
        mention=(
            r"edema", r"(?:vascular|venous) (?:congestion|engorgement|prominence)", r"congest\w*",
            r"prominen\w* (?:of )?(?:the )?(?:central )?(?:pulmonary )?(?:vasculature|vascularity)",
            rf"(?:vasculature|vascularity) {_W}{{0,2}}(?:prominent|increased|accentuated)",
            r"(?:heart|cardiac) failure", r"chf", r"fluid overload", r"engorged", r"cephalization",
        ),
        ignore=(r"(?:soft tissue|laryngeal|subcutaneous) edema",),
    ),
    "Consolidation": Observation(mention=(r"consolidat\w*",)),
    "Pneumonia": Observation(
        mention=(r"pneumonia", r"pneumonitis", r"bronchopneumonia", r"infectio\w*"),
        ignore=(rf"(?:granulomatous|prior|previous|old|tuberculous) {_W}{{0,2}}infectio\w*",),
    ),
    "Atelectasis": Observation(
        mention=(r"atelecta\w*", r"collapse[sd]?"),
        ignore=(rf"(?:vertebra\w*|vertebral body|spine|spinal) {_W}{{0,2}}collapse[sd]?",),
    ),
    "Pneumothorax": Observation(mention=(r"(?:hydro|hemo)?pneumothora\w*", r"pleural air")),
    "Pleural Effusion": Observation(
        mention=(r"effusions?", r"pleural fluid", r"hydrothorax", r"hydropneumothora\w*"),
        weak=(
            rf"blunt\w* {_W}{{0,5}}costophrenic", rf"costophrenic {_W}{{0,4}}blunt\w*",
        ),
        ignore=(r"pericardial effusions?",),
    ),
    "Pleural Other": Observation(
        mention=(
            rf"pleural {_W}{{0,2}}(?:thickening|plaques?|scar\w*|calcification\w*|fibrosis)",
            r"thickening of the pleura\w*", r"apical (?:pleural )?cap\w*",
            r"pleural[- ]parenchymal (?:scar\w*|thickening|irregularit\w*)",
            r"fissur\w* thickening", rf"thickening of the {_W}{{0,2}}fissures?", rf"thickened {_W}{{0,2}}fissures?",
            r"fibrothorax",
        ),
    ),
    "Fracture": Observation(
        mention=(r"fractur\w*", r"fx"),
        ignore=(r"(?:catheter|line|lead|wire) fractur\w*",),
    ),
    "Support Devices": Observation(
        mention=(
            r"catheters?", r"tubes?", r"picc", r"port(?:-?a-?cath)?", r"pacemakers?", r"pacers?",
            r"defibrillators?", r"aicd", r"icd",
            r"(?:pacing|pacemaker|pacer|cardiac|transvenous) (?:leads?|wires?)",
            r"(?:central|venous|arterial|dialysis|picc|subclavian|jugular|ij) lines?", r"stents?",
            r"sternotomy", r"sternal wires?", r"clips?", r"staples?", r"hardware",
            r"prosthe\w*", r"arthroplast\w*", r"valve replacement", r"internal fixation", r"shunt",
            r"(?:neuro)?stimulator", r"occluder", r"generator", r"leads", r"surgical (?:xxxx|material)",
            r"xxxx-a-xxxx", r"(?:with|its) tips?",
            r"tips? (?:\w+ ){0,2}?(?:in|at|over|projecting|projects|terminat\w*|overl\w*|approximating|near|within)",
            r"(?:surgical|metallic|fixation|fusion) (?:plates?|rods?|screws?)", r"screws?", r"rods?",
            r"coils?", r"filter", r"drains?", r"tracheostomy", r"devices?", r"electrodes?", r"anchors?",
            r"loop recorder", r"(?:monitor\w*|ekg|ecg) leads?",
        ),
        ignore=(r"breast (?:prosthe\w*|implants?)",),
    ),
    "Emphysema": Observation(
        mention=(r"emphysema\w*", r"bullae", r"bullous"),
        ignore=(r"(?:subcutaneous|soft tissue|surgical) emphysema",),
    ),
    "Fibrosis": Observation(
        mention=(r"fibros\w*", r"fibrotic", r"honeycomb\w*"),
        ignore=(r"cystic fibrosis", r"pleural fibrosis"),
    ),
    "Hernia": Observation(mention=(r"hernia\w*",)),
}

# Context cues, read inside one clause.
_UNCERTAIN_BEFORE = _rx((
    r"may", r"maybe", r"might", r"could", r"possibl[ey]", r"possibility", r"probabl[ey]", r"likely",
    r"suggest\w*", r"concern\w* for", r"question\w*", r"suspicious for", r"suspect\w*", r"worrisome for",
    r"borderline", r"equivocal", r"presumed", r"perhaps", r"potential", r"differential", r"consider",
    r"unclear", r"uncertain", r"favou?r\w*", r"rule[- ]out", r"r/o", rf"correlat\w* {_W}{{0,2}}for",
    r"(?<!further )evaluat(?:e|ion) (?:of|for)",
))
_UNCERTAIN_AFTER = _rx((
    r"(?:is|are) (?:\w+ )?(?:suspected|possible|questioned|questionable|likely|favored)",
    r"could be present", r"may be present", r"(?:is|are) (?:\w+ )?consider\w*", r"consideration",
    r"(?:is|are) in the differential",
))
# Hedges that are themselves built from negation words: found first, and hidden from the negation cues.
_UNCERTAIN_EITHER = _rx((
    r"(?:cannot|can not|could not|not) (?:be )?(?:entirely |completely |definitely )?"
    r"(?:excluded|exclude|ruled out|rule out)",
    r"difficult to exclude",
))
# "X versus Y" doubts both, but only the X right before it: in "opacity representing atelectasis versus
# scarring" the opacity itself is certain.
_VERSUS = _rx((r"versus", r"vs"))
# Hedges a preceding negation overrides: "no opacity to suggest pneumonia" says there is no pneumonia.
_NEGATABLE_HEDGE = re.compile(r"suggest|concern|suspicious|worrisome")
_NEGATION_BEFORE = _rx((
    r"no", r"without", r"negative for", r"free of", r"clear(?: of)?", r"absence of", r"absent",
    r"resolution of", r"resolved", r"clearing of", r"removal of", r"nor", r"neither",
))
# "not" negates the next few words only: in "densities not seen before, healed rib fracture" the
# fracture stands.
_NEGATION_NEAR = _rx((r"not",))
_NEGATION_AFTER = _rx((
    r"(?:not|no longer) (?:[\w-]+ ){0,2}?(?:well-)?(?:seen|identified|visuali[sz]ed|present|demonstrated|"
    r"appreciated|evident|noted|visible|detected|apparent|shown)",
    r"(?:has|have) (?:\w+ )?resolved", r"resolved", r"cleared", r"absent", r"removed",
    r"within (?:normal )?limits(?: of normal)?",
))
# Negation words that negate nothing: "no change in the nodule" still reports the nodule.
_PSEUDO_NEGATION = _rx((
    r"(?:no|without) (?:significant |interval |appreciable |substantial |significant interval )?change",
    r"not (?:significantly |substantially )?(?:changed|different)", r"not only",
    r"(?:almost|nearly|partially|incompletely) (?:completely )?resolv\w*",
))
# Words that end the reach of a negation inside a clause ("consistent with" does not).
_SCOPE_BREAK = _rx((r"(?<!consistent )(?<!compatible )with", r"which", r"there (?:is|are)", r"and there"))
# Hedges reach further: "may represent atelectasis with superimposed pneumonia" doubts both.
_HEDGE_BREAK = _rx((r"there (?:is|are)", r"and there"))
# A cue after the mention must follow closely: a comma starts another list item.
_POST_BREAK = re.compile(r",")

# A full stop ends a sentence, except in decimals ("1.5 cm") and after "vs".
_SENTENCE = re.compile(r"(?<!\d)(?<!\bvs)\.(?!\d)|[\n!?]")
_CLAUSE = _words((
    r"but", r"however", r"although", r"though", r"except", r"whereas", r"aside from", r"apart from",
    r"other than", r"nevertheless", r"nonetheless",
))
_CLAUSE_PUNCT = re.compile(r";")


def clauses(text: str) -> list[str]:
    """Lowercased clauses: cues must not cross a sentence or a contrast ("no effusion, but ...")."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text.lower()):
        for part in _CLAUSE_PUNCT.split(_CLAUSE.sub(";", sentence)):
            part = " ".join(part.split())
            if part:
                out.append(part)
    return out


Span = tuple[int, int]


def _spans(rx: re.Pattern[str] | None, text: str) -> list[Span]:
    return [m.span() for m in rx.finditer(text)] if rx else []


def _blank(text: str, spans: list[Span]) -> str:
    """Hide spans without moving offsets."""
    chars = list(text)
    for a, b in spans:
        chars[a:b] = " " * (b - a)
    return "".join(chars)


@dataclass(frozen=True)
class _Cues:
    """Every context cue of one clause, with its offsets."""
    hedge_before: list[Span]
    hedge_after: list[Span]
    versus: list[Span]
    negation_before: list[Span]
    negation_near: list[Span]
    negation_after: list[Span]
    breaks: list[Span]
    hedge_breaks: list[Span]
    post_breaks: list[Span]

    @classmethod
    def of(cls, clause: str) -> _Cues:
        either = _spans(_UNCERTAIN_EITHER, clause)
        versus = _spans(_VERSUS, clause)
        masked = _blank(clause, either + _spans(_PSEUDO_NEGATION, clause))
        return cls(
            hedge_before=_spans(_UNCERTAIN_BEFORE, clause) + either + versus,
            hedge_after=_spans(_UNCERTAIN_AFTER, clause) + either,
            versus=versus,
            negation_before=_spans(_NEGATION_BEFORE, masked),
            negation_near=_spans(_NEGATION_NEAR, masked),
            negation_after=_spans(_NEGATION_AFTER, masked),
            breaks=_spans(_SCOPE_BREAK, clause),
            hedge_breaks=_spans(_HEDGE_BREAK, clause),
            post_breaks=_spans(_SCOPE_BREAK, clause) + _spans(_POST_BREAK, clause),
        )

    def classify(self, clause: str, span: Span) -> int:
        """Hedges win over negation ("cannot be excluded"), except a hedge inside a negation's reach."""
        start, end = span
        left = max((b for _, b in self.breaks if b <= start), default=0)
        hedge_left = max((b for _, b in self.hedge_breaks if b <= start), default=0)
        right = min((a for a, _ in self.post_breaks if a >= end), default=len(clause))
        hedges = [s for s in self.hedge_before if hedge_left <= s[0] < end]
        hedges += [s for s in self.hedge_after if end <= s[0] < right]
        hedges += [s for s in self.versus if s[0] >= end and _near(clause, end, s[0], 2)]
        negations = [s for s in self.negation_before if left <= s[0] < end]
        negations += [s for s in self.negation_near
                      if start <= s[0] < end or (left <= s[0] < start and _near(clause, s[1], start, 3))]
        negations += [s for s in self.negation_after if end <= s[0] < right]
        if hedges and not _negated_hedges(clause, hedges, negations):
            return UNCERTAIN
        return NEGATIVE if negations else POSITIVE


def _near(text: str, a: int, b: int, words: int) -> bool:
    """At most `words` words between offsets a and b."""
    return len(text[a:b].split()) <= words


def _negated_hedges(clause: str, hedges: list[Span], negations: list[Span]) -> bool:
    """True when every hedge is one a negation can override, and a negation comes first."""
    first = min(a for a, _ in hedges)
    return (all(_NEGATABLE_HEDGE.search(clause[a:b]) for a, b in hedges)
            and any(a < first for a, _ in negations))


_COMPILED = {name: obs.compiled() for name, obs in OBSERVATIONS.items()}


def _clause_labels(clause: str, cues: _Cues) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for name, (mention, weak, normal, ignore) in _COMPILED.items():
        text = _blank(clause, _spans(ignore, clause))
        labels = [cues.classify(text, s) for s in _spans(mention, text)]
        labels += [min(cues.classify(text, s), UNCERTAIN, key=_RANK.__getitem__) for s in _spans(weak, text)]
        labels += [NEGATIVE for _ in _spans(normal, text)]
        if labels:
            found[name] = labels
    return found


def _strongest(labels: list[int]) -> Label:
    return max(labels, key=_RANK.__getitem__) if labels else None


def label_report(text: str) -> dict[str, Label]:
    """Every name in FINDINGS, in order: POSITIVE, NEGATIVE, UNCERTAIN, or None when not mentioned."""
    collected: dict[str, list[int]] = {name: [] for name in OBSERVATIONS}
    for clause in clauses(text):
        for name, labels in _clause_labels(clause, _Cues.of(clause)).items():
            collected[name] += labels
    out: dict[str, Label] = {name: _strongest(collected.get(name, [])) for name in FINDINGS}
    out["No Finding"] = _no_finding(out)
    return out


def _no_finding(labels: dict[str, Label]) -> Label:
    """CheXpert's rule: nothing but support devices is positive or uncertain. The NIH extras count."""
    findings = (v for k, v in labels.items() if k not in ("No Finding", "Support Devices"))
    return None if any(v in (POSITIVE, UNCERTAIN) for v in findings) else POSITIVE


def label_reports(texts: list[str]) -> list[dict[str, Label]]:
    return [label_report(t) for t in texts]


def positives(labels: dict[str, Label]) -> list[str]:
    return [name for name in FINDINGS if labels.get(name) == POSITIVE]
