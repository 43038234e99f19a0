"""`python -m xr eval`: score predictions (or a baseline) on a split, as one table that says what it
was measured on."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from xr.data.case import Case
from xr.errors import UserError
from xr.evaluate.clinical import clinical_scores
from xr.evaluate.nlg import METRICS, nlg_scores
from xr.jsonl import read_jsonl
from xr.normalize import normalize, placeholder_count


class EvalInputError(UserError):
    """Predictions or data we cannot score."""


@dataclass
class EvalResult:
    dataset: str
    split: str
    studies: int
    source: str  # predictions file name or "baseline:<name>"
    nlg: dict
    clinical: dict
    placeholders: int  # predictions containing an XXXX placeholder
    per_case: dict = field(repr=False)

    def to_json(self, per_case: bool = False) -> dict:
        d = asdict(self)
        if not per_case:
            d.pop("per_case")
        return d


def read_predictions(path: Path) -> dict[str, str]:
    preds: dict[str, str] = {}
    expected = "a JSON object with 'id' and 'report'"
    for n, item in read_jsonl(path, EvalInputError, expected):
        if "id" not in item or "report" not in item:
            raise EvalInputError(f"{Path(path).name} line {n}: expected {expected}")
        case_id, report = str(item["id"]), item["report"]
        if not isinstance(report, str):
            raise EvalInputError(f"{Path(path).name} line {n}: 'report' must be a string")
        if case_id in preds:
            raise EvalInputError(f"{Path(path).name} line {n}: id {case_id} appears twice")
        preds[case_id] = report
    return preds


def evaluate(dataset: str, split: str, cases: list[Case], preds: dict[str, str], source: str) -> EvalResult:
    by_id = {c.id: c for c in cases}
    unknown = sorted(set(preds) - set(by_id))
    if unknown:
        raise EvalInputError(f"{len(unknown)} predicted ids are not in the {split} split (first: {unknown[0]})")
    missing = sorted(set(by_id) - set(preds))
    if missing:
        raise EvalInputError(f"{len(missing)} of {len(by_id)} {split} studies have no prediction (first: {missing[0]})")
    ids = sorted(by_id)
    nlg, nlg_cases = nlg_scores({i: normalize(by_id[i].findings) for i in ids}, {i: normalize(preds[i]) for i in ids})
    clinical, ce_cases = clinical_scores({i: by_id[i].findings for i in ids}, {i: preds[i] for i in ids})
    per_case = {i: {**nlg_cases[i], **ce_cases[i], "prediction": preds[i], "reference": by_id[i].findings} for i in ids}
    return EvalResult(dataset, split, len(ids), source, nlg, clinical, placeholder_count(list(preds.values())), per_case)


def to_markdown(results: list[EvalResult]) -> str:
    """One row per result, all on the same split; NLG on normalised text, CE with the project labeler."""
    r0 = results[0]
    head = (f"{r0.dataset} `{r0.split}` split, {r0.studies} studies (references: FINDINGS section). "
            "NLG metrics: pycocoevalcap on R2Gen-normalised text. CE: project labeler, 14 CheXpert observations, "
            f"macro over observations with a positive reference ({r0.clinical['macro_over']}).\n\n")
    cols = list(METRICS) + ["CE-P (micro)", "CE-R (micro)", "CE-F1 (micro)", "CE-F1 (macro)"]
    lines = ["| source | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in results:
        vals = [("n/a" if r.nlg[m] is None else f"{r.nlg[m]:.3f}") for m in METRICS]
        mi, ma = r.clinical["micro"], r.clinical["macro"]
        vals += [f"{mi['precision']:.3f}", f"{mi['recall']:.3f}", f"{mi['f1']:.3f}", f"{ma['f1']:.3f}"]
        lines.append(f"| {r.source} | " + " | ".join(vals) + " |")
    notes = [f"- {r.source}: {r.placeholders} predictions contain an XXXX placeholder." for r in results if r.placeholders]
    if any(r.nlg["METEOR"] is None for r in results):
        notes.append("- METEOR n/a: no Java runtime found (install default-jre-headless).")
    return head + "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
