"""`python -m xr index build|add|stats|eval`: the similar-case index from a terminal. Only light imports
at the top: the models load inside each command."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xr.errors import UserError


def build(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.retrieve.text import TEXT_ENCODER, build_text_embeddings, text_embedder

    directory = Path(args.library or ASSETS / "case_library")
    if not (directory / "cases.jsonl").is_file():
        raise UserError(f"{directory}: no cases.jsonl, not a case library")
    info = build_text_embeddings(directory, text_embedder())
    print(f"embedded {info['reports']} report texts ({info['dim']}-d {TEXT_ENCODER}) into {directory / info['file']}; "
          "image embeddings come from `python -m xr build-library`; refresh hashes with `python -m xr manifest`",
          file=sys.stderr)
    return 0


def add(args: argparse.Namespace) -> int:
    from db.session import database_exists
    from xr import store
    from xr.config import settings
    from xr.encode.cache import FeatureCache
    from xr.encode.vision import VisionEncoder
    from xr.retrieve.index import CaseIndex

    s = settings()
    if not database_exists(s.database_url) or not store.approvals_not_in_library(s):
        print("nothing to add: every approved study is in the library", file=sys.stderr)
        return 0
    index = CaseIndex()
    added = index.add_approved(s, VisionEncoder(cache=FeatureCache(s.data_dir / "cache")))
    total = index.stats(s)["approved"]["in_library"]
    print(f"added {added} approved studies; the library holds {total}", file=sys.stderr)
    return 0


def format_stats(d: dict) -> str:
    def counts(by: dict[str, int]) -> str:
        return ", ".join(f"{source} {n:,}" for source, n in by.items()) or "none"

    return "\n".join([
        f"cases: {counts(d['cases'])}",
        f"with images: {counts(d['with_images'])}",
        f"with reports: {counts(d['with_reports'])}",
        *(f"{name.replace('_', ' ')}: {x['type']}, {x['dim']}-d, {x['vectors']:,} vectors"
          for name, x in (("image_index", d["image_index"]), ("text_index", d["text_index"]))),
        f"approved studies: {d['approved']['in_library']} in the library, {d['approved']['waiting']} waiting for "
        "`python -m xr index add`",
    ])


def stats(args: argparse.Namespace) -> int:
    from xr.config import settings
    from xr.retrieve.index import CaseIndex

    d = CaseIndex().stats(settings())
    print(json.dumps(d) if args.json else format_stats(d))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from xr.retrieve.index import CaseIndex
    from xr.retrieve.quality import evaluate as run
    from xr.retrieve.quality import to_markdown

    iu = Path(args.iu) if args.iu else None
    if iu is not None and not (iu / "annotation.json").is_file():
        raise UserError(f"{iu}: no annotation.json (expected the IU X-ray folder)")
    result = run(CaseIndex(), iu, args.split)
    print(json.dumps(result) if args.json else to_markdown(result))
    return 0


def register(sub) -> None:
    ix = sub.add_parser("index", help="similar-case index: the shipped library plus every approved study")
    ixs = ix.add_subparsers(dest="index_command", required=True)
    ib = ixs.add_parser("build", help="embed the library's report texts (image embeddings come from build-library)")
    ib.add_argument("--library", default=None, help="case library folder (default assets/case_library)")
    ib.set_defaults(fn=build)
    ixs.add_parser("add", help="add every approved study not yet in the library").set_defaults(fn=add)
    ist = ixs.add_parser("stats", help="cases by source, with images and reports, index sizes, approved studies")
    ist.add_argument("--json", action="store_true")
    ist.set_defaults(fn=stats)
    iev = ixs.add_parser("eval", help="precision@k of shared findings: NIH images leave-one-out, IU text vs random")
    iev.add_argument("--iu", help="IU X-ray folder (annotation.json, reports/): also measure the text index")
    iev.add_argument("--split", default="val")
    iev.add_argument("--json", action="store_true")
    iev.set_defaults(fn=evaluate)
