"""Xception (Chollet, CVPR 2017) as Keras Applications builds it, read top to bottom.

The weights are the Keras ImageNet release, converted by `xr.encode.convert_xception`; every layer
mirrors its Keras twin (named in the comments) so the converted weights give the Keras features, which
`tests/test_backbones.py` checks. Input: RGB scaled as `x/127.5 - 1` (Keras' "tf" mode); a grey
radiograph is repeated to three channels (`grey_to_input`). ImageNet-trained: not a chest-X-ray model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xr.modeling import Pretrained

BN_EPS = 1e-3  # Keras' BatchNormalization default, not PyTorch's 1e-5


@dataclass
class XceptionConfig:
    in_channels: int = 3
    image_size: int = 299  # the ImageNet training size; any size >= 71 runs
    feature_dim: int = 2048


def grey_to_input(pixels: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) grey in 0..255 -> (B,3,H,W) in [-1, 1]: the ImageNet weights expect RGB."""
    return (pixels.float() / 127.5 - 1.0).repeat(1, 3, 1, 1)


def max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-2 max-pool with TF "same" padding: on even sizes TF pads bottom/right only."""
    pads = []
    for n in (int(x.shape[-1]), int(x.shape[-2])):  # F.pad order: last dim first; ints: an ONNX export is for one size
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depthwise 3x3, then pointwise 1x1, no biases) and the BatchNorm after it."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class Block(nn.Module):
    """Keras blocks 2-13: (ReLU, separable conv) repeated, plus a shortcut.

    Downsampling blocks (2, 3, 4, 13) end in a strided max-pool and take a strided 1x1 conv + BN
    shortcut; middle-flow blocks (5-12) add their input unchanged. The shortcut always starts from the
    block's input before its first ReLU. Block 2 has no leading ReLU: its input is the stem's ReLU output.
    """

    def __init__(self, channels: list[int], downsample: bool, first_relu: bool = True) -> None:
        super().__init__()
        self.sepconvs = nn.ModuleList(SeparableConv(a, b) for a, b in zip(channels, channels[1:], strict=False))
        self.first_relu = first_relu
        self.downsample = downsample
        if downsample:
            self.shortcut = nn.Conv2d(channels[0], channels[-1], 1, stride=2, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(channels[-1], eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, sepconv in enumerate(self.sepconvs):
            y = sepconv(F.relu(y) if i or self.first_relu else y)
        if self.downsample:
            return max_pool_same(y) + self.shortcut_bn(self.shortcut(x))
        return y + x


class Stem(nn.Module):
    """Keras block 1: two unpadded 3x3 convs (the first strided), each with BN and ReLU."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, 32, 3, stride=2, bias=False), nn.BatchNorm2d(32, eps=BN_EPS)
        self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class Xception(Pretrained):
    config_class = XceptionConfig

    def __init__(self, config: XceptionConfig) -> None:
        super().__init__(config)
        # entry flow
        self.block1 = Stem(config.in_channels)
        self.block2 = Block([64, 128, 128], downsample=True, first_relu=False)
        self.block3 = Block([128, 256, 256], downsample=True)
        self.block4 = Block([256, 728, 728], downsample=True)
        # middle flow: blocks 5-12
        self.middle = nn.ModuleList(Block([728] * 4, downsample=False) for _ in range(8))
        # exit flow: block 13, then block 14 (separable conv, BN, ReLU, twice, with no shortcut)
        self.block13 = Block([728, 728, 1024], downsample=True)
        self.block14 = nn.ModuleList([SeparableConv(1024, 1536), SeparableConv(1536, config.feature_dim)])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) RGB in [-1, 1] -> (B,2048,~H/32,~W/32) regional features (10x10 at 299)."""
        x = self.block4(self.block3(self.block2(self.block1(x))))
        for block in self.middle:
            x = block(x)
        x = self.block13(x)
        for sepconv in self.block14:
            x = F.relu(sepconv(x))
        return x

    def forward_middle(self, x: torch.Tensor, blocks: int = 8) -> torch.Tensor:
        """(B,3,H,W) -> (B,728,~H/16,~W/16) after the entry flow and the first `blocks` middle-flow blocks:
        mid-level features, which transfer to radiographs better than the ImageNet-specific exit flow."""
        x = self.block4(self.block3(self.block2(self.block1(x))))
        for block in self.middle[:blocks]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) -> (B,2048) global-average-pooled features: the Keras `pooling="avg"` output."""
        return self.forward_features(x).mean((2, 3))
