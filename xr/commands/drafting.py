"""`python -m xr draft`, `batch` and `formats`: drafting from a terminal or a script."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_draft(args: argparse.Namespace) -> int:
    from xr.ui.panel import panel_rows
    from xr.workstation import LOCAL_USER, Workstation

    result = Workstation().draft(args.paths, args.indication or "", actor=LOCAL_USER if args.save else None)
    draft = result.draft
    if args.json:
        out = draft.to_json()
        out["study_id"] = result.study_id
        print(json.dumps(out))
    else:
        print(draft.report)
        if not (draft.findings_text or draft.impression) and draft.notes:
            print(draft.notes[0])  # why nothing is written
        print("\nWhat the draft says of each finding (probability; the statement policy's cut):")
        for finding, p, stance, cut in panel_rows(draft.findings, draft.statements):
            print(f"  {finding}: {stance} ({p}; {cut})" if cut else f"  {finding}: {stance} ({p})")
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


def cmd_formats(args: argparse.Namespace) -> int:
    from xr.ingest.dicom import supported_transfer_syntaxes

    print("PNG (8/16-bit, grey or colour), JPEG, and DICOM transfer syntaxes:")
    for name, ok in supported_transfer_syntaxes().items():
        print(f"  {'yes' if ok else 'no '}  {name}")
    return 0


def register(sub) -> None:
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

    f = sub.add_parser("formats", help="list the image formats and DICOM transfer syntaxes this install reads")
    f.set_defaults(fn=cmd_formats)
