"""Cross-checks against Quantus 0.6 (a test-only dependency) on the same maps and masks:
the localization metrics (pointing game, relevance mass and rank accuracy, top-k IoU through
Quantus's TopKIntersection) and the complexity metrics (sparseness, complexity, effective
complexity). Where the definitions differ on purpose (ties, negative relevance, Quantus's
epsilon, batch-wide normalisation) the exact relation is tested."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import seethrough as st
from seethrough.evaluation.complexity import effective_complexity, entropy_complexity, sparseness
from seethrough.evaluation.localization import (
    mask_iou,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    quantus = pytest.importorskip("quantus", reason="quantus is a test-only dependency for the cross-checks")

pytestmark = pytest.mark.filterwarnings("ignore")

N = 8


@pytest.fixture(scope="module")
def case():
    """Shapes images with their object masks, and continuous signed 3-channel maps (no ties)."""
    data = st.data.make_shapes(N, size=32, seed=11)
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(N, 3, 32, 32, generator=g, dtype=torch.float64)
    # bias the maps towards the object so that the values are not all near chance
    maps = maps + 1.5 * data.masks.double() * torch.rand(N, 1, 1, 1, generator=g, dtype=torch.float64)
    return data.images, maps, data.masks


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _q(metric, x, a, s=None, **call):
    """Call a Quantus metric without a model on precomputed maps (one row per sample)."""
    y = np.zeros(x.shape[0], dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(model=None, x_batch=_np(x), y_batch=y, a_batch=np.array(a, dtype=np.float64), s_batch=s, **call)
    return np.asarray(out, dtype=np.float64)


def _summed(maps: torch.Tensor) -> np.ndarray:
    """What Quantus sees for our default reduce="sum": the channel-summed map, (N, 1, H, W)."""
    return _np(maps.sum(dim=1, keepdim=True))


# --------------------------------------------------------------------------- localization


@pytest.mark.parametrize("normalise", [False, True])
def test_pointing_game(case, normalise):
    x, maps, masks = case
    q = _q(quantus.PointingGame(abs=False, normalise=normalise, disable_warnings=True), x, _summed(maps), _np(masks))
    ours = pointing_game(None, x, maps, masks=masks).values.numpy()
    assert 0 < ours.sum() < N  # both outcomes occur, so the comparison means something
    np.testing.assert_array_equal(ours, q)


def test_pointing_game_with_ties_hits_no_more_than_quantus(case):
    """Quantus counts a hit if any tied maximum is in the mask; we draw one of them."""
    x, maps, masks = case
    coarse = torch.round(maps.sum(dim=1, keepdim=True).clamp(min=0) * 0.7)  # many tied maxima
    q = _q(quantus.PointingGame(abs=False, normalise=False, disable_warnings=True), x, _np(coarse), _np(masks))
    for seed in range(5):
        ours = pointing_game(None, x, coarse, masks=masks, seed=seed).values.numpy()
        assert bool((ours <= q).all())
    single = pointing_game(None, x, coarse, masks=masks).extras["n_maxima"] == 1
    assert bool(single.any()) and not bool(single.all())
    np.testing.assert_array_equal(
        pointing_game(None, x, coarse, masks=masks).values.numpy()[single.numpy()], q[single.numpy()]
    )


@pytest.mark.parametrize("normalise", [False, True])
def test_relevance_mass_accuracy_on_non_negative_maps(case, normalise):
    x, maps, masks = case
    positive = maps.abs()
    q = _q(
        quantus.RelevanceMassAccuracy(abs=False, normalise=normalise, disable_warnings=True),
        x,
        _summed(positive),
        _np(masks),
    )
    ours = relevance_mass_accuracy(None, x, positive, masks=masks).values.numpy()
    np.testing.assert_allclose(ours, q, rtol=1e-12)


def test_relevance_mass_accuracy_drops_negative_relevance(case):
    """On signed maps ours equals Quantus on the positive part of the channel-summed map."""
    x, maps, masks = case
    summed = maps.sum(dim=1, keepdim=True)
    q_pos = _q(
        quantus.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True),
        x,
        _np(summed.clamp(min=0)),
        _np(masks),
    )
    q_signed = _q(
        quantus.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True), x, _np(summed), _np(masks)
    )
    ours = relevance_mass_accuracy(None, x, maps, masks=masks).values.numpy()
    np.testing.assert_allclose(ours, q_pos, rtol=1e-12)
    assert not np.allclose(ours, q_signed)  # the two definitions do differ on these maps


@pytest.mark.parametrize("normalise", [False, True])
def test_relevance_rank_accuracy(case, normalise):
    x, maps, masks = case
    q = _q(
        quantus.RelevanceRankAccuracy(abs=False, normalise=normalise, disable_warnings=True),
        x,
        _summed(maps),
        _np(masks),
    )
    ours = relevance_rank_accuracy(None, x, maps, masks=masks).values.numpy()
    np.testing.assert_allclose(ours, q, rtol=1e-12)


def test_topk_iou_through_top_k_intersection(case):
    """With k = the mask size K, Quantus's TopKIntersection is |S ∩ M| / K, so IoU = h / (2K - h)
    with h = K * TopKIntersection (one sample at a time: Quantus's k is one number)."""
    x, maps, masks = case
    ours = mask_iou(None, x, maps, masks=masks).values.numpy()
    summed = _summed(maps)
    for i in range(N):
        k = int(masks[i].sum())
        metric = quantus.TopKIntersection(k=k, abs=False, normalise=False, disable_warnings=True)
        tki = _q(metric, x[i : i + 1], summed[i : i + 1], _np(masks[i : i + 1]))[0]
        h = tki * k
        assert ours[i] == pytest.approx(h / (2 * k - h), rel=1e-12)


# --------------------------------------------------------------------------- complexity


@pytest.mark.parametrize("reduce", ["none", "abs_sum"])
def test_sparseness_up_to_quantus_epsilon(case, reduce):
    """Quantus adds 1e-7 to |a|, which scales the Gini index by S / (S + n 1e-7)."""
    x, maps, _ = case
    a = _np(maps) if reduce == "none" else _np(maps.abs().sum(dim=1, keepdim=True))
    q = _q(quantus.Sparseness(abs=True, normalise=False, disable_warnings=True), x, a)
    ours = sparseness(None, x, maps, reduce=reduce).values.numpy()
    flat = np.abs(a).reshape(N, -1)
    s, n = flat.sum(axis=1), flat.shape[1]
    np.testing.assert_allclose(ours * s / (s + n * 1e-7), q, rtol=1e-10)


@pytest.mark.parametrize("reduce", ["none", "abs_sum"])
def test_complexity(case, reduce):
    x, maps, _ = case
    a = _np(maps) if reduce == "none" else _np(maps.abs().sum(dim=1, keepdim=True))
    q = _q(quantus.Complexity(abs=True, normalise=False, disable_warnings=True), x, a)
    ours = entropy_complexity(None, x, maps, reduce=reduce).values.numpy()
    np.testing.assert_allclose(ours, q, rtol=0, atol=1e-8)


def test_effective_complexity(case):
    """Quantus normalises by the maximum over the whole batch; per sample they agree."""
    x, maps, _ = case
    # a spread of magnitudes so that eps matters, and different scales per sample
    a = maps.abs().sum(dim=1, keepdim=True) ** 6 * torch.logspace(0, 3, N, dtype=torch.float64).reshape(N, 1, 1, 1)
    eps = 1e-3
    ours = effective_complexity(None, x, a, eps=eps).values.numpy()
    assert len(set(ours.tolist())) > 1 and ours.max() < a[0].numel()
    per_sample = [
        _q(
            quantus.EffectiveComplexity(eps=eps, abs=True, normalise=True, disable_warnings=True),
            x[i : i + 1],
            _np(a[i : i + 1]),
        )[0]
        for i in range(N)
    ]
    np.testing.assert_array_equal(ours, per_sample)
    axes = quantus.EffectiveComplexity(
        eps=eps, abs=True, normalise=True, normalise_func_kwargs={"normalise_axes": (1, 2, 3)}, disable_warnings=True
    )
    np.testing.assert_array_equal(ours, _q(axes, x, _np(a)))
    batch = _q(quantus.EffectiveComplexity(eps=eps, abs=True, normalise=True, disable_warnings=True), x, _np(a))
    assert not np.array_equal(ours, batch)  # batch-wide normalisation makes the counts depend on the batch
