"""`python -m xr train-findings`, `train-views`, `learn`, `train-generator`, `train-writer` and `train-refiner`."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from xr.commands.common import main_process, vision_encoder
from xr.commands.evaluation import evaluate_generator
from xr.errors import UserError


def _edits_out(args: argparse.Namespace, shipped: str) -> Path:
    """Fine-tuning on edits writes a copy: the shipped weights are never overwritten."""
    if not args.out:
        raise UserError(f"--edits needs --out DIR (the shipped {shipped} is not overwritten)")
    return Path(args.out)


def cmd_train_findings(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.train.findings import train

    info = train([Path(n) for n in args.nih], Path(args.iu) if args.iu else None, Path(args.out or ASSETS / "finding_head"),
                 vision_encoder(), progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(info, indent=2))
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    """The eye learns from the site's signed studies (xr/train/learn.py); --rollback, --status."""
    from xr.config import settings
    from xr.data.films import LAYOUTS
    from xr.encode.eyes import eye_for, site_status
    from xr.train.learn import learn, rollback

    s = settings()
    if args.rollback:
        back = rollback(s)
        print(f"the eye in use is now {back or 'the shipped one'} (drafts use it from the app's next start)")
        return 0
    if args.status:
        print(json.dumps(site_status(s), indent=2))
        return 0
    roots = [Path(n) for n in args.nih] if args.nih else [s.shared_dir / "data" / n for n in SHIPPED_NIH]
    missing = [r for r in roots if not (r / "labels.csv").is_file()]
    if missing:
        raise UserError(f"{missing[0]}: not an NIH ChestX-ray14 folder (labels.csv + images/): give the shipped "
                        "films with --nih")
    base = [f for r in roots for f in LAYOUTS["nih"].read(r)]
    result = learn(s, base, eye_for(s), vision_encoder(), progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(vars(result), indent=2))
    if result.promoted:
        print(f"eye {result.version} is in use: drafts use it from the app's next start", file=sys.stderr)
    return 0


SHIPPED_NIH = ("nih_cxr14_sample", "nih_cxr14_more")  # the films the shipped finding head was fit on


def cmd_learn_curve(args: argparse.Namespace) -> int:
    """The sign-off loop simulated in a scratch installation (this one's feature cache reused, read-only
    in effect: features of the same pixels are the same), the curve as a PNG and JSON."""
    import tempfile
    from dataclasses import replace

    from xr.config import settings
    from xr.train.learning_curve import plot, simulate

    s = settings()
    first, second = (Path(p) if p else s.shared_dir / "data" / n for p, n in ((args.first, SHIPPED_NIH[0]),
                                                                            (args.second, SHIPPED_NIH[1])))
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="xr-learn-curve-") as tmp:
        scratch = replace(s, data_dir=Path(tmp), database_url=f"sqlite:///{Path(tmp) / 'xr.sqlite3'}")
        if (s.data_dir / "cache").is_dir():
            (Path(tmp) / "cache").symlink_to(s.data_dir / "cache")
        curve = simulate(scratch, first, second, progress=lambda m: print(m, file=sys.stderr))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(curve, out)
    out.with_suffix(".json").write_text(json.dumps(curve, indent=1) + "\n")
    print(json.dumps(curve, indent=2))
    return 0


def cmd_train_views(args: argparse.Namespace) -> int:
    from xr.encode.view_head import VIEW_HEAD_DIR
    from xr.train.views import train

    info = train([Path(n) for n in args.nih or []], Path(args.views) if args.views else None,
                 Path(args.studies) if args.studies else None, Path(args.out or VIEW_HEAD_DIR), vision_encoder(),
                 progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(info, indent=2))
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.train.generator import finetune_from_edits, train

    main, log = main_process()
    if args.films and args.edits:
        raise UserError("give --films or --edits, not both")
    if args.films:
        _train_on_films(args, log, main)
        return 0
    if args.edits:
        info = finetune_from_edits(Path(args.edits), _edits_out(args, "model"), base=Path(args.base or ASSETS / "dffg"),
                                   epochs=args.epochs or 3, lr=args.lr or 2e-4, seed=args.seed, threads=args.threads, log=log)
        if main:
            print(json.dumps(info, indent=2))
        return 0
    if not args.data:
        raise UserError("give --data IU_DIR (train from scratch) or --edits EDITS.jsonl --out DIR (fine-tune)")
    from xr.train.generator import Data

    out = Path(args.out or ASSETS / "dffg")
    data = Data(Path(args.data), log=log)  # one reading of the data for training and for the writer
    summary = train(root=Path(args.data), out_dir=out, data=data, epochs=args.epochs or 20, lr=args.lr or 1e-3, d=args.d,
                    n_layers=args.layers, seed=args.seed, threads=args.threads, max_minutes=args.max_minutes, log=log)
    if not main:
        return 0
    print(json.dumps(summary, indent=2, default=str))
    _train_writer(data, out, log)
    if args.eval:
        evaluate_generator(out, Path(args.data), args.beam, args.threads, log)
    return 0


