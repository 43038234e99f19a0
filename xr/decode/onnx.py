"""The DFFG generator's decoding interface (`encode`, `start`, `step`, as `xr.decode.model.DFFGModel`
has them) on three ONNX Runtime graphs, so `xr.decode.beam` runs unchanged on either."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xr.config import Settings
from xr.decode.model import CACHE, mem_bias, step_bias
from xr.decode.processing import DFFGInputs
from xr.fuse import FusionOutput
from xr.onnx.runtime import Graph


class OnnxGenerator:
    def __init__(self, files: dict[str, Path], config) -> None:
        self.config = config
        self.graphs = {role: Graph(path) for role, path in files.items()}
        self.provider = self.graphs["step"].provider

    def encode(self, b: DFFGInputs) -> FusionOutput:
        """The encode graph's inputs are `b`'s fields (`ENCODE_INPUTS`), in order."""
        out = [torch.from_numpy(x) for x in self.graphs["encode"](*(x.numpy() for x in b.encode_inputs()))]
        memory, bias, visual_gate, text_gate = out[:4]
        prefix, prefix_bias = (out[4], out[5]) if self.config.prompt_prefix else (None, None)
        return FusionOutput(memory, bias, visual_gate, text_gate, prefix, prefix_bias)

    def start(self, f: FusionOutput) -> list[dict]:
        inputs = [f.memory, f.bias] + ([f.prefix, f.prefix_bias] if f.prefix is not None and f.prefix_bias is not None else [])
        out = [torch.from_numpy(x) for x in self.graphs["start"](*(x.numpy() for x in inputs))]
        cond, per_layer = out[0], out[1:]
        return [dict(zip(CACHE, per_layer[4 * i: 4 * i + 4], strict=True), cond=cond) for i in range(self.config.n_layers)]

    def step(self, token: torch.Tensor, t: int, f: FusionOutput, cache: list[dict]) -> torch.Tensor:
        """The step graph's inputs: token, t, cond, memory bias, self bias, then each layer's `CACHE` tensors."""
        if not cache[0]:
            cache[:] = self.start(f)
        cached = cache[0]["k"].shape[2]
        sb = step_bias(f, cached)
        if sb is None:
            sb = torch.zeros(token.shape[0], 1, 1, cached + 1)
        fixed = [token.numpy(), np.array(t, dtype=np.int64), cache[0]["cond"].numpy(), mem_bias(f).numpy(), sb.numpy()]
        out = self.graphs["step"](*fixed, *(c[n].numpy() for c in cache for n in CACHE))
        for i, c in enumerate(cache):
            c["k"], c["v"] = torch.from_numpy(out[1 + 2 * i]), torch.from_numpy(out[2 + 2 * i])
        return torch.from_numpy(out[0])


def generator_for(net, weights: Path, s: Settings | None = None):
    """The model beam search should run, eager `net` or its current ONNX export, and (variant, provider)."""
    from xr.onnx.runtime import choose

    choice = choose("generator", weights, s=s)
    if choice.variant == "eager":
        return net, ("eager", None)
    onnx = OnnxGenerator(choice.files, net.config)
    return onnx, (choice.variant, onnx.provider)
