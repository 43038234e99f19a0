"""ONNX Runtime sessions of our models and the choice, per model, between them and eager PyTorch.

`python -m xr export-onnx` writes the graphs and `onnx.json`: which weights each graph was exported
from (sha256), how close each variant comes to fp32 and how fast each ran on the exporting machine. At
load time a model takes the variant chosen there, if its graph was made from the weights now loaded; a
stale export (weights fine-tuned since) silently falls back to eager. XR_BACKEND=exact is auto without
bf16 (what models are trained and measured with: xr.encode.vision.VisionEncoder.for_models),
XR_BACKEND=eager|onnx overrides (exact fp32 throughout), XR_BACKEND=bf16 is auto with both image encoders in bf16 wherever the CPU runs it
natively, and XR_BACKEND=int8 is auto with the int8 lung U-Net: about 3x faster, but it
changes what drafts say (36 of 3,024 statements on 216 films, `python -m xr bench-agreement`), so it is
never chosen for you.

bf16: the image encoders in eager PyTorch under bfloat16 autocast, on a CPU whose oneDNN runs bfloat16
natively (AVX-512 BF16 or AMX). Not exact, but on those 216 films 5 of 3,024 statements changed and every
view read alike; the export chooses it only where it is the fastest and agrees with fp32 on the
calibration films (`BF16_AGREEMENT`).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from xr.assets import digest
from xr.config import Settings, settings

BACKENDS = ("auto", "exact", "onnx", "bf16", "int8", "eager")
MANIFEST = "onnx.json"
EXACT = ("eager", "fp32")  # variants that match eager fp32 PyTorch to float rounding
BF16_AGREEMENT = {"cosine": 0.999, "mask_iou": 0.97}  # the least a bf16 encoder must keep of fp32 to be chosen


class BackendError(RuntimeError):
    pass


def onnx_dir(s: Settings | None = None) -> Path:
    return (s or settings()).onnx_dir


def backend_setting(s: Settings | None = None) -> str:
    b = (s or settings()).backend
    if b not in BACKENDS:
        raise BackendError(f"XR_BACKEND must be one of {', '.join(BACKENDS)}, not '{b}'")
    return b


@cache
def _digest(path: str, mtime: float, size: int) -> str:
    return digest(Path(path))


def source_digest(weights: Path) -> str:
    """sha256 of a weights file, computed once per process and file version."""
    st = weights.stat()
    return _digest(str(weights), st.st_mtime, st.st_size)


def read_manifest(directory: Path) -> dict:
    p = directory / MANIFEST
    return json.loads(p.read_text()) if p.exists() else {"models": {}}


@dataclass(frozen=True)
class Choice:
    variant: str  # "eager", "bf16" (eager under bfloat16 autocast), or a key of the entry's "files" ("fp32", "int8")
    files: dict[str, Path]  # the variant's graph file(s) by role


def bf16_native() -> bool:
    """Whether oneDNN runs bfloat16 convolutions in hardware here (elsewhere it emulates them, slowly)."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def fastest_exact(entry: dict) -> str:
    return min((v for v in EXACT if v in entry["ms"]), key=entry["ms"].__getitem__)


def choose(model: str, weights: Path, directory: Path | None = None, s: Settings | None = None) -> Choice:
    """The variant of `model` to run: the one the export chose (as XR_BACKEND adjusts it), when the export was
    made from `weights`; eager where there is no such export and the backend may fall back (auto, exact)."""
    backend = backend_setting(s)
    if backend == "eager":
        return Choice("eager", {})
    directory = directory or onnx_dir(s)
    entry = read_manifest(directory)["models"].get(model)
    fresh = entry is not None and entry["source_sha256"] == source_digest(weights)
    if not fresh:
        if backend not in ("auto", "exact"):
            raise BackendError(f"XR_BACKEND={backend} but {directory / MANIFEST} has no current export of {model}; "
                               "run: python -m xr export-onnx")
        return Choice("eager", {})
    variant = entry["chosen"]
    if variant == "bf16" and (backend == "exact" or not bf16_native()):  # (not native: an export copied here)
        variant = fastest_exact(entry)
    if backend == "onnx" and variant not in entry["files"]:
        variant = "fp32"
    if backend == "int8" and "int8" in entry["files"]:
        variant = "int8"
    if backend == "bf16" and "bf16" in entry["ms"] and bf16_native():
        variant = "bf16"
    if variant in ("eager", "bf16"):
        return Choice(variant, {})
    files = entry["files"][variant]
    return Choice(variant, {role: directory / name for role, name in files.items()})


def ort():
    """onnxruntime, quiet: where the CUDA libraries are missing its CUDA provider falls back to the CPU."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)
    return onnxruntime


def providers() -> list[str]:
    """CUDA where onnxruntime-gpu finds it, else the CPU."""
    available = ort().get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class Graph:
    """One ONNX Runtime session called like a function: numpy arrays in, numpy arrays out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import torch

        rt = ort()
        opts = rt.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = rt.InferenceSession(str(path), opts, providers=providers())
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.provider = self.session.get_providers()[0]

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.inputs, arrays, strict=False)))


def backed(model: str, weights: Path, eager: Callable, s: Settings | None = None) -> tuple[Callable, tuple[str, str | None]]:
    """`eager` (torch tensors in and out) or the ONNX graph `choose` picks, called the same way, and
    (variant, provider) to report."""
    import torch

    choice = choose(model, weights, s=s)
    if choice.variant == "eager":
        return eager, ("eager", None)
    if choice.variant == "bf16":
        return in_bf16(eager), ("bf16", None)
    graph = Graph(choice.files["model"])

    def run(*xs: torch.Tensor):
        out = [torch.from_numpy(o) for o in graph(*(x.numpy() for x in xs))]
        return out[0] if len(out) == 1 else tuple(out)

    return run, (choice.variant, graph.provider)


def as_tuple(out) -> tuple:
    """A model's output as a tuple, whether it returns one tensor or several."""
    return out if isinstance(out, tuple) else (out,)


def in_bf16(eager: Callable) -> Callable:
    """`eager` under bfloat16 autocast on channels-last input (oneDNN's fast layout), float32 out."""
    import torch

    def run(*xs: torch.Tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = eager(*(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in xs))
        out = tuple(o.float().contiguous() for o in as_tuple(out))
        return out[0] if len(out) == 1 else out

    return run


def describe(parts: dict[str, tuple[str, str | None]]) -> str:
    """'lung_unet onnx-int8, ... on CPUExecutionProvider' for a draft's timings: model -> (variant, provider)."""
    names = ", ".join(f"{m} {'eager' if v == 'eager' else 'eager-bf16' if v == 'bf16' else 'onnx-' + v}"
                      for m, (v, _) in parts.items())
    used = sorted({p for _, p in parts.values() if p})
    return names + (f" on {', '.join(used)}" if used else "")
