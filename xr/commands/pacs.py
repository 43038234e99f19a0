"""`python -m xr pacs search|watch|send` and `python -m xr worklist`: the workstation on a PACS (XR_PACS_URL),
and the worklist for scripts."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def search(args: argparse.Namespace) -> int:
    from xr.config import settings
    from xr.ingest.pacs import Pacs

    for ref in Pacs(settings()).studies(args.since, args.until, args.modality or "", args.accession or ""):
        print(f"{ref.name}\t{ref.date or '-'}\t{ref.modality}")
    return 0


def watch(args: argparse.Namespace) -> int:
    from xr.ingest.pacs import Pacs
    from xr.watcher import watch_once
    from xr.workstation import Workstation

    ws = Workstation()
    pacs, refused = Pacs(ws.settings), set[str]()
    while True:
        done = watch_once(ws, pacs, args.since, refused)
        print(done.line(), file=sys.stderr)
        for line in done.refused:
            print(f"refused: {line}", file=sys.stderr)
        if args.once:
            return 1 if done.refused else 0
        time.sleep(args.every)


def send(args: argparse.Namespace) -> int:
    from xr.config import settings
    from xr.deliver import send_reports

    sent = send_reports(settings(), every=True)
    print(f"{sent.sent} reports stored in the PACS, {sent.waiting} not yet" + (f" ({sent.reason})" if sent.reason else ""),
          file=sys.stderr)
    return 1 if sent.waiting else 0


def worklist(args: argparse.Namespace) -> int:
    from xr import store
    from xr.config import settings

    rows = store.worklist(settings(), args.status or "", args.search or "", args.limit)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            who = f"{r['age'] if r['age'] is not None else '?'}{r['sex'] or ''}"
            print(f"#{r['id']}\t{r['status']}\t{who}\t{r['views']}\t{r['updated']}\t{r['indication']}\t{r['pacs']}".rstrip())
    return 0


def register(sub) -> None:
    from xr.store import STATUSES

    p = sub.add_parser("pacs", help="the PACS of XR_PACS_URL: search it, draft its new studies ahead, send signed reports back")
    ps = p.add_subparsers(dest="pacs_command", required=True)
    s = ps.add_parser("search", help="chest radiography studies in the PACS (CR, DX), newest first")
    s.add_argument("--since", type=_date, help="from this study date (YYYY-MM-DD)")
    s.add_argument("--until", type=_date, help="to this study date")
    s.add_argument("--modality", help="only this modality (default: CR and DX)")
    s.add_argument("--accession", help="only this accession number")
    s.set_defaults(fn=search)
    w = ps.add_parser("watch", help="poll the PACS: draft every new chest study ahead, send the reports waiting to go back")
    w.add_argument("--once", action="store_true", help="one round, then exit (1 if a study was refused)")
    w.add_argument("--every", type=float, default=30.0, help="seconds between rounds (default 30)")
    w.add_argument("--since", type=_date, help="studies from this date (default: yesterday's and today's)")
    w.set_defaults(fn=watch)
    ps.add_parser("send", help="send every signed report not yet in the PACS now (exit 1 while some wait)").set_defaults(fn=send)
    wl = sub.add_parser("worklist", help="the worklist, newest first (--json for scripts)")
    wl.add_argument("--json", action="store_true", help="JSON rows: id, status, views, indication, updated, age, sex, pacs")
    wl.add_argument("--status", choices=STATUSES)
    wl.add_argument("--search", help="text in the indication or the report; #12 is study 12")
    wl.add_argument("--limit", type=int, default=200)
    wl.set_defaults(fn=worklist)
