"""Max- and average-sensitivity: 0 for maps that cannot move, hand-computed values on a linear
model, a naive re-explanation loop, chunking invariance, determinism, bad input (precomputed
maps instead of a method) and the model left unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError
from seethrough._core.targets import Class, Predicted
from seethrough.attribution import InputXGradient, IntegratedGradients, Saliency
from seethrough.attribution._base import Attribution, Computed
from seethrough.evaluation.robustness import METRICS, _ball_noise, avg_sensitivity, max_sensitivity
from seethrough.testing import TinyCNN, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, snapshot  # noqa: E402


class LinearScore(nn.Module):
    def __init__(self, shape, seed=0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64))

    def forward(self, x):
        z = (x * self.w).flatten(1).sum(1)
        return torch.stack([z, -z], dim=1)


class ConstantMap(Attribution):
    """The same map whatever the input."""

    name = "constant"

    def _attribute(self, x, target, batching, **kwargs):
        return Computed(torch.ones_like(x), 0)


def _x(n=2, c=3, h=4, w=4, dtype=torch.float64, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_metrics_are_tagged_for_the_registry():
    assert [fn.__name__ for fn in METRICS] == ["max_sensitivity", "avg_sensitivity"]
    for fn in METRICS:
        assert fn.family == "robustness" and fn.higher_is_better is False
        assert fn.needs == frozenset({"model", "method"})


def test_a_map_that_cannot_move_has_zero_sensitivity():
    model = seeded(TinyCNN)
    x = _x(2, dtype=torch.float32, h=16, w=16)
    res = max_sensitivity(model, x, ConstantMap(model), n_samples=5)
    assert torch.equal(res.values, torch.zeros(2, dtype=torch.float64))
    # the gradient of a linear model does not depend on the input either
    lin = LinearScore((3, 4, 4)).eval()
    res = max_sensitivity(lin, _x(), Saliency(lin), n_samples=5)
    assert float(res.values.abs().max()) == 0.0
    assert res.name == "max_sensitivity" and not res.higher_is_better


def test_input_x_gradient_of_a_linear_model_by_hand():
    lin = LinearScore((3, 4, 4)).eval()
    x = _x()
    K, r = 7, 0.1
    mx = max_sensitivity(lin, x, InputXGradient(lin), target=0, n_samples=K, radius=r, seed=4)
    av = avg_sensitivity(lin, x, InputXGradient(lin), target=0, n_samples=K, radius=r, seed=4)
    w = lin.w.detach()
    for b in range(2):
        u = _ball_noise(4, b, K, tuple(x.shape[1:]), r)
        assert float(u.abs().max()) <= r
        sens = (u * w).flatten(1).norm(dim=1) / (x[b] * w).norm()  # phi(x + u) - phi(x) = w * u
        assert torch.allclose(mx.extras["sensitivities"][b], sens, rtol=1e-10)
        assert mx.values[b].item() == pytest.approx(float(sens.max()), rel=1e-10)
        assert av.values[b].item() == pytest.approx(float(sens.mean()), rel=1e-10)
    assert torch.equal(mx.extras["mean"], av.values) and torch.equal(av.extras["max"], mx.values)
    assert mx.settings["radius"] == r and mx.settings["n_samples"] == K and mx.settings["norm"] == "l2"


def test_equals_a_naive_loop_of_re_explanations_with_the_target_of_each_sample():
    model = seeded(TinyCNN)
    x = _x(2, dtype=torch.float32, h=12, w=12, seed=3)
    method = Saliency(model)
    target = [1, 3]
    res = max_sensitivity(model, x, method, target=target, n_samples=3, radius=0.05)
    for b in range(2):
        phi = method.attribute(x[b : b + 1], target=target[b]).attributions
        u = _ball_noise(0, b, 3, tuple(x.shape[1:]), 0.05).float()
        for k in range(3):
            a = method.attribute(x[b : b + 1] + u[k], target=target[b]).attributions
            expected = float((a - phi).double().norm() / phi.double().norm())
            assert res.extras["sensitivities"][b, k].item() == pytest.approx(expected, rel=1e-4)
    # the predicted class by default: the same as passing it explicitly
    pred = model(x).argmax(1).tolist()
    assert torch.equal(
        max_sensitivity(model, x, method, n_samples=3).values,
        max_sensitivity(model, x, method, target=pred, n_samples=3).values,
    )


def test_chunking_determinism_and_the_model_contract():
    model = seeded(TinyCNN)
    model.train()
    x = _x(3, dtype=torch.float32, h=16, w=16, seed=5)
    snap = snapshot(model, x)
    method = IntegratedGradients(model, steps=8)
    with pytest.warns(UserWarning, match="train mode"):
        auto = avg_sensitivity(model, x, method, n_samples=4, seed=2)
    with pytest.warns(UserWarning, match="train mode"):
        one = avg_sensitivity(model, x, method, n_samples=4, seed=2, batching=1)
    with pytest.warns(UserWarning, match="train mode"):
        five = avg_sensitivity(model, x, method, n_samples=4, seed=2, batching=5)
    with pytest.warns(UserWarning, match="train mode"):
        other = avg_sensitivity(model, x, method, n_samples=4, seed=3)
    assert_unchanged(model, snap, x)
    assert torch.allclose(one.values, auto.values, rtol=1e-4)
    assert torch.allclose(five.values, auto.values, rtol=1e-4)
    assert not torch.allclose(other.values, auto.values)
    assert min(one.n_evaluations, auto.n_evaluations) > 3 * 4 * 8  # the method may add probe rows
    again = avg_sensitivity(model.eval(), x, method, n_samples=4, seed=2)
    assert torch.equal(again.values, avg_sensitivity(model, x, method, n_samples=4, seed=2).values)
    assert bool((auto.values > 0).all())


def test_a_larger_radius_moves_the_maps_more():
    model = seeded(TinyCNN)
    x = _x(2, dtype=torch.float32, h=16, w=16, seed=6)
    method = Saliency(model)
    small = avg_sensitivity(model, x, method, radius=0.01, n_samples=6)
    large = avg_sensitivity(model, x, method, radius=0.5, n_samples=6)
    assert bool((small.values < large.values).all())


def test_precomputed_maps_are_refused_with_the_fix():
    model = seeded(TinyCNN)
    x = _x(2, dtype=torch.float32, h=16, w=16)
    snap = snapshot(model, x)
    exp = Saliency(model).attribute(x)
    for fn in METRICS:
        with pytest.raises(InputError, match="needs the attribution method itself, not an Explanation"):
            fn(model, x, exp)
        with pytest.raises(InputError, match=r"maps=seethrough.IntegratedGradients\(model\)"):
            fn(model, x, exp.attributions)
    other = seeded(TinyCNN, seed=1)
    with pytest.raises(InputError, match="bound to another model"):
        max_sensitivity(model, x, Saliency(other))
    assert_unchanged(model, snap, x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"radius": 0}, "radius must be a finite number > 0"),
        ({"radius": float("nan")}, "radius must be"),
        ({"n_samples": 0}, "n_samples must be an int >= 1"),
        ({"seed": "a"}, "seed must be an int"),
        ({"batching": 0}, "batch_size must be a positive int"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    model = seeded(TinyCNN)
    x = _x(2, dtype=torch.float32, h=16, w=16)
    snap = snapshot(model, x)
    with pytest.raises(ConfigError, match=match):
        max_sensitivity(model, x, Saliency(model), **kwargs)
    assert_unchanged(model, snap, x)


def test_zero_maps_are_refused():
    model = seeded(TinyCNN)
    x = _x(2, dtype=torch.float32, h=16, w=16)

    class Zero(ConstantMap):
        def _attribute(self, x, target, batching, **kwargs):
            return Computed(torch.zeros_like(x), 0)

    with pytest.warns(UserWarning), pytest.raises(InputError, match="zero everywhere"):
        max_sensitivity(model, x, Zero(model))


@pytest.mark.parametrize(
    "target, per_sample",
    [
        (Class([1, 3], output="softmax"), lambda b: Class(1 if b == 0 else 3, output="softmax")),
        (lambda out: out[:, 0] - out[:, 2], lambda b: lambda out: out[:, 0] - out[:, 2]),
    ],
    ids=["class-softmax", "callable"],
)
def test_target_objects_are_explained_as_given(target, per_sample):
    model = seeded(TinyCNN)
    x = _x(2, dtype=torch.float32, h=12, w=12, seed=7)
    method = Saliency(model)
    res = max_sensitivity(model, x, method, target=target, n_samples=2, radius=0.05)
    for b in range(2):
        phi = method.attribute(x[b : b + 1], target=per_sample(b)).attributions
        u = _ball_noise(0, b, 2, tuple(x.shape[1:]), 0.05).float()
        for k in range(2):
            a = method.attribute(x[b : b + 1] + u[k], target=per_sample(b)).attributions
            expected = float((a - phi).double().norm() / phi.double().norm())
            assert res.extras["sensitivities"][b, k].item() == pytest.approx(expected, rel=1e-4)


def test_predicted_is_explained_with_its_own_output():
    model = seeded(TinyCNN)
    x = _x(2, dtype=torch.float32, h=12, w=12, seed=7)
    method = Saliency(model)
    pred = model(x).argmax(1).tolist()
    res = max_sensitivity(model, x, method, target=Predicted(output="softmax"), n_samples=2, radius=0.05)
    same = max_sensitivity(model, x, method, target=Class(pred, output="softmax"), n_samples=2, radius=0.05)
    logit = max_sensitivity(model, x, method, target=pred, n_samples=2, radius=0.05)
    assert torch.equal(res.values, same.values)
    assert not torch.allclose(res.values, logit.values)
    assert res.settings["target"] == same.settings["target"] == f"Class({pred}, output='softmax')"


class SqrtScore(nn.Module):
    """Logits ``(sum w * sqrt(x), 0)``: the gradient is NaN wherever an input is negative."""

    def __init__(self, shape, seed=0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64))

    def forward(self, x):
        z = (torch.sqrt(x) * self.w).flatten(1).sum(1)
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def test_non_finite_maps_on_perturbed_copies_name_the_samples_and_the_fix():
    x = _x() + 0.05  # positive: finite maps on the inputs themselves
    x[1] += 1.0  # sample 1 stays positive under the noise
    model = SqrtScore(tuple(x.shape[1:])).eval()
    with pytest.raises(
        InputError, match=r"perturbed copies of samples \[0\] \(first: sample 0, draw \d\).*smaller radius"
    ):
        avg_sensitivity(model, x, Saliency(model), target=0, radius=0.5, n_samples=4)
    assert bool(
        torch.isfinite(avg_sensitivity(model, x, Saliency(model), target=0, radius=0.01, n_samples=4).values).all()
    )
