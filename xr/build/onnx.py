"""`python -m xr export-onnx`: the lung U-Net, Xception and the DFFG generator as ONNX graphs, an int8
copy of each image encoder, and `onnx.json` saying what each was exported from, how close it comes to
eager PyTorch and how fast each variant ran here (xr.onnx.runtime runs the one chosen here at load time:
the fastest exact one, or eager bfloat16 where the CPU runs it natively, it is faster and it agrees).

int8: static quantisation (QDQ, per-channel weights) calibrated on the case library's chest X-rays;
the convolutions are almost all of a draft's time and the AVX-512 VNNI / AMX units of a laptop or
server CPU run them several times faster in int8. It is used only when asked for (XR_BACKEND=int8). The
generator stays fp32 (small, and its beam search must match eager token for token).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xr.config import ASSETS
from xr.decode.generation import GenerationConfig
from xr.decode.model import CACHE, DFFGModel, mem_bias, step_bias
from xr.decode.onnx import OnnxGenerator
from xr.decode.processing import ENCODE_INPUTS, DFFGInputs, Example, collate
from xr.decode.vocab import BOS, Vocabulary
from xr.draft.dffg import DFFG_DIR
from xr.encode import vision
from xr.encode.lung_unet import LungUNet
from xr.encode.xception import Xception, grey_to_input
from xr.files import write_atomic
from xr.ingest import read_pixels
from xr.onnx.parity import cosine, mask_iou
from xr.onnx.runtime import (
    BF16_AGREEMENT,
    MANIFEST,
    Graph,
    as_tuple,
    bf16_native,
    fastest_exact,
    in_bf16,
    ort,
    read_manifest,
    source_digest,
)
from xr.views import VIEWS

OPSET = 17


@contextmanager
def quiet():
    """Without the tracer's and the quantiser's warnings: they say how a graph is built (Python ints taken
    as constants: an export is for one image size; slices not folded; 'consider pre-processing before
    quantization', logged on the root logger), all known, and the parity figures of the manifest check
    the result. The console then shows the export's progress lines only. Errors still show."""
    loggers = [logging.getLogger(n) for n in ("", "torch.onnx", "onnxruntime", "onnxruntime.quantization")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=False):
                lg.setLevel(level)


def calibration_images(library: Path = ASSETS / "case_library", n: int = 8) -> list[np.ndarray]:
    """Chest X-rays every install has: the case library's thumbnails, spread over its cases."""
    thumbs = sorted((library / "thumbs").glob("*"))
    pick = thumbs[:: max(1, len(thumbs) // n)][:n]
    return [read_pixels(p) for p in pick]


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    module.eval()  # (set on the wrapper: the exporter restores the wrapper's mode on every submodule)
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                      opset_version=OPSET, dynamo=False)


def _quantize(fp32: Path, int8: Path, name: str, batches: list[np.ndarray]) -> None:
    ort()  # quiet
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{name: b} for b in batches])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def _run_eager(module: torch.nn.Module, xs: np.ndarray) -> object:
    return module(torch.from_numpy(xs))


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


# ---- image encoders -------------------------------------------------------------------------------
class _Segment(nn.Module):
    def __init__(self, unet: LungUNet) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, pixels: torch.Tensor):
        return self.unet.segment_and_encode(pixels)


class _Features(nn.Module):
    """Grey pixels 0..255 -> Xception's middle-flow features (the eye's), the input scaling inside the graph."""

    def __init__(self, xception: Xception) -> None:
        super().__init__()
        self.xception = xception

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.xception.forward_middle(grey_to_input(pixels), vision.MIDDLE_BLOCKS)


def unet_batch(images: list[np.ndarray]) -> np.ndarray:
    return vision.batch(vision.unet_transform(), images)


def xception_batch(images: list[np.ndarray]) -> np.ndarray:
    return vision.batch(vision.xception_transform(), images)


