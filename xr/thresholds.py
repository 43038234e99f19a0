"""The statement policy: from a finding's probability to what a draft says of it, one of four stances.

- *present*: stated, only where statements from that probability up were right at least `PRESENT_PRECISION`
  of the time (`CRITICAL_PRECISION` for the critical findings) on films the model did not fit;
- *possible*: hedged ("cannot be excluded"), where they were right at least `POSSIBLE_PRECISION` of the time;
- *absent*: the site's routine negative, only where the model reads the finding (its AUC interval excludes
  chance) and the films below the cut were free of it at least `ABSENT_NPV` of the time;
- *not assessed*: everything else. The draft says nothing of it and the panel asks the reader to check: a
  model that cannot see a finding never denies it.

The cuts are chosen per finding on out-of-fold predictions (`choose`), kept beside the model with the
precision behind each, and a finding with no cut is not assessed.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from xr.files import write_atomic


class Stance(StrEnum):
    PRESENT = "present"
    POSSIBLE = "possible"
    ABSENT = "absent"
    NOT_ASSESSED = "not assessed"


PRESENT_PRECISION = 0.8
CRITICAL_PRECISION = 0.9
POSSIBLE_PRECISION = 0.4
ABSENT_NPV = 0.98
CRITICAL = frozenset({"Pneumothorax"})  # a false statement starts treatment: stated only at the higher floor
MIN_SAID = 10  # a precision is trusted only from this many out-of-fold statements (or negatives) on
NEVER = 1.01  # a cut no probability reaches
FILE = "thresholds.json"


@dataclass(frozen=True)
class Cut:
    possible: float = NEVER  # at or above: possible
    present: float = NEVER  # at or above: present (possible <= present)
    absent: float = 0.0  # below: absent (0: never)


def floor_of(finding: str) -> float:
    return CRITICAL_PRECISION if finding in CRITICAL else PRESENT_PRECISION


@dataclass
class Thresholds:
    cuts: dict[str, Cut] = field(default_factory=dict)
    chosen_on: str = "not chosen: no finding is assessed"
    evidence: dict[str, dict] = field(default_factory=dict)  # finding -> the out-of-fold figures behind its cut

    def stance(self, finding: str, p: float) -> Stance:
        cut = self.cuts.get(finding)
        if cut is None:
            return Stance.NOT_ASSESSED
        if p >= cut.present:
            return Stance.PRESENT
        if p >= cut.possible:
            return Stance.POSSIBLE
        return Stance.ABSENT if p < cut.absent else Stance.NOT_ASSESSED

    def stances(self, probabilities: dict[str, float]) -> dict[str, Stance]:
        return {f: self.stance(f, p) for f, p in probabilities.items() if f != "No Finding"}

    def describe(self, finding: str) -> str:
        """The cut behind a stance, as the panel shows it ("present ≥ 0.62, absent < 0.04")."""
        cut = self.cuts.get(finding)
        if cut is None or cut == Cut():
            return "no cut: not told from chance"
        parts = []
        if cut.present < NEVER:
            parts.append(f"present ≥ {cut.present:.2f}")
        if cut.possible < cut.present:
            parts.append(f"possible ≥ {cut.possible:.2f}")
        if cut.absent > 0:
            parts.append(f"absent < {cut.absent:.4g}")
        return ", ".join(parts)

    @classmethod
    def uniform(cls, at: float, findings, chosen_on: str) -> Thresholds:
        """Present from `at`, absent below it, for every finding: for labels that are already 0 or 1."""
        return cls({f: Cut(at, at, at) for f in findings}, chosen_on)

    def save(self, directory: Path) -> None:
        write_atomic(Path(directory) / FILE, (json.dumps(
            {"chosen_on": self.chosen_on, "cuts": {f: asdict(c) for f, c in self.cuts.items()},
             "evidence": self.evidence}, indent=2) + "\n").encode())

    @classmethod
    def load(cls, directory: Path) -> Thresholds:
        """The folder's thresholds.json; where there is none (a user's own model), nothing is assessed."""
        path = Path(directory) / FILE
        if not path.is_file():
            return cls()
        d = json.loads(path.read_text())
        return cls({f: Cut(**c) for f, c in d["cuts"].items()}, d["chosen_on"], d.get("evidence", {}))


# ---- choosing the cuts on predictions the model did not fit ------------------------------------------
# A precision depends on how common the finding is: statements that are right 40 % of the time among films
# enriched for pneumonia are right far less often where pneumonia is rare. So each floor must hold at the
# films' own prevalence and at every reference prevalence given (the population they were drawn from),
# the share being moved to another prevalence by Bayes' rule on the same sensitivity and specificity.
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n: honest where n is a few dozen."""
    if n == 0:
        return 0.0, 1.0
    q = k / n
    centre, half = (q + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(q * (1 - q) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def at_prevalence(share: float, observed: float, reference: float, positive: bool) -> float:
    """A precision (`positive`) or a negative predictive value measured where the finding's prevalence is
    `observed`, as it would be where it is `reference`."""
    if share in (0.0, 1.0) or observed in (0.0, 1.0):
        return share
    a, b = reference / observed, (1 - reference) / (1 - observed)
    w_right, w_wrong = (a, b) if positive else (b, a)
    return share * w_right / (share * w_right + (1 - share) * w_wrong)


def _worst(share: float, observed: float, references: tuple[float, ...], positive: bool) -> float:
    return min([share] + [at_prevalence(share, observed, r, positive) for r in references])


def _top_cut(y: np.ndarray, p: np.ndarray, floor: float, references: tuple[float, ...]) -> float:
    """The lowest cut t such that the statements p >= t, and those from every higher cut with at least
    MIN_SAID of them, are right at least `floor` of the time at every prevalence (from the top down,
    stopping at the first miss: a cut that only clears the floor below a band that misses it is not taken)."""
    order = np.argsort(-p, kind="stable")
    ps, right, prevalence = p[order], np.cumsum(y[order]), y.mean()
    best = NEVER
    for i in range(len(ps)):
        if i + 1 < len(ps) and ps[i + 1] == ps[i]:
            continue  # a cut falls between distinct values only
        if i + 1 >= MIN_SAID:
            if _worst(right[i] / (i + 1), prevalence, references, True) < floor:
                break
            best = float(np.ceil(ps[i] * 1e4) / 1e4)  # rounded up: no film below the band it was measured on
    return best


def _bottom_cut(y: np.ndarray, p: np.ndarray, references: tuple[float, ...], ceiling: float) -> float:
    """The highest cut t <= ceiling such that the films p < t, and those below every lower cut with at
    least MIN_SAID of them, are free of the finding at least ABSENT_NPV of the time, and at least as much
    more often than a film picked blindly (a miss rate at most half the prevalence), at every prevalence."""
    order = np.argsort(p, kind="stable")
    ps, missed, prevalence = p[order], np.cumsum(y[order]), y.mean()
    best = 0.0
    for i in range(len(ps) - 1):
        if ps[i + 1] == ps[i]:
            continue
        cut = float(np.floor(ps[i + 1] * 1e4) / 1e4)  # rounded down: no film above the band it was measured on
        if cut > ceiling:
            break
        if i + 1 >= MIN_SAID:
            npv = 1 - missed[i] / (i + 1)
            if any(at_prevalence(npv, prevalence, r, False) < max(ABSENT_NPV, 1 - r / 2)
                   for r in (prevalence, *references)):
                break
            best = cut
    return best


def _band(y: np.ndarray, said: np.ndarray, references: tuple[float, ...], positive: bool) -> dict:
    """What a band of statements was worth: right/said, the share with its Wilson interval, and the share
    at the worst of the reference prevalences."""
    k, n = int((y if positive else ~y)[said].sum()), int(said.sum())
    if not n:
        return {"said": 0, "right": 0, "share": None, "ci95": None, "at_reference": None}
    lo, hi = wilson(k, n)
    prevalence = float(y.mean())
    return {"said": n, "right": k, "share": k / n, "ci95": (lo, hi),
            "at_reference": _worst(k / n, prevalence, references, positive)}


def choose(finding: str, y: np.ndarray, p: np.ndarray, auc_ci: tuple[float, float] | None,
           references: tuple[float, ...] = ()) -> tuple[Cut, dict]:
    """The cut of one finding from out-of-fold predictions `p` and labels `y`, and the figures behind it;
    `references`: other prevalences at which every floor must hold as well. Nothing is said of a finding
    whose AUC interval reaches chance (or is undefined)."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=float)
    evidence: dict = {"films": len(y), "positives": int(y.sum()), "auc_ci95": auc_ci, "floor": floor_of(finding),
                      "reference_prevalences": list(references)}
    if auc_ci is None or auc_ci[0] <= 0.5:
        return Cut(), evidence
    present = _top_cut(y, p, floor_of(finding), references)
    possible = min(_top_cut(y, p, POSSIBLE_PRECISION, references), present)
    absent = _bottom_cut(y, p, references, possible)
    cut = Cut(possible, present, absent)
    evidence |= {"present": _band(y, p >= cut.present, references, True),
                 "possible": _band(y, (p >= cut.possible) & (p < cut.present), references, True),
                 "absent": _band(y, p < cut.absent, references, False)}
    return cut, evidence


def choose_all(findings: list[str], y: np.ndarray, p: np.ndarray, auc_cis: dict[str, tuple[float, float] | None],
               chosen_on: str, references: dict[str, float] | None = None) -> Thresholds:
    """Every finding's cut (xr.thresholds.choose); `references`: finding -> a reference prevalence."""
    cuts, evidence = {}, {}
    for j, f in enumerate(findings):
        if f != "No Finding":
            ref = (references[f],) if references and f in references else ()
            cuts[f], evidence[f] = choose(f, y[:, j], p[:, j], auc_cis.get(f), ref)
    return Thresholds(cuts, chosen_on, evidence)
