"""Perturbation attributions that need only forward passes: occlusion, feature ablation
and feature permutation. All perturbed rows of all samples are scored in chunks by
:class:`~seethrough._core.forward.ForwardRunner` (automatic chunk size, tuned on the
real rows), so a single image gets batched forward passes too."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.errors import ConfigError, InputError
from .._core.forward import ForwardRunner
from .._core.targets import Target
from ._base import Attribution, Computed
from .baselines import Baseline, BaselineLike, as_baselines, describe_baseline
from .masks import as_feature_mask

__all__ = ["PerturbationAttribution", "Occlusion", "FeatureAblation", "FeaturePermutation", "ChannelMean"]


class ChannelMean(Baseline):
    """Each channel replaced by its mean over the sample (per sample)."""

    def __call__(self, x):
        if x.dim() < 3:
            raise InputError(f"a per-channel mean baseline needs (B, C, ...) inputs, got {tuple(x.shape)}")
        dims = tuple(range(2, x.dim()))
        return x.mean(dim=dims, keepdim=True).expand_as(x).clone()

    def describe(self):
        return "channel_mean"


def _baseline(spec: BaselineLike, x: Tensor) -> Tensor:
    if isinstance(spec, str) and spec in ("mean", "channel_mean"):
        spec = ChannelMean()
    specs = as_baselines(spec)
    if len(specs) != 1:
        raise ConfigError("perturbation methods take one baseline, not a list")
    b = specs[0](x)
    if b.shape != x.shape:
        raise InputError(f"baseline of shape {tuple(b.shape)} does not match inputs {tuple(x.shape)}")
    return b


class PerturbationAttribution(Attribution):
    """Base of forward-only methods. ``progress``: show a progress bar (None: on long runs
    in a terminal)."""

    uses_gradients = False

    def __init__(self, model: nn.Module, *, batching=None, progress: bool | None = None) -> None:
        super().__init__(model, batching=batching)
        self.progress = progress

    def _runner(self, target: Target, batching: Batching) -> ForwardRunner:
        return ForwardRunner(self.model, target, batching=batching, progress=self.progress)

    def _scores(self, runner: ForwardRunner, x: Tensor) -> Tensor:
        return runner.score(x, torch.arange(x.shape[0], device=x.device))


class Occlusion(PerturbationAttribution):
    """Sliding-window occlusion (Zeiler and Fergus, 2014).

    Each window position replaces a block of the input with the baseline; every element's
    attribution is the mean score drop ``f(x) - f(x_occluded)`` over the windows that
    cover it. Windows start every ``stride`` elements until the input is covered (the last
    one may be cut off at the border), the same positions and definition as Captum's
    Occlusion.

    Parameters
    ----------
    window:
        Window shape over the per-sample dimensions, e.g. ``(3, 8, 8)``. None (default):
        all channels and an eighth of each further dimension, ``(C, H/8, W/8)``, one
        element for vector inputs. A shorter tuple
        applies to the trailing dimensions and spans the leading ones (``(8, 8)`` on
        ``(3, H, W)`` inputs is ``(3, 8, 8)``); an int ``w`` is ``(C, w, w)``.
    strides:
        Step per dimension: an int for every dimension, or a tuple like ``window``
        (leading dimensions get 1). None (default): half the window.
    baseline:
        A value, ``"blur"``, ``"mean"`` (per-channel mean), a Baseline or a tensor.
    """

    name = "occlusion"

    def __init__(self, model, *, window=None, strides=None, baseline: BaselineLike = 0.0, batching=None, progress=None):
        super().__init__(model, batching=batching, progress=progress)
        self.window = window
        self.strides = strides
        self.baseline = baseline

    def settings(self):
        return {
            "window": None if self.window is None else list(_tuple(self.window)),
            "strides": None if self.strides is None else list(_tuple(self.strides)),
            "baseline": describe_baseline(self.baseline),
        }

    def _check_settings(self) -> None:
        for name, v in (("window", self.window), ("strides", self.strides)):
            if v is not None and any((not isinstance(i, int)) or i < 1 for i in _tuple(v)):
                raise ConfigError(f"{name} must hold positive ints, got {v!r}")

    def geometry(self, sample_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Full window, strides and number of positions per dimension."""
        if self.window is None:  # an eighth of each dim after the channel dim (all of it)
            window = sample_shape[:1] + tuple(-(-n // 8) for n in sample_shape[1:]) if len(sample_shape) > 1 else (1,)
        elif isinstance(self.window, int):  # square over the dims after the channel dim
            window = (
                sample_shape[:1] + (self.window,) * (len(sample_shape) - 1) if len(sample_shape) > 1 else (self.window,)
            )
        else:
            window = _expand(tuple(self.window), sample_shape, fill=None)
        if self.strides is None:  # half the window
            strides = tuple(max(1, w // 2) for w in window)
        elif isinstance(self.strides, int):
            strides = (self.strides,) * len(sample_shape)
        else:
            strides = _expand(tuple(self.strides), sample_shape, fill=1)
        for d, (w, n) in enumerate(zip(window, sample_shape)):
            if w > n:
                raise InputError(
                    f"the occlusion window {window} is larger than the input {sample_shape} in "
                    f"dimension {d}; use a window no larger than the input"
                )
        # as many positions as needed to cover every element; the last one may be cut off
        # at the border (the same positions as Captum)
        counts = tuple(-(-(n - w) // s) + 1 for n, w, s in zip(sample_shape, window, strides))
        return window, strides, counts

    def _attribute(self, x, target, batching, **kwargs):
        if kwargs:
            raise TypeError(f"Occlusion.attribute() got unexpected arguments {sorted(kwargs)}")
        window, strides, counts = self.geometry(tuple(x.shape[1:]))
        positions = list(itertools.product(*[range(c) for c in counts]))
        base = _baseline(self.baseline, x)
        runner = self._runner(target, batching)
        f_x = self._scores(runner, x)
        B, K = x.shape[0], len(positions)
        total = torch.zeros_like(x)
        cover = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)

        def window_slices(k: int):
            return tuple(slice(p * s, p * s + w) for p, s, w in zip(positions[k], strides, window))

        for k in range(K):
            cover[window_slices(k)] += 1

        def rows(sl: slice):
            r = torch.arange(sl.start, sl.stop)
            ks, bs = (r // B).tolist(), (r % B).tolist()
            out = x[bs].clone()
            for i, (k, b) in enumerate(zip(ks, bs)):
                w = window_slices(k)
                out[i][w] = base[b][w]
            return out, torch.tensor(bs, device=x.device)

        def consume(sl: slice, scores: Tensor) -> None:
            r = torch.arange(sl.start, sl.stop)
            for i, (k, b) in enumerate(zip((r // B).tolist(), (r % B).tolist())):
                total[b][window_slices(k)] += f_x[b] - scores[i]

        n = runner.run(K * B, rows, consume)
        attr = torch.where(cover > 0, total / cover.clamp(min=1), torch.zeros_like(total))
        return Computed(attr, n, scores=f_x)


class FeatureAblation(PerturbationAttribution):
    """Each feature of a feature mask replaced by the baseline in turn; the feature's
    elements get the score drop ``f(x) - f(x with feature ablated)``.

    ``feature_mask`` is given to :meth:`attribute` (ids per element; see
    :mod:`seethrough.attribution.masks`); without one every element is its own feature.
    """

    name = "feature_ablation"

    def __init__(self, model, *, baseline: BaselineLike = 0.0, batching=None, progress=None):
        super().__init__(model, batching=batching, progress=progress)
        self.baseline = baseline

    def settings(self):
        return {"baseline": describe_baseline(self.baseline)}

    def _perturbed(self, x: Tensor, mask: Tensor, feature: Tensor, samples: Tensor, base: Tensor) -> Tensor:
        sel = mask[samples] == feature.reshape((-1,) + (1,) * (x.dim() - 1))
        return torch.where(sel, base[samples], x[samples])

    def _baseline_for(self, x: Tensor) -> Tensor:
        return _baseline(self.baseline, x)

    def _attribute(self, x, target, batching, feature_mask: Tensor | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}.attribute() got unexpected arguments {sorted(kwargs)}")
        if feature_mask is None:
            feature_mask = torch.arange(math.prod(x.shape[1:]), device=x.device).reshape(x.shape[1:])
        mask, F = as_feature_mask(feature_mask, x)
        base = self._baseline_for(x)
        runner = self._runner(target, batching)
        f_x = self._scores(runner, x)
        B = x.shape[0]
        # only (feature, sample) pairs where the sample has that feature are evaluated
        present = torch.zeros(F, B, dtype=torch.bool, device=x.device)
        for b in range(B):
            present[torch.unique(mask[b]), b] = True
        pairs = present.nonzero()  # (n, 2): feature, sample
        drop = torch.zeros(F, B, dtype=x.dtype, device=x.device)

        def rows(sl: slice):
            p = pairs[sl]
            return self._perturbed(x, mask, p[:, 0], p[:, 1], base), p[:, 1]

        def consume(sl: slice, scores: Tensor) -> None:
            p = pairs[sl]
            drop[p[:, 0], p[:, 1]] = f_x[p[:, 1]] - scores

        n = runner.run(pairs.shape[0], rows, consume)
        attr = torch.gather(drop.t(), 1, mask.reshape(B, -1)).reshape_as(x)
        return Computed(attr, n, scores=f_x, extras={"feature_scores": drop.t().contiguous()})


class FeaturePermutation(FeatureAblation):
    """Permutation importance: each feature's values are shuffled across the batch
    (a seeded random derangement-free permutation), and its elements get the score drop.
    Needs a batch of at least two samples."""

    name = "feature_permutation"

    def __init__(self, model, *, seed: int = 0, batching=None, progress=None):
        super().__init__(model, baseline=0.0, batching=batching, progress=progress)
        self.seed = seed

    def settings(self):
        return {"seed": self.seed}

    def _baseline_for(self, x: Tensor) -> Tensor:
        if x.shape[0] < 2:
            raise InputError("feature permutation shuffles features across the batch: give at least 2 samples")
        g = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(x.shape[0], generator=g)
        return x[perm.to(x.device)]


def _tuple(v) -> tuple:
    return (v,) if isinstance(v, int) else tuple(v)


def _expand(v: tuple, shape: tuple[int, ...], fill) -> tuple[int, ...]:
    if len(v) > len(shape):
        raise InputError(f"{v} has more dimensions than the per-sample input shape {shape}")
    lead = len(shape) - len(v)
    head = tuple(shape[:lead]) if fill is None else (fill,) * lead
    return head + tuple(v)
