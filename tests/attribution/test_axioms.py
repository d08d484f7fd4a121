"""Axioms that hold whatever the implementation: completeness, implementation
invariance, linearity in the target, and chunking invariance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seethrough as st
from seethrough.testing import TinyMLP, TinyResNet, seeded


@pytest.mark.parametrize("rule", ["gausslegendre", "trapezoid", "middle"])
def test_completeness_improves_with_steps(rule):
    model = seeded(TinyResNet)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    err = []
    for steps in (4, 64):
        e = st.IntegratedGradients(model, steps=steps, rule=rule).attribute(x, 1)
        err.append(float((e.delta.abs() / (e.scores - e.extras["baseline_scores"]).abs()).max()))
    assert err[1] < err[0]
    assert err[1] < 0.01


def test_several_baselines_are_averaged_and_complete():
    model = seeded(TinyMLP)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    b1, b2 = torch.zeros(10), torch.full((10,), 0.5)
    both = st.IntegratedGradients(model, steps=256, baseline=[b1, b2]).attribute(x, 2)
    a1 = st.IntegratedGradients(model, steps=256, baseline=b1).attribute(x, 2)
    a2 = st.IntegratedGradients(model, steps=256, baseline=b2).attribute(x, 2)
    assert torch.allclose(both.attributions, (a1.attributions + a2.attributions) / 2, atol=1e-6)
    mass = both.attributions.abs().sum(dim=1)
    assert bool((both.delta.abs() < 0.01 * mass).all())


def test_named_baselines():
    model = seeded(TinyResNet)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    for spec in ["zeros", 0.5, "blur", "uniform", "gaussian", st.Blur(sigma=2.0), st.UniformNoise(seed=3)]:
        e = st.IntegratedGradients(model, steps=64, baseline=spec).attribute(x, 0)
        # The tiny random model barely changes its output between x and x' (gaps of
        # 1e-5..1e-3), so the error is measured against the attribution mass instead.
        mass = e.attributions.reshape(2, -1).abs().sum(dim=1)
        assert bool((e.delta.abs() < 0.01 * mass).all()), spec


def test_blur_baseline_is_a_gaussian_blur():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(3))
    ours = st.attribution.gaussian_blur(x, 2.0)[0, 0].numpy()
    ref = gaussian_filter(x[0, 0].double().numpy(), 2.0, mode="mirror", truncate=3.0)
    assert abs(ours - ref).max() < 1e-5


def test_implementation_invariance():
    """Two functionally equal networks (hidden units permuted, a linear layer split in two)
    get the same integrated gradients."""
    a = seeded(TinyMLP)
    b = seeded(TinyMLP)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        b.net[0].weight.copy_(a.net[0].weight[perm])
        b.net[0].bias.copy_(a.net[0].bias[perm])
        b.net[2].weight.copy_(a.net[2].weight[:, perm])
        b.net[2].bias.copy_(a.net[2].bias)
        b.net[4].load_state_dict(a.net[4].state_dict())
    m = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.eye(10) * 2.0)
    c = nn.Sequential(m, nn.Linear(10, 16), nn.ReLU(), a.net[2], a.net[3], a.net[4]).eval()
    with torch.no_grad():
        c[1].weight.copy_(a.net[0].weight / 2.0)
        c[1].bias.copy_(a.net[0].bias)
    x = torch.randn(5, 10, generator=torch.Generator().manual_seed(5))
    ea = st.IntegratedGradients(a, steps=32).attribute(x, 1).attributions
    for other in (b, c):
        assert torch.allclose(other(x), a(x), atol=1e-5)
        eo = st.IntegratedGradients(other, steps=32).attribute(x, 1).attributions
        assert torch.allclose(ea, eo, atol=1e-5)


def test_class_difference_is_linear():
    model = seeded(TinyResNet)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    ig = st.IntegratedGradients(model, steps=16)
    d = ig.attribute(x, st.ClassDifference(2, 0)).attributions
    assert torch.allclose(d, ig.attribute(x, 2).attributions - ig.attribute(x, 0).attributions, atol=1e-6)


def test_chunking_does_not_change_results():
    model = seeded(TinyResNet)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    ref = st.IntegratedGradients(model, steps=10).attribute(x, 1).attributions
    for b in (1, 7, st.Batching(memory_budget=200_000)):
        out = st.IntegratedGradients(model, steps=10, batching=b).attribute(x, 1).attributions
        assert torch.allclose(out, ref, atol=1e-6)
