"""`python -m xr build-library`, `export-onnx` and `manifest`: the shipped artefacts made again."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_build_library(args: argparse.Namespace) -> int:
    from xr.build.library import build_library
    from xr.config import ASSETS

    manifest = build_library(Path(args.shared), Path(args.out or ASSETS / "case_library"),
                             progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(manifest, indent=2))
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


def cmd_manifest(args: argparse.Namespace) -> int:
    from xr.assets import refresh

    for rel, entry in refresh()["files"].items():
        print(f"{entry['sha256']}  {rel}")
    return 0


def register(sub) -> None:
    b = sub.add_parser("build-library", help="rebuild the shipped case library from the public datasets")
    b.add_argument("--shared", required=True, help="folder holding data/iu_xray and data/nih_cxr14_sample")
    b.add_argument("--out", default=None)
    b.set_defaults(fn=cmd_build_library)

    ox = sub.add_parser("export-onnx", help="export the encoders and the generator to ONNX (+ int8 lung U-Net), check "
                                            "them against PyTorch and time them (with the encoders in eager bf16 where the CPU runs "
                                            "it natively); drafts then use the fastest that agrees")
    ox.add_argument("--out", default=None, help="folder (default: DATA_DIR/onnx, where drafts look; XR_ONNX_DIR)")
    ox.add_argument("--repeats", type=int, default=3, help="timed runs per variant")
    ox.add_argument("--if-missing", action="store_true", help="do nothing when the folder holds an export of today's weights")
    ox.add_argument("--json", action="store_true")
    ox.set_defaults(fn=cmd_export_onnx)

    m = sub.add_parser("manifest", help="recompute the sha256 of every shipped file in assets/MANIFEST.json")
    m.set_defaults(fn=cmd_manifest)
