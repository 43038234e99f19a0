"""`python -m xr ...`: the workstation from a terminal or a script. Bad input exits 2 with one line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xr.errors import UserError


def cmd_draft(args: argparse.Namespace) -> int:
    from xr.workstation import LOCAL_USER, Workstation

    result = Workstation().draft(args.paths, args.indication or "", actor=LOCAL_USER if args.save else None)
    draft = result.draft
    if args.json:
        out = draft.to_json()
        out["study_id"] = result.study_id
        print(json.dumps(out))
    else:
        print(draft.report)
        top = sorted(draft.findings.items(), key=lambda kv: -kv[1])[:5]
        print("\nFinding probabilities: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
        print("Similar cases: " + ", ".join(f"{c.case_id} ({c.similarity:.2f})" for c in draft.similar_cases))
        print(f"Model: {draft.model} {draft.model_version}; total {draft.timings['total_ms']:.0f} ms")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Exit 0 when every study stands drafted, 3 when some failed (their reasons are in OUT.jsonl)."""
    from xr.batch import run_batch

    summary = run_batch(Path(args.in_dir), Path(args.out), workers=args.workers, ray_address=args.ray,
                        cpus_per_worker=args.cpus_per_worker, retry_errors=args.retry_errors, quiet=args.quiet)
    print(summary.line())
    if summary.stopped:
        print(f"error: {summary.stopped}", file=sys.stderr)
    return 0 if summary.ok else 3


def cmd_export_edits(args: argparse.Namespace) -> int:
    from xr import store
    from xr.config import settings

    n = store.export_edits(settings(), Path(args.out))
    print(f"wrote {n} approved studies to {args.out}", file=sys.stderr)
    return 0


