"""Complexity metrics: hand-computed values, extremes, invariances, reductions, bad input and
the model contract."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import seethrough as st
from seethrough._core.errors import ConfigError, InputError
from seethrough.evaluation.complexity import METRICS, effective_complexity, entropy_complexity, sparseness
from seethrough.testing import TinyCNN, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, freeze_some, snapshot  # noqa: E402

X = torch.zeros(1, 1, 4, 4)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _one(metric, maps, **kwargs) -> float:
    return float(metric(None, X, maps.reshape(1, 1, 4, 4), **kwargs).values[0])


def _gini_reference(a: np.ndarray) -> float:
    """Gini as the mean absolute difference over all pairs, over twice the mean."""
    a = np.abs(a.ravel()).astype(np.float64)
    return float(np.abs(a[:, None] - a[None, :]).sum() / (2 * a.size**2 * a.mean()))


# --------------------------------------------------------------------------- by hand


def test_sparseness_by_hand_and_extremes():
    n = 16
    one_hot = torch.zeros(16)
    one_hot[7] = -3.0
    assert _one(sparseness, one_hot) == pytest.approx(1 - 1 / n)
    assert _one(sparseness, torch.full((16,), 0.25)) == pytest.approx(0.0, abs=1e-15)
    # twelve zeros, then |a| = 1, 2, 3, 4 at ranks k = 13..16:
    # sum_k (2k - 17) a_(k) = 9 + 2*11 + 3*13 + 4*15 = 130, over n * sum = 16 * 10
    a = torch.zeros(16)
    a[:4] = torch.tensor([1.0, -2.0, 3.0, 4.0])
    assert _one(sparseness, a) == pytest.approx(130 / 160)
    r = sparseness(None, X, a.reshape(1, 1, 4, 4))
    assert r.extras["max_value"] == pytest.approx(1 - 1 / n)


def test_sparseness_matches_the_pairwise_definition():
    maps = torch.randn(5, 1, 6, 6, generator=_gen(0)) ** 3
    ours = sparseness(None, torch.zeros(5, 1, 6, 6), maps).values
    ref = [_gini_reference(m.numpy()) for m in maps]
    assert ours.tolist() == pytest.approx(ref, rel=1e-10)


def test_entropy_complexity_by_hand_and_extremes():
    one_hot = torch.zeros(16)
    one_hot[0] = 2.0
    assert _one(entropy_complexity, one_hot) == pytest.approx(0.0, abs=1e-15)
    assert _one(entropy_complexity, torch.full((16,), -0.5)) == pytest.approx(math.log(16))
    a = torch.zeros(16)
    a[:3] = torch.tensor([1.0, -1.0, 2.0])  # p = 1/4, 1/4, 1/2
    assert _one(entropy_complexity, a) == pytest.approx(1.5 * math.log(2))
    assert entropy_complexity(None, X, a.reshape(1, 1, 4, 4)).extras["max_value"] == pytest.approx(math.log(16))


def test_effective_complexity_by_hand():
    a = torch.zeros(16)
    a[:4] = torch.tensor([1e-7, -0.5, 1.0, 2e-5])
    assert _one(effective_complexity, a) == 3  # 1e-7 <= 1e-5 * 1.0
    assert _one(effective_complexity, a, eps=0.0) == 4  # every non-zero
    assert _one(effective_complexity, a, eps=0.6) == 1
    r = effective_complexity(None, X, a.reshape(1, 1, 4, 4))
    assert float(r.extras["fraction"][0]) == pytest.approx(3 / 16)


# --------------------------------------------------------------------------- invariances, reductions


@pytest.mark.parametrize("metric", METRICS)
def test_invariant_to_scaling_and_sign(metric):
    x = torch.zeros(4, 3, 6, 6)
    maps = torch.randn(4, 3, 6, 6, generator=_gen(1))
    base = metric(None, x, maps).values
    for factor in (1e-3, 7.5, -2.0):
        assert torch.allclose(metric(None, x, maps * factor).values, base, rtol=1e-9), factor


def test_channel_reductions():
    x = torch.zeros(1, 2, 2, 2)
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, 0, 0], maps[0, 1, 0, 0] = 1.0, -1.0  # cancels under "sum"
    maps[0, 0, 1, 1] = 2.0
    # abs_sum (default): positions carry 2, 0, 0, 2 -> two equal features
    assert float(entropy_complexity(None, x, maps).values[0]) == pytest.approx(math.log(2))
    # sum: 0, 0, 0, 2 -> one feature
    assert float(entropy_complexity(None, x, maps, reduce="sum").values[0]) == pytest.approx(0.0, abs=1e-15)
    # none: the 8 elements 1, 1, 2 (and zeros) -> p = 1/4, 1/4, 1/2
    r = entropy_complexity(None, x, maps, reduce="none")
    assert float(r.values[0]) == pytest.approx(1.5 * math.log(2))
    assert r.extras["n_features"] == 8
    assert effective_complexity(None, x, maps).values.tolist() == [2.0]
    assert effective_complexity(None, x, maps, reduce="none").values.tolist() == [3.0]
    assert effective_complexity(None, x, maps, reduce="max_abs").values.tolist() == [2.0]


def test_a_zero_reduced_map_is_nan():
    x = torch.zeros(1, 2, 2, 2)
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, 0, 0], maps[0, 1, 0, 0] = 1.0, -1.0
    for metric in METRICS:
        assert bool(torch.isnan(metric(None, x, maps, reduce="sum").values).all()), metric.__name__


def test_tabular_features():
    x = torch.zeros(2, 5)
    maps = torch.tensor([[0.0, 0.0, 3.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    assert sparseness(None, x, maps).values.tolist() == pytest.approx([0.8, 0.0])
    assert effective_complexity(None, x, maps).values.tolist() == [1.0, 5.0]


def test_sparser_maps_score_as_simpler():
    x = torch.zeros(3, 1, 8, 8)
    dense = torch.rand(1, 1, 8, 8, generator=_gen(2)) + 0.5
    blob = torch.zeros(1, 1, 8, 8)
    blob[..., 2:5, 2:5] = dense[..., 2:5, 2:5]
    spot = torch.zeros(1, 1, 8, 8)
    spot[..., 3, 3] = 1.0
    maps = torch.cat([dense, blob, spot])
    g = sparseness(None, x, maps).values
    h = entropy_complexity(None, x, maps).values
    k = effective_complexity(None, x, maps).values
    assert g[0] < g[1] < g[2]
    assert h[0] > h[1] > h[2]
    assert k.tolist() == [64.0, 9.0, 1.0]


def test_results_and_attributes():
    r = effective_complexity(None, X, torch.ones(1, 1, 4, 4), eps=0.1, reduce="none")
    assert r.name == "effective_complexity" and r.n_evaluations == 0
    assert dict(r.settings) == {"eps": 0.1, "reduce": "none", "maps": "precomputed"}
    assert [m.__name__ for m in METRICS] == ["sparseness", "entropy_complexity", "effective_complexity"]
    assert [m.higher_is_better for m in METRICS] == [True, False, False]
    for metric in METRICS:
        assert metric.family == "complexity" and metric.needs == frozenset()
        assert metric(None, X, torch.ones(1, 1, 4, 4)).higher_is_better is metric.higher_is_better


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("metric", METRICS)
def test_bad_input(metric):
    x = torch.zeros(2, 3, 4, 4)
    good = torch.rand(2, 3, 4, 4, generator=_gen(3)) + 0.1
    zero = good.clone()
    zero[1] = 0
    # A sample whose map is zero everywhere gets NaN; the others keep their values.
    v = metric(None, x, zero).values
    assert torch.isnan(v[1]) and torch.isfinite(v[0]) and v[0] == metric(None, x[:1], good[:1]).values[0]
    nan = good.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        metric(None, x, nan)
    with pytest.raises(InputError, match="do not match inputs"):
        metric(None, x, torch.rand(2, 2, 4, 4))
    with pytest.raises(ConfigError, match="reduce="):
        metric(None, x, good, reduce="median")
    with pytest.raises(ConfigError, match="seed"):
        metric(None, x, good, seed="0")
    with pytest.raises(ConfigError, match="batching"):
        metric(None, x, good, batching="auto")


def test_bad_eps():
    for eps in (-0.1, 1.0, float("nan"), True):
        with pytest.raises(ConfigError, match="eps"):
            effective_complexity(None, X, torch.ones(1, 1, 4, 4), eps=eps)


@pytest.mark.parametrize("metric", METRICS)
def test_a_method_as_maps_leaves_the_model_unchanged(metric):
    model = seeded(TinyCNN)
    freeze_some(model)
    x = torch.randn(2, 3, 16, 16, generator=_gen(4))
    method = st.GradCAM(model, layer="features.3", batching=4)
    snap = snapshot(model, x)
    r = metric(model, x, method, target=1)
    assert_unchanged(model, snap, x)
    explanation = method.attribute(x, target=1)
    assert r.n_evaluations == explanation.n_evaluations > 0
    assert torch.allclose(r.values, metric(None, x, explanation).values)
    with pytest.raises(InputError):
        metric(model, x[:, :2], method, target=1)  # the model needs 3 channels
    assert_unchanged(model, snap, x)
