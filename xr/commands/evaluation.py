"""`python -m xr eval`, `eval-findings`, `eval-images` and `eval-generator`: the models measured on a dataset."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xr.commands.common import vision_encoder
from xr.errors import UserError

if TYPE_CHECKING:
    from xr.data.nih import NIHImage


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


def cmd_eval_comparison(args: argparse.Namespace) -> int:
    from safetensors.numpy import load_file

    from xr.config import ASSETS
    from xr.encode.batch import encode_files
    from xr.encode.finding_head import FindingHead
    from xr.evaluate.comparison import follow_up_pairs, measure
    from xr.train.findings import POLICY_DATA

    roots = [Path(d) for d in args.data]
    for root in roots:
        if not (root / "labels.csv").exists():
            raise UserError(f"{root}: no labels.csv (expected the NIH ChestX-ray14 layout: labels.csv + images/)")
    head_dir = Path(args.head or ASSETS / "finding_head")
    head = FindingHead.from_pretrained(head_dir)
    paths, pairs = follow_up_pairs(roots)
    if args.out_of_fold:  # the films the head was fit on: each read by a head that never saw its patient
        kept = load_file(str(head_dir / POLICY_DATA))
        if len(kept["labels"]) != len(paths):
            raise UserError(f"--out-of-fold: {head_dir / POLICY_DATA} holds {len(kept['labels'])} films, the folders "
                            f"{len(paths)}: give the folders the head was trained on, in that order")
        y, p = kept["labels"], kept["probabilities"]
    else:
        from xr.train.findings import examples, label_matrix

        p = head.probabilities(encode_files(vision_encoder(), paths))
        y = label_matrix(examples(roots), head.findings)
    result = measure(head.findings, y, p, head.thresholds, pairs)
    result["data"] = ", ".join(r.name for r in roots) + (" (out of fold)" if args.out_of_fold else "")
    print(json.dumps(result, indent=1))
    return 0


def _labelled_images(root: Path, split: str, limit: int | None) -> list[NIHImage]:
    """The NIH-layout folder's images of one part, checked before any model loads (a bad folder fails fast)."""
    from xr.data.nih import load_nih
    from xr.data.split import is_validation

    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    if not (root / "labels.csv").is_file():
        raise UserError(f"{root}: no labels.csv (expected the NIH ChestX-ray14 layout: labels.csv + images/)")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, not {limit}")
    try:
        images = load_nih(root)
    except (KeyError, ValueError, csv.Error) as e:  # UnicodeDecodeError is a ValueError
        raise UserError(f"{root / 'labels.csv'}: not a ChestX-ray14 label sheet ({str(e).splitlines()[0]})") from None
    # the patient-disjoint parts the finding head was trained and validated on (as eval-findings)
    images = [im for im in images if split == "all" or is_validation(f"nih:{im.patient_id}") == (split == "val")]
    images = images[:limit] if limit is not None else images
    if not images:
        raise UserError(f"no {split} images in {root.name}")
    missing = [im.image_id for im in images if not im.path.is_file()]
    if missing:
        raise UserError(f"{len(missing)} of the {len(images)} {split} images listed in labels.csv are not in "
                        f"{root.name}/images (first: {missing[0]})")
    return images


def cmd_eval_images(args: argparse.Namespace) -> int:
    """Draft every image with the app's own drafter and score what the reports state against the labels."""
    from tqdm import tqdm

    from xr.config import settings
    from xr.evaluate.images import score_images, score_statements, statements_markdown, to_markdown
    from xr.ingest import load_study
    from xr.workstation import Workstation

    roots = [Path(d) for d in args.data]
    images = [im for root in roots for im in _labelled_images(root, args.split, args.limit)][:args.limit]
    s = settings()
    # The drafter without this install's approvals (no index sync): the shipped models, measured reproducibly.
    drafter = Workstation(s).drafter
    if args.head:  # another finding head as the eye, e.g. the held-out one the val figures are of
        from xr.encode.finding_head import FindingHead
        drafter.eye = FindingHead.from_pretrained(Path(args.head))
    reports: list[str] = []
    probabilities: list[dict[str, float]] = []
    stances: list[dict[str, str]] = []
    versions: list[tuple[str, str]] = []
    eyes: list[str] = []
    for im in tqdm(images, desc="drafting images", unit="image", file=sys.stderr):
        # The shipped case library holds the NIH sample itself: the image may not retrieve its own labels.
        own = frozenset({f"nih:{im.image_id.removesuffix('.png')}"})
        try:
            result = drafter.draft(load_study([im.path], s), "", exclude=own)
        except UserError as e:  # an unreadable film: say which one
            raise UserError(f"{im.image_id}: {e}") from None
        reports.append(result.report)
        probabilities.append(result.findings)
        stances.append(result.stances)
        versions.append((result.model, result.model_version))
        eyes.append(str(result.timings.get("eye", "")))
    model, version = (" / ".join(dict.fromkeys(x)) for x in zip(*versions, strict=True))
    eye = " / ".join(dict.fromkeys(e for e in eyes if e))
    out = {"data": " + ".join(root.resolve().name for root in roots), "split": args.split,
           "drafter": {"model": model, "model_version": version, "eye": eye or None},
           **score_images([im.labels for im in images], reports, probabilities),
           "statements": score_statements([im.labels for im in images], stances)}
    print(json.dumps(out) if args.json else to_markdown(out) + "\n" + statements_markdown(out["statements"]),
          end="\n" if args.json else "")
    return 0


