"""What every metric shares: map resolution, channel reduction, mask checks, target indices
and the result object (``seethrough.evaluation._common``)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import seethrough as st
from seethrough._core.errors import ConfigError, InputError
from seethrough._core.targets import ClassDifference
from seethrough.evaluation._common import MetricResult, check_masks, pixel_maps, resolve_maps, resolve_target_indices
from seethrough.testing import TinyCNN, TinyResNet, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, snapshot  # noqa: E402


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x():
    return torch.randn(3, 3, 8, 8, generator=_gen(0))


# --------------------------------------------------------------------------- resolve_maps


@pytest.mark.parametrize("shape", [(3, 3, 8, 8), (3, 1, 8, 8), (3, 8, 8)])
def test_resolve_maps_accepts_the_three_documented_shapes(x, shape):
    maps = torch.rand(shape, generator=_gen(1)) + 0.1
    out = resolve_maps(maps, x)
    assert tuple(out.shape) == shape
    assert torch.equal(out, maps)
    assert not out.requires_grad


@pytest.mark.parametrize("shape", [(3, 2, 8, 8), (2, 3, 8, 8), (3, 8, 7), (3, 64), (3, 3, 8, 8, 1)])
def test_resolve_maps_refuses_other_shapes(x, shape):
    with pytest.raises(InputError, match=r"do not match inputs of shape \(3, 3, 8, 8\)"):
        resolve_maps(torch.ones(shape), x)


def test_resolve_maps_converts_numpy_and_integers_to_float(x):
    arr = np.arange(3 * 64, dtype=np.int64).reshape(3, 8, 8) + 1
    out = resolve_maps(arr, x)
    assert out.dtype.is_floating_point
    assert torch.equal(out, torch.as_tensor(arr).float())
    out64 = resolve_maps(arr.astype(np.float64), x)
    assert out64.dtype == torch.float64


def test_resolve_maps_detaches(x):
    maps = (torch.rand(3, 8, 8, generator=_gen(2)) + 0.1).requires_grad_()
    out = resolve_maps(maps * 2, x)
    assert not out.requires_grad


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_resolve_maps_refuses_non_finite_and_names_the_samples(x, value):
    maps = torch.rand(3, 8, 8, generator=_gen(3)) + 0.1
    maps[2, 4, 4] = value
    with pytest.raises(InputError, match=r"NaN or inf \(samples \[2\]\)"):
        resolve_maps(maps, x)


def test_resolve_maps_refuses_all_zero_samples_unless_allowed(x):
    maps = torch.rand(3, 8, 8, generator=_gen(4)) + 0.1
    maps[1] = 0
    with pytest.raises(InputError, match=r"zero everywhere for samples \[1\]"):
        resolve_maps(maps, x)
    assert torch.equal(resolve_maps(maps, x, allow_zero=True), maps)


def test_resolve_maps_refuses_other_sources(x):
    with pytest.raises(InputError, match="attribution method"):
        resolve_maps([[1.0]], x)


def test_resolve_maps_from_explanation_and_method():
    model = seeded(TinyCNN)
    inputs = torch.randn(2, 3, 16, 16, generator=_gen(5))
    method = st.Saliency(model)
    expected = method.attribute(inputs, target=1).attributions
    assert torch.equal(resolve_maps(method.attribute(inputs, target=1), inputs), expected)
    snap = snapshot(model, inputs)
    from_method = resolve_maps(method, inputs, target=1)
    assert_unchanged(model, snap, inputs)
    assert torch.allclose(from_method, expected)


# --------------------------------------------------------------------------- pixel_maps


def test_pixel_maps_reductions_by_hand(x):
    maps = torch.zeros(3, 3, 8, 8)
    maps[:, 0, 0, 0], maps[:, 1, 0, 0], maps[:, 2, 0, 0] = 3.0, -4.0, 0.0
    expected = {"sum": -1.0, "abs_sum": 7.0, "mean": -1.0 / 3.0, "max_abs": 4.0, "l2": 5.0}
    for reduce, value in expected.items():
        out = pixel_maps(maps, x, reduce=reduce)
        assert out.shape == (3, 8, 8)
        assert torch.allclose(out[:, 0, 0], torch.full((3,), value)), reduce
        assert bool((out[:, 1:, :] == 0).all())


def test_pixel_maps_default_is_signed_sum_and_spatial_maps_pass_through(x):
    maps = torch.randn(3, 3, 8, 8, generator=_gen(6))
    assert torch.equal(pixel_maps(maps, x), maps.sum(dim=1))
    spatial = torch.randn(3, 8, 8, generator=_gen(7))
    assert pixel_maps(spatial, x, reduce="abs_sum") is spatial  # already one map per sample


def test_pixel_maps_unknown_reduction(x):
    with pytest.raises(ConfigError, match="channel reduction reduce= must be one of .*, got 'median'"):
        pixel_maps(torch.ones(3, 3, 8, 8), x, reduce="median")


# --------------------------------------------------------------------------- check_masks


def test_check_masks_forms(x):
    m = torch.rand(3, 8, 8, generator=_gen(8)) > 0.5
    m[:, 0, 0] = True
    assert torch.equal(check_masks(m, x), m)
    assert torch.equal(check_masks(m.unsqueeze(1), x), m)
    assert torch.equal(check_masks(m.float().numpy(), x), m)
    per_channel = torch.zeros(3, 3, 8, 8, dtype=torch.bool)
    per_channel[:, 2] = m  # a position is in the mask if any channel is
    assert torch.equal(check_masks(per_channel, x), m)
    assert check_masks(m.int(), x).dtype == torch.bool


def test_check_masks_wrong_shape(x):
    with pytest.raises(InputError, match=r"shaped \(3, 8, 8\)"):
        check_masks(torch.ones(3, 8, 7, dtype=torch.bool), x)
    with pytest.raises(InputError, match=r"shaped \(3, 8, 8\)"):
        check_masks(torch.ones(2, 8, 8, dtype=torch.bool), x)


def test_check_masks_soft_and_empty(x):
    soft = torch.full((3, 8, 8), 0.5)
    with pytest.raises(InputError, match="boolean or 0/1"):
        check_masks(soft, x)
    m = torch.ones(3, 8, 8, dtype=torch.bool)
    m[1] = False
    with pytest.raises(InputError, match=r"empty for samples \[1\]"):
        check_masks(m, x)


# --------------------------------------------------------------------------- resolve_target_indices


def test_resolve_target_indices_forms():
    model = seeded(TinyCNN)
    inputs = torch.randn(4, 3, 16, 16, generator=_gen(9))
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1)
    assert torch.equal(resolve_target_indices(model, inputs, None), predicted)
    assert torch.equal(resolve_target_indices(model, inputs, 2), torch.full((4,), 2))
    assert torch.equal(resolve_target_indices(model, inputs, [0, 1, 2, 3]), torch.arange(4))
    assert resolve_target_indices(model, inputs, ClassDifference(1, 2)) is None


def test_resolve_target_indices_leaves_a_training_model_unchanged():
    model = seeded(TinyResNet).train()
    inputs = torch.randn(4, 3, 16, 16, generator=_gen(10))
    snap = snapshot(model, inputs)
    resolve_target_indices(model, inputs, None)
    assert_unchanged(model, snap, inputs)


def test_resolve_target_indices_refuses_a_wrong_number_of_indices():
    model = seeded(TinyCNN)
    inputs = torch.randn(4, 3, 16, 16, generator=_gen(11))
    with pytest.raises(st.TargetError):
        resolve_target_indices(model, inputs, [0, 1, 2])


def test_tabular_inputs_keep_their_features():
    inputs = torch.randn(3, 5, generator=_gen(12))
    maps = torch.rand(3, 5, generator=_gen(13)) + 0.1
    assert pixel_maps(resolve_maps(maps, inputs), inputs).shape == (3, 5)
    assert check_masks(torch.ones(3, 5), inputs).shape == (3, 5)
    with pytest.raises(InputError):
        resolve_maps(torch.ones(3, 1), inputs)


# --------------------------------------------------------------------------- MetricResult


def test_metric_result_normalises_values_and_freezes():
    r = MetricResult(
        name="m",
        values=np.array([[1, 2], [3, 4]], dtype=np.int32),
        higher_is_better=False,
        settings={"steps": 5, "nested": {"a": [1, 2]}},
        extras={"t": torch.ones(2)},
    )
    assert r.values.dtype == torch.float64 and r.values.shape == (4,) and r.values.device.type == "cpu"
    assert r.mean == 2.5
    assert r.std == pytest.approx(float(np.std([1, 2, 3, 4], ddof=1)))
    with pytest.raises(TypeError):
        r.settings["steps"] = 6
    with pytest.raises(TypeError):
        r.settings["nested"]["a"] = 0
    assert r.settings["nested"]["a"] == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "other"
    assert "m=2.5" in repr(r) and "lower is better" in repr(r)


def test_metric_result_skips_nan_in_mean_and_std():
    r = MetricResult(name="m", values=torch.tensor([1.0, float("nan"), 3.0]), higher_is_better=True)
    assert r.mean == 2.0
    assert r.std == pytest.approx(float(np.std([1.0, 3.0], ddof=1)))
    one = MetricResult(name="m", values=torch.tensor([float("nan"), 5.0]), higher_is_better=True)
    assert one.mean == 5.0 and one.std == 0.0
    empty = MetricResult(name="m", values=torch.tensor([float("nan")]), higher_is_better=True)
    assert np.isnan(empty.mean)


def test_maps_from_other_inputs_or_another_model_are_refused():
    model, other = seeded(TinyCNN), seeded(TinyCNN, seed=1) if "seed" in seeded.__code__.co_varnames else TinyCNN()
    x = torch.rand(2, 3, 16, 16, generator=_gen(20))
    e = st.Saliency(model.eval()).attribute(x + 1.0, target=0)
    with pytest.raises(InputError, match="other inputs"):
        resolve_maps(e, x)
    assert resolve_maps(st.Saliency(model).attribute(x, target=0), x).shape == x.shape
    with pytest.raises(InputError, match="another model"):
        resolve_maps(st.Saliency(other.eval()), x, model=model, target=0)


def test_label_maps_are_not_silently_binarised():
    x = torch.rand(2, 3, 4, 4)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[:, 0, 0] = 2
    labels[:, 1, 1] = 1
    with pytest.raises(InputError, match="label map"):
        check_masks(labels, x)
    assert check_masks(labels == 2, x).sum() == 2
