"""Finding probabilities from a user's own chest-X-ray DenseNet-121 (`XR_DENSENET_WEIGHTS`), read the
way its authors read a film, with its label set mapped onto ours.

Which release a file is, is told by its shape: one input channel and 18 outputs is torchxrayvision
(`densenet121-res224-*`: centre crop to a square, 224 px, intensities scaled to [-1024, 1024], outputs
in `default_pathologies` order); three channels and 14 outputs is CheXNet (RGB 256 px, centre crop 224,
ImageNet mean and standard deviation, outputs in ChestX-ray14 order). Several outputs that map onto one
of our findings (Mass, Nodule and Lung Lesion) give their highest probability.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import CenterSpatialCrop, Compose, EnsureType, NormalizeIntensity, RepeatChannel, Resize, ScaleIntensityRange
from monai.visualize import GradCAM

from xr.config import Settings
from xr.encode.densenet import DenseNet121, densenet_from_env
from xr.encode.vision import GRID, batch
from xr.findings import FINDINGS, NIH_TO_FINDING
from xr.thresholds import Thresholds

XRV_PATHOLOGIES = (  # torchxrayvision's default_pathologies: the output order of its 18-output models
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis", "Effusion",
    "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia", "Lung Lesion", "Fracture",
    "Lung Opacity", "Enlarged Cardiomediastinum",
)
CHEXNET_CLASSES = (  # ChestX-ray14's order, which CheXNet's 14 outputs follow
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def ours(label: str) -> str | None:
    """A release's label in our vocabulary (its own CheXpert names pass through)."""
    return NIH_TO_FINDING.get(label) or (label if label in FINDINGS else None)


@dataclass(frozen=True)
class Release:
    name: str
    labels: tuple[str, ...]
    transform: Compose  # (1, H, W) grey 0..255 -> the model's input, channel first


def _square(img: torch.Tensor) -> torch.Tensor:
    side = min(img.shape[-2:])
    return CenterSpatialCrop((side, side))(img)


def torchxrayvision() -> Release:
    return Release("torchxrayvision DenseNet-121 (224 px, [-1024, 1024])", XRV_PATHOLOGIES, Compose([
        EnsureType(), _square, Resize((224, 224), mode="area"), ScaleIntensityRange(0, 255, -1024, 1024)]))


def chexnet() -> Release:
    return Release("CheXNet DenseNet-121 (RGB 224 px, ImageNet normalisation)", CHEXNET_CLASSES, Compose([
        Resize((256, 256), mode="area"), CenterSpatialCrop((224, 224)), ScaleIntensityRange(0, 255, 0, 1),
        RepeatChannel(3),
        NormalizeIntensity(subtrahend=IMAGENET_MEAN, divisor=IMAGENET_STD, channel_wise=True)]))


def release_of(model: DenseNet121) -> Release:
    shape = (model.config.in_channels, model.config.num_classes)
    if shape == (1, len(XRV_PATHOLOGIES)):
        return torchxrayvision()
    if shape == (3, len(CHEXNET_CLASSES)):
        return chexnet()
    raise ValueError(f"a DenseNet-121 with {shape[0]} input channels and {shape[1]} outputs is neither "
                     f"torchxrayvision (1, {len(XRV_PATHOLOGIES)}) nor CheXNet (3, {len(CHEXNET_CLASSES)})")


class DenseNetEye:
    """The drafter's eye when the user has a chest-X-ray DenseNet-121: probabilities per film."""

    def __init__(self, model: DenseNet121, thresholds: Thresholds | None = None) -> None:
        self.model = model.eval()
        self.thresholds = thresholds or Thresholds()
        self.release = release_of(model)
        self.name = self.release.name
        mapped = [ours(label) for label in self.release.labels]
        self.findings = [f for f in FINDINGS if f in mapped]
        # (outputs, findings) 0/1: which of the model's outputs speak for which of our findings
        self.assign = torch.tensor([[m == f for f in self.findings] for m in mapped], dtype=torch.bool)

    @torch.inference_mode()
    def read(self, pixels: list[np.ndarray], features: object = None) -> np.ndarray:
        """(N, len(findings)) probabilities for N grey uint8 films (it needs none of our features)."""
        p = torch.sigmoid(self.model(torch.from_numpy(batch(self.release.transform, pixels))))  # (N, outputs)
        spread = torch.where(self.assign[None], p[:, :, None], torch.zeros(()))  # (N, outputs, findings)
        return spread.amax(1).numpy()

    def evidence(self, pixels: np.ndarray, features: object, findings: list[str]) -> dict[str, np.ndarray]:
        """(GRID, GRID) Grad-CAM map per finding (MONAI), 0..1, on the model's last dense block, for the
        output that speaks loudest for it; on the model's own (cropped, resized) input frame."""
        x = torch.from_numpy(batch(self.release.transform, [pixels]))
        with torch.no_grad():
            p = torch.sigmoid(self.model(x))[0]
        cam = GradCAM(self.model, target_layers="features.norm5")
        out = {}
        for name in findings:
            outputs = self.assign[:, self.findings.index(name)].nonzero().flatten()
            best = int(outputs[p[outputs].argmax()])
            m = cam(x.clone().requires_grad_(True), class_idx=best)  # (1, 1, H, W), 0..1
            out[name] = torch.nn.functional.adaptive_avg_pool2d(m.detach(), GRID)[0, 0].numpy()
        return out


def densenet_eye(s: Settings) -> DenseNetEye | None:
    """With the weights' folder's thresholds.json where the user chose thresholds for their model (same format
    as the shipped head's), else 0.5 for every finding."""
    model = densenet_from_env(s)
    if model is None or s.densenet_weights is None:
        return None
    return DenseNetEye(model, Thresholds.load(s.densenet_weights.parent))
