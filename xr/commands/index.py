"""`python -m xr index build|add|stats|eval`: the similar-case index (the commands are in
xr/retrieve/commands.py, light to import: the models load inside each command)."""
from __future__ import annotations

from xr.retrieve import commands as index_commands


def register(sub) -> None:
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
