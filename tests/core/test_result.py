"""Explanation: a frozen record whose settings cannot be changed after the fact."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import seethrough as st
from seethrough.testing import TinyCNN, seeded


@pytest.fixture
def expl():
    model = seeded(TinyCNN)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return st.IntegratedGradients(model, steps=4, batching=8).attribute(x, target=1)


def test_frozen_dataclass(expl):
    assert dataclasses.is_dataclass(expl)
    for field in ("attributions", "method", "settings", "target", "extras", "n_evaluations"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(expl, field, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        del expl.method


def test_settings_and_extras_are_read_only(expl):
    assert dict(expl.settings) == {"steps": 4, "rule": "gausslegendre", "baseline": ("zeros",)}
    with pytest.raises(TypeError):
        expl.settings["steps"] = 99  # type: ignore[index]
    with pytest.raises(TypeError):
        del expl.settings["steps"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        expl.extras["delta"] = torch.zeros(2)  # type: ignore[index]
    assert expl.settings["steps"] == 4
    assert set(expl.extras) == {"delta", "baseline_scores"}
    assert expl.delta is expl.extras["delta"]


def test_settings_are_a_copy_of_what_was_given():
    given = {"a": 1}
    e = st.Explanation(attributions=torch.zeros(1, 2), method="m", settings=given)
    given["a"] = 2
    given["b"] = 3
    assert dict(e.settings) == {"a": 1}


def test_settings_do_not_follow_the_method_afterwards():
    model = seeded(TinyCNN)
    method = st.IntegratedGradients(model, steps=4)
    e = method.attribute(torch.randn(1, 3, 16, 16), target=0)
    method.steps = 8
    assert e.settings["steps"] == 4


def test_nested_settings_are_read_only():
    model = seeded(TinyCNN)
    e = st.SmoothGrad(model, n_samples=2).attribute(torch.randn(1, 3, 16, 16), target=0)
    assert e.settings["method_settings"] == {"abs": True}
    try:
        e.settings["method_settings"]["abs"] = False
    except TypeError:
        pass
    assert e.settings["method_settings"] == {"abs": True}


def test_basic_fields(expl):
    assert len(expl) == 2
    assert expl.method == "integrated_gradients"
    assert expl.target == "Class(1)"
    assert expl.attributions.shape == expl.inputs.shape == (2, 3, 16, 16)
    assert expl.n_evaluations == 2 * 4 + 2 * 2  # path rows, then inputs and baselines scored
    assert expl.seconds >= 0
    assert "integrated_gradients" in repr(expl) and "(2, 3, 16, 16)" in repr(expl)
