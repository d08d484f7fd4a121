"""Integrated gradients (Sundararajan et al., 2017)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.engine import ChunkResult, GradientRunner, forward_scores
from .._core.errors import ConfigError
from .._core.targets import Target
from ._base import Attribution, Computed
from .baselines import BaselineLike, as_baselines

__all__ = ["IntegratedGradients", "integration_points", "RULES"]

RULES = ("left", "right", "middle", "trapezoid", "gausslegendre")


def integration_points(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights of a quadrature rule for ``∫_0^1 f``."""
    alphas, weights = _points(steps, rule)
    return alphas.copy(), weights.copy()


@functools.lru_cache(maxsize=64)
def _points(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    if rule not in RULES:
        raise ConfigError(f"unknown integration rule {rule!r}; use one of {RULES}")
    if not isinstance(steps, int) or steps < 1 or (rule == "trapezoid" and steps < 2):
        need = 2 if rule == "trapezoid" else 1
        raise ConfigError(f"the {rule} rule needs an int steps >= {need}, got {steps!r}")
    n = steps
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return (nodes + 1) / 2, weights / 2
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, n)
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
        return alphas, w
    start = {"left": 0.0, "right": 1.0, "middle": 0.5}[rule] / n
    return start + np.arange(n) / n, np.full(n, 1.0 / n)


class IntegratedGradients(Attribution):
    """Integrated gradients: ``(x - x') * ∫_0^1 ∇F(x' + a (x - x')) da``.

    Parameters
    ----------
    steps:
        Number of points on the path.
    rule:
        Quadrature rule: ``"gausslegendre"`` (default), ``"left"``, ``"right"``,
        ``"middle"`` (Riemann sums) or ``"trapezoid"``.
    baseline:
        The reference input(s): see :mod:`seethrough.attribution.baselines`. A list
        averages the attributions over several baselines. ``attribute(..., baseline=)``
        overrides it for one call.

    The result's ``extras["delta"]`` is the completeness error per sample,
    ``sum(attributions) - (F(x) - mean_b F(x'_b))``.
    """

    name = "integrated_gradients"

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 50,
        rule: str = "gausslegendre",
        baseline: BaselineLike = "zeros",
        batching=None,
    ) -> None:
        super().__init__(model, batching=batching)
        self.steps = steps
        self.rule = rule
        self.baseline = baseline

    def settings(self):
        return {
            "steps": self.steps,
            "rule": self.rule,
            "baseline": [b.describe() for b in as_baselines(self.baseline)],
        }

    def _check_settings(self) -> None:
        integration_points(self.steps, self.rule)
        as_baselines(self.baseline)

    def _attribute(self, x: Tensor, target: Target, batching: Batching, baseline=None, **kwargs) -> Computed:
        if kwargs:
            raise TypeError(f"IntegratedGradients.attribute() got unexpected arguments {sorted(kwargs)}")
        specs = as_baselines(self.baseline if baseline is None else baseline)
        bases = torch.stack([b(x) for b in specs])  # (nb, B, ...)
        alphas_np, weights_np = integration_points(self.steps, self.rule)
        alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
        weights = torch.as_tensor(weights_np, dtype=x.dtype, device=x.device)
        B, nb, S = x.shape[0], bases.shape[0], self.steps
        diff = x.unsqueeze(0) - bases  # (nb, B, ...)
        flat_diff = diff.reshape((nb * B,) + tuple(x.shape[1:]))
        flat_base = bases.reshape_as(flat_diff)
        acc = torch.zeros_like(flat_diff)  # weighted gradient sums per (baseline, sample)
        bshape = (-1,) + (1,) * (x.dim() - 1)

        # row r -> (pair p = baseline * B + sample, step k): r = p * S + k
        def rows(sl: slice):
            r = torch.arange(sl.start, sl.stop, device=x.device)
            p, k = r // S, r % S
            pts = flat_base[p] + alphas[k].reshape(bshape) * flat_diff[p]
            return pts, p % B

        def consume(chunk: ChunkResult) -> None:
            r = torch.arange(chunk.rows.start, chunk.rows.stop, device=x.device)
            p, k = r // S, r % S
            acc.index_add_(0, p, chunk.grad * weights[k].reshape(bshape))

        runner = GradientRunner(self.model, target, batching=batching)
        n_eval = runner.run(nb * B * S, rows, consume)
        attributions = (acc * flat_diff).reshape_as(diff).mean(dim=0)

        samples = torch.arange(B, device=x.device)
        f_x = forward_scores(self.model, x, target, samples)
        f_b = torch.stack([forward_scores(self.model, bases[j], target, samples) for j in range(nb)])
        delta = attributions.reshape(B, -1).sum(dim=1) - (f_x - f_b.mean(dim=0))
        return Computed(
            attributions,
            n_eval + B * (nb + 1),
            scores=f_x,
            extras={"delta": delta, "baseline_scores": f_b.mean(dim=0)},
        )