def evaluate_generator(directory: Path, data: Path, beam: int | None, threads: int, log, split: str = "val",
                       predictions_out: Path | None = None, as_json: bool = False) -> None:
    from xr.jsonl import write_jsonl
    from xr.train.generator import evaluate_modes, predictions, write_evaluation

    results = evaluate_modes(directory=directory, root=data, beam=beam, threads=threads, split=split, log=log)
    md = write_evaluation(results, directory, beam, split)
    if predictions_out is not None:
        write_jsonl(predictions_out, predictions(results))
        log(f"wrote {len(results['text/dynamic'].per_case)} drafts to {predictions_out}")
    print(json.dumps({k: r.to_json() for k, r in results.items()}) if as_json else md.read_text())


def cmd_eval_generator(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.data.layouts import load_cases

    data = Path(args.data)
    try:
        dataset, cases = load_cases(data, args.split)
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise UserError(str(e).splitlines()[0]) from None
    if not cases:
        raise UserError(f"{data}: no {args.split} studies in this {dataset} folder")
    out = Path(args.predictions_out) if args.predictions_out else None
    if out is not None and not out.parent.is_dir():
        raise UserError(f"--predictions-out: no folder {out.parent}")
    evaluate_generator(Path(args.dir or ASSETS / "dffg"), data, args.beam, args.threads,
                       lambda m: print(m, file=sys.stderr), args.split, out, args.json)
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
    ef.add_argument("--head", default=None, metavar="DIR",
                    help="finding head folder (default the shipped one, which was refit on every film of the shared "
                         "sample: its val part is measured with assets/finding_head/holdout)")
    ef.add_argument("--json", action="store_true")
    ef.set_defaults(fn=cmd_eval_findings)

    ei = sub.add_parser("eval-images", help="draft every image of a labelled NIH-layout folder with the default drafter "
                                            "and score the findings the reports state (P/R/F1 per finding, two floors)")
    ei.add_argument("--data", required=True, action="append",
                    help="NIH ChestX-ray14 layout folder: labels.csv + images/ (repeat for several)")
    ei.add_argument("--split", choices=("val", "train", "all"), default="val",
                    help="val/train: the patient-disjoint parts the finding head used; all: every image")
    ei.add_argument("--limit", type=int, default=None, metavar="N", help="draft only the first N images of the part")
    ei.add_argument("--head", default=None, metavar="DIR",
                    help="a finding head folder as the eye (e.g. assets/finding_head/holdout: fit without the val part)")
    ei.add_argument("--json", action="store_true", help="print one JSON object")
    ei.set_defaults(fn=cmd_eval_images)

    ec = sub.add_parser("eval-comparison", help="the drafts' comparison words (new / unchanged / resolved) on NIH follow-up "
                                               "pairs against their labels, next to the 'always unchanged' floor")
    ec.add_argument("--data", required=True, action="append",
                    help="NIH ChestX-ray14 layout folder: labels.csv (with Follow-up #) + images/ (repeat for several)")
    ec.add_argument("--head", default=None, metavar="DIR", help="finding head folder (default the shipped one)")
    ec.add_argument("--out-of-fold", action="store_true",
                    help="the shared folders the head was fit on: use the probabilities its policy was chosen on, each "
                         "film's from a head that never saw its patient (policy.safetensors), instead of reading the films")
    ec.set_defaults(fn=cmd_eval_comparison)

    e = sub.add_parser("eval-generator", help="measure a trained generator with its faithful writer on a split (modes, "
                                              "ablation, floors); writes EVAL.md / EVAL.json (EVAL-test.* for test) "
                                              "beside its weights")
    e.add_argument("--data", required=True, help="IU X-ray folder (annotation.json, reports/, images) or MIMIC-CXR-JPG root")
    e.add_argument("--split", default="val", help="the studies measured: val (model selection) or test (held out)")
    e.add_argument("--predictions-out", default=None, metavar="P.jsonl",
                   help="also write each study's draft ({id, report, mode}: image mode where it has images, else text)")
    e.add_argument("--json", action="store_true", help="print every figure as one JSON object instead of the tables")
    e.add_argument("--dir", default=None, help="model folder (default assets/dffg)")
    e.add_argument("--beam", type=int, default=None, help="beam size (default: the model's generation_config.json)")
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(fn=cmd_eval_generator)
