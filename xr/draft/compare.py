"""The comparison with the same patient's prior study: for each finding the current draft states (present
or absent), what the prior said of it gives the change (xr.change): *new*, *unchanged* or *resolved*.
What the prior said is its signed report, read by our labeler, where it is signed (a radiologist's
word), else its draft's stances (the eye's reading of the prior films). A finding hedged or not assessed
now gets no change word, and without a prior there are no comparison words at all.

Measured on the NIH follow-up pairs (`python -m xr eval-comparison`, docs/evaluation.md)."""
from __future__ import annotations

from xr.change import Change, changes
from xr.evaluate.labeler import POSITIVE, UNCERTAIN, label_report
from xr.result import DraftResult
from xr.store import PriorStudy
from xr.thresholds import Stance


def had(prior: PriorStudy) -> dict[str, bool]:
    """Finding -> whether the prior had it: positive in its signed report (negative or not mentioned there:
    not had; uncertain: left out), else stated present by its draft (absent: not had; what its draft
    hedged or did not assess is left out)."""
    if prior.signed_text is not None:
        return {f: v == POSITIVE for f, v in label_report(prior.signed_text).items() if f != "No Finding" and v != UNCERTAIN}
    return {f: s == Stance.PRESENT for f, s in prior.stances.items() if s in (Stance.PRESENT, Stance.ABSENT)}


def _words(finding: str, change: Change) -> str:
    name = finding.lower()
    return f"new {name}" if change == Change.NEW else f"{name} {change.value}"


def sentence(prior: PriorStudy, found: dict[str, Change]) -> str:
    """'Compared with 3 May 2026: new pleural effusion; cardiomegaly unchanged.' ('' without a change)."""
    if not found:
        return ""
    when = f"{prior.day.day} {prior.day.strftime('%B %Y')}" if prior.day else f"the prior study (#{prior.study_id})"
    order = [Change.NEW, Change.UNCHANGED, Change.RESOLVED]
    parts = [_words(f, c) for f, c in sorted(found.items(), key=lambda fc: (order.index(fc[1]), fc[0]))]
    return f"Compared with {when}: {'; '.join(parts)}."


def compare(draft: DraftResult, prior: PriorStudy) -> dict[str, Change]:
    """The draft with its comparison sentence first in the findings (once: a sentence the radiologist
    unticks leaves the report), and a note naming the prior; returns the changes (empty: nothing said)."""
    found = changes(had(prior), draft.stances)
    said = sentence(prior, found)
    source = "its signed report" if prior.signed_text is not None else "its draft (not signed)"
    draft.notes.append(f"Compared with study #{prior.study_id}" + (f" of {prior.day.isoformat()}" if prior.day else "")
                       + f", as {source} reads" + ("" if said else ": no change to state"))
    if said:
        draft.findings_text = f"{said} {draft.findings_text}".strip()
    return found
