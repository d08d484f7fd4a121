"""Rendering end to end: planted detectors are recovered, objectives rise, results are
seeded and independent of the chunking, the redirected ReLU wakes dead units, bad input
gives clear errors, and the model is left as it was."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _planted import PlantedNet, pattern_match
from PIL import Image
from torch import nn

from seethrough._core.errors import ConfigError, InputError, LayerError, ModelStateWarning, TargetError
from seethrough.featurevis import (
    ClassLogit,
    DeepDream,
    Direction,
    Diversity,
    FeatureVisualization,
    FeatureVisualizer,
    ImageParam,
    TotalVariation,
    channel,
    neuron,
    render,
    visualize_channels,
)
from seethrough.featurevis._relu import redirected_relu

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, snapshot  # noqa: E402


@pytest.fixture(scope="module")
def planted_vis():
    """Every channel of the planted layer, FFT and pixel parameterizations."""
    model = PlantedNet()
    fft = visualize_channels(model, "relu", size=32, steps=48)
    pixel = FeatureVisualizer(model, param="pixel", size=32, steps=48).visualize_channels("relu")
    return fft, pixel


@pytest.mark.parametrize("which", [0, 1])
def test_planted_detectors_are_recovered(planted_vis, which):
    vis = planted_vis[which]
    match = pattern_match(vis.images)  # (image of channel k, planted filter j)
    for k in range(3):
        own = float(match[k, k])
        others = max(float(match[k, j]) for j in range(3) if j != k)
        assert own > 3 * others, (k, match)
    assert vis.channels == (0, 1, 2) and vis.layer == "relu"


def test_colour_detector_renders_red(planted_vis):
    img = planted_vis[1].images[1]  # pixel parameterization, the red detector's channel
    r, g, b = (float(img[c].mean()) for c in range(3))
    assert r > g + 0.15 and r > b + 0.15, (r, g, b)


def test_objective_rises_and_final_scores_are_reported(planted_vis):
    for vis in planted_vis:
        h = vis.history
        assert h.shape == (48, 3)
        assert bool((h[-8:].mean(0) > h[:8].mean(0) + 0.1).all()), h
        # the objective on the untransformed final image is that of a visualization
        assert bool((vis.scores > h[0]).all())
    assert planted_vis[0].images.shape == (3, 3, 32, 32)
    assert 0.0 <= float(planted_vis[0].images.min()) and float(planted_vis[0].images.max()) <= 1.0


@pytest.mark.parametrize(
    "objective",
    [
        neuron("conv", 0),
        DeepDream("relu"),
        ClassLogit(2),
        Direction("relu", [1.0, 1.0, 0.0]),
        channel("relu", 0) - 0.1 * TotalVariation() + 0.2 * Diversity("relu"),
    ],
    ids=["neuron", "deepdream", "class", "direction", "composite"],
)
def test_every_objective_rises(objective):
    vis = render(PlantedNet(), objective, size=24, steps=24, batch=2)
    h = vis.history
    assert h.shape == (24, 2)
    assert float(h[-4:].mean()) > float(h[:4].mean()) + 0.05, h
    assert vis.objectives == (objective.describe(),) * 2


def test_one_render_optimises_a_different_objective_per_image():
    model = PlantedNet()
    vis = render(model, [channel("relu", 2), channel("relu", 0)], size=32, steps=32, param="pixel")
    match = pattern_match(vis.images)
    assert float(match[0, 2]) > 3 * float(match[0, 0])
    assert float(match[1, 0]) > 3 * float(match[1, 2])


def test_seeded_and_deterministic():
    model = PlantedNet()
    a = render(model, channel("relu", 0), size=16, steps=6, seed=3)
    b = render(model, channel("relu", 0), size=16, steps=6, seed=3)
    c = render(model, channel("relu", 0), size=16, steps=6, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    assert not torch.allclose(a.images, c.images)


def test_images_do_not_depend_on_the_chunking():
    model = PlantedNet()
    fv = FeatureVisualizer(model, size=16, steps=6)
    all_at_once = fv.visualize_channels("relu", batching=3)
    one_by_one = fv.visualize_channels("relu", batching=1)
    alone = fv.visualize_channels("relu", [2])
    assert all_at_once.settings["chunks"] == 1 and one_by_one.settings["chunks"] == 3
    torch.testing.assert_close(all_at_once.images, one_by_one.images, atol=1e-5, rtol=0)
    torch.testing.assert_close(all_at_once.images[2:], alone.images, atol=1e-5, rtol=0)
    auto = fv.visualize_channels("relu")  # sized from the measured bytes per image
    assert auto.settings["batch_size"] >= 1
    torch.testing.assert_close(auto.images, all_at_once.images, atol=1e-5, rtol=0)


def test_inputs_are_the_images_in_the_model_input_space():
    model = PlantedNet()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    vis = visualize_channels(model, "relu", [1], size=16, steps=4, mean=mean, std=std)
    expected = (vis.images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(vis.inputs, expected)
    vis = visualize_channels(model, "relu", [1], size=16, steps=4, input_range=(-1, 1))
    torch.testing.assert_close(vis.inputs, vis.images * 2 - 1)
    assert "input range [-1, 1]" in vis.settings["input_space"]
    # the final scores are those of the model on .inputs
    with torch.no_grad():
        act = model.relu(model.conv(vis.inputs))
    torch.testing.assert_close(vis.scores, act[:, 1].mean(dim=(1, 2)))


# -- redirected ReLU ---------------------------------------------------------------------
class DeadNet(nn.Module):
    """conv1 channel 0 reads red with bias -0.6: dead on every gray-ish image (an
    in-place ReLU); conv2 reads it. Only redirected gradients can wake it up."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(2, 1, 1)
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv1.weight[0, 0] = 1.0
            self.conv1.weight[1, 1] = 1.0
            self.conv1.bias.copy_(torch.tensor([-0.6, 0.0]))
            self.conv2.weight.zero_()
            self.conv2.weight[0, 0] = 1.0
            self.conv2.bias.zero_()

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


