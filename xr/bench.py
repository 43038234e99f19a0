"""Benchmarks print figures; they assert nothing. `python -m xr bench-encoders`."""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

import numpy as np
import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def percentiles(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "runs": repeats}


def bench_encoders(pixels: np.ndarray, repeats: int = 10) -> dict:
    """Per-image time of each encoder stage, eager PyTorch, batch of one, on this machine."""
    from xr.encode.vision import XCEPTION_SIZE, VisionEncoder
    from xr.encode.xception import grey_to_input

    enc = VisionEncoder()  # no cache: every run computes
    unet_in = torch.from_numpy(enc.unet_input(pixels))[None, None]
    x_in = grey_to_input(torch.from_numpy(enc.xception_input(pixels))[None, None])
    small = torch.nn.functional.interpolate(unet_in, size=256, mode="bilinear")
    with torch.inference_mode():
        rows = {
            "lung U-Net, mask + features (512x512)": percentiles(lambda: enc.unet.segment_and_encode(unet_in), repeats),
            "lung U-Net, encoder only (256x256)": percentiles(lambda: enc.unet.encode(small), repeats),
            f"Xception ({XCEPTION_SIZE}x{XCEPTION_SIZE})": percentiles(lambda: enc.xception(x_in), repeats),
        }
    rows["whole VisionEncoder.encode (one image)"] = percentiles(lambda: enc.encode([pixels]), repeats)
    return {"machine": machine(), "stages": rows}


def format_encoders(result: dict) -> str:
    lines = [f"Encoder time per image, eager PyTorch, batch 1, on: {result['machine']}", "",
             "| stage | p50 ms | p95 ms | runs |", "|---|---:|---:|---:|"]
    for name, r in result["stages"].items():
        lines.append(f"| {name} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['runs']} |")
    return "\n".join(lines) + "\n"
