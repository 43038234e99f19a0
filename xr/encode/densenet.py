"""DenseNet-121 (Huang et al., CVPR 2017) with torchvision's state-dict names, read top to bottom.

No DenseNet weights ship with the project: chest-X-ray DenseNet-121s (CheXNet, torchxrayvision) are
loaded from a file the user gives (`load_densenet_weights`, or the path in `XR_DENSENET_WEIGHTS`), so
the module keeps torchvision's key names (`features.denseblock1.denselayer1.norm1.weight`, ...) for
those files to load strictly. Input scaling belongs to the weights, not to this module: CheXNet takes
RGB 224x224 with ImageNet mean/std; torchxrayvision takes one channel 224x224 scaled to [-1024, 1024].
"""
from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from xr.config import Settings, settings
from xr.modeling import Pretrained

GROWTH, BOTTLENECK = 32, 4  # each layer adds 32 channels through a 4*32-channel 1x1 bottleneck
BLOCKS = (6, 12, 24, 16)  # dense layers per block: what makes it DenseNet-121


@dataclass
class DenseNet121Config:
    num_classes: int = 14  # CheXNet 14, torchxrayvision 18, ImageNet 1000
    in_channels: int = 3  # CheXNet and ImageNet 3, torchxrayvision 1
    feature_dim: int = 1024


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv bottleneck, then BN-ReLU-3x3 conv: 32 new channels from all before it."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, BOTTLENECK * GROWTH, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(BOTTLENECK * GROWTH)
        self.conv2 = nn.Conv2d(BOTTLENECK * GROWTH, GROWTH, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    """Each layer sees the concatenation of the block input and every earlier layer's output."""

    def __init__(self, cin: int, n_layers: int) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(cin + i * GROWTH) for i in range(n_layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Module):
    """Between blocks: BN-ReLU, a 1x1 conv halving the channels, 2x2 average pooling halving the size."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cin // 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.norm(x))), 2)


class DenseNet121(Pretrained):
    config_class = DenseNet121Config

    def __init__(self, config: DenseNet121Config) -> None:
        super().__init__(config)
        stages: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(config.in_channels, 64, 7, stride=2, padding=3, bias=False),
            norm0=nn.BatchNorm2d(64),
            relu0=nn.ReLU(),
            pool0=nn.MaxPool2d(3, stride=2, padding=1),
        )
        channels = 64
        for i, n_layers in enumerate(BLOCKS, start=1):
            stages[f"denseblock{i}"] = DenseBlock(channels, n_layers)
            channels += n_layers * GROWTH
            if i < len(BLOCKS):
                stages[f"transition{i}"] = Transition(channels)
                channels //= 2
        stages["norm5"] = nn.BatchNorm2d(channels)
        assert channels == config.feature_dim
        self.features = nn.Sequential(stages)
        self.classifier = nn.Linear(channels, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,1024,H/32,W/32) regional features (after norm5 and its ReLU)."""
        return F.relu(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,num_classes) logits (CheXNet applies a sigmoid on top, per finding)."""
        return self.classifier(self.forward_features(x).mean((2, 3)))


def _torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes (`module.`, `densenet121.`, `model.`) and rename pre-0.4 torchvision keys
    (`norm.1`, `conv.2`; CheXNet's `classifier.0` Linear+Sigmoid) to today's names."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"^((module|densenet121|model)\.)+", "", k)
        k = re.sub(r"\.(norm|relu|conv)\.(\d)\.", r".\1\2.", k)
        k = re.sub(r"^classifier\.0\.", "classifier.", k)
        out[k] = v
    return out


def load_densenet_weights(path: str | Path) -> DenseNet121:
    """A DenseNet-121 with the weights of a safetensors file or a torch checkpoint, loaded strictly.

    Checkpoints are read with `torch.load(weights_only=True)`: tensors and plain containers only,
    never arbitrary pickled objects. A state dict, or a dict holding one under `state_dict` (CheXNet's
    `model.pth.tar`), is accepted. torchxrayvision releases its weights as whole pickled models: save
    `model.state_dict()` from an environment that has torchxrayvision, then load that file here.
    num_classes and in_channels are read off the classifier and first conv; BatchNorm counters missing
    from pre-0.4 checkpoints are filled in by PyTorch.
    """
    path = Path(path)
    state: dict[str, Any]  # a state dict, or (a torch checkpoint) a dict that may hold one
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # weights_only refuses anything but tensors and containers
            raise ValueError(f"{path}: not a plain state dict; save model.state_dict() and load that") from e
        for wrapper in ("state_dict", "model_state_dict"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
    state = _torchvision_names(state)
    config = DenseNet121Config(num_classes=state["classifier.weight"].shape[0],
                               in_channels=state["features.conv0.weight"].shape[1])
    model = DenseNet121(config)
    model.load_state_dict(state, strict=True)
    return model.eval()


def densenet_from_env(s: Settings | None = None) -> DenseNet121 | None:
    """The DenseNet-121 named by `XR_DENSENET_WEIGHTS`, or None when it is unset."""
    path = (s or settings()).densenet_weights
    return load_densenet_weights(path) if path else None