def test_redirected_relu_wakes_a_dead_unit():
    model = DeadNet().eval()
    off = render(model, channel("conv2", 0), size=8, steps=24, redirect_relu_steps=0)
    on = render(model, channel("conv2", 0), size=8, steps=24, redirect_relu_steps=16)
    assert float(off.history.abs().max()) == 0.0  # no gradient ever reaches the image
    assert float(on.history[-1]) > 0.02
    assert float(on.images[0, 0].mean()) > float(off.images[0, 0].mean()) + 0.03  # red went up


def test_redirected_relu_rule():
    x = torch.tensor([[-1.0, 2.0, -3.0], [-1.0, -2.0, -3.0]], requires_grad=True)
    g = torch.tensor([[1.0, 1.0, -1.0], [1.0, -1.0, -1.0]])
    with redirected_relu():
        y = torch.relu(x)
    y.backward(g)
    # row 0 has a live unit: the ordinary ReLU gradient; row 1 is dead everywhere: the
    # gradient passes where descent (-grad) pushes the input up, i.e. grad < 0
    assert x.grad.tolist() == [[0.0, 1.0, 0.0], [0.0, -1.0, -1.0]]
    assert torch._C._len_torch_function_stack() == 0


# -- bad input ----------------------------------------------------------------------------
class FixedSizeNet(nn.Module):
    """Takes only 16x16 images (a linear layer on the flattened map)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 5)
        self.eval()

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_unknown_channel_names_the_valid_range():
    with pytest.raises(
        TargetError, match=r"channel 3 is out of range for layer 'relu' with 3 channels \(valid: 0\.\.2\)"
    ):
        visualize_channels(PlantedNet(), "relu", [0, 3], size=16, steps=2)
    with pytest.raises(TargetError, match=r"valid: 0\.\.2"):
        render(PlantedNet(), channel("relu", 7), size=16, steps=2)
    with pytest.raises(TargetError, match="empty"):
        visualize_channels(PlantedNet(), "relu", [], size=16, steps=2)


def test_neuron_position_on_a_linear_layer():
    with pytest.raises(LayerError, match=r"'fc' gives per-image shape \(5,\).*without spatial positions"):
        render(FixedSizeNet(), neuron("fc", 1, x=2, y=2), size=16, steps=2)
    vis = render(FixedSizeNet(), neuron("fc", 1), size=16, steps=2)  # the unit: fine
    assert vis.images.shape == (1, 3, 16, 16)
    vis = visualize_channels(FixedSizeNet(), "fc", [0, 4], size=16, steps=2)  # linear: units
    assert vis.images.shape == (2, 3, 16, 16)


def test_a_size_the_model_cannot_take_says_which_to_use():
    with pytest.raises(InputError, match=r"3x32x32 images.*Sizes that work: 16; pass size=16"):
        visualize_channels(FixedSizeNet(), "fc", size=32, steps=2)


def test_size_changing_transforms_are_explained():
    from seethrough.featurevis import Pad

    with pytest.raises(InputError, match=r"size 20x20 after the transforms"):
        render(FixedSizeNet(), channel("fc", 0), size=16, steps=2, transforms=[Pad(2)])


def test_layer_and_setting_errors():
    with pytest.raises(LayerError, match="closest names"):
        visualize_channels(PlantedNet(), "reluu", size=16, steps=2)
    with pytest.raises(ConfigError, match="steps"):
        render(PlantedNet(), channel("relu", 0), steps=0)
    with pytest.raises(ConfigError, match="lr"):
        render(PlantedNet(), channel("relu", 0), lr=-1.0)
    with pytest.raises(ConfigError, match="transforms"):
        render(PlantedNet(), channel("relu", 0), transforms="lucid")
    with pytest.raises(ConfigError, match="image_channels"):
        render(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), ClassLogit(0), steps=1)
    with pytest.raises(ConfigError, match="3-channel"):
        render(PlantedNet(), channel("relu", 0), param=ImageParam(decorrelate=True), image_channels=1, steps=1)


# -- the model is left as it was ------------------------------------------------------------
def _calls():
    return [
        lambda m: visualize_channels(m, "relu", size=16, steps=3),
        lambda m: render(m, channel("relu", 0) + 0.1 * Diversity("relu"), size=16, steps=3, batch=2),
        lambda m: render(m, ClassLogit(1), size=16, steps=20, redirect_relu_steps=20),
        lambda m: visualize_channels(m, "relu", [5], size=16, steps=2),  # bad channel
        lambda m: render(m, channel("relu", 0), size=16, steps=2, transforms=[lambda x: x[:, :2]]),  # bad transform
        lambda m: render(m, neuron("fc", 0, x=1, y=1), size=16, steps=2),  # no positions
    ]


@pytest.mark.parametrize("i", range(6))
def test_model_unchanged(i):
    model = PlantedNet()
    model.fc.weight.requires_grad_(False)  # mixed flags must come back as they were
    snap = snapshot(model)
    try:
        _calls()[i](model)
    except (ConfigError, TargetError, LayerError, InputError):
        pass
    assert_unchanged(model, snap)


def test_train_mode_is_warned_about_and_restored():
    model = PlantedNet().train()
    snap = snapshot(model)
    with pytest.warns(ModelStateWarning, match="train mode"):
        render(model, channel("relu", 0), size=16, steps=2)
    assert_unchanged(model, snap)
    assert model.training


# -- results ------------------------------------------------------------------------------
def test_save_pngs(tmp_path):
    vis = visualize_channels(PlantedNet(), "relu", [0, 2], size=16, steps=2)
    paths = vis.save_pngs(tmp_path / "out", scale=2)
    assert [p.name for p in paths] == ["channel_0000.png", "channel_0002.png"]
    arr = np.asarray(Image.open(paths[1]))
    assert arr.shape == (32, 32, 3)
    expected = (vis.images[1].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(arr[::2, ::2], expected)
    r = render(PlantedNet(), channel("relu", 0), size=16, steps=2, batch=2)
    assert [p.name for p in r.save_pngs(tmp_path / "r")] == ["image_0000.png", "image_0001.png"]
    with pytest.raises(ConfigError):
        vis.save_pngs(tmp_path, scale=0)
    assert vis.n_evaluations >= 2 * 3 and vis.seconds > 0
    assert vis.settings["size"] == (16, 16) and vis.settings["param"]["space"] == "fft"


def test_a_target_of_the_package_is_rendered():
    import seethrough as st

    a = render(PlantedNet(), st.Channel("relu", 1), size=16, steps=4, seed=5)
    b = render(PlantedNet(), channel("relu", 1), size=16, steps=4, seed=5)
    assert a.objectives == ("channel('relu', 1)",)
    torch.testing.assert_close(a.images, b.images)
    c = render(PlantedNet(), st.Neuron("fc", 1), size=16, steps=4, seed=5)  # scored by the target
    assert c.objectives == ("from_target(Neuron('fc', (1,)))",) and c.history.shape == (4, 1)


def test_input_shape_comes_from_the_caller_or_the_model_not_the_zoo():
    from seethrough import zoo

    mnist = zoo.load("mnist-cnn")
    info = zoo.info("mnist-cnn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vis = visualize_channels(mnist, "features.2", [0, 1], steps=2, input_shape=info.input_shape)
    assert vis.images.shape == (2, 1, 28, 28)  # the card's shape, passed in by the caller
    assert vis.settings["size"] == (28, 28) and vis.settings["image_channels"] == 1
    # without it: channels from the first convolution, the default size (no zoo lookup)
    assert visualize_channels(mnist, "features.2", [0], steps=1).images.shape == (1, 1, 64, 64)
    # size= and image_channels= win over input_shape
    vis = render(PlantedNet(), channel("relu", 0), steps=1, size=16, input_shape=(3, 40, 40))
    assert vis.images.shape == (1, 3, 16, 16)
    # a model that states its own input shape
    model = PlantedNet()
    model.input_shape = (3, 20, 24)
    assert render(model, channel("relu", 0), steps=1).images.shape == (1, 3, 20, 24)
    with pytest.raises(ConfigError, match=r"input_shape must be \(channels, height, width\)"):
        render(PlantedNet(), channel("relu", 0), steps=1, input_shape=(32, 32))
    with pytest.raises(ConfigError, match="input_shape"):
        render(PlantedNet(), channel("relu", 0), steps=1, input_shape=(3, 0, 32))


def test_the_family_imports_no_zoo_data_or_app():
    """Not at import, and not while rendering (the input shape used to be looked up in the zoo)."""
    import subprocess

    code = (
        "import sys, torch\n"
        "from seethrough.featurevis import render, channel\n"
        "model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())\n"
        "vis = render(model, channel('0', 1), steps=1)\n"
        "vis.to_html()\n"
        "assert vis.images.shape == (1, 3, 64, 64), vis.images.shape\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['seethrough', 'zoo'], ['seethrough', 'data'], ['seethrough', 'app'], ['seethrough', 'cli']))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_result_saves_loads_and_has_views(tmp_path):
    vis = visualize_channels(PlantedNet(), "relu", [0, 2], size=16, steps=2)
    path = vis.save(tmp_path / "vis.safetensors")
    back = FeatureVisualization.load(path)
    assert isinstance(back, FeatureVisualization)
    for name in ("images", "inputs", "history", "scores"):
        torch.testing.assert_close(getattr(back, name), getattr(vis, name))
    assert back.objectives == vis.objectives and back.channels == (0, 2) and back.layer == "relu"
    assert back.settings == vis.settings and back.settings["size"] == (16, 16)
    with pytest.raises(TypeError):
        back.settings["steps"] = 3  # frozen deeply by the Result base
    html = vis.to_html()
    assert html.count('class="st-sample"') == 2 and "channel 2 (objective" in html and "2 Adam steps" in html
    fig = vis.plot()
    assert len(fig.axes[0].child_axes) == 2
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    assert vis.plot(ax=ax) is ax.figure
