"""Lung-field segmentation U-Net with a VGG11 encoder (TernausNet layout), read top to bottom.

Trained on chest X-rays (Montgomery + Shenzhen), so its encoder is our chest-X-ray-adapted feature
extractor: `encode` stops at the deepest encoder stage, `forward` gives lung logits. Trained at 512 px;
the product runs it at 256 px (xr.encode.vision), where its masks stay usable and it is 4x faster.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xr.modeling import Pretrained


@dataclass
class LungUNetConfig:
    in_channels: int = 1
    num_classes: int = 2  # index 1 = lung
    image_size: int = 512
    feature_dim: int = 512  # channels of the deepest encoder stage (conv5s)


class UpBlock(nn.Module):
    """conv-BN-ReLU twice, then (optionally) nearest x2 upsampling, as the weights were trained."""

    def __init__(self, cin: int, cmid: int, cout: int, upsample: bool = True) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cmid, 3, padding=1), nn.BatchNorm2d(cmid)
        self.conv2, self.bn2 = nn.Conv2d(cmid, cout, 3, padding=1), nn.BatchNorm2d(cout)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x


class LungUNet(Pretrained):
    config_class = LungUNetConfig

    def __init__(self, config: LungUNetConfig) -> None:
        super().__init__(config)
        self.init_conv = nn.Conv2d(config.in_channels, 3, 1)  # grey -> the 3 channels VGG expects
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv3 = nn.Conv2d(128, 256, 3, padding=1)
        self.conv3s = nn.Conv2d(256, 256, 3, padding=1)
        self.conv4 = nn.Conv2d(256, 512, 3, padding=1)
        self.conv4s = nn.Conv2d(512, 512, 3, padding=1)
        self.conv5 = nn.Conv2d(512, 512, 3, padding=1)
        self.conv5s = nn.Conv2d(512, 512, 3, padding=1)
        self.center = UpBlock(512, 512, 256)
        self.dec5 = UpBlock(256 + 512, 512, 256)
        self.dec4 = UpBlock(256 + 512, 512, 128)
        self.dec3 = UpBlock(128 + 256, 256, 64)
        self.dec2 = UpBlock(64 + 128, 128, 32)
        self.dec1 = UpBlock(32 + 64, 64, 32, upsample=False)
        self.out = nn.Conv2d(32, config.num_classes, 1)

    def stages(self, x: torch.Tensor, depth: int = 5) -> list[torch.Tensor]:
        """The VGG encoder's first `depth` stages (each at half the size of the one before)."""
        blocks = [(self.conv1,), (self.conv2,), (self.conv3, self.conv3s), (self.conv4, self.conv4s),
                  (self.conv5, self.conv5s)]
        x, out = F.relu(self.init_conv(x)), []
        for i, convs in enumerate(blocks[:depth]):
            x = F.max_pool2d(x, 2) if i else x
            for conv in convs:
                x = F.relu(conv(x))
            out.append(x)
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) image scaled to x/255 - 0.5 -> (B,512,H/16,W/16) deepest encoder features."""
        return self.stages(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segment_and_encode(x)[0]

    def segment_and_encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From one pass: lung logits (B,2,H,W), the third stage (B,256,H/4,W/4: local texture, which the
        eye reads) and the deepest encoder features (B,512,H/16,W/16)."""
        s1, s2, s3, s4, s5 = self.stages(x)
        d = self.center(F.max_pool2d(s5, 2))
        d = self.dec5(torch.cat([d, s5], 1))
        d = self.dec4(torch.cat([d, s4], 1))
        d = self.dec3(torch.cat([d, s3], 1))
        d = self.dec2(torch.cat([d, s2], 1))
        d = self.dec1(torch.cat([d, s1], 1))
        return self.out(d), s3, s5
