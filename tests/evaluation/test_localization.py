"""Localization metrics: hand-computed values, the ideal map, ties, invariances, bad input,
the model contract, and Grad-CAM on the bundled shapes model."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import seethrough as st
from seethrough._core.errors import ConfigError, InputError
from seethrough.evaluation._common import MetricResult
from seethrough.evaluation.localization import (
    METRICS,
    mask_iou,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from seethrough.testing import TinyCNN, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, freeze_some, snapshot  # noqa: E402

X = torch.zeros(1, 1, 4, 4)  # the inputs only give the shape; no model is run on precomputed maps


def _grid(*positions: int) -> torch.Tensor:
    """A (1, 4, 4) boolean mask with the given row-major positions set."""
    m = torch.zeros(16, dtype=torch.bool)
    m[list(positions)] = True
    return m.reshape(1, 4, 4)


RAMP = torch.arange(16.0).reshape(1, 1, 4, 4)  # value = row-major position index


def _value(result: MetricResult) -> float:
    return float(result.values[0])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- by hand, 4x4


def test_pointing_game_by_hand():
    assert _value(pointing_game(None, X, RAMP, masks=_grid(14, 15))) == 1.0  # max at 15
    miss = pointing_game(None, X, RAMP, masks=_grid(0, 5))
    assert _value(miss) == 0.0
    # the maximum (3, 3) is sqrt(8) away from the nearest mask position (1, 1)
    assert float(miss.extras["distance"][0]) == pytest.approx(np.sqrt(8))
    near = _grid(10)  # (2, 2)
    assert float(pointing_game(None, X, RAMP, masks=near).extras["distance"][0]) == pytest.approx(np.sqrt(2))
    assert _value(pointing_game(None, X, RAMP, masks=near, tolerance=1.4)) == 0.0
    assert _value(pointing_game(None, X, RAMP, masks=near, tolerance=1.5)) == 1.0
    assert int(pointing_game(None, X, RAMP, masks=near).extras["n_maxima"][0]) == 1


def test_relevance_mass_accuracy_by_hand():
    # positions 5, 6, 9, 10 hold 5 + 6 + 9 + 10 = 30 of 0 + 1 + ... + 15 = 120
    r = relevance_mass_accuracy(None, X, RAMP, masks=_grid(5, 6, 9, 10))
    assert _value(r) == pytest.approx(0.25)
    assert float(r.extras["area_fraction"][0]) == 0.25
    # negative relevance is dropped: values -8..7, positive ones 1..7 at positions 9..15 (sum 28),
    # of which positions 9 and 10 (1 + 2) are in the mask
    signed = relevance_mass_accuracy(None, X, RAMP - 8, masks=_grid(5, 6, 9, 10))
    assert _value(signed) == pytest.approx(3 / 28)


def test_relevance_rank_accuracy_by_hand():
    assert _value(relevance_rank_accuracy(None, X, RAMP, masks=_grid(5, 6, 9, 10))) == 0.0  # top 4: 12..15
    assert _value(relevance_rank_accuracy(None, X, RAMP, masks=_grid(10, 11, 14, 15))) == 0.5
    assert _value(relevance_rank_accuracy(None, X, RAMP, masks=_grid(15))) == 1.0
    assert _value(relevance_rank_accuracy(None, X, RAMP, masks=_grid(0))) == 0.0


def test_mask_iou_by_hand_for_every_threshold():
    mask = _grid(10, 11, 14, 15)  # the top 4 are 12..15: intersection {14, 15}, union 6 positions
    assert _value(mask_iou(None, X, RAMP, masks=mask)) == pytest.approx(2 / 6)
    assert _value(mask_iou(None, X, RAMP, masks=mask, threshold="fixed", value=11.5)) == pytest.approx(2 / 6)
    # the 75th percentile of 0..15 is 11.25: keeps 12..15
    assert _value(mask_iou(None, X, RAMP, masks=mask, threshold="percentile", value=75)) == pytest.approx(2 / 6)
    # keeps 8..15: intersection 4, union 8
    r = mask_iou(None, X, RAMP, masks=mask, threshold="fixed", value=7.5)
    assert _value(r) == pytest.approx(0.5)
    assert float(r.extras["precision"][0]) == 0.5 and float(r.extras["recall"][0]) == 1.0
    assert float(r.extras["selected_fraction"][0]) == 0.5
    empty = mask_iou(None, X, RAMP, masks=mask, threshold="fixed", value=100.0)
    assert _value(empty) == 0.0 and np.isnan(float(empty.extras["precision"][0]))
    # Otsu separates a two-level map exactly
    two_level = torch.where(_grid(0, 1, 4, 5), 3.0, 1.0).unsqueeze(1)
    assert _value(mask_iou(None, X, two_level, masks=_grid(0, 1, 4), threshold="otsu")) == pytest.approx(3 / 4)


def test_topk_iou_is_a_function_of_rank_accuracy_without_ties():
    x = torch.zeros(6, 3, 12, 12)
    maps = torch.randn(6, 3, 12, 12, generator=_gen(0))
    masks = torch.rand(6, 12, 12, generator=_gen(1)) < torch.linspace(0.05, 0.6, 6).reshape(6, 1, 1)
    r = relevance_rank_accuracy(None, x, maps, masks=masks).values
    iou = mask_iou(None, x, maps, masks=masks).values
    assert torch.allclose(iou, r / (2 - r))


# --------------------------------------------------------------------------- ideal and worst maps


@pytest.fixture(scope="module")
def shapes():
    return st.data.make_shapes(6, size=32, seed=7)


def test_a_map_equal_to_the_mask_is_perfect(shapes):
    m = shapes.masks.float()
    for metric in METRICS:
        r = metric(None, shapes.images, m, masks=shapes.masks)
        assert bool((r.values == 1).all()), (metric.__name__, r.values)
    otsu = mask_iou(None, shapes.images, m, masks=shapes.masks, threshold="otsu")
    assert bool((otsu.values == 1).all())


def test_a_map_peaked_outside_the_mask_misses(shapes):
    maps = shapes.masks.float() * 0.5
    outside = ~shapes.masks[:, 0]
    for i in range(len(shapes)):
        ys, xs = outside[i].nonzero(as_tuple=True)
        maps[i, 0, ys[0], xs[0]] = 1.0  # one hot spot off the object
    r = pointing_game(None, shapes.images, maps, masks=shapes.masks)
    assert bool((r.values == 0).all())
    assert bool((r.extras["distance"] > 0).all())
    assert bool((pointing_game(None, shapes.images, maps, masks=shapes.masks, tolerance=64).values == 1).all())
    # the rest of the map still sits on the object
    assert bool((relevance_mass_accuracy(None, shapes.images, maps, masks=shapes.masks).values > 0.9).all())


def test_an_inverted_map_scores_zero(shapes):
    inverted = (~shapes.masks).float()
    for metric in (relevance_mass_accuracy, relevance_rank_accuracy, mask_iou, pointing_game):
        assert bool((metric(None, shapes.images, inverted, masks=shapes.masks).values == 0).all()), metric.__name__


# --------------------------------------------------------------------------- ties


def test_rank_accuracy_counts_ties_by_their_expected_share():
    """Brute force: average the rank accuracy over every order of the tied positions."""
    values = torch.tensor([5.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, -1.0])
    mask = torch.tensor([0, 1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    k = int(mask.sum())  # 4: the top 4 are position 0 and three of the four 2.0s
    total, count = 0.0, 0
    tied = [1, 2, 3, 4]
    for order in itertools.permutations(tied):
        chosen = [0, *order[: k - 1]]
        total += float(mask[chosen].sum()) / k
        count += 1
    expected = total / count  # = (0 + 3 * 2/4) / 4 = 0.375
    r = relevance_rank_accuracy(None, torch.zeros(1, 1, 8), values.reshape(1, 1, 8), masks=mask.reshape(1, 8))
    assert _value(r) == pytest.approx(expected) == pytest.approx(0.375)


def test_pointing_game_draws_among_tied_maxima_with_the_seed():
    values = torch.zeros(1, 1, 4, 4)
    values[0, 0, 0, 0] = values[0, 0, 3, 3] = 1.0  # two maxima, one in the mask
    values[0, 0, 1, 1] = 0.5
    mask = _grid(0, 5)
    hits = [_value(pointing_game(None, X, values, masks=mask, seed=s)) for s in range(40)]
    assert set(hits) == {0.0, 1.0}  # both maxima get picked for some seed
    assert 0.2 < np.mean(hits) < 0.8
    again = [_value(pointing_game(None, X, values, masks=mask, seed=s)) for s in range(40)]
    assert hits == again
    assert int(pointing_game(None, X, values, masks=mask).extras["n_maxima"][0]) == 2


def test_topk_iou_breaks_ties_with_the_seed():
    values = torch.zeros(1, 1, 4, 4)
    values[0, 0, 0, 0] = 1.0  # one clear top position, 15 tied zeros
    mask = _grid(0, 1, 2, 3)  # K = 4: three of the zeros are drawn
    ious = [_value(mask_iou(None, X, values, masks=mask, seed=s)) for s in range(30)]
    assert len(set(ious)) > 1
    assert ious == [_value(mask_iou(None, X, values, masks=mask, seed=s)) for s in range(30)]
    assert all(r >= 1 / 7 for r in ious)  # position 0 is always selected


# --------------------------------------------------------------------------- invariances and reductions


@pytest.mark.parametrize("metric", METRICS)
def test_invariant_to_positive_scaling(metric):
    x = torch.zeros(4, 3, 10, 10)
    maps = torch.randn(4, 3, 10, 10, generator=_gen(2))
    masks = torch.rand(4, 10, 10, generator=_gen(3)) < 0.3
    a = metric(None, x, maps, masks=masks).values
    b = metric(None, x, maps * 37.5, masks=masks).values
    assert torch.allclose(a, b)
    if metric is mask_iou:
        otsu = [metric(None, x, m, masks=masks, threshold="otsu").values for m in (maps, maps * 37.5)]
        assert torch.allclose(*otsu)


def test_channels_are_reduced_as_documented():
    x = torch.zeros(1, 2, 4, 4)
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 0], maps[0, 1, 0, 0] = 5.0, -5.0  # cancels under the signed sum
    maps[0, 0, 3, 3] = 1.0
    mask = _grid(0)
    assert _value(pointing_game(None, x, maps, masks=mask)) == 0.0
    assert _value(pointing_game(None, x, maps, masks=mask, reduce="abs_sum")) == 1.0
    assert _value(relevance_mass_accuracy(None, x, maps, masks=mask)) == 0.0
    assert _value(relevance_mass_accuracy(None, x, maps, masks=mask, reduce="abs_sum")) == pytest.approx(10 / 11)
    spatial = relevance_mass_accuracy(None, x, maps.sum(dim=1), masks=mask)
    assert _value(spatial) == 0.0


def test_absolute_iou_uses_the_magnitude():
    values = -RAMP.clone()  # most negative at 15
    mask = _grid(12, 13, 14, 15)
    assert _value(mask_iou(None, X, values, masks=mask)) == 0.0
    assert _value(mask_iou(None, X, values, masks=mask, absolute=True)) == 1.0


def test_all_negative_maps_have_no_mass_accuracy():
    maps = -torch.rand(2, 1, 4, 4, generator=_gen(4)) - 0.1
    r = relevance_mass_accuracy(None, torch.zeros(2, 1, 4, 4), maps, masks=torch.ones(2, 4, 4))
    assert bool(torch.isnan(r.values).all()) and np.isnan(r.mean)


def test_tabular_inputs_are_positions_of_one_channel():
    x = torch.zeros(2, 6)
    maps = torch.tensor([[0.1, 0.9, 0.2, 0.0, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0, 0.0, 2.0]])
    masks = torch.tensor([[0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert pointing_game(None, x, maps, masks=masks).values.tolist() == [1.0, 0.0]
    assert relevance_mass_accuracy(None, x, maps, masks=masks).values.tolist() == pytest.approx([1.3 / 1.9, 1 / 3])
    assert relevance_rank_accuracy(None, x, maps, masks=masks).values.tolist() == [1.0, 0.0]


def test_results_carry_settings_and_no_model_evaluations():
    r = mask_iou(None, X, RAMP, masks=_grid(15), threshold="percentile", value=90, seed=3)
    assert r.name == "mask_iou" and r.higher_is_better and r.n_evaluations == 0 and r.seconds >= 0
    assert dict(r.settings) == {
        "threshold": "percentile",
        "value": 90,
        "absolute": False,
        "reduce": "sum",
        "seed": 3,
        "maps": "precomputed",
    }


def test_metric_attributes_for_the_registry():
    assert [m.__name__ for m in METRICS] == [
        "pointing_game",
        "relevance_mass_accuracy",
        "relevance_rank_accuracy",
        "mask_iou",
    ]
    for metric in METRICS:
        assert metric.family == "localization"
        assert metric.higher_is_better is True
        assert metric.needs == frozenset({"masks"})


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("metric", METRICS)
def test_bad_maps_and_masks(metric):
    x = torch.zeros(2, 3, 4, 4)
    good = torch.rand(2, 4, 4, generator=_gen(5)) + 0.1
    masks = torch.ones(2, 4, 4, dtype=torch.bool)
    with pytest.raises(InputError, match=r"shaped \(2, 4, 4\)"):
        metric(None, x, good, masks=torch.ones(2, 5, 4))
    empty = masks.clone()
    empty[1] = False
    with pytest.raises(InputError, match=r"empty for samples \[1\]"):
        metric(None, x, good, masks=empty)
    with pytest.raises(InputError, match="masks="):
        metric(None, x, good, masks=None)
    zero = good.clone()
    zero[0] = 0
    if metric is relevance_mass_accuracy:  # no positive relevance: NaN for that sample only
        v = metric(None, x, zero, masks=masks).values
        assert torch.isnan(v[0]) and torch.isfinite(v[1])
    else:
        with pytest.raises(InputError, match=r"zero everywhere for samples \[0\]"):
            metric(None, x, zero, masks=masks)
    nan = good.clone()
    nan[1, 2, 2] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        metric(None, x, nan, masks=masks)
    with pytest.raises(InputError, match="do not match inputs"):
        metric(None, x, torch.rand(2, 5, 5), masks=masks)
    with pytest.raises(InputError, match="batch"):
        metric(None, torch.zeros(4), good, masks=masks)
    with pytest.raises(ConfigError, match="reduce="):
        metric(None, x, good, masks=masks, reduce="median")
    with pytest.raises(ConfigError, match="seed"):
        metric(None, x, good, masks=masks, seed=1.5)
    with pytest.raises(ConfigError, match="batch_size"):
        metric(None, x, good, masks=masks, batching=0)


def test_bad_settings():
    masks = _grid(0)
    for tolerance in (-1, float("nan"), "2"):
        with pytest.raises(ConfigError, match="tolerance"):
            pointing_game(None, X, RAMP, masks=masks, tolerance=tolerance)
    with pytest.raises(ConfigError, match="threshold="):
        mask_iou(None, X, RAMP, masks=masks, threshold="mean")
    with pytest.raises(ConfigError, match="needs a finite value="):
        mask_iou(None, X, RAMP, masks=masks, threshold="fixed")
    with pytest.raises(ConfigError, match="between 0 and 100"):
        mask_iou(None, X, RAMP, masks=masks, threshold="percentile", value=150)
    with pytest.raises(ConfigError, match="takes no value="):
        mask_iou(None, X, RAMP, masks=masks, threshold="topk", value=0.5)


# --------------------------------------------------------------------------- with a model


@pytest.fixture
def cnn():
    model = seeded(TinyCNN)
    freeze_some(model)
    return model


@pytest.mark.parametrize("metric", METRICS)
def test_a_method_as_maps_is_run_and_counted_and_the_model_is_left_unchanged(cnn, metric):
    x = torch.randn(3, 3, 16, 16, generator=_gen(6))
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 4:12] = True
    method = st.Saliency(cnn, batching=8)  # explicit batches: no sizing probe on the first call
    snap = snapshot(cnn, x)
    r = metric(cnn, x, method, masks=masks, target=[0, 1, 2])
    assert_unchanged(cnn, snap, x)
    explanation = method.attribute(x, target=[0, 1, 2])
    assert r.n_evaluations == explanation.n_evaluations > 0
    assert r.settings["maps"] == "saliency"
    same = metric(None, x, explanation, masks=masks)
    assert same.n_evaluations == 0
    assert torch.allclose(r.values, same.values, equal_nan=True)


@pytest.mark.parametrize("metric", METRICS)
def test_bad_masks_fail_before_the_method_runs(cnn, metric):
    x = torch.randn(2, 3, 16, 16, generator=_gen(7))
    calls = []
    handle = cnn.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        snap = snapshot(cnn, x)
        with pytest.raises(InputError):
            metric(cnn, x, st.Saliency(cnn), masks=torch.ones(2, 8, 8), target=0)
        assert_unchanged(cnn, snap, x)
    finally:
        handle.remove()
    assert calls == []


# --------------------------------------------------------------------------- bundled model


@pytest.fixture(scope="module")
def gradcam_on_shapes():
    zoo = pytest.importorskip("seethrough.zoo")
    if "shapes-cnn" not in zoo.available():
        pytest.skip("bundled weights missing")
    model = zoo.load("shapes-cnn")
    data = st.data.make_shapes(16, seed=4242)
    cam = st.GradCAM(model, layer=zoo.info("shapes-cnn").default_cam_layer)
    return model, data, cam.attribute(data.images, target=data.labels)


def test_gradcam_localizes_the_object_on_the_shapes_model(gradcam_on_shapes):
    """Measured on these 16 images: relevance mass 0.33 vs area fraction 0.11 (ratio at
    least 2.2 on every image, median 2.9), hit rate 0.81, rank accuracy 0.76; a uniform
    random map gets 0.11, 0.19 and 0.11. The bounds leave room for other platforms."""
    model, data, e = gradcam_on_shapes
    mass = relevance_mass_accuracy(model, data.images, e, masks=data.masks)
    area = mass.extras["area_fraction"]
    assert bool((mass.values > 1.3 * area).all()), (mass.values / area).tolist()
    assert float((mass.values / area).median()) > 2.0
    assert pointing_game(model, data.images, e, masks=data.masks).mean >= 0.6
    rank = relevance_rank_accuracy(model, data.images, e, masks=data.masks)
    assert rank.mean > 3 * float(rank.extras["area_fraction"].mean())
    noise = torch.rand(16, 1, 64, 64, generator=_gen(8))
    chance = relevance_mass_accuracy(None, data.images, noise, masks=data.masks)
    assert mass.mean > 2 * chance.mean
