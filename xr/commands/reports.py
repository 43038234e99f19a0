"""`python -m xr export-edits` and `export-report`: approved reports out of the workstation."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from xr.export.registry import FORMATS


def cmd_export_edits(args: argparse.Namespace) -> int:
    from xr import store
    from xr.config import settings

    store.export_edits(settings(), Path(args.out), include_burned_in=args.include_burned_in)
    lines = [json.loads(line) for line in Path(args.out).read_text().splitlines()]
    kinds = Counter(line["source"] for line in lines)  # an approval, or an annotator's correction
    print(f"wrote {len(lines)} studies to {args.out}: {kinds['approval']} approved, {kinds['correction']} corrected",
          file=sys.stderr)
    return 0


def cmd_export_report(args: argparse.Namespace) -> int:
    from xr import store
    from xr.config import settings
    from xr.workstation import LOCAL_USER

    path = store.export_report(settings(), args.study, args.format, Path(args.out), LOCAL_USER)
    print(path)
    return 0


def register(sub) -> None:
    e = sub.add_parser("export-edits", help="write approved studies as JSON lines for fine-tuning")
    e.add_argument("out")
    e.add_argument("--include-burned-in", action="store_true",
                   help="also export images whose DICOM header says text is burned in (check them first: it may name the patient)")
    e.set_defaults(fn=cmd_export_edits)

    er = sub.add_parser("export-report", help="an approved report as DICOM SR, FHIR R4 DiagnosticReport or text")
    er.add_argument("study", type=int, help="study id (as on the worklist)")
    er.add_argument("--format", choices=tuple(FORMATS), default="sr")
    er.add_argument("--out", default=".", help="folder to write into (default: here)")
    er.set_defaults(fn=cmd_export_report)