def _train_on_films(args: argparse.Namespace, log: Callable[[str], None], main: bool) -> None:
    """Continue --base on IU train plus the films with pseudo-reports, then measure the fusion of the base and
    of the result on the films' validation part (FUSION.md and FUSION.json in --out)."""
    from xr.config import ASSETS
    from xr.data.films import load_films
    from xr.decode.model import DFFGModel
    from xr.train.generator import finetune_on_films, fusion_figures, fusion_markdown

    if not (args.data and args.out):
        raise UserError("--films needs --data IU_DIR (the training reports) and --out DIR")
    for root in args.films:  # every folder readable before minutes of work
        load_films(nih=root)
    base, out = Path(args.base or ASSETS / "dffg"), Path(args.out)
    before = DFFGModel.from_pretrained(base)  # read now: --out may be --base
    info, data = finetune_on_films(args.films, out, Path(args.data), base, epochs=args.epochs or 6, lr=args.lr or 3e-4,
                                   seed=args.seed, threads=args.threads, log=log)
    if not main:
        return
    figures = {f"before ({base.name})": fusion_figures(before, data), "after": fusion_figures(DFFGModel.from_pretrained(out), data)}
    (out / "FUSION.json").write_text(json.dumps({"training": {k: v for k, v in info.items() if k != "history"},
                                                 "figures": figures}, indent=1) + "\n")
    (out / "FUSION.md").write_text(fusion_markdown(figures))
    print((out / "FUSION.md").read_text())


def _train_writer(data, out: Path, log: Callable[[str], None]) -> None:
    """`data`: an xr.train.generator.Data of the training folder."""
    from xr.train.writer import train_writer

    wording, thresholds = train_writer(data, out)
    log(f"writer: {len(wording.negatives)} routine negative sentences, routine: {', '.join(wording.routine)}; "
        f"thresholds {thresholds.chosen_on}")


def cmd_train_writer(args: argparse.Namespace) -> int:
    from xr.config import ASSETS

    if not (Path(args.data) / "annotation.json").is_file():
        raise UserError(f"{args.data}: no annotation.json (expected an IU X-ray folder in the R2Gen layout)")
    from xr.train.generator import Data

    out = Path(args.dir or ASSETS / "dffg")
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    _train_writer(Data(Path(args.data), log=log), out, log)
    print(f"wrote {out / 'wording.json'} and {out / 'thresholds.json'}")
    return 0


