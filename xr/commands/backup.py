"""`python -m xr backup OUT` and `python -m xr restore IN [--verify]`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_backup(args: argparse.Namespace) -> int:
    from xr.backup import backup
    from xr.config import settings

    manifest = backup(settings(), Path(args.out))
    print(json.dumps({k: v for k, v in manifest.items() if k != "files"} | {"files": len(manifest["files"])}, indent=1))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from xr.backup import restore
    from xr.config import settings

    print(json.dumps(restore(settings(), Path(args.source), deep=args.verify), indent=1))
    return 0


def register(sub) -> None:
    b = sub.add_parser("backup", help="copy the database (online), the stored images and the salt to a new folder, "
                                      "with a manifest of sha256 sums")
    b.add_argument("out", help="a new folder")
    b.set_defaults(fn=cmd_backup)
    r = sub.add_parser("restore", help="restore a backup into an empty data directory and check it")
    r.add_argument("source", help="a folder made by `xr backup`")
    r.add_argument("--verify", action="store_true", help="also check every image's pixels against its recorded hash")
    r.set_defaults(fn=cmd_restore)