def export_encoders(out: Path, images: list[np.ndarray], repeats: int) -> dict:
    """fp32 graphs of both encoders; an int8 one of the U-Net only (Xception's depthwise convolutions
    lose too much in int8: pooled-feature cosine 0.96 against fp32 on the library's images); where the CPU
    runs bfloat16 natively, both in eager bf16, its agreement with fp32 measured on every calibration film."""
    unet = LungUNet.from_pretrained(ASSETS / "lung_unet").to(memory_format=torch.channels_last)
    xception = Xception.from_pretrained(ASSETS / "xception").to(memory_format=torch.channels_last)
    study = images[:2]  # time a two-view study, as a draft runs it
    entries = {}
    for name, module, batch, outputs, int8 in (("lung_unet", _Segment(unet), unet_batch, ["logits", "stage3", "deep"], True),
                                               ("xception", _Features(xception), xception_batch, ["features"], False)):
        variants = {"fp32": out / f"{name}.onnx"} | ({"int8": out / f"{name}.int8.onnx"} if int8 else {})
        _export(module, (torch.from_numpy(batch(images[:1])),), variants["fp32"], ["pixels"], outputs,
                {"pixels": {0: "batch"}, **{o: {0: "batch"} for o in outputs}})
        if int8:
            _quantize(variants["fp32"], variants["int8"], "pixels", [batch([im]) for im in images])
        xs = batch(study)
        with torch.inference_mode():
            ref = module(torch.from_numpy(xs))
        ref = [r.numpy() for r in as_tuple(ref)]
        graphs = {v: Graph(p) for v, p in variants.items()}
        parity = {v: _parity(name, ref, g(xs)) for v, g in graphs.items()}
        with torch.inference_mode():
            ms = {"eager": _time(partial(_run_eager, module, xs), repeats)}
            if bf16_native():
                bf16 = in_bf16(module)
                every = torch.from_numpy(batch(images))
                parity["bf16"] = _parity(name, [r.numpy() for r in as_tuple(module(every))],
                                         [r.numpy() for r in as_tuple(bf16(every))])
                ms["bf16"] = _time(partial(bf16, torch.from_numpy(xs)), repeats)
        ms |= {v: _time(partial(g, xs), repeats) for v, g in graphs.items()}
        entry = {"files": {v: {"model": p.name} for v, p in variants.items()},
                 "source_sha256": source_digest(ASSETS / name / "model.safetensors"), "parity": parity, "ms": ms,
                 "timed_on": f"{len(study)} images"}
        entries[name] = entry | {"chosen": _choose(name, entry)}
    return entries


def _choose(name: str, entry: dict) -> str:
    """The fastest exact variant, or bf16 where it is faster still and agrees with fp32 on every calibration film."""
    exact = fastest_exact(entry)
    bf16 = entry["parity"].get("bf16")
    needed = [k for k in BF16_AGREEMENT if k != "mask_iou" or name == "lung_unet"]  # (Xception has no mask)
    agrees = bf16 is not None and all(bf16[k] >= BF16_AGREEMENT[k] for k in needed)
    return "bf16" if agrees and entry["ms"]["bf16"] < entry["ms"][exact] else exact


def _parity(name: str, ref: list[np.ndarray], got: list[np.ndarray]) -> dict:
    """Largest difference of any output, and the lowest cosine of the pooled feature maps (what the eye and
    retrieval average); the U-Net's masks as intersection over union."""
    maps = ref[1:] if name == "lung_unet" else ref
    out = {"features_max_abs": float(max(np.abs(r - g).max() for r, g in zip(ref, got, strict=True))),
           "cosine": min(cosine(r.mean((2, 3)), g.mean((2, 3))) for r, g in zip(maps, got[len(ref) - len(maps):], strict=True))}
    if name == "lung_unet":
        out["mask_iou"] = mask_iou(ref[0].argmax(1).astype(bool), got[0].argmax(1).astype(bool))
    return out


# ---- generator ------------------------------------------------------------------------------------
class _Encode(nn.Module):
    def __init__(self, net: DFFGModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, *inputs):
        f = self.net.encode(DFFGInputs(**dict(zip(ENCODE_INPUTS, inputs, strict=True))))
        out = (f.memory, f.bias, f.visual_gate, f.text_gate)
        return out + ((f.prefix, f.prefix_bias) if f.prefix is not None else ())


class _Start(nn.Module):
    def __init__(self, net: DFFGModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, memory, bias, prefix=None, prefix_bias=None):
        cond, past = self.net.start_tensors(memory, bias, prefix, prefix_bias)
        return (cond, *[t for layer in past for t in layer])


class _Step(nn.Module):
    def __init__(self, net: DFFGModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, token, t, cond, memory_bias, self_bias, *cache):
        layers = [cache[4 * i: 4 * i + 4] for i in range(self.net.config.n_layers)]
        logits, past = self.net.step_tensors(token, t, cond, memory_bias, self_bias, layers)
        return (logits, *[t for k, v, _, _ in past for t in (k, v)])


