"""Faithfulness metrics: hand-computed values on a linear model, known optima (infidelity 0,
correlation 1), ROAD's imputation, the bundled shapes model (IG beats a random map),
chunking invariance, determinism, bad input, and the model left unchanged."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError, TargetError
from seethrough._core.targets import Class, Predicted
from seethrough.evaluation._common import MetricResult
from seethrough.evaluation.faithfulness import (
    METRICS,
    _gaussian_perturbations,
    deletion,
    faithfulness_correlation,
    infidelity,
    insertion,
    noisy_linear_imputation,
    region_perturbation,
    road,
)
from seethrough.testing import TinyCNN, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, snapshot  # noqa: E402


class LinearScore(nn.Module):
    """Logits ``(w . x + c, 0)``: output 0 is linear in the input, output 1 is constant."""

    def __init__(self, shape, seed=0, dtype=torch.float64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(shape, generator=g, dtype=dtype))
        self.c = nn.Parameter(torch.tensor(0.3, dtype=dtype))

    def forward(self, x):
        z = (x * self.w).flatten(1).sum(1) + self.c
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def _images(n=2, c=3, h=4, w=4, seed=0, dtype=torch.float64):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype) + 0.1


def _tiny():
    return seeded(TinyCNN)


def _tiny_inputs(n=3, seed=1):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _tiny_maps(n=3, seed=2, shape=(16, 16)):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- registry


def test_metrics_are_tagged_for_the_registry():
    names = [fn.__name__ for fn in METRICS]
    assert names == ["deletion", "insertion", "region_perturbation", "road", "infidelity", "faithfulness_correlation"]
    for fn in METRICS:
        assert fn.family == "faithfulness"
        assert fn.needs == frozenset({"model"})
    assert [fn.higher_is_better for fn in METRICS] == [False, True, True, True, False, True]


# --------------------------------------------------------------------------- deletion / insertion


@pytest.mark.parametrize("steps", [16, 4, 5])
def test_deletion_curve_of_a_linear_model_is_the_hand_computed_one(steps):
    x = _images()
    model = LinearScore(x.shape[1:]).eval()
    contrib = (x * model.w.detach()).sum(1)  # (N, H, W): w.x per pixel
    res = deletion(model, x, contrib, target=0, steps=steps, output="logit")
    P = 16
    counts = [math.floor(k * P / steps + 0.5) for k in range(steps + 1)]
    for b in range(x.shape[0]):
        order = torch.argsort(contrib[b].flatten(), descending=True)
        expected = []
        for k in counts:
            kept = torch.ones(P, dtype=torch.bool)
            kept[order[:k]] = False
            expected.append(float(contrib[b].flatten()[kept].sum()) + 0.3)
        assert torch.allclose(res.curves["scores"][b], torch.tensor(expected, dtype=torch.float64), atol=1e-12)
        fr = torch.tensor(counts, dtype=torch.float64) / P
        auc = float(torch.trapezoid(torch.tensor(expected, dtype=torch.float64), fr))
        assert res.values[b].item() == pytest.approx(auc, abs=1e-12)
    assert torch.equal(res.curves["fractions"], torch.tensor(counts, dtype=torch.float64) / P)
    assert res.n_evaluations == x.shape[0] * (steps + 1) + x.shape[0]
    assert res.higher_is_better is False and res.name == "deletion"


def test_insertion_curve_of_a_linear_model_and_the_most_relevant_order():
    x = _images()
    model = LinearScore(x.shape[1:]).eval()
    contrib = (x * model.w.detach()).sum(1)
    start = torch.full_like(x, 0.5)
    ins = insertion(model, x, contrib, target=0, steps=16, baseline=start, output="logit")
    base = float((0.5 * model.w.detach()).sum())
    for b in range(x.shape[0]):
        c = contrib[b].flatten()
        base_px = (0.5 * model.w.detach()).sum(0).flatten()
        order = torch.argsort(c, descending=True)
        gains = (c - base_px)[order]
        expected = torch.cat([torch.zeros(1, dtype=torch.float64), gains.cumsum(0)]) + base + 0.3
        assert torch.allclose(ins.curves["scores"][b], expected, atol=1e-12)
    # the exact contributions are the best deletion order a linear model has: they beat
    # any other order (here the reversed one)
    d_best = deletion(model, x, contrib, target=0, steps=16, output="logit")
    d_worst = deletion(model, x, -contrib, target=0, steps=16, output="logit")
    assert bool((d_best.values < d_worst.values).all())


def test_deletion_on_tabular_inputs_removes_one_feature_per_step():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 6, generator=g, dtype=torch.float64)
    model = LinearScore((6,)).eval()
    contrib = x * model.w.detach()
    res = deletion(model, x, contrib, target=0, output="logit")
    assert res.settings["steps"] == 6
    sorted_c, _ = contrib.sort(dim=1, descending=True)
    expected = (
        contrib.sum(1, keepdim=True) - torch.cat([torch.zeros(4, 1, dtype=torch.float64), sorted_c.cumsum(1)], 1) + 0.3
    )
    assert torch.allclose(res.curves["scores"], expected, atol=1e-12)


def test_ties_are_broken_by_the_seed_not_by_raster_position():
    model = _tiny()
    x = _tiny_inputs(2)
    const = torch.ones(2, 16, 16)
    a = deletion(model, x, const, steps=8, seed=0)
    b = deletion(model, x, const, steps=8, seed=0)
    c = deletion(model, x, const, steps=8, seed=1)
    assert torch.equal(a.curves["scores"], b.curves["scores"])
    assert not torch.equal(a.curves["scores"], c.curves["scores"])


@pytest.mark.slow
def test_integrated_gradients_beats_a_random_map_on_the_shapes_model():
    from seethrough import zoo
    from seethrough.attribution import IntegratedGradients
    from seethrough.data import make_shapes

    model = zoo.load("shapes-cnn")
    data = make_shapes(8, seed=999)  # held out: the model was trained on other seeds
    x = data.images
    ig = IntegratedGradients(model, steps=16).attribute(x)
    rand = torch.rand(8, 64, 64, generator=torch.Generator().manual_seed(0))
    snap = snapshot(model, x)
    # Measured with exactly these settings: deletion to blur 0.383 (IG) vs 0.581 (random),
    # insertion 0.744 vs 0.563, ROAD 0.305 vs -0.024. With the default black baseline the
    # random map wins deletion on these 8 images (docs/evaluation-faithfulness.md).
    d_ig, d_rand = (
        deletion(model, x, ig, baseline="blur", steps=16),
        deletion(model, x, rand, baseline="blur", steps=16),
    )
    i_ig, i_rand = insertion(model, x, ig, steps=16), insertion(model, x, rand, steps=16)
    assert d_ig.mean < d_rand.mean - 0.1
    assert i_ig.mean > i_rand.mean + 0.1
    pct = (0.2, 0.5, 0.8)
    r_ig, r_rand = road(model, x, ig, percentages=pct), road(model, x, rand, percentages=pct)
    assert r_ig.mean > r_rand.mean + 0.1
    assert_unchanged(model, snap, x)


# --------------------------------------------------------------------------- region perturbation


def test_region_perturbation_aopc_by_hand_on_a_linear_model():
    x = _images(2, 3, 4, 4)
    model = LinearScore(x.shape[1:]).eval()
    contrib = (x * model.w.detach()).sum(1)  # (N, 4, 4)
    res = region_perturbation(model, x, contrib, target=0, patch_size=2, steps=10, perturbation=0.0, output="logit")
    assert res.settings["steps"] == 4 and res.settings["regions"] == 4
    for b in range(2):
        region = contrib[b].reshape(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4).sum(1)  # tile sums
        for name, order in (("morf", region.argsort(descending=True)), ("lerf", region.argsort())):
            drops = torch.cat([torch.zeros(1, dtype=torch.float64), region[order].cumsum(0)])  # f(x) - f(x_k)
            clean = float(contrib[b].sum()) + 0.3
            assert torch.allclose(res.curves[name][b], clean - drops, atol=1e-12)
            assert float(res.extras[f"aopc_{name}"][b]) == pytest.approx(float(drops.mean()), abs=1e-12)
    assert torch.allclose(res.values, res.extras["aopc_morf"] - res.extras["aopc_lerf"])
    assert bool((res.values > 0).all())


def test_region_perturbation_cuts_border_tiles_and_caps_steps():
    model = _tiny()
    x = _tiny_inputs(2)
    res = region_perturbation(model, x, _tiny_maps(2), patch_size=5, steps=100)
    assert res.settings["regions"] == 16 and res.settings["steps"] == 16  # 4 x 4 tiles, cut at 15
    assert res.curves["morf"].shape == (2, 17)
    # after all regions, both orders have perturbed the whole image: same final score
    assert torch.allclose(res.curves["morf"][:, -1], res.curves["lerf"][:, -1])


def test_pixel_flipping_is_region_perturbation_with_one_pixel_regions():
    x = _images(1, 3, 3, 3)
    model = LinearScore(x.shape[1:]).eval()
    contrib = (x * model.w.detach()).sum(1)
    res = region_perturbation(model, x, contrib, target=0, patch_size=1, steps=9, perturbation=0.0, output="logit")
    expected = (
        float(contrib.sum())
        + 0.3
        - torch.cat([torch.zeros(1, dtype=torch.float64), contrib.flatten().sort(descending=True).values.cumsum(0)])
    )
    assert torch.allclose(res.curves["morf"][0], expected, atol=1e-12)


# --------------------------------------------------------------------------- ROAD


def test_imputation_of_one_pixel_is_the_weighted_mean_of_its_neighbours():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 5, 5, generator=g, dtype=torch.float64)
    removed = torch.zeros(5, 5, dtype=torch.bool)
    removed[2, 3] = True
    out = noisy_linear_imputation(img, removed, noise_std=0.0)
    w = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], dtype=torch.float64)
    expected = (img[:, 1:4, 2:5] * w).sum((1, 2))
    assert torch.allclose(out[:, 2, 3], expected, atol=1e-12)
    assert torch.equal(out[:, ~removed], img[:, ~removed])
    # at a corner only the 3 neighbours inside count, renormalised
    removed = torch.zeros(5, 5, dtype=torch.bool)
    removed[0, 0] = True
    out = noisy_linear_imputation(img, removed, noise_std=0.0)
    exp = (img[:, 0, 1] / 6 + img[:, 1, 0] / 6 + img[:, 1, 1] / 12) / (1 / 6 + 1 / 6 + 1 / 12)
    assert torch.allclose(out[:, 0, 0], exp, atol=1e-12)


def test_imputation_reproduces_a_linear_ramp_inside_a_hole():
    r, c = torch.meshgrid(
        torch.arange(12.0, dtype=torch.float64), torch.arange(10.0, dtype=torch.float64), indexing="ij"
    )
    img = (0.3 * r - 0.2 * c + 1.0).unsqueeze(0)
    removed = torch.zeros(12, 10, dtype=torch.bool)
    removed[3:9, 2:7] = True  # a block of unknowns, each with unknown neighbours
    removed[5, 8] = True
    out = noisy_linear_imputation(img, removed, noise_std=0.0)
    assert torch.allclose(out, img, atol=1e-10)
    noisy = noisy_linear_imputation(img, removed, noise_std=0.1, seed=3)
    assert torch.equal(noisy[:, ~removed], img[:, ~removed])
    assert 0.05 < float((noisy - img)[:, removed].std()) < 0.15


def test_road_removes_floor_fraction_of_pixels_in_both_orders():
    model = _tiny()
    x = _tiny_inputs(2)
    res = road(model, x, _tiny_maps(2), percentages=(0.1, 0.5, 0.9))
    assert res.extras["removed"].tolist() == [25, 128, 230]
    assert res.curves["morf"].shape == (2, 3) and res.curves["lerf"].shape == (2, 3)
    assert torch.allclose(res.values, res.curves["lerf"].mean(1) - res.curves["morf"].mean(1))
    acc = road(model, x, _tiny_maps(2), percentages=(0.1, 0.5, 0.9), output="accuracy")
    assert set(acc.curves["morf"].unique().tolist()) <= {0.0, 1.0}
    assert res.n_evaluations == 2 * 6 + 2


def test_road_rows_are_the_model_on_imputed_images():
    x = _images(2, 2, 6, 6)
    model = LinearScore(x.shape[1:]).eval()
    maps = torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    res = road(model, x, maps, target=0, output="logit", noise_std=0.0, percentages=(0.25, 0.5))
    for b in range(2):
        for name, desc in (("morf", True), ("lerf", False)):
            order = maps[b].flatten().argsort(descending=desc)
            for k, n_removed in enumerate((9, 18)):
                removed = torch.zeros(36, dtype=torch.bool)
                removed[order[:n_removed]] = True
                img = noisy_linear_imputation(x[b], removed.reshape(6, 6), noise_std=0.0)
                with torch.no_grad():
                    expected = model(img.unsqueeze(0))[0, 0].item()
                assert res.curves[name][b, k].item() == pytest.approx(expected, abs=1e-10)


# --------------------------------------------------------------------------- infidelity


def test_infidelity_of_the_gradient_under_gaussian_noise_is_zero():
    x = _images(2, 3, 4, 4)
    model = LinearScore(x.shape[1:]).eval()
    grad = model.w.detach().expand_as(x).clone()  # the exact explanation of a linear model
    for scaling in ("none", "optimal"):
        res = infidelity(model, x, grad, target=0, n_perturbations=20, noise_std=0.3, scaling=scaling)
        assert float(res.values.abs().max()) < 1e-20
    assert torch.allclose(res.extras["beta"], torch.ones(2, dtype=torch.float64))
    # a per-pixel map (channels summed) gets noise shared by the channels: exact again
    px = grad.sum(1, keepdim=True)
    res = infidelity(model, x, px, target=0, n_perturbations=20, noise_std=0.3, scaling="none")
    assert res.settings["granularity"] == "pixel"
    assert float(res.values.abs().max()) < 1e-20
    # a wrong map is not
    res = infidelity(model, x, grad.flip(-1), target=0, n_perturbations=20, noise_std=0.3, scaling="none")
    assert float(res.values.min()) > 1e-3


def test_infidelity_matches_a_direct_monte_carlo_computation():
    x = _images(2, 3, 4, 4)
    model = LinearScore(x.shape[1:]).eval()
    phi = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    K = 12
    res = infidelity(model, x, phi, target=0, n_perturbations=K, noise_std=0.2, scaling="none", seed=5)
    w = model.w.detach()
    for b in range(2):
        pert = _gaussian_perturbations(5, b, K, tuple(x.shape[1:]), 0.2)
        drop = (pert * w).flatten(1).sum(1)  # linear model: f(x) - f(x - I) = w . I
        dot = (pert * phi[b]).flatten(1).sum(1)
        assert res.values[b].item() == pytest.approx(float(((dot - drop) ** 2).mean()), rel=1e-10)
        beta = float((dot * drop).mean() / (dot * dot).mean())
        assert res.extras["beta"][b].item() == pytest.approx(beta, rel=1e-10)
        assert res.extras["scaled"][b].item() == pytest.approx(float(((beta * dot - drop) ** 2).mean()), rel=1e-8)


def test_infidelity_of_the_contributions_under_square_removal_is_zero():
    x = _images(2, 3, 8, 8)
    model = LinearScore(x.shape[1:]).eval()
    contrib = x * model.w.detach()
    res = infidelity(model, x, contrib, target=0, perturbation="square", n_perturbations=30, scaling="none")
    assert list(res.settings["square_sizes"]) == [1, 2]
    assert float(res.values.abs().max()) < 1e-20
    # optimal scaling makes the metric blind to the map's scale
    a = infidelity(model, x, contrib.flip(-2), target=0, perturbation="square", n_perturbations=30)
    b = infidelity(model, x, 7.5 * contrib.flip(-2), target=0, perturbation="square", n_perturbations=30)
    assert torch.allclose(a.values, b.values, rtol=1e-10)
    assert torch.allclose(b.extras["beta"] * 7.5, a.extras["beta"], rtol=1e-10)
    # explicit removal masks are one perturbation each
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, :4] = True
    masks[1, :, :2] = True
    masks[2, 3:6, 3:6] = True
    res = infidelity(model, x, contrib, target=0, perturbation=masks, scaling="none")
    assert res.settings["n_perturbations"] == 3
    assert float(res.values.abs().max()) < 1e-20
    assert torch.allclose(res.extras["map_sums"], res.extras["drops"], atol=1e-12)


# --------------------------------------------------------------------------- faithfulness correlation


def test_faithfulness_correlation_of_the_contributions_of_a_linear_model_is_one():
    x = _images(3, 3, 6, 6)
    model = LinearScore(x.shape[1:]).eval()
    contrib = x * model.w.detach()
    res = faithfulness_correlation(model, x, contrib, target=0, n_subsets=30, subset_size=5)
    assert torch.allclose(res.values, torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(res.extras["map_sums"], res.extras["drops"], atol=1e-12)
    neg = faithfulness_correlation(model, x, -contrib, target=0, n_subsets=30, subset_size=5)
    assert torch.allclose(neg.values, -torch.ones(3, dtype=torch.float64), atol=1e-12)
    # a constant map has constant sums: no correlation is defined, the value is NaN
    const = faithfulness_correlation(model, x, torch.ones(3, 6, 6), target=0, n_subsets=10, subset_size=0.25)
    assert bool(torch.isnan(const.values).all()) and math.isnan(const.mean)
    assert const.settings["subset_size"] == 9


# --------------------------------------------------------------------------- shared behaviour

_CALLS = {
    "deletion": lambda m, x, a, **kw: deletion(m, x, a, steps=8, **kw),
    "insertion": lambda m, x, a, **kw: insertion(m, x, a, steps=8, **kw),
    "region_perturbation": lambda m, x, a, **kw: region_perturbation(m, x, a, patch_size=4, steps=6, **kw),
    "road": lambda m, x, a, **kw: road(m, x, a, percentages=(0.2, 0.6), **kw),
    "infidelity": lambda m, x, a, **kw: infidelity(m, x, a, n_perturbations=6, **kw),
    "infidelity_square": lambda m, x, a, **kw: infidelity(m, x, a, perturbation="square", n_perturbations=6, **kw),
    "faithfulness_correlation": lambda m, x, a, **kw: faithfulness_correlation(m, x, a, n_subsets=6, **kw),
}


@pytest.mark.parametrize("name", list(_CALLS))
def test_chunking_does_not_change_values(name):
    model = _tiny()
    x = _tiny_inputs(3)
    maps = _tiny_maps(3)
    one = _CALLS[name](model, x, maps, batching=1)
    auto = _CALLS[name](model, x, maps)
    seven = _CALLS[name](model, x, maps, batching=7)
    # float32 rows scored in chunks of other sizes differ by rounding only
    assert torch.allclose(one.values, auto.values, rtol=1e-5, atol=1e-5)
    assert torch.allclose(seven.values, auto.values, rtol=1e-5, atol=1e-5)
    assert one.n_evaluations == auto.n_evaluations


@pytest.mark.parametrize("name", list(_CALLS))
def test_same_seed_same_values_and_model_unchanged(name):
    model = _tiny()
    model.train()  # handed over in train mode: evaluated in eval mode, mode restored
    x = _tiny_inputs(2)
    maps = _tiny_maps(2)
    snap = snapshot(model, x)
    with pytest.warns(UserWarning, match="train mode"):
        a = _CALLS[name](model, x, maps, seed=3)
    with pytest.warns(UserWarning, match="train mode"):
        b = _CALLS[name](model, x, maps, seed=3)
    assert_unchanged(model, snap, x)
    assert isinstance(a, MetricResult) and a.name == name.replace("_square", "")
    assert torch.equal(a.values, b.values)
    assert a.values.shape == (2,) and a.n_evaluations > 0 and a.seconds > 0
    assert a.settings["seed"] == 3


def test_a_method_as_maps_is_run_on_the_target_class_and_counted():
    from seethrough.attribution import Saliency

    model = _tiny()
    x = _tiny_inputs(2)
    method = Saliency(model)
    exp = method.attribute(x, target=[1, 3])
    by_method = deletion(model, x, method, target=[1, 3], steps=4)
    by_maps = deletion(model, x, exp, target=[1, 3], steps=4)
    assert torch.equal(by_method.values, by_maps.values)
    assert by_method.n_evaluations >= by_maps.n_evaluations + x.shape[0]  # the method's rows too
    assert by_method.settings["maps"] == "saliency" and by_maps.settings["target"] == "Class([1, 3], output='softmax')"


def test_a_target_object_is_scored_as_given_and_handed_to_the_method():
    from seethrough.attribution import Saliency

    model = _tiny()
    x = _tiny_inputs(2)
    logit = deletion(model, x, _tiny_maps(2), target=Class(2), steps=4)
    same = deletion(model, x, _tiny_maps(2), target=2, steps=4, output="logit")
    assert torch.equal(logit.values, same.values)
    t = Class([2, 0], output="softmax")
    by_method = deletion(model, x, Saliency(model), target=t, steps=4)
    by_maps = deletion(model, x, Saliency(model).attribute(x, target=t), target=t, steps=4)
    assert torch.equal(by_method.values, by_maps.values)
    assert by_method.settings["target"] == "Class([2, 0], output='softmax')"
    fn = lambda out: out[:, 1] - out[:, 0]  # noqa: E731
    custom = insertion(model, x, Saliency(model), target=fn, steps=4)
    assert custom.settings["target"].startswith("Custom(") and custom.values.shape == (2,)


def test_precomputed_maps_of_every_accepted_shape_agree():
    model = _tiny()
    x = _tiny_inputs(2)
    full = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    a = deletion(model, x, full, steps=4)
    b = deletion(model, x, full.sum(1), steps=4)
    c = deletion(model, x, full.sum(1, keepdim=True).numpy(), steps=4)
    assert torch.equal(a.values, b.values) and torch.equal(b.values, c.values)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", list(_CALLS))
def test_bad_maps_are_refused_with_the_fix_and_the_model_is_unchanged(name):
    model = _tiny()
    x = _tiny_inputs(2)
    snap = snapshot(model, x)
    with pytest.raises(InputError, match="do not match inputs"):
        _CALLS[name](model, x, torch.ones(2, 15, 16))
    nan = _tiny_maps(2)
    nan[1, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        _CALLS[name](model, x, nan)
    zero = _tiny_maps(2)
    zero[0] = 0
    with pytest.raises(InputError, match="zero everywhere"):
        _CALLS[name](model, x, zero)
    with pytest.raises(InputError, match="attribution method"):
        _CALLS[name](model, x, "saliency")
    with pytest.raises(TargetError, match="out of range"):
        _CALLS[name](model, x, _tiny_maps(2), target=9)
    assert_unchanged(model, snap, x)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, x, a: deletion(m, x, a, steps=0), "steps must be an int >= 1"),
        (lambda m, x, a: deletion(m, x, a, steps=1000), "at most 256"),
        (lambda m, x, a: insertion(m, x, a, steps=2.5), "steps must be an int"),
        (lambda m, x, a: deletion(m, x, a, output="prob"), "unknown output"),
        (lambda m, x, a: deletion(m, x, a, reduce="median"), "channel reduction reduce= must be one of"),
        (lambda m, x, a: deletion(m, x, a, seed=1.5), "seed must be an int"),
        (lambda m, x, a: deletion(m, x, a, baseline="sepia"), "unknown baseline"),
        (lambda m, x, a: region_perturbation(m, x, a, steps=0), "steps must be an int >= 1"),
        (lambda m, x, a: region_perturbation(m, x, a, patch_size=17), "patch_size=17 is larger"),
        (lambda m, x, a: road(m, x, a, percentages=(0.5, 1.0)), "strictly between 0 and 1"),
        (lambda m, x, a: road(m, x, a, percentages=()), "non-empty"),
        (lambda m, x, a: road(m, x, a, noise_std=-1), "noise_std must be"),
        (lambda m, x, a: infidelity(m, x, a, perturbation="salt"), "unknown perturbation"),
        (lambda m, x, a: infidelity(m, x, a, n_perturbations=0), "n_perturbations must be"),
        (lambda m, x, a: infidelity(m, x, a, scaling="max"), "unknown scaling"),
        (lambda m, x, a: infidelity(m, x, a, output="accuracy"), "unknown output"),
        (lambda m, x, a: infidelity(m, x, a, perturbation="square", square_sizes=[40]), "square_sizes"),
        (
            lambda m, x, a: infidelity(m, x, a, perturbation=torch.ones(2, 3, 8, 8, dtype=torch.bool)),
            "removal masks of shape",
        ),
        (lambda m, x, a: faithfulness_correlation(m, x, a, n_subsets=1), "at least 2 subsets"),
        (lambda m, x, a: faithfulness_correlation(m, x, a, subset_size=256), "between 1 and 255"),
        (lambda m, x, a: faithfulness_correlation(m, x, a, subset_size=1.5), "in \\(0, 1\\)"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(call, match):
    model = _tiny()
    x = _tiny_inputs(2)
    snap = snapshot(model, x)
    with pytest.raises((ConfigError, InputError), match=match):
        call(model, x, _tiny_maps(2))
    assert_unchanged(model, snap, x)


def test_image_only_metrics_refuse_tabular_inputs():
    x = torch.rand(3, 6, dtype=torch.float64)
    model = LinearScore((6,)).eval()
    maps = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(InputError, match="needs images"):
        road(model, x, maps)
    with pytest.raises(InputError, match="blurred starting image needs images"):
        insertion(model, x, maps)
    with pytest.raises(InputError, match="perturbation='gaussian'"):
        infidelity(model, x, maps, perturbation="square")
    # the others work on (N, D)
    assert faithfulness_correlation(model, x, x * model.w.detach(), target=0, subset_size=2).values.shape == (3,)
    assert region_perturbation(model, x, maps, patch_size=2).settings["regions"] == 3


def test_single_output_models_are_scored_on_the_output():
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 1)).eval()
    x = _images(2, 3, 4, 4, dtype=torch.float32)
    res = deletion(model, x, torch.randn(2, 4, 4), steps=4)
    assert res.settings["target"] == "Class(0)"  # the logit: a softmax over one output is 1
    assert res.settings["output"] == "logit"  # what was scored, not the default asked for
    with pytest.raises(ConfigError, match="output='logit'"):
        deletion(model, x, torch.randn(2, 4, 4), steps=4, output="accuracy")


def test_non_finite_inputs_are_refused():
    model = _tiny()
    x = _tiny_inputs(2)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="infinite"):
        deletion(model, x, _tiny_maps(2))


def test_result_values_are_float64_on_cpu_and_settings_json_friendly():
    import json

    model = _tiny()
    x = _tiny_inputs(2)
    for name, call in _CALLS.items():
        res = call(model, x, _tiny_maps(2))
        assert res.values.dtype == torch.float64
        json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in res.settings.items()}, default=list)
        assert np.isfinite(res.values.numpy()).all(), name


# --------------------------------------------------------------------------- target objects and output=


def test_output_cannot_be_set_beside_a_target_object():
    model = _tiny()
    x = _tiny_inputs(2)
    snap = snapshot(model, x)
    with pytest.raises(
        ConfigError, match=r"to score output='accuracy', give the class as an int or indices \(target=c\)"
    ):
        deletion(model, x, _tiny_maps(2), target=Class(1), output="accuracy", steps=8)
    with pytest.raises(
        ConfigError, match=r"set the output on the Target instead, e.g. target=Class\(c, output='logit'\)"
    ):
        road(model, x, _tiny_maps(2), target=Class(1, output="softmax"), output="logit", percentages=(0.5,))
    with pytest.raises(ConfigError, match="does not apply to the Target object"):
        infidelity(model, x, _tiny_maps(2), target=Predicted(), output="softmax", n_perturbations=2)
    with pytest.raises(ConfigError, match="does not apply to the Target object Custom"):
        insertion(model, x, _tiny_maps(2), target=lambda out: out[:, 0], output="logit", steps=4)
    assert_unchanged(model, snap, x)


def test_settings_record_the_output_that_was_scored():
    model = _tiny()
    x = _tiny_inputs(2)
    maps = _tiny_maps(2)
    # a Class object keeps its own output (the logit here), whatever the metric's default
    obj = deletion(model, x, maps, target=Class(1), steps=4)
    assert obj.settings["output"] == "logit"
    assert torch.equal(obj.values, deletion(model, x, maps, target=1, steps=4, output="logit").values)
    soft = infidelity(model, x, maps, target=Class(1, output="softmax"), n_perturbations=3)
    assert soft.settings["output"] == "softmax"
    assert torch.equal(soft.values, infidelity(model, x, maps, target=1, n_perturbations=3, output="softmax").values)
    # a callable has no output transform of its own
    fn = faithfulness_correlation(model, x, maps, target=lambda out: out[:, 1] - out[:, 0], n_subsets=4)
    assert fn.settings["output"] == "target"
    # an int target is scored as output=
    assert deletion(model, x, maps, target=1, steps=4, output="accuracy").settings["output"] == "accuracy"


def test_predicted_keeps_its_own_output():
    model = _tiny()
    x = _tiny_inputs(3)
    maps = _tiny_maps(3)
    soft = deletion(model, x, maps, target=Predicted(output="softmax"), steps=4)
    assert torch.equal(soft.values, deletion(model, x, maps, steps=4).values)
    assert soft.settings["output"] == "softmax"
    logit = deletion(model, x, maps, target=Predicted(), steps=4)
    assert torch.equal(logit.values, deletion(model, x, maps, steps=4, output="logit").values)
    assert logit.settings["output"] == "logit"
    assert not torch.equal(soft.values, logit.values)


def test_explanation_maps_are_scored_on_the_classes_they_explain():
    from seethrough.attribution import Saliency

    model = _tiny()
    x = _tiny_inputs(3)
    with torch.no_grad():
        pred = model(x).argmax(1)
    other = int((pred.max() + 1) % 10)
    assert bool((pred != other).all())  # the explained class is not the predicted one
    exp = Saliency(model).attribute(x, target=other)
    for name, call in _CALLS.items():
        implicit = call(model, x, exp)
        explicit = call(model, x, exp, target=other)
        assert torch.equal(implicit.values.nan_to_num(), explicit.values.nan_to_num()), name
        assert implicit.settings["target"] == explicit.settings["target"], name
        assert f"Class([{other}, {other}, {other}]" in implicit.settings["target"], name
    # an Explanation of a non-class target records no classes: the predicted class is scored
    custom = Saliency(model).attribute(x, target=lambda out: out[:, 0] - out[:, 1])
    assert custom.target_indices is None
    res = deletion(model, x, custom, steps=4)
    assert res.settings["target"] == f"Class({pred.tolist()}, output='softmax')"


# --------------------------------------------------------------------------- non-finite scores


class LogModel(nn.Module):
    """Logits ``(sum w * log(x), 0)``: finite for positive inputs only; signed weights make
    a removed (zero) pixel give -inf + inf = NaN, or inf."""

    def __init__(self, shape, seed=0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64))

    def forward(self, x):
        z = (torch.log(x) * self.w).flatten(1).sum(1)
        return torch.stack([z, torch.zeros_like(z)], dim=1)


_NON_FINITE = {
    "deletion": (
        lambda m, x, a: deletion(m, x, a, target=0, steps=8, baseline=0.0),
        r"step 1 of 8, 0.125 of the features removed",
    ),
    "insertion": (
        lambda m, x, a: insertion(m, x, a, target=0, steps=8, baseline=0.0),
        r"step 0 of 8, 0 of the features inserted",
    ),
    "region_perturbation": (
        lambda m, x, a: region_perturbation(m, x, a, target=0, patch_size=2, steps=4, perturbation=0.0),
        r"MoRF step 1 of 4",
    ),
    "road": (
        lambda m, x, a: road(m, x, a, target=0, percentages=(0.25, 0.5), noise_std=5.0),
        r"MoRF with 0.25 of the pixels imputed",
    ),
    "infidelity": (
        lambda m, x, a: infidelity(m, x, a, target=0, n_perturbations=8, noise_std=5.0),
        r"gaussian perturbation \d of 8",
    ),
    "infidelity_square": (
        lambda m, x, a: infidelity(m, x, a, target=0, perturbation="square", n_perturbations=8),
        r"square perturbation 0 of 8",
    ),
    "faithfulness_correlation": (
        lambda m, x, a: faithfulness_correlation(m, x, a, target=0, n_subsets=4, subset_size=2),
        r"subset 0 of 4",
    ),
}


@pytest.mark.parametrize("name", list(_NON_FINITE))
def test_non_finite_scores_are_refused_with_the_samples_the_step_and_the_fix(name):
    x = _images(2, 3, 8, 8)  # positive: the model is finite on the inputs
    model = LogModel(x.shape[1:]).eval()
    maps = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    call, step = _NON_FINITE[name]
    with pytest.raises(InputError, match=r"for samples \[0, 1\] \(first at sample 0, ") as err:
        call(model, x, maps)
    msg = str(err.value)
    assert re.search(step, msg), msg
    assert "inside the model's domain" in msg and "output=" in msg


def test_a_score_that_is_not_finite_on_the_inputs_themselves_is_named_so():
    x = _images(2, 3, 4, 4)
    model = LogModel(x.shape[1:]).eval()
    x[1, :, 0, 0] = 0.0  # log(0): the clean score of sample 1 is not finite
    with pytest.raises(InputError, match=r"samples \[1\].*step 0 of 4.*unperturbed inputs themselves"):
        deletion(model, x, torch.randn(2, 4, 4, dtype=torch.float64), target=0, steps=4, baseline=0.5)


# --------------------------------------------------------------------------- ROAD fractions


@pytest.mark.parametrize(
    "percentages, match",
    [
        ((0.3, 0.1, 0.2), r"strictly increasing.*\[0.1, 0.2, 0.3\]"),
        ((0.1, 0.1, 0.2), "strictly increasing"),
        ((0.1, 0.2, 0.5), r"equally spaced.*\[0.1, 0.3, 0.5\]"),
    ],
)
def test_road_fractions_must_be_increasing_and_equally_spaced(percentages, match):
    model = _tiny()
    x = _tiny_inputs(2)
    with pytest.raises(ConfigError, match=match):
        road(model, x, _tiny_maps(2), percentages=percentages)


def test_road_accepts_rounded_equal_spacing_and_one_fraction():
    model = _tiny()
    x = _tiny_inputs(2)
    res = road(model, x, _tiny_maps(2), percentages=np.linspace(0.1, 0.9, 9).tolist())
    assert torch.allclose(res.extras["area_morf"], res.curves["morf"].mean(1))
    one = road(model, x, _tiny_maps(2), percentages=(0.5,))
    assert torch.equal(one.extras["area_morf"], one.curves["morf"][:, 0])


# --------------------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_infidelity_with_explicit_masks_on_cuda():
    x = _images(2, 3, 8, 8)
    model = LinearScore(x.shape[1:]).eval()
    contrib = x * model.w.detach()
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, :4] = True
    masks[1, :, :2] = True
    masks[2, 3:6, 3:6] = True
    cpu = infidelity(model, x, contrib, target=0, perturbation=masks, scaling="none")
    # masks on the GPU, model and inputs on the CPU, and everything on the GPU
    a = infidelity(model, x, contrib, target=0, perturbation=masks.cuda(), scaling="none")
    gpu_model = LinearScore(x.shape[1:]).eval().cuda()
    b = infidelity(gpu_model, x.cuda(), contrib.cuda(), target=0, perturbation=masks.cuda(), scaling="none")
    assert torch.allclose(a.values, cpu.values) and torch.allclose(b.values, cpu.values, atol=1e-12)
    assert torch.allclose(b.extras["map_sums"], cpu.extras["map_sums"])
