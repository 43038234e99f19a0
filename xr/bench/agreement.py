"""`python -m xr bench-agreement`: how far each faster variant of the image encoders (eager bf16, the int8
U-Net) moves what a draft says, against exact fp32, on films: the lung masks, the view read off the film,
the eye's probabilities and the stance the statement policy takes on each finding. Its figures decide
which variant may be chosen for a user (xr.onnx.runtime) and are quoted in docs/benchmarks.md.
"""
from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from xr.machine import machine

VARIANTS = ("bf16", "int8")  # XR_BACKEND values compared with "onnx" (exact fp32)


def films_under(folders: list[Path], limit: int | None, seed: int = 0) -> list[Path]:
    """Every image under the folders, or `limit` of them drawn at random (seeded)."""
    from xr.ingest.study import EXTENSIONS

    found = sorted(p for f in folders for p in (f.rglob("*") if f.is_dir() else [f]) if p.suffix and p.suffix.lower() in EXTENSIONS)
    return sorted(random.Random(seed).sample(found, limit)) if limit and limit < len(found) else found


def _read(encoder, eye, pixels: list[np.ndarray]) -> dict:
    from xr.encode.view_head import shipped

    t = time.perf_counter()
    feats = [f for i in range(0, len(pixels), 2) for f in encoder.encode(pixels[i:i + 2])]  # two views a study, no cache
    seconds = time.perf_counter() - t
    return {"masks": np.stack([f.mask for f in feats]), "lateral": shipped().lateral_probability(feats),
            "p": eye.read(pixels, feats), "seconds": seconds}


def agreement(paths: list[Path], variants: tuple[str, ...] = VARIANTS, progress=lambda s: None) -> dict:
    from xr.config import settings
    from xr.encode.eyes import eye_for
    from xr.encode.vision import VisionEncoder
    from xr.ingest import read_pixels
    from xr.onnx.parity import mask_iou
    from xr.onnx.runtime import EXACT

    s = settings()
    eye = eye_for(s)
    pixels = [read_pixels(p, s) for p in paths]
    progress(f"exact fp32: {len(paths)} films")
    ref = _read(VisionEncoder(s=replace(s, backend="onnx")), eye, pixels)
    stance = np.vectorize(lambda j, p: eye.thresholds.stance(eye.findings[j], float(p)).value)
    cols = np.arange(len(eye.findings))[None].repeat(len(paths), 0)
    ref_stances = stance(cols, ref["p"])
    rows = {}
    for v in variants:
        encoder = VisionEncoder(s=replace(s, backend=v))
        ran = encoder.parts["lung_unet"][0], encoder.parts["xception"][0]
        if all(r in EXACT for r in ran):
            progress(f"{v}: not available here (ran {ran}); skipped")
            continue
        progress(f"{v}: {len(paths)} films")
        got = _read(encoder, eye, pixels)
        ious = np.array([mask_iou(a[None], b[None]) for a, b in zip(ref["masks"], got["masks"], strict=True)])
        dp = np.abs(got["p"] - ref["p"])
        changed = ref_stances != stance(cols, got["p"])
        rows[v] = {"ran": f"lung_unet {ran[0]}, xception {ran[1]}", "seconds_per_film": got["seconds"] / len(paths),
                   "mask_iou_p5": float(np.percentile(ious, 5)), "mask_iou_min": float(ious.min()),
                   "view_changed": int(((got["lateral"] >= 0.5) != (ref["lateral"] >= 0.5)).sum()),
                   "p_diff_p99": float(np.percentile(dp, 99)), "p_diff_max": float(dp.max()),
                   "stances_changed": int(changed.sum()), "films_with_a_changed_stance": int(changed.any(1).sum()),
                   "worst_film": paths[int(np.argmin(ious))].name}
    return {"machine": machine(), "films": len(paths), "statements": int(ref_stances.size), "eye": eye.name,
            "exact_seconds_per_film": ref["seconds"] / len(paths), "variants": rows}


def format_agreement(r: dict) -> str:
    lines = [f"Each variant against exact fp32 on {r['films']} films ({r['statements']} statements of {r['eye']}), "
             f"on {r['machine']}", "",
             "| variant | ran | encoders s/film (fp32 {:.2f}) | lung mask IoU p5 / min | view changed | "
             "probability change p99 / max | stances changed | films with one |".format(r["exact_seconds_per_film"]),
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for v, x in r["variants"].items():
        lines.append(f"| {v} | {x['ran']} | {x['seconds_per_film']:.2f} | {x['mask_iou_p5']:.3f} / {x['mask_iou_min']:.3f} | "
                     f"{x['view_changed']} | {x['p_diff_p99']:.3f} / {x['p_diff_max']:.3f} | {x['stances_changed']} | "
                     f"{x['films_with_a_changed_stance']} |")
    return "\n".join(lines) + "\n"