def example_batch(net: DFFGModel, vocab: Vocabulary, views: int) -> DFFGInputs:
    """A typical case: an indication, a finding prompt, k retrieved reports and `views` views."""
    rng = np.random.default_rng(0)
    c = net.config
    ex = Example(indication="chest pain shortness of breath", indication_emb=rng.standard_normal(c.sentence_dim).astype(np.float32),
                 prompt=rng.uniform(0, 1, c.n_findings).astype(np.float32),
                 retrieved=["the heart is normal in size . the lungs are clear . no pneumothorax or pleural effusion"] * c.k,
                 regions=[rng.uniform(0, 2, (c.grid, c.grid, c.region_dim)).astype(np.float32) for _ in range(views)],
                 views=list(VIEWS[:views]))
    return collate([ex], vocab, c)


def export_generator(out: Path, directory: Path = DFFG_DIR, repeats: int = 5) -> dict:
    from xr.decode.beam import beam_search

    net = DFFGModel.from_pretrained(directory)
    vocab = Vocabulary.load(directory / "vocab.json")
    generation = GenerationConfig.from_pretrained(directory)
    c = net.config
    b = example_batch(net, vocab, views=2)
    with torch.no_grad():  # (not inference mode: the exporter traces these tensors)
        f = net.encode(b)
        cache = net.start(f)
        net.step(torch.tensor([BOS]), 0, f, cache)  # one word cached, so the step graph sees a general shape
    files = {"encode": "generator_encode.onnx", "start": "generator_start.onnx", "step": "generator_step.onnx"}
    L = {0: "batch", 2: "cached"}
    enc_out = ["memory", "bias", "visual_gate", "text_gate"] + (["prefix", "prefix_bias"] if c.prompt_prefix else [])
    _export(_Encode(net), b.encode_inputs(), out / files["encode"], list(ENCODE_INPUTS), enc_out,
            {"ind_ids": {0: "batch", 1: "li"}, "ind_emb": {0: "batch"}, "ind_present": {0: "batch"}, "prompt": {0: "batch"},
             "prompt_present": {0: "batch"}, "ret_ids": {0: "batch", 2: "lr"}, "regions": {0: "batch", 1: "views"},
             "view_present": {0: "batch", 1: "views"}, "view_type": {0: "batch", 1: "views"},
             "memory": {0: "batch", 1: "m"}, "bias": {0: "batch", 1: "m"}, "visual_gate": {0: "batch", 1: "nv"},
             "text_gate": {0: "batch", 1: "nt"}, "prefix": {0: "batch"}, "prefix_bias": {0: "batch"}})
    names = [f"{n}{i}" for i in range(c.n_layers) for n in CACHE]
    start_in = ["memory", "bias"] + (["prefix", "prefix_bias"] if c.prompt_prefix else [])
    _export(_Start(net), tuple(getattr(f, n) for n in start_in), out / files["start"], start_in, ["cond", *names],
            {"memory": {0: "batch", 1: "m"}, "bias": {0: "batch", 1: "m"}, "prefix": {0: "batch"}, "prefix_bias": {0: "batch"},
             "cond": {0: "batch"}, **{n: ({0: "batch", 2: "m"} if n.startswith("c") else L) for n in names}})
    cached = cache[0]["k"].shape[2]
    sb = step_bias(f, cached)
    sb = torch.zeros(1, 1, 1, cached + 1) if sb is None else sb
    step_args = (torch.tensor([BOS]), torch.tensor(1), cache[0]["cond"], mem_bias(f), sb,
                 *[cache[i][n] for i in range(c.n_layers) for n in CACHE])
    new_names = [f"new_{n}{i}" for i in range(c.n_layers) for n in ("k", "v")]
    _export(_Step(net), step_args, out / files["step"], ["token", "t", "cond", "memory_bias", "self_bias", *names],
            ["logits", *new_names],
            {"token": {0: "batch"}, "cond": {0: "batch"}, "memory_bias": {0: "batch", 3: "m"},
             "self_bias": {0: "batch", 3: "keys"}, "logits": {0: "batch"},
             **{n: ({0: "batch", 2: "m"} if n.startswith("c") else L) for n in names},
             **{n: {0: "batch", 2: "keys"} for n in new_names}})
    onnx = OnnxGenerator({role: out / name for role, name in files.items()}, c)
    allowed = vocab.output_mask()

    def draft(model) -> list[int]:
        with torch.inference_mode():
            return beam_search(model, model.encode(b), allowed, generation)

    parity = generator_parity(net, onnx, vocab, generation)
    ms = {"eager": _time(lambda: draft(net), repeats), "fp32": _time(lambda: draft(onnx), repeats)}
    return {"generator": {"files": {"fp32": files}, "source_sha256": source_digest(directory / "model.safetensors"),
                          "parity": parity, "ms": ms, "chosen": min(ms, key=ms.__getitem__),
                          "timed_on": f"beam search {generation.num_beams}, a 2-view case"}}


