"""Kernel SHAP, Shapley value sampling and exact Shapley values: exact on linear models,
efficiency, equal to brute-force Shapley values when every coalition is evaluated,
convergence with honest standard errors, Captum parity, determinism, chunking, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import seethrough as st
from seethrough.attribution.masks import grid_mask
from seethrough.attribution.shapley import ExactShapley, KernelSHAP, ShapleyValueSampling, shapley_kernel_weights
from seethrough.testing import TinyCNN, TinyMLP, TinyResNet, seeded

T = torch.tensor([0, 1, 2])


@pytest.fixture(scope="module")
def cnn():
    return seeded(TinyCNN)


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def mask8():
    return grid_mask((3, 16, 16), (8, 4))  # 2 x 4 cells: 8 features


@pytest.fixture(scope="module")
def exact8(cnn, x, mask8):
    return ExactShapley(cnn, baseline=0.1).attribute(x, T, feature_mask=mask8)


def _linear():
    return seeded(nn.Linear, 12, 3).eval()


def _linear_shapley(lin: nn.Linear, x, base, groups, target):
    """Shapley values of a linear model: w_i (x_i - b_i) summed over each feature's elements."""
    contrib = lin.weight.detach()[target] * (x - base)
    n = int(groups.max()) + 1
    return torch.stack([contrib[:, groups == j].sum(1) for j in range(n)], dim=1)


def _efficiency_gap(e):
    total = e.extras["shapley_values"].double().sum(1)
    want = e.scores.double() - e.extras["base_value"].double()
    return ((total - want).abs() / want.abs().clamp(min=1e-8)).max().item()


# -- exactness on linear models ---------------------------------------------------------


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("n_samples", [20, 40])
def test_kernel_shap_is_exact_on_a_linear_model(paired, n_samples):
    lin = _linear()
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    base = torch.randn(1, 12, generator=torch.Generator().manual_seed(2))
    groups = torch.arange(12) // 2  # 6 features: 2^6 = 64 coalitions, more than the budget
    target = torch.tensor([0, 2, 1, 1])
    e = KernelSHAP(lin, n_samples=n_samples, baseline=base, paired=paired).attribute(x, target, feature_mask=groups)
    want = _linear_shapley(lin, x, base, groups, target)
    assert torch.allclose(e.extras["shapley_values"], want, atol=1e-4)
    assert torch.allclose(e.attributions, want[:, groups], atol=1e-4)  # each element: its feature's value
    assert e.n_evaluations <= 4 * n_samples
    if n_samples == 40:  # sizes 1 and 5 enumerated: every resample identifies an additive model
        assert e.extras["stderr"].max() < 1e-4


