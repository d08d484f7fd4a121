"""Integrated gradients (Sundararajan et al., 2017)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.engine import ChunkResult, GradientRunner, forward_scores
from .._core.errors import ConfigError
from .._core.layers import LayerRef, layer_label, resolve_layer
from .._core.substitution import layer_output, layer_space
from .._core.targets import Target
from .._core.validation import check_token_ids
from ._base import Attribution, Computed
from .baselines import Baseline, BaselineLike, Given, as_baselines

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
    layer:
        Integrate at this layer's output instead of the input (Captum's
        ``LayerIntegratedGradients``): the path runs from the baseline's layer output to the
        input's, substituted into the forward pass at that layer; this is how token ids
        ``(B, T)`` are explained at the embedding (``layer="embed"``). Baselines are then in
        the layer's output space (``"zeros"``: the zero embedding), except an integer tensor,
        which is baseline *token ids* (e.g. a padding token, one per position or per sample)
        run through the model to the layer. The attributions have the layer's output shape.

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
        layer: LayerRef | None = None,
        batching=None,
    ) -> None:
        super().__init__(model, batching=batching)
        self.steps = steps
        self.rule = rule
        self.baseline = baseline
        self.layer = layer

    def settings(self):
        out = {
            "steps": self.steps,
            "rule": self.rule,
            "baseline": [b.describe() for b in as_baselines(self.baseline)],
        }
        if self.layer is not None:
            out["layer"] = layer_label(self.layer)
        return out

    def _token_layer(self):
        return self.layer

    def _layer_baseline(self, spec: Baseline, feed: Tensor, values: Tensor) -> Tensor:
        """A baseline in the layer's output space: integer tensors are token ids run to the layer."""
        assert self.layer is not None  # only used when integrating at a layer
        if isinstance(spec, Given) and not spec.tensor.dtype.is_floating_point:
            ids = torch.broadcast_to(spec.tensor.to(feed.device), feed.shape).clone()
            ids = check_token_ids(self.model, ids, self.layer, name="baseline token ids")
            return layer_output(self.model, ids, resolve_layer(self.model, self.layer)[1])
        return spec(values)

    def _check_settings(self) -> None:
        integration_points(self.steps, self.rule)
        as_baselines(self.baseline)

    def _attribute(self, x: Tensor, target: Target, batching: Batching, baseline=None, **kwargs) -> Computed:
        if kwargs:
            raise TypeError(f"IntegratedGradients.attribute() got unexpected arguments {sorted(kwargs)}")
        specs = as_baselines(self.baseline if baseline is None else baseline)
        feed = x
        x, layer, _ = layer_space(self.model, feed, self.layer)  # x: what is integrated over
        sub = None if layer is None else layer[1]
        if layer is None:
            bases = torch.stack([b(x) for b in specs])  # (nb, B, ...)
        else:
            bases = torch.stack([self._layer_baseline(b, feed, x) for b in specs])
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

        runner = GradientRunner(
            self.model, target, batching=batching, layer=layer, feed=None if layer is None else feed
        )
        n_eval = runner.run(nb * B * S, rows, consume)
        attributions = (acc * flat_diff).reshape_as(diff).mean(dim=0)

        samples = torch.arange(B, device=x.device)

        def score(values: Tensor) -> Tensor:
            if sub is None:
                return forward_scores(self.model, values, target, samples)
            return forward_scores(self.model, feed, target, samples, substitute=(sub, values))

        f_x = score(x)
        f_b = torch.stack([score(bases[j]) for j in range(nb)])
        delta = attributions.reshape(B, -1).sum(dim=1) - (f_x - f_b.mean(dim=0))
        return Computed(
            attributions,
            n_eval + B * (nb + 1),
            scores=f_x,
            extras={"delta": delta, "baseline_scores": f_b.mean(dim=0)},
            layer=None if layer is None else layer[0],
        )
