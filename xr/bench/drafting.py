"""`python -m xr bench-encoders` and `python -m xr bench`: encoder stages and a whole draft, timed."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from xr.machine import machine, percentiles


def bench_encoders(pixels: np.ndarray, repeats: int = 10) -> dict:
    """Per-image time of each encoder stage, eager PyTorch, batch of one, on this machine."""
    from xr.encode.vision import MIDDLE_BLOCKS, UNET_SIZE, XCEPTION_SIZE, VisionEncoder, batch
    from xr.encode.xception import grey_to_input

    enc = VisionEncoder()  # no cache: every run computes
    unet_in = torch.from_numpy(batch(enc.unet_input, [pixels]))
    x_in = grey_to_input(torch.from_numpy(batch(enc.xception_input, [pixels])))
    with torch.inference_mode():
        rows = {
            f"lung U-Net, mask + features ({UNET_SIZE}x{UNET_SIZE})": percentiles(lambda: enc.unet.segment_and_encode(unet_in), repeats),
            f"Xception to middle block {MIDDLE_BLOCKS} ({XCEPTION_SIZE}x{XCEPTION_SIZE})":
                percentiles(lambda: enc.xception.forward_middle(x_in, MIDDLE_BLOCKS), repeats),
        }
    rows["whole VisionEncoder.encode (one image)"] = percentiles(lambda: enc.encode([pixels]), repeats)
    return {"machine": machine(), "stages": rows}


def format_encoders(result: dict) -> str:
    lines = [f"Encoder time per image, eager PyTorch, batch 1, on: {result['machine']}", "",
             "| stage | p50 ms | p95 ms | runs |", "|---|---:|---:|---:|"]
    for name, r in result["stages"].items():
        lines.append(f"| {name} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['runs']} |")
    return "\n".join(lines) + "\n"


# ---- `python -m xr bench`: a two-view study, end to end, eager PyTorch vs ONNX Runtime ---------------
# XR_BACKEND: all eager; all ONNX fp32 (both exact); the default (what the export chose per model); + int8 U-Net
BENCH_BACKENDS = ("eager", "onnx", "auto", "int8")
HEADINGS = {"eager": "eager PyTorch", "onnx": "ONNX fp32 (exact)", "auto": "default (chosen per model)",
            "int8": "+ int8 U-Net (opt-in)"}
STAGES = {"ingest_ms": "ingest", "encode_ms": "encoders", "decode_ms": "fusion + decoding",
          "retrieve_ms": "retrieval", "refine_ms": "refinement", "total_ms": "draft (no refinement)",
          "with_refinement_ms": "draft + refinement"}


def synthetic_study(directory: Path) -> list[Path]:
    """Two views at a usual detector size (2048 x 2500), from a frontal and a lateral library
    thumbnail: ingest decodes and resizes full-size files, as it would a real study."""
    from PIL import Image

    from xr.config import ASSETS

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("iu_CXR1000_IM-0003-1001", "iu_CXR14_IM-0256-2001"):  # an IU frontal and an IU lateral
        thumb = next((ASSETS / "case_library" / "thumbs").glob(name + ".*"))
        p = directory / f"{name}.png"
        Image.open(thumb).convert("L").resize((2048, 2500), Image.Resampling.BICUBIC).save(p)
        paths.append(p)
    return paths


def bench_draft(paths: list[str], backend: str, onnx: Path, repeats: int, refine: bool) -> dict:
    """Per-stage p50/p95 of drafting `paths` with features computed every time (no cache), in a
    process of its own so the peak memory is this backend's."""
    import resource
    import tempfile

    from xr.config import settings
    from xr.workstation import Workstation

    scratch = Path(tempfile.mkdtemp(prefix="xr-bench-"))  # no database, no feature cache
    ws = Workstation(replace(settings(), backend=backend, onnx_dir=onnx, data_dir=scratch,
                             database_url=f"sqlite:///{scratch / 'xr.sqlite3'}"))
    ws.drafter.encoder.cache = None
    runs: list[dict] = []
    for i in range(repeats + 1):  # the first run warms up and is dropped
        d = ws.draft(paths, "chest pain", actor=None).draft
        used = str(d.timings["backend"])
        t = {k: float(v) for k, v in d.timings.items() if k not in ("backend", "eye")}  # the words of what ran
        if refine:
            t["refine_ms"] = ws.refine(text=d.report, indication="chest pain").timings["refine_ms"]
            t["with_refinement_ms"] = t["total_ms"] + t["refine_ms"]
        if i:
            runs.append(t)
    stages = {k: {"p50_ms": float(np.percentile([r[k] for r in runs], 50)), "p95_ms": float(np.percentile([r[k] for r in runs], 95))}
              for k in STAGES if k in runs[0]}
    return {"backend": backend, "used": used, "runs": repeats, "stages": stages,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bench(paths: list[str], repeats: int = 10, refine: bool = True, progress=lambda s: None) -> dict:
    """Each of BENCH_BACKENDS in a fresh process; exports the ONNX graphs first when they are missing."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from xr.build.onnx import export_all, is_current
    from xr.onnx.runtime import onnx_dir

    if not is_current(onnx_dir()):
        progress("exporting the ONNX graphs first (python -m xr export-onnx)")
        export_all(onnx_dir(), progress=progress)
    results = {}
    for backend in BENCH_BACKENDS:
        progress(f"{backend}: {repeats} drafts of a {len(paths)}-view study" + (" with refinement" if refine else ""))
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results[backend] = pool.submit(bench_draft, paths, backend, onnx_dir(), repeats, refine).result()
    e, x, o, q = (results[b]["stages"]["total_ms"]["p50_ms"] for b in BENCH_BACKENDS)
    model = {b: sum(results[b]["stages"][k]["p50_ms"] for k in ("encode_ms", "decode_ms")) for b in results}
    return {"machine": machine(), "views": len(paths), "results": results, "speedup_total": e / o,
            "speedup_models": model["eager"] / model["auto"], "speedup_exact": e / x, "speedup_int8": e / q}


def format_bench(r: dict) -> str:
    res = r["results"]
    lines = [f"Time to draft a {r['views']}-view study (features computed every time), on: {r['machine']}", "",
             "| stage | " + " | ".join(f"{HEADINGS[b]} p50 / p95 ms" for b in BENCH_BACKENDS) + " |",
             "|---|" + "---:|" * len(BENCH_BACKENDS)]
    for key, name in STAGES.items():
        if key in res["eager"]["stages"]:
            cells = [f"{res[b]['stages'][key]['p50_ms']:.0f} / {res[b]['stages'][key]['p95_ms']:.0f}" for b in BENCH_BACKENDS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Eager / default, p50: {r['speedup_total']:.2f}x for the whole draft, "
                  f"{r['speedup_models']:.2f}x for the models (encoders + fusion and decoding).",
              f"ONNX fp32: {r['speedup_exact']:.2f}x; with the int8 U-Net: {r['speedup_int8']:.2f}x for the whole draft.",
              "Peak memory (RSS of the drafting process): "
              + ", ".join(f"{b} {res[b]['peak_rss_mb']:.0f} MB" for b in BENCH_BACKENDS) + ".",
              f"Default ran: {res['auto']['used']}; int8: {res['int8']['used']}. "
              f"Runs: {res['eager']['runs']} per backend after one warm-up."]
    return "\n".join(lines) + "\n"
