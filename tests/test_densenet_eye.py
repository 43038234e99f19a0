"""A user's own chest-X-ray DenseNet-121 as the drafter's eye: a random model saved in torchxrayvision's
and in CheXNet's naming, loaded from XR_DENSENET_WEIGHTS, read with its release's preprocessing, its
labels mapped onto ours, all through a real draft."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.test_backbones import chexnet_names, random_densenet
from xr.config import settings
from xr.draft.dffg import DFFGDrafter
from xr.encode.densenet_eye import CHEXNET_CLASSES, XRV_PATHOLOGIES, DenseNetEye, release_of
from xr.encode.finding_head import FindingHead
from xr.ingest import load_study

NIH_IMAGE = "data/nih_cxr14_sample/images/00000100_000.png"


def loud_effusion(labels: tuple[str, ...], in_channels: int):
    """A random DenseNet whose only confident output is Effusion: the mapping must put it on ours."""
    model = random_densenet(num_classes=len(labels), in_channels=in_channels)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-6.0)
        model.classifier.bias[labels.index("Effusion")] = 6.0
    return model


@pytest.mark.parametrize("release", ["torchxrayvision", "chexnet"])
def test_a_densenet_from_the_environment_is_the_drafts_eye(release, shared, tmp_path):
    if release == "torchxrayvision":
        model = loud_effusion(XRV_PATHOLOGIES, 1)
        path = tmp_path / "densenet121-res224-all.safetensors"
        save_file(model.state_dict(), str(path))
    else:
        model = loud_effusion(CHEXNET_CLASSES, 3)
        path = tmp_path / "model.pth.tar"
        torch.save({"state_dict": chexnet_names(model.state_dict())}, path)
    s = replace(settings(), data_dir=tmp_path / "data", densenet_weights=path)
    drafter = DFFGDrafter(s=s)
    result = drafter.draft(load_study([shared / NIH_IMAGE], s))

    assert result.timings["eye"] == release_of(model).name
    assert release in str(result.timings["eye"]).lower()
    assert any(str(result.timings["eye"]) in n for n in result.notes)
    assert result.findings["Pleural Effusion"] > 0.99  # Effusion -> Pleural Effusion
    read = {f: p for f, p in result.findings.items() if f in drafter.eye.findings}
    assert max(p for f, p in read.items() if f != "Pleural Effusion") < 0.01
    assert "Support Devices" not in drafter.eye.findings  # no release has it: left to the prompt's other source


def test_each_release_reads_the_film_its_own_way(shared):
    pixels = load_study([shared / NIH_IMAGE]).images[0].pixels
    xrv = DenseNetEye(random_densenet(18, 1)).release.transform(torch.from_numpy(pixels.copy())[None].float())
    chexnet = DenseNetEye(random_densenet(14, 3)).release.transform(torch.from_numpy(pixels.copy())[None].float())
    assert tuple(xrv.shape) == (1, 224, 224) and -1024 <= float(xrv.min()) and float(xrv.max()) <= 1024
    assert float(xrv.max()) > 500  # the [-1024, 1024] scale, not [0, 1]
    assert tuple(chexnet.shape) == (3, 224, 224)
    assert abs(float(chexnet[0].mean()) - float(((pixels / 255 - 0.485) / 0.229).mean())) < 0.3  # ImageNet-normalised


def test_a_densenet_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="neither torchxrayvision"):
        DenseNetEye(random_densenet(1000, 3))


def test_without_a_densenet_the_shipped_head_is_the_eye(shared, tmp_path):
    s = replace(settings(), data_dir=tmp_path / "data", densenet_weights=None)
    drafter = DFFGDrafter(s=s)
    assert isinstance(drafter.eye, FindingHead)
    result = drafter.draft(load_study([shared / NIH_IMAGE], s))
    assert result.timings["eye"] == FindingHead.name
    assert np.isfinite(list(result.findings.values())).all()
