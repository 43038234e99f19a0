"""How far the rule-based labeler agrees with the IU X-ray MeSH tags, per observation.

The MeSH tags were assigned by people reading the same reports, so they are an independent (if noisy)
reference for the labeler: a labeler POSITIVE is compared with a MeSH-derived positive (after the
CheXpert No-Finding rule). Rules were tuned on the train split only; val is the held-out check.

    python -m xr.evaluate.mesh_agreement --split val
"""
from __future__ import annotations

import argparse
from pathlib import Path

from xr.config import settings
from xr.data.iu_xray import IUReport, load_reports, load_split
from xr.evaluate.labeler import POSITIVE, label_report
from xr.findings import FINDINGS, complete

IU = Path("data") / "iu_xray"


def report_text(report: IUReport) -> str:
    """Findings and impression: the annotation.json text is the findings alone."""
    return f"{report.findings} {report.impression}".strip()


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _kappa(tp: int, fp: int, fn: int, tn: int) -> float | None:
    """Cohen's kappa; None when chance agreement is total (both raters constant), where it is undefined."""
    n = tp + fp + fn + tn
    observed = (tp + tn) / n
    chance = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    return _ratio(observed - chance, 1 - chance)


def _scores(tp: int, fp: int, fn: int, tn: int) -> dict:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {"mesh": tp + fn, "labeler": tp + fp, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "agreement": (tp + tn) / (tp + fp + fn + tn), "precision": precision, "recall": recall,
            "f1": f1, "kappa": _kappa(tp, fp, fn, tn)}


def compare(pairs: list[tuple[set[str], set[str]]]) -> dict:
    """(MeSH positives, labeler positives) per study -> per-observation scores and micro/macro F1."""
    per_obs = {}
    for name in FINDINGS:
        tp = sum(name in m and name in lab for m, lab in pairs)
        fp = sum(name not in m and name in lab for m, lab in pairs)
        fn = sum(name in m and name not in lab for m, lab in pairs)
        per_obs[name] = _scores(tp, fp, fn, len(pairs) - tp - fp - fn)
    present = [n for n in FINDINGS if per_obs[n]["mesh"] > 0]
    tp, fp, fn = (sum(per_obs[n][k] for n in present) for k in ("tp", "fp", "fn"))
    return {
        "studies": len(pairs),
        "per_observation": per_obs,
        "micro_f1": _ratio(2 * tp, 2 * tp + fp + fn) or 0.0,
        "macro_f1": sum(per_obs[n]["f1"] or 0.0 for n in present) / len(present) if present else 0.0,
        "macro_over": len(present),
    }


def study_pairs(reports_dir: Path, annotation: Path, split: str) -> list[tuple[IUReport, set[str], set[str]]]:
    """(report, MeSH positives, labeler positives) for each study of the split, in study-id order."""
    reports, splits = load_reports(reports_dir), load_split(annotation)
    out = []
    for sid in sorted(s for s, sp in splits.items() if sp == split and s in reports):
        r = reports[sid]
        labels = label_report(report_text(r))
        out.append((r, set(complete(r.labels)), {n for n in FINDINGS if labels[n] == POSITIVE}))
    return out


def mesh_agreement(reports_dir: Path, annotation: Path, split: str = "val") -> dict:
    """Labeler POSITIVE vs MeSH-derived positive on one R2Gen split of IU X-ray."""
    pairs = study_pairs(reports_dir, annotation, split)
    if not pairs:
        raise ValueError(f"no IU X-ray studies in split {split!r}")
    return {"split": split, **compare([(m, lab) for _, m, lab in pairs])}


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def format_markdown(result: dict) -> str:
    head = (f"IU X-ray `{result['split']}` split, {result['studies']} studies: labeler POSITIVE (findings + "
            "impression) vs MeSH major terms mapped by `xr.findings.from_mesh` + `complete()`.\n\n")
    lines = ["| observation | MeSH + | labeler + | agreement | precision | recall | F1 | kappa |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in result["per_observation"].items():
        lines.append(f"| {name} | {s['mesh']} | {s['labeler']} | {_fmt(s['agreement'])} | {_fmt(s['precision'])} | "
                     f"{_fmt(s['recall'])} | {_fmt(s['f1'])} | {_fmt(s['kappa'])} |")
    foot = (f"\nMicro F1 {result['micro_f1']:.3f}, macro F1 {result['macro_f1']:.3f} over the "
            f"{result['macro_over']} observations with at least one MeSH positive.\n")
    return head + "\n".join(lines) + "\n" + foot


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", default="val", help="an R2Gen split name in annotation.json (train, val)")
    p.add_argument("--shared", type=Path, default=settings().shared_dir,
                   help="the public data folder (default: $XR_SHARED or ../shared beside the checkout)")
    args = p.parse_args(argv)
    base = args.shared / IU
    print(format_markdown(mesh_agreement(base / "reports", base / "annotation.json", args.split)))


if __name__ == "__main__":
    main()