def _password(args: argparse.Namespace) -> str:
    """From stdin (scripts) or typed twice at a prompt; never from the command line, where `ps` shows it."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the passwords differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from xr import access
    from xr.config import settings

    s = settings()
    if args.user_command == "add":
        access.add_user(s, args.name, args.role, _password(args))
        print(f"added {args.name} ({args.role})", file=sys.stderr)
    elif args.user_command == "passwd":
        access.set_password(s, args.name, _password(args))
        print(f"changed the password of {args.name}", file=sys.stderr)
    else:
        for u in access.list_users(s):
            print(f"{u['name']}\t{u['role']}\t{u['created']}")
    return 0


def cmd_export_report(args: argparse.Namespace) -> int:
    from xr import store
    from xr.config import settings
    from xr.workstation import LOCAL_USER

    path = store.export_report(settings(), args.study, args.format, Path(args.out), LOCAL_USER)
    print(path)
    return 0


def cmd_build_library(args: argparse.Namespace) -> int:
    from xr.build.library import build_library
    from xr.config import ASSETS

    manifest = build_library(Path(args.shared), Path(args.out or ASSETS / "case_library"),
                             progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(manifest, indent=2))
    return 0


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


def _vision_encoder():
    from xr.config import settings
    from xr.encode.cache import FeatureCache
    from xr.encode.vision import VisionEncoder

    return VisionEncoder(cache=FeatureCache(settings().data_dir / "cache"))


def cmd_train_findings(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.train.findings import train

    info = train(Path(args.nih), Path(args.iu) if args.iu else None, Path(args.out or ASSETS / "finding_head"),
                 _vision_encoder(), progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(info, indent=2))
    return 0


def cmd_eval_findings(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.encode.finding_head import FindingHead
    from xr.train.findings import evaluate_folder, format_markdown

    if not (Path(args.data) / "labels.csv").exists():
        raise UserError(f"{args.data}: no labels.csv (expected the NIH ChestX-ray14 layout: labels.csv + images/)")
    head = FindingHead.from_pretrained(Path(args.head or ASSETS / "finding_head"))
    result = evaluate_folder(Path(args.data), head, _vision_encoder(), args.split,
                             progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result) if args.json else format_markdown(result))
    return 0


def cmd_bench_encoders(args: argparse.Namespace) -> int:
    from xr.bench.drafting import bench_encoders, format_encoders
    from xr.ingest import load_study

    study = load_study([args.image])
    result = bench_encoders(study.images[0].pixels, repeats=args.repeats)
    print(json.dumps(result) if args.json else format_encoders(result))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from xr.bench.drafting import bench, format_bench, synthetic_study

    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in (args.study or synthetic_study(Path(tmp)))]
        result = bench(paths, repeats=args.repeats, refine=not args.no_refine, progress=lambda s: print(s, file=sys.stderr))
    print(json.dumps(result) if args.json else format_bench(result))
    return 0


def cmd_bench_retrieval(args: argparse.Namespace) -> int:
    from xr.bench.retrieval import bench_retrieval, format_retrieval

    result = bench_retrieval(n=args.vectors, dim=args.dim, queries=args.queries)
    print(json.dumps(result) if args.json else format_retrieval(result))
    return 0


def cmd_bench_worklist(args: argparse.Namespace) -> int:
    import tempfile

    from xr.bench.store import bench_worklist, format_worklist

    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_worklist(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", studies=args.studies)]
        if args.postgres:
            results.append(bench_worklist(args.postgres, studies=args.studies))
    print(json.dumps(results) if args.json else format_worklist(*results))
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from xr.build.onnx import export_all, format_manifest, is_current
    from xr.onnx.runtime import onnx_dir

    out = Path(args.out) if args.out else onnx_dir()
    if args.if_missing and is_current(out):
        print(f"{out} holds a current export", file=sys.stderr)
        return 0
    manifest = export_all(out, repeats=args.repeats, progress=lambda s: print(s, file=sys.stderr))
    print(json.dumps(manifest) if args.json else format_manifest(manifest))
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.train.generator import finetune_from_edits, train

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.edits:
        if not args.out:
            raise UserError("--edits needs --out DIR (the shipped model is not overwritten)")
        info = finetune_from_edits(Path(args.edits), Path(args.out), base=Path(args.base or ASSETS / "dffg"),
                                   epochs=args.epochs or 3, threads=args.threads, log=log)
        print(json.dumps(info, indent=2))
        return 0
    if not args.data:
        raise UserError("give --data IU_DIR (train from scratch) or --edits EDITS.jsonl --out DIR (fine-tune)")
    out = Path(args.out or ASSETS / "dffg")
    summary = train(root=Path(args.data), out_dir=out, epochs=args.epochs or 20, lr=args.lr, d=args.d,
                    n_layers=args.layers, seed=args.seed, threads=args.threads, max_minutes=args.max_minutes, log=log)
    print(json.dumps(summary, indent=2, default=str))
    if args.eval:
        _evaluate_generator(out, Path(args.data), args.beam, args.threads, log)
    return 0


def cmd_train_refiner(args: argparse.Namespace) -> int:
    from xr.refine.refiner import REFINER_DIR
    from xr.train.refiner import read_edit_examples, train_lora

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.edits:
        if not args.out:
            raise UserError("--edits needs --out DIR (the shipped adapter is not overwritten)")
        examples = read_edit_examples(Path(args.edits))
        info = train_lora(examples, Path(args.out), init_adapter=Path(args.base or REFINER_DIR), epochs=args.epochs or 3,
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
    print(json.dumps(info, indent=2))
    return 0


def _evaluate_generator(directory: Path, data: Path, beam: int, threads: int, log) -> None:
    from xr.train.generator import evaluate_modes, write_evaluation

    results = evaluate_modes(directory=directory, root=data, beam=beam, threads=threads, log=log)
    write_evaluation(results, directory, beam)
    print((directory / "EVAL.md").read_text())


def cmd_eval_generator(args: argparse.Namespace) -> int:
    from xr.config import ASSETS

    _evaluate_generator(Path(args.dir or ASSETS / "dffg"), Path(args.data), args.beam, args.threads,
                        lambda m: print(m, file=sys.stderr))
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from xr.assets import refresh

    for rel, entry in refresh()["files"].items():
        print(f"{entry['sha256']}  {rel}")
    return 0


def cmd_formats(args: argparse.Namespace) -> int:
    from xr.ingest.dicom import supported_transfer_syntaxes

    print("PNG (8/16-bit, grey or colour), JPEG, and DICOM transfer syntaxes:")
    for name, ok in supported_transfer_syntaxes().items():
        print(f"  {'yes' if ok else 'no '}  {name}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xr", description="Chest X-ray report drafting workstation")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("draft", help="draft a report for one study (files, a folder or a zip)")
    d.add_argument("paths", nargs="+")
    d.add_argument("--indication", default="")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.add_argument("--save", action="store_true", help="also store the study and draft in the database")
    d.set_defaults(fn=cmd_draft)

    ba = sub.add_parser("batch", help="draft every study of a folder or .zip into OUT.jsonl, one line each; "
                                      "resumable (exit 3 when some studies failed)")
    ba.add_argument("in_dir", metavar="IN_DIR", help="folder or .zip: each subfolder, .zip and loose image is a study")
    ba.add_argument("out", metavar="OUT.jsonl", help="appended to; studies already in it are skipped")
    ba.add_argument("--workers", type=int, default=None,
                    help="drafting processes (Ray actors with --ray); default half the cores (Ray: its CPUs)")
    ba.add_argument("--ray", metavar="ADDRESS", default=None, help="draft on this Ray cluster (host:port)")
    ba.add_argument("--cpus-per-worker", type=int, default=1, help="with --ray: CPUs (torch threads) per actor")
    ba.add_argument("--retry-errors", action="store_true", help="draft again the studies that failed before")
    ba.add_argument("--quiet", action="store_true", help="no progress bar")
    ba.set_defaults(fn=cmd_batch)

    e = sub.add_parser("export-edits", help="write approved studies as JSON lines for fine-tuning")
    e.add_argument("out")
    e.set_defaults(fn=cmd_export_edits)

    er = sub.add_parser("export-report", help="an approved report as DICOM SR, FHIR R4 DiagnosticReport or text")
    er.add_argument("study", type=int, help="study id (as on the worklist)")
    er.add_argument("--format", choices=("sr", "fhir", "text"), default="sr")
    er.add_argument("--out", default=".", help="folder to write into (default: here)")
    er.set_defaults(fn=cmd_export_report)

    from xr.access import ROLES

    us = sub.add_parser("user", help="log-in users and their roles (the app asks for log-in beyond localhost)")
    uss = us.add_subparsers(dest="user_command", required=True)
    ua = uss.add_parser("add", help="add a user")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=ROLES)
    up = uss.add_parser("passwd", help="set a user's password")
    up.add_argument("name")
    for sp in (ua, up):
        sp.add_argument("--password-stdin", action="store_true", help="read the password from stdin, one line")
        sp.set_defaults(fn=cmd_user)
    uss.add_parser("list", help="users and roles").set_defaults(fn=cmd_user)

    b = sub.add_parser("build-library", help="rebuild the shipped case library from the public datasets")
    b.add_argument("--shared", required=True, help="folder holding data/iu_xray and data/nih_cxr14_sample")
    b.add_argument("--out", default=None)
    b.set_defaults(fn=cmd_build_library)

    v = sub.add_parser("eval", help="score predictions or a baseline on a split (BLEU, METEOR, ROUGE-L, CIDEr, CE)")
    v.add_argument("--data", required=True, help="IU X-ray folder (annotation.json [+ reports/]) or MIMIC-CXR-JPG root")
    v.add_argument("--split", default="val")
    v.add_argument("--predictions", help="JSONL with one {\"id\", \"report\"} per line")
    v.add_argument("--baseline", choices=("constant", "random", "nearest-text"))
    v.add_argument("--json", action="store_true")
    v.add_argument("--per-case", metavar="OUT.jsonl", help="also write per-case scores")
    v.set_defaults(fn=cmd_eval)

    t = sub.add_parser("train-findings", help="train the finding head (reproduces assets/finding_head)")
    t.add_argument("--nih", required=True, help="NIH ChestX-ray14 layout folder: labels.csv + images/")
    t.add_argument("--iu", help="IU X-ray folder: its train-split images with report labels are added")
    t.add_argument("--out", default=None)
    t.set_defaults(fn=cmd_train_findings)

    ef = sub.add_parser("eval-findings", help="AUC, calibration and CTR check of the finding head on a labelled folder")
    ef.add_argument("--data", required=True, help="NIH ChestX-ray14 layout folder: labels.csv + images/")
    ef.add_argument("--split", choices=("val", "train", "all"), default="val",
                    help="val/train: the patient-disjoint parts used in training; all: every image (another dataset)")
    ef.add_argument("--head", default=None)
    ef.add_argument("--json", action="store_true")
    ef.set_defaults(fn=cmd_eval_findings)

    be = sub.add_parser("bench-encoders", help="time each image encoder on this machine (prints p50/p95)")
    be.add_argument("image", help="a radiograph to encode (PNG, JPEG or DICOM)")
    be.add_argument("--repeats", type=int, default=10)
    be.add_argument("--json", action="store_true")
    be.set_defaults(fn=cmd_bench_encoders)

    bn = sub.add_parser("bench", help="time a two-view draft end to end, eager PyTorch vs ONNX Runtime (p50/p95 per stage, "
                                      "peak memory) on this machine")
    bn.add_argument("--study", nargs="+", default=None,
                    help="the study's files (default: two full-size views made from the case library)")
    bn.add_argument("--repeats", type=int, default=10)
    bn.add_argument("--no-refine", action="store_true", help="skip the refiner (about 3 s a draft on a laptop CPU)")
    bn.add_argument("--json", action="store_true")
    bn.set_defaults(fn=cmd_bench)

    br = sub.add_parser("bench-retrieval", help="exact vs IVF vs HNSW over synthetic embeddings: recall@10 and latency")
    br.add_argument("--vectors", type=int, default=1_000_000)
    br.add_argument("--dim", type=int, default=512)
    br.add_argument("--queries", type=int, default=1000)
    br.add_argument("--json", action="store_true")
    br.set_defaults(fn=cmd_bench_retrieval)

    bw = sub.add_parser("bench-worklist", help="worklist queries over a scratch database of N studies (SQLite; "
                                               "PostgreSQL with --postgres URL, where a scratch database is made)")
    bw.add_argument("--studies", type=int, default=100_000)
    bw.add_argument("--postgres", default=None, help="a server URL, e.g. postgresql://xr@127.0.0.1:5432/postgres")
    bw.add_argument("--json", action="store_true")
    bw.set_defaults(fn=cmd_bench_worklist)

    ox = sub.add_parser("export-onnx", help="export the encoders and the generator to ONNX (+ int8 lung U-Net), check "
                                            "them against PyTorch and time them; drafts then use the fastest")
    ox.add_argument("--out", default=None, help="folder (default: DATA_DIR/onnx, where drafts look; XR_ONNX_DIR)")
    ox.add_argument("--repeats", type=int, default=3, help="timed runs per variant")
    ox.add_argument("--if-missing", action="store_true", help="do nothing when the folder holds an export of today's weights")
    ox.add_argument("--json", action="store_true")
    ox.set_defaults(fn=cmd_export_onnx)

    g = sub.add_parser("train-generator", help="train the DFFG report generator on IU X-ray train, select on val")
    g.add_argument("--data", default=None, help="IU X-ray folder (annotation.json, reports/, images)")
    g.add_argument("--edits", default=None, help="fine-tune on an export-edits file instead (needs --out)")
    g.add_argument("--base", default=None, help="with --edits: the model to continue from (default assets/dffg)")
    g.add_argument("--out", default=None, help="output folder (default assets/dffg)")
    g.add_argument("--epochs", type=int, default=None, help="default 20 (3 with --edits)")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--d", type=int, default=192, help="model width")
    g.add_argument("--layers", type=int, default=3)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--max-minutes", type=float, default=60.0)
    g.add_argument("--eval", action="store_true", help="then measure text/oracle/image modes and the ablation on val")
    g.add_argument("--beam", type=int, default=3, help="beam size of the --eval drafts")
    g.set_defaults(fn=cmd_train_generator)

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

    e = sub.add_parser("eval-generator", help="measure a trained generator on IU val (modes, ablation, floors); "
                                              "writes EVAL.md and EVAL.json beside its weights")
    e.add_argument("--data", required=True, help="IU X-ray folder (annotation.json, reports/, images)")
    e.add_argument("--dir", default=None, help="model folder (default assets/dffg)")
    e.add_argument("--beam", type=int, default=3)
    e.add_argument("--threads", type=int, default=2)
    e.set_defaults(fn=cmd_eval_generator)

    from xr.retrieve import commands as index_commands  # light: the models load inside each command

    ix = sub.add_parser("index", help="similar-case index: the shipped library plus every approved study")
    ixs = ix.add_subparsers(dest="index_command", required=True)
    ib = ixs.add_parser("build", help="embed the library's report texts (image embeddings come from build-library)")
    ib.add_argument("--library", default=None, help="case library folder (default assets/case_library)")
    ib.set_defaults(fn=index_commands.build)
    ixs.add_parser("add", help="add every approved study not yet in the library").set_defaults(fn=index_commands.add)
    ist = ixs.add_parser("stats", help="cases by source, with images and reports, index sizes, approved studies")
    ist.add_argument("--json", action="store_true")
    ist.set_defaults(fn=index_commands.stats)
    iev = ixs.add_parser("eval", help="precision@k of shared findings: NIH images leave-one-out, IU text vs random")
    iev.add_argument("--iu", help="IU X-ray folder (annotation.json, reports/): also measure the text index")
    iev.add_argument("--split", default="val")
    iev.add_argument("--json", action="store_true")
    iev.set_defaults(fn=index_commands.evaluate)

    m = sub.add_parser("manifest", help="recompute the sha256 of every shipped file in assets/MANIFEST.json")
    m.set_defaults(fn=cmd_manifest)

    f = sub.add_parser("formats", help="list the image formats and DICOM transfer syntaxes this install reads")
    f.set_defaults(fn=cmd_formats)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
