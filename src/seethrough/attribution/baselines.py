"""Baselines (reference inputs) for integrated gradients and perturbation methods.

A baseline spec is any of:

- ``"zeros"`` (or ``0``), a number (constant input), ``"blur"`` (Gaussian-blurred input),
  ``"uniform"`` (uniform noise over the input's range), ``"gaussian"`` (input plus noise);
- a :class:`Baseline` object (``Blur(sigma=...)``, ``UniformNoise(seed=...)``, ...);
- a tensor broadcastable to the inputs (one baseline, or one per sample);
- a list of the above: attributions are averaged over the baselines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._core.errors import ConfigError, InputError

__all__ = [
    "Baseline",
    "Constant",
    "Blur",
    "UniformNoise",
    "GaussianNoise",
    "Given",
    "BaselineLike",
    "as_baselines",
    "describe_baseline",
    "gaussian_blur",
]


class Baseline:
    """Makes a baseline for a batch of inputs."""

    def __call__(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class Constant(Baseline):
    value: float = 0.0

    def __call__(self, x):
        return torch.full_like(x, float(self.value))

    def describe(self):
        return "zeros" if self.value == 0 else f"constant({self.value:g})"


def _gaussian_kernel(sigma: float, dtype, device) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur over the last two dimensions, reflecting at the borders."""
    if x.dim() < 3:
        raise InputError(
            f"a blurred baseline needs inputs with two spatial dimensions (B, ..., H, W); "
            f"got shape {tuple(x.shape)}. Use a constant or noise baseline instead."
        )
    if sigma <= 0:
        return x.clone()
    k = _gaussian_kernel(sigma, x.dtype, x.device)
    r = k.numel() // 2
    shape = x.shape
    y = x.reshape(-1, 1, shape[-2], shape[-1])
    mode = "reflect" if min(shape[-2], shape[-1]) > r else "replicate"
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(shape)


@dataclass(frozen=True)
class Blur(Baseline):
    sigma: float = 5.0

    def __call__(self, x):
        return gaussian_blur(x, self.sigma)

    def describe(self):
        return f"blur(sigma={self.sigma:g})"


def _generator(seed: int, device) -> torch.Generator:
    g = torch.Generator(device=device if torch.device(device).type != "cpu" else "cpu")
    g.manual_seed(seed)
    return g


@dataclass(frozen=True)
class UniformNoise(Baseline):
    """Uniform noise between ``low`` and ``high`` (default: each input's min and max)."""

    low: float | None = None
    high: float | None = None
    seed: int = 0

    def __call__(self, x):
        flat = x.reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        lo = flat.min(1).values.reshape(shape) if self.low is None else torch.tensor(self.low)
        hi = flat.max(1).values.reshape(shape) if self.high is None else torch.tensor(self.high)
        u = torch.rand(x.shape, generator=_generator(self.seed, "cpu"), dtype=x.dtype).to(x.device)
        return lo + (hi - lo) * u

    def describe(self):
        return f"uniform(seed={self.seed})"


@dataclass(frozen=True)
class GaussianNoise(Baseline):
    """The input plus Gaussian noise of standard deviation ``std`` (absolute)."""

    std: float = 0.1
    seed: int = 0

    def __call__(self, x):
        n = torch.randn(x.shape, generator=_generator(self.seed, "cpu"), dtype=x.dtype).to(x.device)
        return x + self.std * n

    def describe(self):
        return f"gaussian(std={self.std:g}, seed={self.seed})"


class Given(Baseline):
    """A user tensor, broadcast to the inputs."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __call__(self, x):
        t = self.tensor.to(device=x.device, dtype=x.dtype)
        try:
            return torch.broadcast_to(t, x.shape).clone()
        except RuntimeError as e:
            raise InputError(
                f"baseline of shape {tuple(t.shape)} cannot be broadcast to the inputs' shape "
                f"{tuple(x.shape)}; give one baseline per sample or one broadcastable to a sample"
            ) from e

    def describe(self):
        return f"tensor{tuple(self.tensor.shape)}"


BaselineLike = str | float | int | Tensor | Baseline | Sequence[Any]

_NAMED = {
    "zeros": lambda: Constant(0.0),
    "zero": lambda: Constant(0.0),
    "black": lambda: Constant(0.0),
    "blur": lambda: Blur(),
    "uniform": lambda: UniformNoise(),
    "gaussian": lambda: GaussianNoise(),
}


def _one(spec: Any) -> Baseline:
    if isinstance(spec, Baseline):
        return spec
    if isinstance(spec, Tensor):
        return Given(spec)
    if isinstance(spec, bool):
        raise ConfigError("a baseline cannot be a bool")
    if isinstance(spec, (int, float)):
        return Constant(float(spec))
    if isinstance(spec, str):
        if spec in _NAMED:
            return _NAMED[spec]()
        raise ConfigError(f"unknown baseline {spec!r}; use one of {sorted(_NAMED)}, a number or a tensor")
    raise ConfigError(f"cannot use {type(spec).__name__} as a baseline")


def describe_baseline(spec: BaselineLike) -> Any:
    """A JSON-friendly description of a baseline spec, for settings and reports."""
    if isinstance(spec, (int, float, str)):
        return spec
    if isinstance(spec, (list, tuple)):
        return [describe_baseline(s) for s in spec]
    if isinstance(spec, Tensor):
        return f"tensor{tuple(spec.shape)}"
    return spec.describe() if isinstance(spec, Baseline) else type(spec).__name__


def as_baselines(spec: BaselineLike) -> list[Baseline]:
    """Normalise a baseline spec to a non-empty list of :class:`Baseline` objects."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError("the list of baselines is empty")
        return [_one(s) for s in spec]
    return [_one(spec)]