def generator_parity(net: DFFGModel, onnx: OnnxGenerator, vocab: Vocabulary, generation: GenerationConfig) -> dict:
    """Largest difference of the fused memory and of every step's logits, and whether the beam search
    (as drafts run it: `generation`) gives the same words, for a case with 0, 1 and 2 views."""
    from xr.decode.beam import beam_search

    worst, same = 0.0, True
    allowed = vocab.output_mask()
    for views in (0, 1, 2):
        b = example_batch(net, vocab, views)
        with torch.inference_mode():
            fe, fo = net.encode(b), onnx.encode(b)
            worst = max(worst, float((fe.memory - fo.memory).abs().max()))
            ce, co = net.start(fe), onnx.start(fo)
            for t, tok in enumerate([BOS, 5, 9, 14]):
                le, lo = net.step(torch.tensor([tok]), t, fe, ce), onnx.step(torch.tensor([tok]), t, fo, co)
                worst = max(worst, float((le - lo).abs().max()))
            same &= beam_search(net, fe, allowed, generation) == beam_search(onnx, fo, allowed, generation)
    return {"max_abs": worst, "same_beam_output": bool(same)}


def export_all(out: Path, repeats: int = 3, calibration: list[np.ndarray] | None = None,
               progress: Callable[[str], None] = lambda s: None) -> dict:
    """Export into a temporary folder, then move the files in: a failed export leaves the old one usable."""
    from xr.machine import machine

    out.mkdir(parents=True, exist_ok=True)
    images = calibration or calibration_images()
    with tempfile.TemporaryDirectory(dir=out) as tmp, quiet():
        t = Path(tmp)
        progress("image encoders (export, int8 calibration, parity, timing)")
        models = export_encoders(t, images, repeats)
        progress("generator (export, parity, timing)")
        models |= export_generator(t, repeats=repeats)
        for p in t.glob("*.onnx"):
            shutil.move(str(p), out / p.name)
    manifest = {"machine": machine(), "torch": torch.__version__, "onnxruntime": ort().__version__,
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "models": models}
    write_atomic(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def format_manifest(m: dict) -> str:
    lines = [f"ONNX export on {m['machine']} (onnxruntime {m['onnxruntime']})", "",
             "| model | eager ms | eager bf16 ms | ONNX fp32 ms | ONNX int8 ms | chosen | timed on | parity |",
             "|---|---:|---:|---:|---:|---|---|---|"]
    for name, e in m["models"].items():
        ms = e["ms"]
        cell = lambda v, ms=ms: f"{ms[v]:.0f}" if v in ms else "-"  # noqa: E731
        par = "; ".join(f"{v}: " + ", ".join(f"{k} {x:.4g}" if isinstance(x, float) else f"{k} {x}" for k, x in p.items())
                        for v, p in (e["parity"].items() if name != "generator" else [("fp32", e["parity"])]))
        cells = " | ".join(cell(v) for v in ("eager", "bf16", "fp32", "int8"))
        lines.append(f"| {name} | {cells} | {e['chosen']} | {e['timed_on']} | {par} |")
    return "\n".join(lines) + "\n"


def is_current(out: Path) -> bool:
    """True when `out` holds an export of today's weights that measured every variant this CPU can run (app
    start-up skips the export then; an export from before bf16 was measured is made again where it is native)."""
    models = read_manifest(out)["models"]
    wanted = {"lung_unet": ASSETS / "lung_unet" / "model.safetensors", "xception": ASSETS / "xception" / "model.safetensors",
              "generator": DFFG_DIR / "model.safetensors"}
    return (all(m in models and models[m]["source_sha256"] == source_digest(w) for m, w in wanted.items())
            and (not bf16_native() or all("bf16" in models[m]["ms"] for m in ("lung_unet", "xception"))))