def test_linear_model_with_per_sample_masks():
    lin = _linear()
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(3))
    masks = torch.stack([torch.arange(12) // k for k in (1, 3, 4)])  # 12, 4 and 3 features
    e = KernelSHAP(lin, n_samples=60).attribute(x, 1, feature_mask=masks)
    for b in range(3):
        want = _linear_shapley(lin, x[b : b + 1], 0.0, masks[b], 1)[0]
        got = e.extras["shapley_values"][b, : want.numel()]
        assert torch.allclose(got, want, atol=1e-4)
        assert (e.extras["shapley_values"][b, want.numel() :] == 0).all()  # features the sample lacks
        assert torch.allclose(e.attributions[b], want[masks[b]], atol=1e-4)


# -- efficiency ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [TinyCNN, TinyResNet])
def test_efficiency_on_nonlinear_models(arch, x):
    model = seeded(arch)
    fm = grid_mask((3, 16, 16), 4)  # 16 features
    e = KernelSHAP(model, n_samples=200, baseline=0.2).attribute(x, T, feature_mask=fm)
    assert e.extras["shapley_values"].shape == (3, 16)
    assert _efficiency_gap(e) < 1e-4
    assert e.n_evaluations <= 3 * 200
    s = ShapleyValueSampling(model, n_permutations=6, baseline=0.2).attribute(x, T, feature_mask=fm)
    assert _efficiency_gap(s) < 1e-4
    # the attribution map is the feature values spread over their elements
    assert torch.allclose(
        e.attributions.sum(dim=(1, 2, 3)), e.extras["shapley_values"].sum(1) * 48, rtol=1e-5, atol=1e-6
    )


# -- exact Shapley values --------------------------------------------------------------


def _brute_force_shapley(model, x, base, groups, target):
    """phi_j = sum over coalitions S without j of |S|! (M-|S|-1)! / M! (v(S+j) - v(S))."""
    M = int(groups.max()) + 1

    def v(S):
        keep = torch.zeros_like(x, dtype=torch.bool)
        for j in S:
            keep |= groups == j
        with torch.no_grad():
            return model(torch.where(keep, x, base).unsqueeze(0))[0, target].item()

    phi = []
    for j in range(M):
        others = [k for k in range(M) if k != j]
        total = 0.0
        for r in range(M):
            for S in itertools.combinations(others, r):
                w = math.factorial(r) * math.factorial(M - r - 1) / math.factorial(M)
                total += w * (v(S + (j,)) - v(S))
        phi.append(total)
    return torch.tensor(phi)


def test_exact_shapley_equals_brute_force():
    mlp = seeded(TinyMLP)
    x = torch.randn(2, 10, generator=torch.Generator().manual_seed(4))
    base = torch.randn(10, generator=torch.Generator().manual_seed(5))
    masks = torch.stack([torch.arange(10) // 2, torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 3, 3])])  # 5 and 4 features
    e = ExactShapley(mlp, baseline=base).attribute(x, 2, feature_mask=masks)
    for b in range(2):
        want = _brute_force_shapley(mlp, x[b], base, masks[b], 2)
        assert torch.allclose(e.extras["shapley_values"][b, : want.numel()], want, atol=1e-5)
    assert e.n_evaluations == 2 + (2**5 - 1) + (2**4 - 1)


def test_exact_shapley_refuses_too_many_features(cnn, x):
    with pytest.raises(st.ConfigError, match="max_features"):
        ExactShapley(cnn, max_features=10).attribute(x, T, feature_mask=grid_mask((3, 16, 16), 4))


@pytest.mark.parametrize("n_samples", [256, 300])
def test_kernel_shap_with_full_budget_is_exact(cnn, x, mask8, exact8, n_samples):
    e = KernelSHAP(cnn, n_samples=n_samples, baseline=0.1).attribute(x, T, feature_mask=mask8)
    scale = exact8.extras["shapley_values"].abs().max()
    assert torch.allclose(e.extras["shapley_values"], exact8.extras["shapley_values"], atol=1e-4 * scale)
    assert (e.extras["stderr"] == 0).all()
    assert e.n_evaluations == 3 * 256  # every coalition once, however large the budget


def test_kernel_shap_converges_and_its_stderr_is_honest(cnn, x, mask8, exact8):
    ref = exact8.extras["shapley_values"]
    errors = []
    for n in (24, 64, 160):
        e = KernelSHAP(cnn, n_samples=n, baseline=0.1).attribute(x, T, feature_mask=mask8)
        err = (e.extras["shapley_values"] - ref).abs()
        errors.append(err.mean().item())
        assert (err <= 3 * e.extras["stderr"] + 1e-7).float().mean() >= 0.75
    assert errors[0] > errors[1] > errors[2]


def test_kernel_design_enumerates_small_and_large_coalitions_first():
    d = KernelSHAP(nn.Identity(), n_samples=200, paired=True).design(16)
    sizes = d.z.sum(1)
    assert d.z.shape[0] <= 198  # the empty and full coalitions take the other two evaluations
    assert np.unique(d.z, axis=0).shape[0] == d.z.shape[0]  # no coalition evaluated twice
    for s in (1, 15):  # sizes 1 and M-1 complete, with exact kernel weights
        assert (sizes == s).sum() == 16
        assert np.allclose(d.fixed[sizes == s], shapley_kernel_weights(16)[s - 1] / 16)
    sampled = d.fixed == 0
    assert sampled.any() and set(sizes[sampled]) <= set(range(2, 15))
    w = d.weights()[0].numpy()
    assert (w > 0).all() and np.isclose(w.sum(), 1.0)  # the kernel's mass, all of it
    # paired: every sampled coalition comes with its complement
    rows = {r.tobytes() for r in d.z}
    assert all((~r).tobytes() in rows for r in d.z[sampled])


# -- permutation sampling --------------------------------------------------------------


def test_sampling_error_shrinks_and_stderr_is_honest(cnn, x, mask8, exact8):
    ref = exact8.extras["shapley_values"]
    mean_err = {}
    for P in (4, 64):
        errs = []
        for seed in range(3):
            e = ShapleyValueSampling(cnn, n_permutations=P, baseline=0.1, seed=seed).attribute(x, T, feature_mask=mask8)
            err = (e.extras["shapley_values"] - ref).abs()
            errs.append(err.mean().item())
            if P == 64:
                assert (err <= 3 * e.extras["stderr"]).float().mean() >= 0.8
                assert e.extras["stderr"].mean() < 5 * err.mean()  # not a vacuous bound
        mean_err[P] = sum(errs) / len(errs)
    assert mean_err[64] < 0.5 * mean_err[4]


def test_all_permutations_equal_captum_shapley_values(x):
    captum_attr = pytest.importorskip("captum.attr")
    model = seeded(TinyResNet)
    fm = grid_mask((3, 16, 16), (8, 6))  # 2 x 3 cells: 6 features
    ref = captum_attr.ShapleyValues(model).attribute(
        x, baselines=0.2, target=T, feature_mask=fm.unsqueeze(0), perturbations_per_eval=64
    )
    svs = ShapleyValueSampling(model, n_permutations=720, baseline=0.2).attribute(x, T, feature_mask=fm)
    exact = ExactShapley(model, baseline=0.2).attribute(x, T, feature_mask=fm)
    kernel = KernelSHAP(model, n_samples=64, baseline=0.2).attribute(x, T, feature_mask=fm)
    scale = ref.abs().max()
    for e in (svs, exact, kernel):
        assert torch.allclose(e.attributions, ref, atol=1e-5 * scale, rtol=1e-4)
    assert (svs.extras["stderr"] == 0).all()
    assert svs.n_evaluations == exact.n_evaluations == 3 * 2**6  # shared coalitions run once


# -- determinism and chunking -----------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda m, seed: KernelSHAP(m, n_samples=80, baseline=0.1, seed=seed),
        lambda m, seed: ShapleyValueSampling(m, n_permutations=6, baseline=0.1, seed=seed),
    ],
    ids=["kernel_shap", "sampling"],
)
def test_seed_determinism(cnn, x, mask8, make):
    a = make(cnn, 0).attribute(x, T, feature_mask=mask8)
    b = make(cnn, 0).attribute(x, T, feature_mask=mask8)
    c = make(cnn, 1).attribute(x, T, feature_mask=mask8)
    assert torch.equal(a.attributions, b.attributions) and torch.equal(a.extras["stderr"], b.extras["stderr"])
    assert not torch.allclose(a.attributions, c.attributions)
    # a sample gets the same coalitions alone as in a batch
    one = make(cnn, 0).attribute(x[1:2], T[1:2], feature_mask=mask8)
    assert torch.allclose(one.attributions, a.attributions[1:2], atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda m, bt: KernelSHAP(m, n_samples=100, baseline=0.1, batching=bt),
        lambda m, bt: ShapleyValueSampling(m, n_permutations=8, baseline=0.1, batching=bt),
        lambda m, bt: ExactShapley(m, baseline=0.1, batching=bt),
    ],
    ids=["kernel_shap", "sampling", "exact"],
)
def test_chunking_does_not_change_results(cnn, x, mask8, make):
    ref = make(cnn, None).attribute(x, T, feature_mask=mask8)
    scale = ref.attributions.abs().max()
    for bt in (1, 7):
        out = make(cnn, bt).attribute(x, T, feature_mask=mask8)
        # the same coalitions; only float rounding of different batch sizes may differ
        assert torch.allclose(out.attributions, ref.attributions, atol=1e-5 * scale, rtol=0)
        assert out.n_evaluations == ref.n_evaluations


def test_predicted_target_and_settings(cnn, x, mask8):
    e = KernelSHAP(cnn, n_samples=50).attribute(x, None, feature_mask=mask8)
    assert e.target_indices is not None and e.n_evaluations <= 3 * 50 + 3
    assert e.settings["n_samples"] == 50 and e.method == "kernel_shap"
    assert KernelSHAP(cnn).settings()["n_samples"] == "auto"


def test_default_mask_is_a_grid_for_images(cnn, x):
    e = KernelSHAP(cnn, n_samples=80).attribute(x, T)  # 16x16 images: an 8x8 grid of 2x2 patches
    assert e.extras["shapley_values"].shape == (3, 64)
    assert torch.equal(e.attributions[:, :, :2, :2], e.extras["shapley_values"][:, :1, None, None].expand(3, 3, 2, 2))
    assert _efficiency_gap(e) < 1e-4
    with pytest.raises(st.ConfigError, match="max_features"):
        ExactShapley(cnn).attribute(x, T)  # 64 features: refused, with the way out
    s = ShapleyValueSampling(cnn, n_permutations=2).attribute(x, T)
    assert s.method == "shapley_sampling" and s.extras["stderr"].shape == (3, 64)


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [KernelSHAP, ShapleyValueSampling, ExactShapley])
def test_bad_mask_and_baseline(cnn, x, cls):
    with pytest.raises(st.InputError, match="feature mask"):
        cls(cnn).attribute(x, T, feature_mask=torch.zeros(5, 7, dtype=torch.long))
    with pytest.raises(st.InputError, match="baseline"):
        cls(cnn, baseline=torch.zeros(3, 8, 8)).attribute(x, T, feature_mask=grid_mask((3, 16, 16), 8))


def test_bad_settings(cnn, x, mask8):
    bad = [
        lambda: KernelSHAP(cnn, n_samples=0),
        lambda: KernelSHAP(cnn, n_samples=2),
        lambda: KernelSHAP(cnn, n_samples=10.5),
        lambda: KernelSHAP(cnn, n_bootstrap=-1),
        lambda: ShapleyValueSampling(cnn, n_permutations=0),
        lambda: ShapleyValueSampling(cnn, n_permutations=5, antithetic=True),
        lambda: ExactShapley(cnn, max_features=0),
    ]
    for make in bad:
        with pytest.raises(st.ConfigError):
            make().attribute(x, T, feature_mask=mask8)
    ShapleyValueSampling(cnn, n_permutations=5, antithetic=False).attribute(x, T, feature_mask=mask8)
