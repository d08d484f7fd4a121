"""Targets: every accepted form explains the quantity it names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import seethrough as st
from seethrough._core.targets import Class, Custom, Predicted, as_target
from seethrough.attribution.integrated import integration_points
from seethrough.testing import TinyCNN, TinyMLP, TinyResNet, seeded

captum_attr = pytest.importorskip("captum.attr")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning"),
    pytest.mark.filterwarnings("ignore::seethrough.ZeroAttributionWarning"),
    pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar:UserWarning"),
]


@pytest.fixture
def cnn():
    return seeded(TinyCNN)


@pytest.fixture
def x():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def input_grad(model, x, score_fn):
    """Reference: d sum(score_fn(model(x))) / dx with plain autograd."""
    xg = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(score_fn(model(xg)).sum(), xg)
    return g


def grad_of(model, x, target):
    return st.Saliency(model, abs=False).attribute(x, target=target).attributions


# -- class targets --------------------------------------------------------------------


def test_int_target(cnn, x):
    expected = input_grad(cnn, x, lambda out: out[:, 2])
    expl = st.Saliency(cnn, abs=False).attribute(x, target=2)
    torch.testing.assert_close(expl.attributions, expected, rtol=1e-6, atol=1e-7)
    assert expl.target_indices.tolist() == [2, 2, 2]
    assert expl.target == "Class(2)"
    torch.testing.assert_close(expl.scores, cnn(x)[:, 2].detach())


@pytest.mark.parametrize("form", ["list", "tuple", "tensor", "numpy"])
def test_per_sample_targets(cnn, x, form):
    idx = [4, 0, 2]
    target = {"list": idx, "tuple": tuple(idx), "tensor": torch.tensor(idx), "numpy": np.array(idx)}[form]
    expected = input_grad(cnn, x, lambda out: out[torch.arange(3), torch.tensor(idx)])
    expl = st.Saliency(cnn, abs=False).attribute(x, target=target)
    torch.testing.assert_close(expl.attributions, expected, rtol=1e-6, atol=1e-7)
    assert expl.target_indices.tolist() == idx
    # each sample's attribution is that of its own class alone
    for i, c in enumerate(idx):
        torch.testing.assert_close(expl.attributions[i], grad_of(cnn, x[i : i + 1], c)[0], rtol=1e-6, atol=1e-7)


def test_one_element_list_applies_to_all(cnn, x):
    torch.testing.assert_close(grad_of(cnn, x, [1]), grad_of(cnn, x, 1), rtol=0, atol=0)


def test_predicted_picks_argmax_of_clean_output(cnn, x):
    x = x * 3
    pred = cnn(x).argmax(1)
    expl = st.Saliency(cnn, abs=False).attribute(x, target=None)
    assert expl.target_indices.tolist() == pred.tolist()
    assert expl.target == f"Class({pred.tolist()})"
    torch.testing.assert_close(expl.attributions, grad_of(cnn, x, pred), rtol=0, atol=0)
    assert not torch.allclose(expl.attributions, grad_of(cnn, x, (pred + 1) % 5), atol=1e-4)
    assert isinstance(as_target(None), Predicted)


def test_predicted_on_single_output_model():
    model = nn.Sequential(nn.Linear(4, 1)).eval()
    x = torch.randn(3, 4)
    expl = st.Saliency(model, abs=False).attribute(x, target=None)
    torch.testing.assert_close(expl.attributions, model[0].weight.detach().expand(3, 4), rtol=1e-6, atol=1e-7)


def test_predicted_stays_fixed_along_integrated_gradients_path():
    model = seeded(TinyMLP)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    steps = 8
    clean = model(x).argmax(1)
    alphas, _ = integration_points(steps, "gausslegendre")
    with torch.no_grad():
        path_pred = torch.stack([model(float(a) * x).argmax(1) for a in alphas])
    assert bool((path_pred != clean).any()), "precondition: the argmax changes along the path"

    ig = st.IntegratedGradients(model, steps=steps)
    got = ig.attribute(x, target=None)
    fixed = ig.attribute(x, target=clean)
    per_row_argmax = ig.attribute(x, target=lambda out: out.max(dim=1).values)
    assert got.target_indices.tolist() == clean.tolist()
    torch.testing.assert_close(got.attributions, fixed.attributions, rtol=0, atol=0)
    assert not torch.allclose(got.attributions, per_row_argmax.attributions, atol=1e-4)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_class_difference_is_linear(cnn, x, method):
    def run(target):
        if method == "saliency":
            return st.Saliency(cnn, abs=False).attribute(x, target=target).attributions
        return st.IntegratedGradients(cnn, steps=8).attribute(x, target=target).attributions

    a, b = [1, 3, 0], [2, 2, 4]
    diff = run(st.ClassDifference(a, b))
    torch.testing.assert_close(diff, run(a) - run(b), rtol=1e-5, atol=1e-6)
    diff_int = run(st.ClassDifference(4, 0))
    torch.testing.assert_close(diff_int, run(4) - run(0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(diff_int, run(4), atol=1e-4)


def test_class_difference_describe_and_indices(cnn, x):
    expl = st.Saliency(cnn).attribute(x, target=st.ClassDifference(1, 2))
    assert expl.target == "ClassDifference(1, 2)"
    assert expl.target_indices is None
    torch.testing.assert_close(expl.scores, (cnn(x)[:, 1] - cnn(x)[:, 2]).detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("output,wrap", [("softmax", nn.Softmax(dim=1)), ("log_softmax", nn.LogSoftmax(dim=1))])
def test_class_output_transform_matches_captum_on_wrapped_model(cnn, x, output, wrap):
    target = torch.tensor([0, 3, 1])
    ours = st.Saliency(cnn).attribute(x, target=Class(target, output=output)).attributions
    ref = captum_attr.Saliency(nn.Sequential(cnn, wrap).eval()).attribute(x, target=target)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    logit = st.Saliency(cnn).attribute(x, target=target).attributions
    assert not torch.allclose(ours, logit, atol=1e-4)


def test_predicted_with_softmax_output(cnn, x):
    pred = cnn(x).argmax(1)
    got = st.Saliency(cnn).attribute(x, target=Predicted(output="softmax")).attributions
    torch.testing.assert_close(
        got, st.Saliency(cnn).attribute(x, target=Class(pred, output="softmax")).attributions, rtol=0, atol=0
    )


# -- internal targets -------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_cls,layer,index,shape",
    [
        (TinyCNN, "features.3", (5, 2, 6), (3, 3, 16, 16)),
        (TinyCNN, "features.4", (11, -1, 0), (3, 3, 16, 16)),
        (TinyResNet, "layer1.bn2", (3, 4, 4), (3, 3, 16, 16)),
        (TinyMLP, "net.2", (7,), (3, 10)),
    ],
)
def test_neuron_matches_captum_neuron_gradient(model_cls, layer, index, shape):
    model = seeded(model_cls)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    module = dict(model.named_modules())[layer]
    ours = grad_of(model, x, st.Neuron(layer, index))
    ref = captum_attr.NeuronGradient(model, module).attribute(x, neuron_selector=index)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    assert float(ours.abs().max()) > 0
    # the same via the module object
    torch.testing.assert_close(grad_of(model, x, st.Neuron(module, index)), ours, rtol=0, atol=0)


def test_neuron_int_index_on_flat_layer():
    model = seeded(TinyMLP)
    x = torch.randn(2, 10)
    ours = grad_of(model, x, st.Neuron("net.0", 3))
    ref = captum_attr.NeuronGradient(model, model.net[0]).attribute(x, neuron_selector=3)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("model_cls,layer,channel", [(TinyCNN, "features.3", 7), (TinyResNet, "layer2", 10)])
def test_channel_matches_captum_neuron_gradient(model_cls, layer, channel, reduce):
    model = seeded(model_cls)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    module = dict(model.named_modules())[layer]

    def selector(out):
        per_sample = out[:, channel].reshape(out.shape[0], -1)
        return per_sample.mean(dim=1) if reduce == "mean" else per_sample.sum(dim=1)

    ours = grad_of(model, x, st.Channel(layer, channel, reduce=reduce))
    ref = captum_attr.NeuronGradient(model, module).attribute(x, neuron_selector=selector)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    assert float(ours.abs().max()) > 0


def test_channel_scores_are_the_channel_mean(cnn, x):
    expl = st.Saliency(cnn).attribute(x, target=st.Channel("features.3", 2))
    act = cnn.features[:4](x)
    torch.testing.assert_close(expl.scores, act[:, 2].mean(dim=(1, 2)).detach(), rtol=1e-5, atol=1e-6)


def test_neuron_target_with_integrated_gradients_completeness(cnn, x):
    expl = st.IntegratedGradients(cnn, steps=64).attribute(x, target=st.Neuron("features.3", (5, 2, 6)))
    act = cnn.features[:4](x)[:, 5, 2, 6].detach()
    torch.testing.assert_close(expl.scores, act, rtol=1e-5, atol=1e-6)
    assert float(expl.delta.abs().max()) < 1e-2 * float(act.abs().max()) + 1e-4


# -- custom targets ---------------------------------------------------------------------


def test_custom_one_parameter(cnn, x):
    got = grad_of(cnn, x, lambda out: out[:, 1])
    torch.testing.assert_close(got, grad_of(cnn, x, 1), rtol=0, atol=0)
    got2 = grad_of(cnn, x, lambda out: out[:, 1] * 2 - out[:, 0])
    torch.testing.assert_close(got2, 2 * grad_of(cnn, x, 1) - grad_of(cnn, x, 0), rtol=1e-5, atol=1e-6)


def test_custom_two_parameters_gets_sample_index_per_row(cnn, x):
    idx = torch.tensor([4, 0, 2])
    seen = []

    def fn(out, samples):
        seen.append(samples.clone())
        return out[torch.arange(out.shape[0]), idx[samples]]

    assert Custom(fn)._takes_samples
    ig = st.IntegratedGradients(cnn, steps=6, batching=4)
    torch.testing.assert_close(
        ig.attribute(x, target=fn).attributions, ig.attribute(x, target=idx).attributions, rtol=0, atol=0
    )
    rows = torch.cat(seen[:-2])  # the last calls are the clean and baseline scores
    assert rows.numel() == 3 * 6
    assert sorted(rows.tolist()) == sorted([0, 1, 2] * 6)


def test_custom_varargs_gets_samples():
    def fn(*args):
        out, samples = args
        return out[:, 0] + 0 * samples

    assert Custom(fn)._takes_samples
    assert Custom(lambda out: out[:, 0]).name == "<lambda>"


def test_custom_named_function_in_description(cnn, x):
    def my_score(out):
        return out[:, 0]

    assert st.Saliency(cnn).attribute(x, target=my_score).target == "Custom(my_score)"


@pytest.mark.parametrize(
    "fn,got",
    [
        (lambda out: out, "(3, 5)"),
        (lambda out: out.sum(), "()"),
        (lambda out: out[:2, 0], "(2,)"),
        (lambda out: float(out.sum()), "float"),
    ],
)
def test_custom_bad_return_shape(cnn, x, fn, got):
    with pytest.raises(st.TargetError) as info:
        st.Saliency(cnn, batching=3).attribute(x, target=fn)
    msg = str(info.value)
    assert "one score per row" in msg and "(3,)" in msg and got in msg


def test_as_target_forms():
    assert isinstance(as_target(3), Class)
    assert isinstance(as_target(torch.tensor([1, 2])), Class)
    t = st.Neuron("a", 1)
    assert as_target(t) is t
    assert isinstance(as_target(lambda out: out[:, 0]), Custom)
    with pytest.raises(st.TargetError, match="reduce"):
        st.Channel("features.3", 0, reduce="max")
