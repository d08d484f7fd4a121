"""Cross-checks against Quantus 0.6 (a test-only dependency) on the same maps, perturbations
and seeds: pixel flipping (deletion curve), region perturbation (AOPC), ROAD (accuracy curve
and the imputation itself), infidelity (removal and Gaussian), faithfulness correlation,
max- and average-sensitivity.

Quantus draws its randomness from numpy's global generator; where a metric is random, the
test hands Quantus the draws of ours (a perturbation function, or numpy's ``choice``
patched for the duration of the call), so the values must agree to float32 rounding.
Where Quantus's definition differs from the paper (AOPC normalisation, ROAD's orders,
infidelity's ``I``), the exact relation is tested.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

quantus = pytest.importorskip("quantus", reason="quantus (test-only dependency) is not installed")

from seethrough.attribution import InputXGradient, Saliency  # noqa: E402
from seethrough.evaluation.faithfulness import (  # noqa: E402
    _gaussian_perturbations,
    _random_subsets,
    deletion,
    faithfulness_correlation,
    infidelity,
    noisy_linear_imputation,
    region_perturbation,
    road,
)
from seethrough.evaluation.robustness import _ball_noise, avg_sensitivity, max_sensitivity  # noqa: E402
from seethrough.testing import TinyCNN, seeded  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def _setup(channels: int, n: int = 3, size: int = 16):
    model = seeded(TinyCNN, in_channels=channels)
    x = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))
    a = torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, a, y


def _call(metric, model, x, y, a, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=np.asarray(a),
            channel_first=True,
            device="cpu",
            **kwargs,
        )


@pytest.mark.parametrize("channels", [1, 3])
def test_deletion_curve_equals_pixel_flipping(channels):
    model, x, a, y = _setup(channels, size=12)
    a = a[:, :1]  # one value per pixel, broadcast over the channels by Quantus
    # Quantus flips elements of the broadcast map: a step of 12 pixels is 12 * C elements,
    # which keeps the channels of each pixel together since the pixel values are distinct
    q = quantus.PixelFlipping(
        features_in_step=12 * channels, normalise=False, abs=False, perturb_baseline=0.0, disable_warnings=True
    )
    theirs = np.array(_call(q, model, x, y, a, softmax=True))
    ours = deletion(model, x, a, target=y, steps=12, baseline=0.0, output="softmax")
    # Quantus's curve starts after the first step; ours also holds f(x) at fraction 0
    assert theirs.shape == (3, 12)
    np.testing.assert_allclose(theirs, ours.curves["scores"][:, 1:].numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("channels", [1, 3])
def test_region_perturbation_equals_quantus_drops_and_aopc(order, channels):
    model, x, a, y = _setup(channels)
    L = 10
    q = quantus.RegionPerturbation(
        patch_size=4,
        order=order,
        regions_evaluation=L,
        normalise=False,
        abs=False,
        perturb_baseline=0.0,
        disable_warnings=True,
    )
    drops = np.array(_call(q, model, x, y, a, softmax=True))  # f(x) - f(x_k), k = 1..L
    ours = region_perturbation(model, x, a, target=y, patch_size=4, steps=L, perturbation=0.0)
    curve = ours.curves[order]
    np.testing.assert_allclose(drops, (curve[:, :1] - curve[:, 1:]).numpy(), rtol=1e-5, atol=1e-7)
    # the paper's AOPC averages over k = 0..L (the k = 0 drop is 0): sum(drops) / (L + 1)
    np.testing.assert_allclose(drops.sum(1) / (L + 1), ours.extras[f"aopc_{order}"].numpy(), rtol=1e-5, atol=1e-7)


def test_noisy_linear_imputation_equals_quantus():
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    img = torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for n_removed in (1, 50, 119):
        idx = torch.randperm(120, generator=torch.Generator().manual_seed(n_removed))[:n_removed].numpy()
        theirs = quantus_imputation(img.numpy(), idx, noise=0.0)
        removed = torch.zeros(120, dtype=torch.bool)
        removed[idx] = True
        ours = noisy_linear_imputation(img, removed.reshape(10, 12), noise_std=0.0)
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-12, atol=1e-12)


def test_road_accuracy_curves_equal_quantus_for_both_orders():
    model, x, a, y = _setup(1, n=8)
    pct = list(range(10, 100, 10))
    ours = road(model, x, a, target=y, noise_std=0.0, output="accuracy")
    q = quantus.ROAD(percentages=pct, noise=0.0, normalise=False, abs=False, disable_warnings=True)
    morf = _call(q, model, x, y, a, softmax=True)
    # Quantus's ROAD is MoRF only; LeRF is MoRF of the negated map
    q = quantus.ROAD(percentages=pct, noise=0.0, normalise=False, abs=False, disable_warnings=True)
    lerf = _call(q, model, x, y, -a, softmax=True)
    np.testing.assert_allclose(list(morf.values()), ours.curves["morf"].mean(0).numpy(), atol=1e-12)
    np.testing.assert_allclose(list(lerf.values()), ours.curves["lerf"].mean(0).numpy(), atol=1e-12)
    assert len(set(ours.curves["morf"].mean(0).tolist())) > 2  # the curves do move


def test_infidelity_with_removal_equals_quantus_on_the_input_times_map():
    model, x, a, y = _setup(3)
    # Quantus removes 4x4 blocks in raster order, cumulatively, and uses I = x - x_perturbed
    q = quantus.Infidelity(
        perturb_patch_sizes=[4],
        n_perturb_samples=1,
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    theirs = np.array(_call(q, model, x, y, a, softmax=False))
    masks = torch.zeros(16, 16, 16, dtype=torch.bool)
    for k in range(16):
        for j in range(k + 1):
            r, c = divmod(j, 4)
            masks[k, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = True
    # ours follows the paper: for removal, I is the binary indicator, so the map that
    # reproduces Quantus's sum(a * (x - 0)) over removed elements is a * x
    ours = infidelity(model, x, a * x, target=y, perturbation=masks, scaling="none", output="logit")
    np.testing.assert_allclose(theirs, ours.values.numpy(), rtol=1e-5)


def test_infidelity_with_gaussian_noise_equals_quantus_given_the_same_noise():
    model, x, a, y = _setup(3)
    K, std, seed = 6, 0.05, 3
    noise = torch.stack([_gaussian_perturbations(seed, b, K, tuple(x.shape[1:]), std) for b in range(3)])
    flat = x.numpy().reshape(3, -1)
    calls = []

    def perturb(arr, indices, **kwargs):  # one whole-image "patch" per run: x - I_k
        calls.append(1)
        return (flat - noise[:, len(calls) - 1].reshape(3, -1).numpy()).astype(np.float32)

    q = quantus.Infidelity(
        perturb_func=perturb,
        perturb_patch_sizes=[16],
        n_perturb_samples=K,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    theirs = np.array(_call(q, model, x, y, a, softmax=False))
    assert len(calls) == K
    ours = infidelity(model, x, a, target=y, n_perturbations=K, noise_std=std, seed=seed, scaling="none")
    np.testing.assert_allclose(theirs, ours.values.numpy(), rtol=1e-5)
    np.testing.assert_allclose(theirs, ours.extras["unscaled"].numpy(), rtol=1e-5)


def test_faithfulness_correlation_equals_quantus_on_the_same_subsets(monkeypatch):
    model, x, a, y = _setup(1)
    K, size = 20, 30
    subsets = _random_subsets(0, 3, K, 256, size)
    draws = iter([subsets[b, k].numpy() for k in range(K) for b in range(3)])  # Quantus: runs, then samples
    q = quantus.FaithfulnessCorrelation(
        nr_runs=K,
        subset_size=size,
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        return_aggregate=False,
        disable_warnings=True,
    )
    monkeypatch.setattr(np.random, "choice", lambda *args, **kwargs: next(draws))
    theirs = np.array(_call(q, model, x, y, a, softmax=False))
    monkeypatch.undo()
    ours = faithfulness_correlation(model, x, a, target=y, n_subsets=K, subset_size=size, output="logit")
    np.testing.assert_allclose(theirs, ours.values.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which", ["max", "avg"])
@pytest.mark.parametrize("method_cls", [InputXGradient, Saliency])
def test_sensitivity_equals_quantus_given_the_same_noise(which, method_cls):
    model, x, _, y = _setup(3)
    method = method_cls(model)
    n_samples, radius = 4, 0.1
    noise = torch.stack([_ball_noise(0, b, n_samples, tuple(x.shape[1:]), radius) for b in range(3)]).float()
    flat = x.numpy().reshape(3, -1)
    calls = []

    def perturb(arr, indices, **kwargs):
        calls.append(1)
        return flat + noise[:, len(calls) - 1].reshape(3, -1).numpy()

    def explain(model, inputs, targets, **kwargs):
        return method.attribute(torch.as_tensor(inputs), target=torch.as_tensor(targets)).attributions.numpy()

    cls, fn = (quantus.MaxSensitivity, max_sensitivity) if which == "max" else (quantus.AvgSensitivity, avg_sensitivity)
    q = cls(nr_samples=n_samples, perturb_func=perturb, normalise=False, abs=False, disable_warnings=True)
    theirs = np.array(_call(q, model, x, y, explain(model, x.numpy(), y.numpy()), explain_func=explain))
    ours = fn(model, x, method, target=y, n_samples=n_samples, radius=radius)
    np.testing.assert_allclose(theirs, ours.values.numpy(), rtol=1e-5, atol=1e-7)