def cmd_eval_refiner(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.train.generator import Data
    from xr.train.refiner import evaluate_refiner, format_refiner_evaluation

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, not {args.limit}")
    adapter = Path(args.dir or ASSETS / "refiner")
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    result = evaluate_refiner(Data(Path(args.data), log=log, split=args.split), adapter, args.limit, log)
    (adapter / "EVAL.json").write_text(json.dumps(result, indent=1) + "\n")
    (adapter / "EVAL.md").write_text(format_refiner_evaluation(result))
    print(json.dumps(result) if args.json else format_refiner_evaluation(result))
    return 0


def cmd_train_refiner(args: argparse.Namespace) -> int:
    from xr.refine.refiner import REFINER_DIR
    from xr.train.refiner import read_edit_examples, train_lora

    main, log = main_process()
    if args.edits:
        out = _edits_out(args, "adapter")
        examples = read_edit_examples(Path(args.edits))
        info = train_lora(examples, out, init_adapter=Path(args.base or REFINER_DIR), epochs=args.epochs or 3,
                          lr=args.lr or 2e-4, max_minutes=args.max_minutes, log=log)
    elif args.data:
        import torch

        from xr.train.generator import Data
        from xr.train.refiner import dffg_examples

        torch.set_num_threads(args.threads)
        examples = dffg_examples(Data(Path(args.data), log=log), "train", args.max_examples)
        info = train_lora(examples, Path(args.out or REFINER_DIR), epochs=args.epochs or 1, lr=args.lr or 5e-4,
                          max_minutes=args.max_minutes, log=log)
    else:
        raise UserError("give --data IU_DIR (train on IU train) or --edits EDITS.jsonl --out DIR (fine-tune)")
    if main:
        print(json.dumps(info, indent=2))
    return 0


def register(sub) -> None:
    t = sub.add_parser("train-findings", help="train the finding head (reproduces assets/finding_head)")
    t.add_argument("--nih", required=True, action="append",
                   help="NIH ChestX-ray14 layout folder: labels.csv + images/ (repeat for several)")
    t.add_argument("--iu", help="IU X-ray folder: its train-split images with report labels are added")
    t.add_argument("--out", default=None)
    t.set_defaults(fn=cmd_train_findings)

    lr = sub.add_parser("learn", help="retrain the eye on the shipped films plus this site's signed studies; promoted "
                                      "only if it reads the site's validation studies better (--rollback undoes)")
    lr.add_argument("--nih", action="append", help="the shipped films: NIH layout folders (default: the two in ../shared)")
    lr.add_argument("--rollback", action="store_true", help="put back the eye promoted before the current one")
    lr.add_argument("--status", action="store_true", help="the eye in use and what it learnt from")
    lr.set_defaults(fn=cmd_learn)

    lc = sub.add_parser("learn-curve", help="simulate the sign-off loop on the shared films: the eye fit on the first "
                                           "NIH sample, the second signed in batches, xr learn after each (PNG + JSON)")
    lc.add_argument("--first", help="NIH folder the starting eye is fit on (default ../shared: nih_cxr14_sample)")
    lc.add_argument("--second", help="NIH folder signed in batches (default ../shared: nih_cxr14_more)")
    lc.add_argument("--out", default="docs/learning-curve.png")
    lc.set_defaults(fn=cmd_learn_curve)

    v = sub.add_parser("train-views", help="train the view head, frontal or lateral (reproduces assets/view_head)")
    v.add_argument("--nih", action="append", help="NIH ChestX-ray14 layout folder, all frontal (repeat for several)")
    v.add_argument("--views", help="covid_cxr_views folder: views.csv + images/ (frontal and lateral)")
    v.add_argument("--studies", help="IU X-ray or MIMIC-CXR-JPG folder whose header sheet names each film's view")
    v.add_argument("--out", default=None)
    v.set_defaults(fn=cmd_train_views)

    g = sub.add_parser("train-generator", help="train the DFFG report generator on IU X-ray train, select on val")
    g.add_argument("--data", default=None, help="IU X-ray folder (annotation.json, reports/, images)")
    g.add_argument("--edits", default=None, help="fine-tune on an export-edits file instead (needs --out)")
    g.add_argument("--films", action="append", default=None, metavar="NIH_DIR",
                   help="continue --base on IU train plus these labelled films (NIH layout; repeat for more folders) "
                        "with label-matched pseudo-reports, and measure its fusion on their validation part (needs --data "
                        "and --out)")
    g.add_argument("--base", default=None, help="with --edits or --films: the model to continue from (default assets/dffg)")
    g.add_argument("--out", default=None, help="output folder (default assets/dffg)")
    g.add_argument("--epochs", type=int, default=None, help="default 20 (3 with --edits, 6 with --films)")
    g.add_argument("--lr", type=float, default=None, help="default 1e-3 (2e-4 with --edits, 3e-4 with --films)")
    g.add_argument("--d", type=int, default=192, help="model width")
    g.add_argument("--layers", type=int, default=3)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--max-minutes", type=float, default=60.0)
    g.add_argument("--eval", action="store_true", help="then measure text/oracle/image modes and the ablation on val")
    g.add_argument("--beam", type=int, default=None,
                   help="beam size of the --eval drafts (default: the model's generation_config.json)")
    g.set_defaults(fn=cmd_train_generator)

    w = sub.add_parser("train-writer", help="choose the faithful writer's wording and prompt thresholds on IU train "
                                            "(writes wording.json and thresholds.json beside the generator)")
    w.add_argument("--data", required=True, help="IU X-ray folder (annotation.json, reports/)")
    w.add_argument("--dir", default=None, help="the generator's folder (default assets/dffg)")
    w.set_defaults(fn=cmd_train_writer)

    er = sub.add_parser("eval-refiner", help="score the drafter's drafts unrefined, refined (guarded) and unguarded on a "
                                             "split; writes EVAL.md / EVAL.json beside the adapter")
    er.add_argument("--data", required=True, help="IU X-ray folder (annotation.json, reports/)")
    er.add_argument("--split", default="val")
    er.add_argument("--dir", default=None, help="adapter folder (default assets/refiner)")
    er.add_argument("--limit", type=int, default=None, metavar="N", help="the first N studies only")
    er.add_argument("--json", action="store_true")
    er.set_defaults(fn=cmd_eval_refiner)

    r = sub.add_parser("train-refiner", help="LoRA-train the small-LLM refiner on DFFG drafts of IU train, "
                                             "or continue it on exported edits")
    r.add_argument("--data", default=None, help="IU X-ray folder (annotation.json, reports/)")
    r.add_argument("--edits", default=None, help="continue the shipped adapter on an export-edits file (needs --out)")
    r.add_argument("--base", default=None, help="with --edits: the adapter to continue from (default assets/refiner)")
    r.add_argument("--out", default=None, help="output folder (default assets/refiner)")
    r.add_argument("--max-examples", type=int, default=1000, help="first N train studies (CPU budget)")
    r.add_argument("--epochs", type=int, default=None, help="default 1 (3 with --edits)")
    r.add_argument("--lr", type=float, default=None, help="default 5e-4 (2e-4 with --edits)")
    r.add_argument("--max-minutes", type=float, default=12.0, help="stop training after this long")
    r.add_argument("--threads", type=int, default=2)
    r.set_defaults(fn=cmd_train_refiner)
