"""`python -m xr bench`, `bench-encoders`, `bench-agreement`, `bench-retrieval`, `bench-worklist` and `bench-generation`: figures printed,
nothing asserted."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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


def cmd_bench_agreement(args: argparse.Namespace) -> int:
    from xr.bench.agreement import agreement, films_under, format_agreement
    from xr.errors import UserError

    paths = films_under([Path(f) for f in args.films], args.limit, args.seed)
    if not paths:
        raise UserError(f"no PNG, JPEG or DICOM films under {', '.join(args.films)}")
    result = agreement(paths, progress=lambda s: print(s, file=sys.stderr))
    print(json.dumps(result) if args.json else format_agreement(result))
    return 0


def cmd_bench_retrieval(args: argparse.Namespace) -> int:
    from xr.bench.retrieval import bench_retrieval, format_retrieval

    result = bench_retrieval(n=args.vectors, dim=args.dim, queries=args.queries)
    print(json.dumps(result) if args.json else format_retrieval(result))
    return 0


def cmd_bench_generation(args: argparse.Namespace) -> int:
    from xr.bench.generation import bench_generation, format_generation

    result = bench_generation(repeats=args.repeats, steps=args.steps)
    print(json.dumps(result) if args.json else format_generation(result))
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


def register(sub) -> None:
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

    ba = sub.add_parser("bench-agreement", help="how much the faster encoder variants (bf16, int8) change masks, views, "
                                                "probabilities and statements against exact fp32, on films")
    ba.add_argument("films", nargs="+", help="folders of films (searched recursively) or film files")
    ba.add_argument("--limit", type=int, default=None, help="draw this many films at random (seeded)")
    ba.add_argument("--seed", type=int, default=0)
    ba.add_argument("--json", action="store_true")
    ba.set_defaults(fn=cmd_bench_agreement)

    bg = sub.add_parser("bench-generation", help="time synthetic films: 2 views from a report, the lateral from a frontal")
    bg.add_argument("--repeats", type=int, default=5)
    bg.add_argument("--steps", type=int, default=30)
    bg.add_argument("--json", action="store_true")
    bg.set_defaults(fn=cmd_bench_generation)

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
