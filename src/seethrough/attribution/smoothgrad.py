"""Noise tunnel: SmoothGrad, SmoothGrad-squared and VarGrad over any gradient method.

Each sample is copied ``n_samples`` times with Gaussian noise of standard deviation
``noise_level * (max(x) - min(x))`` (per sample, as in Smilkov et al., 2017), the wrapped
method explains every noisy copy, and the copies are aggregated: their mean (SmoothGrad),
the mean of their squares (SmoothGrad-squared, Hooker et al., 2019) or their variance
(VarGrad, Adebayo et al., 2018).

For methods built on input gradients (saliency, input x gradient, guided backprop,
deconvolution) all noisy copies of all samples are batched through the model together;
any other method is called once per noise sample. A wrapped gradient method with
``layer=`` (e.g. ``Saliency(model, layer="embed")`` for token ids) gets its noise at that
layer's output, scaled by the range of that output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.engine import ChunkResult, GradientRunner
from .._core.errors import ConfigError
from .._core.substitution import layer_space
from .._core.targets import Target
from ._base import Attribution, Computed
from .gradient import GradientAttribution, Saliency

__all__ = ["SmoothGrad", "SmoothGradSquared", "VarGrad"]


class SmoothGrad(Attribution):
    """Average of a method's attributions over noisy copies of the input.

    Parameters
    ----------
    model:
        The model to explain.
    method:
        The wrapped method: an :class:`Attribution` class (built on ``model`` with its
        defaults) or instance. Default: :class:`Saliency` (``abs=True``).
    n_samples:
        Noisy copies per input.
    noise_level:
        Noise standard deviation as a fraction of each input's value range.
    seed:
        Seed of the noise; the same seed gives the same result whatever the batching.
    """

    name = "smoothgrad"

    def __init__(
        self,
        model: nn.Module,
        *,
        method: type[Attribution] | Attribution = Saliency,
        n_samples: int = 50,
        noise_level: float = 0.15,
        seed: int = 0,
        batching=None,
    ) -> None:
        super().__init__(model, batching=batching)
        self.method = method
        self.n_samples = n_samples
        self.noise_level = noise_level
        self.seed = seed

    @property
    def signed(self) -> bool:  # type: ignore[override]
        return self._inner().signed

    def settings(self):
        inner = self._inner()
        return {
            "method": inner.name,
            "method_settings": inner.settings(),
            "n_samples": self.n_samples,
            "noise_level": self.noise_level,
            "seed": self.seed,
        }

    def _check_settings(self) -> None:
        if not isinstance(self.n_samples, int) or self.n_samples < 1:
            raise ConfigError(f"n_samples must be a positive int, got {self.n_samples!r}")
        if self.noise_level < 0:
            raise ConfigError(f"noise_level must be >= 0, got {self.noise_level!r}")
        inner = self._inner()
        if inner.model is not self.model:
            raise ConfigError("the wrapped method explains a different model than SmoothGrad")

    def _inner(self) -> Attribution:
        if isinstance(self.method, Attribution):
            return self.method
        if isinstance(self.method, type) and issubclass(self.method, Attribution):
            return self.method(self.model)
        raise ConfigError(
            f"method must be an Attribution class or instance (e.g. seethrough.Saliency), got {self.method!r}"
        )

    # -- aggregation: the one step the variants override ------------------------------
    def _aggregate(self, total: Tensor, total_sq: Tensor, n: int) -> Tensor:
        return total / n

    # -- noise -------------------------------------------------------------------------
    def sigma(self, x: Tensor) -> Tensor:
        """Per-sample noise standard deviation, shaped to broadcast against ``x``."""
        flat = x.reshape(x.shape[0], -1)
        span = flat.max(dim=1).values - flat.min(dim=1).values
        return (self.noise_level * span).reshape((-1,) + (1,) * (x.dim() - 1))

    def noise(self, x: Tensor, rows: Tensor) -> Tensor:
        """Noise for rows (row = noise_index * B + sample): one seeded draw per row, so
        the result does not depend on how rows are chunked."""
        out = torch.empty((rows.numel(),) + tuple(x.shape[1:]), dtype=x.dtype)
        gen = torch.Generator()
        for i, r in enumerate(rows.tolist()):
            gen.manual_seed(self.seed * 1_000_003 + r)
            out[i] = torch.randn(tuple(x.shape[1:]), generator=gen, dtype=x.dtype)
        return out.to(x.device)

    def noisy_rows(self, x: Tensor, sl: slice) -> tuple[Tensor, Tensor]:
        rows = torch.arange(sl.start, sl.stop)
        samples = (rows % x.shape[0]).to(x.device)
        sigma = self.sigma(x)
        return x[samples] + sigma[samples] * self.noise(x, rows), samples

    # -- compute -----------------------------------------------------------------------
    def _token_layer(self):
        # A wrapped gradient method with layer= gets its noise at that layer's output.
        inner = self._inner()
        return inner.layer if isinstance(inner, GradientAttribution) else None

    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs) -> Computed:
        inner = self._inner()
        n_rows = self.n_samples * x.shape[0]
        if isinstance(inner, GradientAttribution) and not kwargs:
            values, layer, feed = layer_space(self.model, x, inner.layer)
            total = torch.zeros_like(values)
            total_sq = torch.zeros_like(values)
            runner = GradientRunner(
                self.model, target, batching=batching, relu_rule=inner.relu_rule, layer=layer, feed=feed
            )

            def consume(chunk: ChunkResult) -> None:
                a = inner.row_attribution(chunk)
                total.index_add_(0, chunk.samples, a)
                total_sq.index_add_(0, chunk.samples, a * a)

            n_eval = runner.run(n_rows, lambda sl: self.noisy_rows(values, sl), consume)
            return Computed(
                self._aggregate(total, total_sq, self.n_samples), n_eval, layer=None if layer is None else layer[0]
            )
        total = torch.zeros_like(x)
        total_sq = torch.zeros_like(x)
        n_eval = 0
        B = x.shape[0]
        for k in range(self.n_samples):
            xs, _ = self.noisy_rows(x, slice(k * B, (k + 1) * B))
            out = inner._attribute(xs, target, batching, **kwargs)
            total += out.attributions
            total_sq += out.attributions * out.attributions
            n_eval += out.n_evaluations
        return Computed(self._aggregate(total, total_sq, self.n_samples), n_eval)


class SmoothGradSquared(SmoothGrad):
    """Mean of the squared attributions over noisy copies (SmoothGrad-squared)."""

    name = "smoothgrad_sq"
    signed = False

    def _aggregate(self, total, total_sq, n):
        return total_sq / n


class VarGrad(SmoothGrad):
    """Variance of the attributions over noisy copies (VarGrad)."""

    name = "vargrad"
    signed = False

    def _aggregate(self, total, total_sq, n):
        mean = total / n
        return (total_sq / n - mean * mean).clamp(min=0)
