"""Parity with Captum 0.9 on the same model, input, target and settings (rel. err. < 1e-5).

Where Captum has no equivalent (functional ReLU, Grad-CAM++, counterfactual Grad-CAM,
SmoothGrad's own noise), the reference is written here or composed from Captum parts.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

captum_attr = pytest.importorskip("captum.attr")

import seethrough as st
from seethrough.testing import FunctionalReLUNet, ReusedReLUNet, TinyCNN, TinyMLP, TinyResNet, seeded

RTOL = 1e-5

MODELS = {
    "cnn": (TinyCNN, (4, 3, 16, 16), "features.3"),
    "resnet": (TinyResNet, (4, 3, 16, 16), "layer2"),
    "mlp": (TinyMLP, (4, 10), None),
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.fixture(params=list(MODELS))
def setup(request):
    cls, shape, layer = MODELS[request.param]
    model = seeded(cls)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g)
    target = torch.tensor([0, 1, 2, 1])
    return model, x, target, layer


def test_saliency(setup):
    model, x, t, _ = setup
    for abs_ in (True, False):
        ours = st.Saliency(model, abs=abs_).attribute(x, t).attributions
        ref = captum_attr.Saliency(model).attribute(x, target=t, abs=abs_)
        assert rel_err(ours, ref) < RTOL


def test_input_x_gradient(setup):
    model, x, t, _ = setup
    ours = st.InputXGradient(model).attribute(x, t).attributions
    ref = captum_attr.InputXGradient(model).attribute(x, target=t)
    assert rel_err(ours, ref) < RTOL


@pytest.mark.parametrize(
    "rule,captum_rule",
    [
        ("gausslegendre", "gausslegendre"),
        ("left", "riemann_left"),
        ("right", "riemann_right"),
        ("middle", "riemann_middle"),
    ],
)
def test_integrated_gradients(setup, rule, captum_rule):
    model, x, t, _ = setup
    base = torch.full_like(x, 0.3)
    ours = st.IntegratedGradients(model, steps=24, rule=rule, baseline=base).attribute(x, t)
    ref, delta = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=base, target=t, n_steps=24, method=captum_rule, return_convergence_delta=True
    )
    assert rel_err(ours.attributions, ref) < RTOL
    scale = (ours.scores - ours.extras["baseline_scores"]).abs().max()
    assert float((ours.delta - delta).abs().max()) < 1e-4 * float(scale) + 1e-6


def test_trapezoid_is_the_textbook_rule(setup):
    """Captum's riemann_trapezoid uses steps of 1/n with halved ends, so its weights sum to
    (n-1)/n; ours is the trapezoid rule with h = 1/(n-1). Same points, so the two differ
    by exactly the factor n/(n-1), and ours integrates a constant exactly."""
    model, x, t, _ = setup
    n = 20
    ours = st.IntegratedGradients(model, steps=n, rule="trapezoid").attribute(x, t).attributions
    ref = captum_attr.IntegratedGradients(model).attribute(x, target=t, n_steps=n, method="riemann_trapezoid")
    assert rel_err(ours, ref * n / (n - 1)) < RTOL
    _, w = st.attribution.integration_points(n, "trapezoid")
    assert abs(w.sum() - 1.0) < 1e-12


def test_guided_backprop_and_deconvolution(setup):
    model, x, t, _ = setup
    ours = st.GuidedBackprop(model).attribute(x, t).attributions
    ref = captum_attr.GuidedBackprop(model).attribute(x, target=t)
    assert rel_err(ours, ref) < RTOL
    ours = st.Deconvolution(model).attribute(x, t).attributions
    ref = captum_attr.Deconvolution(model).attribute(x, target=t)
    assert rel_err(ours, ref) < RTOL


def _layer(model, name):
    return dict(model.named_modules())[name]


def test_gradcam_layer_map_and_upsampled(setup):
    model, x, t, layer = setup
    if layer is None:
        pytest.skip("no conv layer")
    e = st.GradCAM(model, layer=layer).attribute(x, t)
    ref = captum_attr.LayerGradCam(model, _layer(model, layer)).attribute(x, target=t, relu_attributions=True)
    assert rel_err(e.extras["layer_map"], ref) < RTOL
    up = captum_attr.LayerAttribution.interpolate(ref, x.shape[2:], interpolate_mode="bilinear")
    assert rel_err(e.attributions, up) < RTOL
    # without the ReLU, the signed map
    e = st.GradCAM(model, layer=layer, relu=False).attribute(x, t)
    ref = captum_attr.LayerGradCam(model, _layer(model, layer)).attribute(x, target=t)
    assert rel_err(e.extras["layer_map"], ref) < RTOL


def test_guided_gradcam(setup):
    model, x, t, layer = setup
    if layer is None:
        pytest.skip("no conv layer")
    ours = st.GuidedGradCAM(model, layer=layer, interpolation="nearest").attribute(x, t).attributions
    ref = captum_attr.GuidedGradCam(model, _layer(model, layer)).attribute(x, target=t)
    assert rel_err(ours, ref) < RTOL


def test_counterfactual_gradcam_is_gradcam_of_negated_score(setup):
    model, x, t, layer = setup
    if layer is None:
        pytest.skip("no conv layer")

    class Neg(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, z):
            return -self.m(z)

    neg = Neg(model)
    ours = st.CounterfactualGradCAM(model, layer=layer).attribute(x, t).extras["layer_map"]
    ref = captum_attr.LayerGradCam(neg, _layer(model, layer)).attribute(x, target=t, relu_attributions=True)
    assert rel_err(ours, ref) < RTOL


def test_gradcam_plus_plus_against_reference(setup):
    """Reference written from the paper's closed form, on activations and gradients
    captured with plain hooks."""
    model, x, t, layer = setup
    if layer is None:
        pytest.skip("no conv layer")
    store = {}
    h = _layer(model, layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        xx = x.clone().requires_grad_(True)
        out = model(xx)
        a = store["a"]
        (g,) = torch.autograd.grad(out[torch.arange(4), t].sum(), a)
    finally:
        h.remove()
    a, g = a.detach().double().numpy(), g.double().numpy()
    import numpy as np

    num = g**2
    den = 2 * g**2 + a.sum(axis=(2, 3), keepdims=True) * g**3
    alpha = np.where(den != 0, num / np.where(den != 0, den, 1), 0)
    w = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
    ref = np.maximum((w[:, :, None, None] * a).sum(axis=1, keepdims=True), 0)
    ours = st.GradCAMPlusPlus(model, layer=layer).attribute(x, t).extras["layer_map"]
    assert rel_err(ours, torch.from_numpy(ref)) < RTOL


def test_layer_gradient_x_activation(setup):
    model, x, t, layer = setup
    layer = layer or "net.2"
    ours = st.LayerGradientXActivation(model, layer=layer).attribute(x, t).attributions
    ref = captum_attr.LayerGradientXActivation(model, _layer(model, layer)).attribute(x, target=t)
    assert rel_err(ours, ref) < RTOL


def test_neuron_saliency_and_integrated_gradients(setup):
    model, x, t, layer = setup
    layer = layer or "net.2"
    mod = _layer(model, layer)
    with torch.no_grad():
        h = mod.register_forward_hook(lambda m, i, o: globals().__setitem__("_shape", o.shape))
        try:
            model(x)
        finally:
            h.remove()
    idx = tuple(s // 2 for s in globals()["_shape"][1:])
    ours = st.Saliency(model, abs=False).attribute(x, st.Neuron(layer, idx)).attributions
    ref = captum_attr.NeuronGradient(model, mod).attribute(x, neuron_selector=idx)
    assert rel_err(ours, ref) < RTOL
    ours = st.IntegratedGradients(model, steps=16).attribute(x, st.Neuron(layer, idx)).attributions
    ref = captum_attr.NeuronIntegratedGradients(model, mod).attribute(x, neuron_selector=idx, n_steps=16)
    assert rel_err(ours, ref) < RTOL


def test_channel_target_matches_captum_callable_selector():
    model = seeded(TinyCNN)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    ours = st.Saliency(model, abs=False).attribute(x, st.Channel("features.3", 5)).attributions
    ref = captum_attr.NeuronGradient(model, model.features[3]).attribute(
        x, neuron_selector=lambda out: out[:, 5].mean(dim=(1, 2))
    )
    assert rel_err(ours, ref) < RTOL


def test_softmax_output_target():
    model = seeded(TinyCNN)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    wrapped = nn.Sequential(model, nn.Softmax(dim=1))
    ours = st.Saliency(model, abs=False).attribute(x, st.Class(2, output="softmax")).attributions
    ref = captum_attr.Saliency(wrapped).attribute(x, target=2, abs=False)
    assert rel_err(ours, ref) < RTOL


def test_smoothgrad_family_on_the_same_noisy_inputs():
    """Same noisy rows fed to Captum's Saliency, aggregated by hand: checks the gradients,
    the batching of all noisy copies, and each aggregation."""
    model = seeded(TinyResNet)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([1, 0, 3])
    n = 6
    sg = st.SmoothGrad(model, n_samples=n, noise_level=0.2, seed=7)
    rows, samples = sg.noisy_rows(x, slice(0, n * 3))
    ref_rows = captum_attr.Saliency(model).attribute(rows, target=t[samples])
    ref_rows = ref_rows.reshape(n, 3, *x.shape[1:])
    assert rel_err(sg.attribute(x, t).attributions, ref_rows.mean(0)) < RTOL
    sq = st.SmoothGradSquared(model, n_samples=n, noise_level=0.2, seed=7).attribute(x, t).attributions
    assert rel_err(sq, (ref_rows**2).mean(0)) < RTOL
    vg = st.VarGrad(model, n_samples=n, noise_level=0.2, seed=7).attribute(x, t).attributions
    assert rel_err(vg, ref_rows.var(0, unbiased=False)) < 1e-4
    # noise level is a fraction of each sample's range
    sigma = sg.sigma(x).flatten()
    span = x.reshape(3, -1).max(1).values - x.reshape(3, -1).min(1).values
    assert torch.allclose(sigma, 0.2 * span)


def test_smoothgrad_wraps_integrated_gradients():
    model = seeded(TinyMLP)
    x = torch.randn(2, 10, generator=torch.Generator().manual_seed(5))
    ig = st.IntegratedGradients(model, steps=8)
    sg = st.SmoothGrad(model, method=ig, n_samples=3, noise_level=0.1, seed=1)
    rows, _ = sg.noisy_rows(x, slice(0, 6))
    ref = captum_attr.IntegratedGradients(model).attribute(rows, target=1, n_steps=8)
    assert rel_err(sg.attribute(x, 1).attributions, ref.reshape(3, 2, 10).mean(0)) < RTOL


# -- modified ReLU backward where Captum's module hooks do not reach ----------------


class _ModuleReLUTwin(nn.Module):
    """FunctionalReLUNet with every functional ReLU replaced by its own nn.ReLU module."""

    def __init__(self, f: FunctionalReLUNet):
        super().__init__()
        self.f = f
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.r1(self.f.conv1(x))
        x = self.r2(self.f.conv2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.r3(self.f.fc(x)) - 0.1 * self.f.fc(x)


class _ReusedTwin(nn.Module):
    def __init__(self, r: ReusedReLUNet):
        super().__init__()
        self.r = r
        self.a1, self.a2, self.a3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.a1(self.r.conv1(x))
        x = self.a2(self.r.conv2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.r.fc2(self.a3(self.r.fc1(x)))


@pytest.mark.parametrize("cls,twin", [(FunctionalReLUNet, _ModuleReLUTwin), (ReusedReLUNet, _ReusedTwin)])
@pytest.mark.parametrize("ours_cls,ref_cls", [("GuidedBackprop", "GuidedBackprop"), ("Deconvolution", "Deconvolution")])
def test_modified_relu_through_functional_and_reused_relu(cls, twin, ours_cls, ref_cls):
    model = seeded(cls)
    ref_model = twin(model).eval()
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    ours = getattr(st, ours_cls)(model).attribute(x, 1).attributions
    ref = getattr(captum_attr, ref_cls)(ref_model).attribute(x, target=1)
    assert rel_err(ours, ref) < RTOL
    # and the plain gradient is untouched by the override outside its scope
    plain = st.Saliency(model, abs=False).attribute(x, 1).attributions
    assert rel_err(plain, captum_attr.Saliency(ref_model).attribute(x, target=1, abs=False)) < RTOL
