"""Bad inputs and settings: the documented error class, a message naming the problem,
and a model left exactly as it was."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from _model_state import assert_unchanged, freeze_some, snapshot

import seethrough as st
from seethrough.testing import DeadBranchNet, NoGradNet, ReusedReLUNet, TinyCNN, TinyMLP, seeded


@pytest.fixture
def cnn():
    model = seeded(TinyCNN)
    freeze_some(model)
    return model


@pytest.fixture
def x():
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def expect_error(model, call, error, *words, inputs=None):
    """Run ``call()``; it must raise ``error`` whose message contains every word
    (case-insensitive), and the model (and inputs) must be unchanged."""
    snap = snapshot(model, inputs)
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert re.search(re.escape(word), message, re.IGNORECASE), f"{word!r} not in message: {message}"
    assert_unchanged(model, snap, inputs)
    return message


# -- inputs ---------------------------------------------------------------------------


def test_inputs_not_a_tensor(cnn, x):
    for bad in (x.numpy(), x.tolist()):
        expect_error(
            cnn, lambda: st.Saliency(cnn).attribute(bad, target=0), st.InputError, "torch.Tensor", type(bad).__name__
        )


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_integer_dtype(cnn, x, dtype):
    bad = (x > 0).to(dtype)
    expect_error(
        cnn,
        lambda: st.Saliency(cnn).attribute(bad, target=0),
        st.InputError,
        "dtype",
        str(dtype),
        "floating",
        inputs=bad,
    )


def test_no_batch_dimension(cnn):
    bad = torch.tensor(1.0)
    expect_error(
        cnn, lambda: st.Saliency(cnn).attribute(bad, target=0), st.InputError, "batch dimension", "shape ()", inputs=bad
    )


def test_empty_batch(cnn):
    bad = torch.zeros(0, 3, 16, 16)
    expect_error(
        cnn,
        lambda: st.IntegratedGradients(cnn).attribute(bad, target=0),
        st.InputError,
        "at least one sample",
        "(0, 3, 16, 16)",
        inputs=bad,
    )


@pytest.mark.parametrize(
    "value,words",
    [
        (float("nan"), ("1 NaN", "0 infinite")),
        (float("inf"), ("0 NaN", "1 infinite")),
        (-float("inf"), ("1 infinite",)),
    ],
)
def test_non_finite_inputs(cnn, x, value, words):
    bad = x.clone()
    bad[1, 2, 3, 4] = value
    expect_error(
        cnn, lambda: st.GradCAM(cnn, layer="features.3").attribute(bad, target=0), st.InputError, *words, inputs=bad
    )


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "gradcam"])
def test_wrong_input_shape_for_the_model(cnn, method):
    bad = torch.randn(2, 4, 16, 16)  # 4 channels for a 3-channel model
    msg = expect_error(
        cnn,
        lambda: st.build_method(method, cnn, layer="features.3").attribute(bad, target=0),
        st.InputError,
        "forward pass failed",
        "shape",
        inputs=bad,
    )
    assert re.search(r"\(\d+, 4, 16, 16\)", msg), msg


def test_single_sample_without_batch_dimension_names_the_shape(cnn, x):
    bad = x[0]  # (3, 16, 16): the leading 3 is taken as the batch
    expect_error(
        cnn,
        lambda: st.Saliency(cnn, batching=3).attribute(bad, target=0),
        st.InputError,
        "shape (3, 16, 16)",
        "batch first",
        inputs=bad,
    )


def test_inputs_on_another_device_than_the_model(x):
    model = seeded(TinyCNN).to("meta")
    expect_error(
        model, lambda: st.Saliency(model).attribute(x, target=0), st.InputError, "on cpu", "model is on meta", inputs=x
    )


def test_inputs_on_meta_device_for_a_cpu_model(cnn):
    bad = torch.randn(2, 3, 16, 16, device="meta")
    expect_error(cnn, lambda: st.Saliency(cnn).attribute(bad, target=0), st.InputError, "meta", "cpu")


# -- targets --------------------------------------------------------------------------


@pytest.mark.parametrize("target", [5, -1, [0, 9], torch.tensor([7, 1])])
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "gradcam"])
def test_target_out_of_range(cnn, x, method, target):
    expect_error(
        cnn,
        lambda: st.build_method(method, cnn, layer="features.3").attribute(x, target=target),
        st.TargetError,
        "out of range",
        "5 classes",
        "0..4",
        inputs=x,
    )


@pytest.mark.parametrize("target", [[0, 1, 2], torch.tensor([0, 1, 2, 3])])
def test_wrong_number_of_per_sample_targets(cnn, x, target):
    n = len(target)
    expect_error(
        cnn,
        lambda: st.Saliency(cnn).attribute(x, target=target),
        st.TargetError,
        f"{n} target indices",
        "2 samples",
        inputs=x,
    )


@pytest.mark.parametrize(
    "target,words",
    [
        (1.0, ("float",)),
        (torch.tensor([0.0, 1.0]), ("integer", "float32")),
        ([0.5, 1.0], ("integer", "float")),
        (np.array([0.0, 1.0]), ("integer", "float64")),
        (True, ("bool",)),
        ("cat", ("str",)),
    ],
)
def test_non_integer_target(cnn, x, target, words):
    expect_error(cnn, lambda: st.Saliency(cnn).attribute(x, target=target), st.TargetError, *words, inputs=x)


def test_custom_target_of_wrong_shape(cnn, x):
    expect_error(
        cnn,
        lambda: st.Saliency(cnn, batching=2).attribute(x, target=lambda out: out.sum()),
        st.TargetError,
        "one score per row",
        "(2,)",
        inputs=x,
    )


def test_neuron_and_channel_out_of_range(cnn, x):
    expect_error(
        cnn,
        lambda: st.Saliency(cnn).attribute(x, target=st.Neuron("features.3", (12, 0, 0))),
        st.TargetError,
        "(12, 0, 0)",
        "(12, 8, 8)",
        inputs=x,
    )
    expect_error(
        cnn,
        lambda: st.Saliency(cnn).attribute(x, target=st.Neuron("features.3", (1, 0))),
        st.TargetError,
        "does not fit",
        inputs=x,
    )
    expect_error(
        cnn,
        lambda: st.Saliency(cnn).attribute(x, target=st.Channel("features.3", 12)),
        st.TargetError,
        "channel 12",
        "12 channels",
        inputs=x,
    )
    expect_error(
        cnn,
        lambda: st.Saliency(cnn).attribute(x, target=st.Neuron("features.9", 0)),
        st.LayerError,
        "features.9",
        inputs=x,
    )


def test_bad_class_output_transform():
    with pytest.raises(st.TargetError, match="softmax"):
        st.Class(0, output="probability")


# -- layers ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam", "layer_gradient_x_activation"])
def test_unknown_layer_name_suggests_close_names(cnn, x, method):
    msg = expect_error(
        cnn,
        lambda: st.build_method(method, cnn, layer="features.33").attribute(x, target=0),
        st.LayerError,
        "unknown layer",
        "'features.33'",
        inputs=x,
    )
    hint = msg.split("closest names:")[1]
    assert "'features.3'" in hint
    assert "'classifier'" not in hint


def test_layer_module_not_in_the_model(cnn, x):
    other = seeded(TinyCNN).features[3]
    expect_error(
        cnn,
        lambda: st.GradCAM(cnn, layer=other).attribute(x, target=0),
        st.LayerError,
        "not part of the model",
        "Conv2d",
        inputs=x,
    )


def test_layer_not_on_the_path_to_the_output():
    model = seeded(DeadBranchNet)
    x = torch.randn(2, 10)
    expect_error(
        model,
        lambda: st.LayerGradientXActivation(model, layer="side").attribute(x, target=0),
        st.GradientError,
        "'side'",
        "depend",
        inputs=x,
    )


def test_layer_not_on_the_path_message_says_so():
    model = seeded(DeadBranchNet)
    x = torch.randn(2, 10)
    expect_error(
        model,
        lambda: st.LayerGradientXActivation(model, layer="side").attribute(x, target=0),
        st.GradientError,
        "not on the path",
    )


def test_gradcam_on_layer_without_spatial_dims():
    model = seeded(TinyMLP)
    x = torch.randn(2, 10)
    expect_error(
        model,
        lambda: st.GradCAM(model, layer="net.0").attribute(x, target=0),
        st.LayerError,
        "'net.0'",
        "spatial",
        "(2, 16)",
        inputs=x,
    )


@pytest.mark.parametrize("method", ["gradcam", "layer_gradient_x_activation"])
def test_reused_module_as_layer(method):
    model = seeded(ReusedReLUNet)
    x = torch.randn(2, 3, 8, 8)
    expect_error(
        model,
        lambda: st.build_method(method, model, layer="act").attribute(x, target=0),
        st.LayerError,
        "more than once",
        "reused",
        inputs=x,
    )


def test_layer_method_without_layer(cnn):
    with pytest.raises(st.ConfigError, match="needs a layer"):
        st.build_method("gradcam", cnn)


# -- gradients ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "smoothgrad", "guided_backprop"])
def test_model_without_gradients(method):
    model = seeded(NoGradNet)
    x = torch.randn(2, 10)
    expect_error(
        model,
        lambda: st.build_method(method, model).attribute(x, target=0),
        st.GradientError,
        "no_grad",
        "inputs",
        inputs=x,
    )


# -- settings -------------------------------------------------------------------------


def test_integrated_gradients_settings(cnn, x):
    expect_error(
        cnn,
        lambda: st.IntegratedGradients(cnn, rule="simpson").attribute(x, 0),
        st.ConfigError,
        "rule",
        "'simpson'",
        "gausslegendre",
        inputs=x,
    )
    expect_error(
        cnn, lambda: st.IntegratedGradients(cnn, steps=0).attribute(x, 0), st.ConfigError, "steps", "got 0", inputs=x
    )
    expect_error(
        cnn,
        lambda: st.IntegratedGradients(cnn, steps=1, rule="trapezoid").attribute(x, 0),
        st.ConfigError,
        "steps >= 2",
        inputs=x,
    )
    expect_error(cnn, lambda: st.IntegratedGradients(cnn, steps=2.5).attribute(x, 0), st.ConfigError, "steps", inputs=x)
    expect_error(
        cnn,
        lambda: st.IntegratedGradients(cnn, baseline="noise").attribute(x, 0),
        st.ConfigError,
        "unknown baseline",
        "'noise'",
        "zeros",
        inputs=x,
    )
    expect_error(
        cnn, lambda: st.IntegratedGradients(cnn, baseline=[]).attribute(x, 0), st.ConfigError, "empty", inputs=x
    )


@pytest.mark.parametrize("where", ["constructor", "call"])
def test_baseline_of_wrong_shape(cnn, x, where):
    base = torch.zeros(3, 5, 5)
    if where == "constructor":
        call = lambda: st.IntegratedGradients(cnn, steps=4, baseline=base).attribute(x, 0)  # noqa: E731
    else:
        call = lambda: st.IntegratedGradients(cnn, steps=4).attribute(x, 0, baseline=base)  # noqa: E731
    expect_error(cnn, call, st.InputError, "baseline", "(3, 5, 5)", "(2, 3, 16, 16)", inputs=x)


@pytest.mark.parametrize("cls", [st.SmoothGrad, st.SmoothGradSquared, st.VarGrad])
def test_smoothgrad_without_samples(cnn, x, cls):
    expect_error(cnn, lambda: cls(cnn, n_samples=0).attribute(x, 0), st.ConfigError, "n_samples", "got 0", inputs=x)
    expect_error(cnn, lambda: cls(cnn, noise_level=-0.1).attribute(x, 0), st.ConfigError, "noise_level", inputs=x)


def test_smoothgrad_wrapping_a_method_of_another_model(cnn, x):
    expect_error(
        cnn,
        lambda: st.SmoothGrad(cnn, method=st.Saliency(seeded(TinyCNN))).attribute(x, 0),
        st.ConfigError,
        "different model",
        inputs=x,
    )


@pytest.mark.parametrize(
    "batching,words", [(0, ("batch_size", "got 0")), (-3, ("batch_size",)), ("auto", ("batching", "str"))]
)
def test_bad_batching(cnn, x, batching, words):
    expect_error(cnn, lambda: st.Saliency(cnn, batching=batching).attribute(x, 0), st.ConfigError, *words, inputs=x)


def test_bad_interpolation(cnn, x):
    expect_error(
        cnn,
        lambda: st.GradCAM(cnn, layer="features.3", interpolation="cubic").attribute(x, 0),
        st.ConfigError,
        "interpolation",
        "'cubic'",
        inputs=x,
    )


@pytest.mark.parametrize(
    "name,suggestion",
    [("integrated_gradient", "'integrated_gradients'"), ("grad_cam", "'gradcam'"), ("saliancy", "'saliency'")],
)
def test_unknown_method_name_suggests_close_names(name, suggestion):
    with pytest.raises(st.ConfigError) as info:
        st.get_method(name)
    msg = str(info.value)
    assert f"unknown method {name!r}" in msg
    assert suggestion in msg.split("Did you mean")[1].split("?")[0]


def test_method_name_normalisation():
    assert st.get_method("GradCAM-PP").name == "gradcam_pp"
    assert st.get_method(" Saliency ").name == "saliency"


def test_every_error_is_a_value_error():
    for cls in (st.InputError, st.LayerError, st.TargetError, st.GradientError, st.ConfigError):
        assert issubclass(cls, st.SeethroughError) and issubclass(cls, ValueError)
    assert issubclass(st.ModelStateWarning, st.SeethroughWarning) and issubclass(st.SeethroughWarning, UserWarning)


def test_non_module_model(x):
    with pytest.raises(TypeError, match="nn.Module"):
        st.Saliency(lambda t: t.sum(1)).attribute(x, 0)
