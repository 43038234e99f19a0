"""`python -m xr eval`, `eval-findings` and `eval-generator`: the models measured on a dataset."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xr.commands.common import vision_encoder
from xr.errors import UserError


def cmd_eval(args: argparse.Namespace) -> int:
    from xr.data.layouts import load_cases
    from xr.evaluate.baselines import baseline_predictions
    from xr.evaluate.run import EvalInputError, evaluate, read_predictions, to_markdown

    if bool(args.predictions) == bool(args.baseline):
        raise EvalInputError("give either --predictions PRED.jsonl or --baseline NAME")
    try:
        dataset, cases = load_cases(Path(args.data), args.split)
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise EvalInputError(str(e).splitlines()[0]) from None
    if not cases:
        raise EvalInputError(f"no {args.split} studies in {args.data}")
    if args.predictions:
        preds, source = read_predictions(Path(args.predictions)), Path(args.predictions).name
    else:
        _, train = load_cases(Path(args.data), "train")
        preds, source = baseline_predictions(args.baseline, train, cases), f"baseline: {args.baseline}"
    result = evaluate(dataset, args.split, cases, preds, source)
    if args.per_case:
        with open(args.per_case, "w") as f:
            for case_id, scores in result.per_case.items():
                f.write(json.dumps({"id": case_id, **scores}) + "\n")
    print(json.dumps(result.to_json()) if args.json else to_markdown([result]))
    return 0


def cmd_eval_findings(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.encode.finding_head import FindingHead
    from xr.train.findings import evaluate_folder, format_markdown

    if not (Path(args.data) / "labels.csv").exists():
        raise UserError(f"{args.data}: no labels.csv (expected the NIH ChestX-ray14 layout: labels.csv + images/)")
    head = FindingHead.from_pretrained(Path(args.head or ASSETS / "finding_head"))
    result = evaluate_folder(Path(args.data), head, vision_encoder(), args.split,
                             progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result) if args.json else format_markdown(result))
    return 0


def evaluate_generator(directory: Path, data: Path, beam: int | None, threads: int, log) -> None:
    from xr.train.generator import evaluate_modes, write_evaluation

    results = evaluate_modes(directory=directory, root=data, beam=beam, threads=threads, log=log)
    write_evaluation(results, directory, beam)
    print((directory / "EVAL.md").read_text())


def cmd_eval_generator(args: argparse.Namespace) -> int:
    from xr.config import ASSETS

    evaluate_generator(Path(args.dir or ASSETS / "dffg"), Path(args.data), args.beam, args.threads,
                        lambda m: print(m, file=sys.stderr))
    return 0


def register(sub) -> None:
    v = sub.add_parser("eval", help="score predictions or a baseline on a split (BLEU, METEOR, ROUGE-L, CIDEr, CE)")
    v.add_argument("--data", required=True, help="IU X-ray folder (annotation.json [+ reports/]) or MIMIC-CXR-JPG root")
    v.add_argument("--split", default="val")
    v.add_argument("--predictions", help="JSONL with one {\"id\", \"report\"} per line")
    v.add_argument("--baseline", choices=("constant", "random", "nearest-text"))
    v.add_argument("--json", action="store_true")
    v.add_argument("--per-case", metavar="OUT.jsonl", help="also write per-case scores")
    v.set_defaults(fn=cmd_eval)

    ef = sub.add_parser("eval-findings", help="AUC, calibration and CTR check of the finding head on a labelled folder")
    ef.add_argument("--data", required=True, help="NIH ChestX-ray14 layout folder: labels.csv + images/")
    ef.add_argument("--split", choices=("val", "train", "all"), default="val",
                    help="val/train: the patient-disjoint parts used in training; all: every image (another dataset)")
    ef.add_argument("--head", default=None)
    ef.add_argument("--json", action="store_true")
    ef.set_defaults(fn=cmd_eval_findings)

    e = sub.add_parser("eval-generator", help="measure a trained generator on IU val (modes, ablation, floors); "
                                              "writes EVAL.md and EVAL.json beside its weights")
    e.add_argument("--data", required=True, help="IU X-ray folder (annotation.json, reports/, images)")
    e.add_argument("--dir", default=None, help="model folder (default assets/dffg)")
    e.add_argument("--beam", type=int, default=None, help="beam size (default: the model's generation_config.json)")
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(fn=cmd_eval_generator)
