"""Internal influence: hand-computed gradients on tiny linear and conv models, max and mean
reduction, the path distribution against Captum's layer integrated gradients and
completeness, linearity in the quantity of interest, distributions over a class."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seethrough as st
from seethrough.influence import InfluenceResult, InternalInfluence
from seethrough.testing import TinyCNN, TinyMLP, seeded


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class LinReLULin(nn.Module):
    """x -> fc1 -> relu -> fc2: the influence at fc1 is W2[c] where fc1's output is positive."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 5)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class ConvPoolLin(nn.Module):
    """x -> conv -> relu -> global mean -> fc: the influence at conv of channel j at every
    position is W[c, j] / (H W) where the conv output is positive."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))


def _seeded(cls):
    torch.manual_seed(0)
    return cls().eval()


def test_flat_slice_equals_hand_computed_gradient():
    model = _seeded(LinReLULin)
    x = torch.randn(6, 4, generator=_gen(1))
    res = InternalInfluence(model, layer="fc1").compute(x, 2)
    with torch.no_grad():
        z = model.fc1(x)
    per = model.fc2.weight[2].detach() * (z > 0).float()  # (6, 5)
    assert res.neuron == "unit" and res.reduce is None
    torch.testing.assert_close(res.per_instance, per)
    torch.testing.assert_close(res.influence, per.mean(dim=0))
    torch.testing.assert_close(res.neuron_influence, per.mean(dim=0))
    torch.testing.assert_close(res.scores, model(x)[:, 2].detach())
    assert res.instances.tolist() == list(range(6))


def test_conv_slice_equals_hand_computed_gradient_and_reductions():
    model = _seeded(ConvPoolLin)
    x = torch.randn(5, 2, 6, 6, generator=_gen(2))
    with torch.no_grad():
        z = model.conv(x)
    w = model.fc.weight[1].detach().reshape(1, 3, 1, 1) / 36.0
    per = w * (z > 0).float()  # (5, 3, 6, 6)
    mean_map = per.mean(dim=0)
    r_max = InternalInfluence(model, layer="conv", reduce="max").compute(x, st.Class(1))
    r_mean = InternalInfluence(model, layer="conv", reduce="mean").compute(x, st.Class(1))
    assert r_max.neuron == "channel" and r_max.reduce == "max" and r_mean.reduce == "mean"
    torch.testing.assert_close(r_max.influence, mean_map)
    torch.testing.assert_close(r_mean.influence, mean_map)
    # a channel: the reduction over positions of the distribution's mean map
    torch.testing.assert_close(r_max.neuron_influence, mean_map.reshape(3, -1).amax(dim=1))
    torch.testing.assert_close(r_mean.neuron_influence, mean_map.reshape(3, -1).mean(dim=1))
    # per instance: each instance's own map reduced the same way
    torch.testing.assert_close(r_max.per_instance, per.reshape(5, 3, -1).amax(dim=2))
    torch.testing.assert_close(r_mean.per_instance, per.reshape(5, 3, -1).mean(dim=2))
    # max and mean differ here (ReLU gating varies over positions), and max >= mean
    assert not torch.allclose(r_max.neuron_influence, r_mean.neuron_influence)
    assert bool((r_max.neuron_influence >= r_mean.neuron_influence - 1e-7).all())


def test_top_neurons_by_sign():
    model = _seeded(LinReLULin)
    x = torch.randn(8, 4, generator=_gen(3))
    res = InternalInfluence(model, layer="fc1").compute(x, 0)
    v = res.neuron_influence
    top = res.top_positive(2)
    bottom = res.top_negative(2)
    assert v[top[0]] == v.max() and v[top[0]] >= v[top[1]]
    assert v[bottom[0]] == v.min() and v[bottom[0]] <= v[bottom[1]]
    with pytest.raises(st.ConfigError, match="larger than the 5 units"):
        res.top_positive(6)


def test_comparative_influence_is_the_difference_of_class_influences():
    model = seeded(TinyCNN)
    x = torch.randn(4, 3, 16, 16, generator=_gen(4))
    for dist in ("point", "path"):
        kw = dict(layer="features.3", distribution=dist, reduce="mean", steps=8)
        a = InternalInfluence(model, **kw).compute(x, 1)
        b = InternalInfluence(model, **kw).compute(x, 3)
        d = InternalInfluence(model, **kw).compute(x, st.ClassDifference(1, 3))
        torch.testing.assert_close(d.influence, a.influence - b.influence, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(d.neuron_influence, a.neuron_influence - b.neuron_influence, atol=1e-6, rtol=1e-5)
        assert d.target == "ClassDifference(1, 3)"


def test_callable_quantity_of_interest():
    model = seeded(TinyMLP)
    x = torch.randn(5, 10, generator=_gen(5))
    a = InternalInfluence(model, layer="net.2").compute(x, 2)
    c = InternalInfluence(model, layer="net.2").compute(x, lambda out: 3.0 * out[:, 2])
    torch.testing.assert_close(c.influence, 3.0 * a.influence)
    assert c.target.startswith("Custom(")


def test_class_distribution_is_the_mean_over_the_class_instances():
    model = seeded(TinyCNN)
    x = torch.randn(10, 3, 16, 16, generator=_gen(6))
    labels = torch.tensor([0, 2, 1, 2, 2, 0, 1, 2, 0, 1])
    cls = InternalInfluence(model, layer="features.4", distribution="class").compute(x, 2, labels=labels)
    pts = InternalInfluence(model, layer="features.4", distribution="point").compute(x[labels == 2], 2)
    assert cls.instances.tolist() == [1, 3, 4, 7]
    torch.testing.assert_close(cls.influence, pts.influence)
    torch.testing.assert_close(cls.per_instance, pts.per_instance)
    assert cls.settings["of_class"] == 2 and cls.distribution == "class"
    # comparative quantity: the distribution is the instances of its first class by default
    comp = InternalInfluence(model, layer="features.4", distribution="class").compute(
        x, st.ClassDifference(1, 0), labels=labels
    )
    assert comp.instances.tolist() == [2, 6, 9]
    # per-sample targets follow the selection
    per_sample = InternalInfluence(model, layer="features.4", distribution="class").compute(
        x, labels, labels=labels, of_class=1
    )
    one = InternalInfluence(model, layer="features.4").compute(x[labels == 1], 1)
    torch.testing.assert_close(per_sample.influence, one.influence)


def test_point_with_activation_equals_layer_gradient_x_activation():
    model = seeded(TinyCNN)
    x = torch.randn(3, 3, 16, 16, generator=_gen(7))
    res = InternalInfluence(model, layer="features.3", multiply_by_activation=True).compute(x, 2)
    ref = st.LayerGradientXActivation(model, layer="features.3").attribute(x, 2).attributions
    torch.testing.assert_close(res.influence, ref.mean(dim=0))
    assert res.multiply_by_activation and res.settings["multiply_by_activation"] is True


captum_attr = pytest.importorskip("captum.attr")


@pytest.mark.parametrize("multiply", [False, True])
def test_path_equals_captum_layer_integrated_gradients_at_an_affine_slice(multiply):
    # Captum interpolates at the layer, seethrough in the input; at a slice that is affine in
    # the input (the first conv) both paths are the same straight line
    model = seeded(TinyCNN)
    x = torch.randn(3, 3, 16, 16, generator=_gen(8))
    base = torch.rand(3, 3, 16, 16, generator=_gen(9)) * 0.1
    res = InternalInfluence(
        model,
        layer="features.0",
        distribution="path",
        steps=20,
        rule="gausslegendre",
        baseline=base,
        multiply_by_activation=multiply,
    ).compute(x, 4)
    lig = captum_attr.LayerIntegratedGradients(model, model.features[0], multiply_by_inputs=multiply)
    ref = lig.attribute(x, baselines=base, target=4, n_steps=20, method="gausslegendre")
    torch.testing.assert_close(res.influence, ref.mean(dim=0), atol=1e-6, rtol=1e-4)


def test_path_equals_slice_gradients_along_the_input_path_from_captum_parts():
    # at a nonlinear slice: the quadrature of Captum's layer gradients at the input-space points
    model = seeded(TinyCNN)
    x = torch.randn(3, 3, 16, 16, generator=_gen(8))
    base = torch.rand(3, 3, 16, 16, generator=_gen(9)) * 0.1
    res = InternalInfluence(model, layer="features.3", distribution="path", steps=12, baseline=base).compute(x, 4)
    alphas, weights = st.attribution.integration_points(12, "gausslegendre")
    grad = captum_attr.LayerGradientXActivation(model, model.features[3], multiply_by_inputs=False)
    ref = sum(float(w) * grad.attribute(base + float(a) * (x - base), target=4) for a, w in zip(alphas, weights))
    torch.testing.assert_close(res.influence, ref.mean(dim=0), atol=1e-6, rtol=1e-4)


def test_path_with_activation_is_complete_where_the_slice_is_linear_in_the_input():
    # the first conv's output is affine in the input, so the input-space path is a straight
    # line at the slice too: sum_j chi_j (z_j(x) - z_j(x')) = q(x) - q(x')
    model = seeded(TinyCNN)
    x = torch.randn(1, 3, 16, 16, generator=_gen(10))
    res = InternalInfluence(
        model, layer="features.0", distribution="path", steps=64, multiply_by_activation=True
    ).compute(x, 1)
    with torch.no_grad():
        gap = model(x)[0, 1] - model(torch.zeros_like(x))[0, 1]
    assert abs(float(res.influence.sum() - gap)) < 1e-3 * max(1.0, abs(float(gap)))


def test_path_steps_converge_and_settings_are_recorded():
    model = seeded(TinyCNN)
    x = torch.randn(2, 3, 16, 16, generator=_gen(11))
    fine = InternalInfluence(model, layer="features.3", distribution="path", steps=64).compute(x, 0)
    coarse = InternalInfluence(model, layer="features.3", distribution="path", steps=4, rule="left").compute(x, 0)
    assert fine.settings["steps"] == 64 and fine.settings["rule"] == "gausslegendre"
    assert fine.settings["baseline"] == "zeros" and fine.distribution == "path"
    err = (coarse.influence - fine.influence).abs().max() / fine.influence.abs().max()
    assert 0 < float(err) < 1.0
    assert fine.n_evaluations >= 2 * 64


def test_results_are_frozen_deterministic_and_batching_independent():
    model = seeded(TinyCNN)
    x = torch.randn(5, 3, 16, 16, generator=_gen(12))
    a = InternalInfluence(model, layer="features.3", distribution="path", steps=6).compute(x, 2)
    b = InternalInfluence(model, layer="features.3", distribution="path", steps=6, batching=4).compute(x, 2)
    assert isinstance(a, InfluenceResult)
    torch.testing.assert_close(a.influence, b.influence)
    with pytest.raises(Exception):
        a.layer = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.settings["steps"] = 3  # type: ignore[index]
    assert "features.3" in repr(a)
