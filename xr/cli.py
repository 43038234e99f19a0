"""`python -m xr ...`: the workstation from a terminal or a script. Bad input exits 2 with one line.

Each module of xr.commands registers its own subcommands (`register(sub)`); this file only dispatches."""
from __future__ import annotations

import argparse
import sys

from xr.commands import backup, benchmarks, build, drafting, evaluation, generation, index, pacs, reports, training, users
from xr.errors import UserError

COMMANDS = (drafting, reports, pacs, users, build, evaluation, training, generation, benchmarks, index, backup)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xr", description="Chest X-ray report drafting workstation")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
