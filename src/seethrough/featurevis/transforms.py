"""Random transforms applied to the images at every optimisation step.

Visualizations optimised through small random shifts, scalings and rotations must work
at every one of them, which suppresses the high-frequency patterns a network responds to
but a person cannot see (Mordvintsev et al., 2015; Olah et al., Distill 2017).

A transform is called as ``t(images, rng)`` on displayable images ``(K, C, H, W)`` in
[0, 1] (before the model's normalisation) and returns images. ``rng`` is a
:class:`StepRandom`: each image gets its own random draws, derived from the render seed,
the step and the image's row id, so an image's transforms do not depend on which other
images share its batch, and a render is reproducible.

Transforms draw **per image** (every image in the batch gets its own shift, scale and
angle). :class:`Pad` (adds ``2p``), :class:`Jitter` (removes ``d``), :class:`RandomScale`
and :class:`RandomRotate` (keep the size) are geometric: :class:`Compose` composes a run
of them into one coordinate map and resamples the image once, bilinearly.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._core.errors import ConfigError
from .._core.seeds import generator

__all__ = [
    "StepRandom",
    "Transform",
    "Pad",
    "Jitter",
    "RandomScale",
    "RandomRotate",
    "Compose",
    "standard_transforms",
    "as_transform",
]


class StepRandom:
    """Per-image random numbers for one optimisation step.

    ``uniform(*shape)`` returns a ``(K, *shape)`` tensor in [0, 1): row ``k`` comes from
    a stream seeded by ``(seed, step, call number)`` at position ``rows[k]``, so it is the
    same whatever batch the image is rendered in.
    """

    def __init__(self, seed: int, step: int, rows: Tensor, n_total: int) -> None:
        self.seed = int(seed)
        self.step = int(step)
        self.rows = rows
        self.n_total = int(n_total)
        self._calls = 0

    def uniform(self, *shape: int) -> Tensor:
        g = generator(self.seed, 0x7A45, self.step, self._calls)
        self._calls += 1
        return torch.rand((self.n_total, *shape), generator=g)[self.rows]

    def indices(self, n: int) -> np.ndarray:
        """One index in ``0..n-1`` per image, uniformly (a numpy array)."""
        return np.minimum((self.uniform().numpy() * n).astype(np.int64), n - 1)


class Transform:
    """Base class: ``__call__(images, rng) -> images``."""

    def __call__(self, x: Tensor, rng: StepRandom) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return repr(self)


class _Geometric(Transform):
    """A transform that is a per-image affine map of coordinates.

    ``matrix`` gives ``(K, 3, 3)`` homogeneous maps (float64 numpy) from output to input pixel
    coordinates (continuous, origin at the top-left corner, pixel ``i`` centred at
    ``i + 0.5``); ``out_size`` the output size. Runs of geometric transforms are composed
    and resampled once, bilinearly (see :class:`Compose`).
    """

    def matrix(self, k: int, h: int, w: int, rng: StepRandom) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        return h, w

    def __call__(self, x, rng):
        return _resample_run(x, (self,), rng)


def _translation(t: np.ndarray) -> np.ndarray:
    """(K, 2) offsets (x, y) -> (K, 3, 3) maps ``p = q + t``."""
    m = np.tile(np.eye(3), (t.shape[0], 1, 1))
    m[:, :2, 2] = t
    return m


def _about_centre(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """(K, 2, 2) linear maps applied about the image centre -> (K, 3, 3)."""
    c = np.array([w / 2.0, h / 2.0])
    m = np.tile(np.eye(3), (a.shape[0], 1, 1))
    m[:, :2, :2] = a
    m[:, :2, 2] = c - a @ c
    return m


def _resample_run(x: Tensor, run: Sequence[_Geometric], rng: StepRandom) -> Tensor:
    k, c, h, w = x.shape
    h0, w0 = h, w
    total = np.tile(np.eye(3), (k, 1, 1))
    fill: tuple[str, float] | None = None
    for t in run:
        total = total @ t.matrix(k, h, w, rng)
        h, w = t.out_size(h, w)
        if h < 1 or w < 1:
            raise ConfigError(f"{t!r} leaves no pixels of images of size {h0}x{w0}; use a smaller crop")
        if fill is None and isinstance(t, Pad):
            fill = (t.mode, t.value)
    # normalised coordinates (align_corners=False): n = 2 p / size - 1
    n_in = np.array([[2.0 / w0, 0.0, -1.0], [0.0, 2.0 / h0, -1.0], [0.0, 0.0, 1.0]])
    n_out_inv = np.array([[w / 2.0, 0.0, w / 2.0], [0.0, h / 2.0, h / 2.0], [0.0, 0.0, 1.0]])
    theta = torch.from_numpy(np.ascontiguousarray((n_in @ total @ n_out_inv)[:, :2, :]))
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [k, c, h, w], align_corners=False)
    mode, value = fill if fill is not None else ("replicate", 0.0)
    if mode == "constant":
        return F.grid_sample(x - value, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + value
    padding = "border" if mode == "replicate" else "reflection"
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


class Pad(_Geometric):
    """Pad every side by ``width`` pixels: ``mode`` "constant" (with ``value``, 0.5 = mid
    gray), "reflect" or "replicate". In a composed run, everything sampled from outside
    the original image gets the first Pad's filling."""

    def __init__(self, width: int, *, mode: str = "constant", value: float = 0.5) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 0:
            raise ConfigError(f"Pad width must be a non-negative int, got {width!r}")
        if mode not in ("constant", "reflect", "replicate"):
            raise ConfigError(f"Pad mode must be 'constant', 'reflect' or 'replicate', got {mode!r}")
        self.width = width
        self.mode = mode
        self.value = float(value)

    def matrix(self, k, h, w, rng):
        return _translation(np.full((k, 2), -float(self.width)))

    def out_size(self, h, w):
        return h + 2 * self.width, w + 2 * self.width

    def __repr__(self):
        return f"Pad({self.width}, mode={self.mode!r})"


class Jitter(_Geometric):
    """A random crop of size ``(H - d, W - d)`` per image: a shift of 0..d whole pixels
    in each direction."""

    def __init__(self, d: int) -> None:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ConfigError(f"Jitter d must be a non-negative int, got {d!r}")
        self.d = d

    def matrix(self, k, h, w, rng):
        off = np.minimum(np.floor(rng.uniform(2).numpy().astype(np.float64) * (self.d + 1)), self.d)
        return _translation(off)

    def out_size(self, h, w):
        return h - self.d, w - self.d

    def __repr__(self):
        return f"Jitter({self.d})"


def _choices(values, name: str) -> Tensor:
    try:
        t = torch.as_tensor(list(values), dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if t.numel() == 0 or not bool(torch.isfinite(t).all()):
        raise ConfigError(f"{name} must be a non-empty sequence of finite numbers, got {values!r}")
    return t


class RandomScale(_Geometric):
    """Zoom each image about its centre by a factor drawn uniformly from ``scales``
    (``s > 1`` magnifies; ``s < 1`` shrinks the content, the border filled as the run's
    Pad says). Default: 0.9, 0.91, ..., 1.1."""

    def __init__(self, scales: Sequence[float] | None = None) -> None:
        self.scales = tuple(
            float(s)
            for s in _choices(scales if scales is not None else [1 + (i - 10) / 100 for i in range(21)], "scales")
        )
        if any(s <= 0 for s in self.scales):
            raise ConfigError(f"scales must be positive, got {self.scales}")

    def matrix(self, k, h, w, rng):
        s = np.asarray(self.scales)[rng.indices(len(self.scales))]
        return _about_centre(np.eye(2)[None] / s[:, None, None], h, w)

    def __repr__(self):
        return f"RandomScale({min(self.scales):g}..{max(self.scales):g})"


class RandomRotate(_Geometric):
    """Rotate each image about its centre by an angle (degrees) drawn uniformly from
    ``degrees``. Default: -10, -9, ..., 10."""

    def __init__(self, degrees: Sequence[float] | None = None) -> None:
        self.degrees = tuple(float(a) for a in _choices(degrees if degrees is not None else range(-10, 11), "degrees"))

    def matrix(self, k, h, w, rng):
        a = np.asarray(self.degrees)[rng.indices(len(self.degrees))] * (math.pi / 180.0)
        c, s = np.cos(a), np.sin(a)
        rot = np.stack([np.stack([c, -s], 1), np.stack([s, c], 1)], 1)
        return _about_centre(rot, h, w)

    def __repr__(self):
        return f"RandomRotate({min(self.degrees):g}..{max(self.degrees):g} deg)"


class _Callable(Transform):
    def __init__(self, fn: Callable, takes_rng: bool) -> None:
        self.fn = fn
        self.takes_rng = takes_rng

    def __call__(self, x, rng):
        out = self.fn(x, rng) if self.takes_rng else self.fn(x)
        if isinstance(out, Tensor) and out.dim() == 4 and out.shape[:2] == x.shape[:2]:
            return out
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(
            f"transform {getattr(self.fn, '__name__', self.fn)!r} must return images (K, C, H', W') with "
            f"the same K and C as its input {tuple(x.shape)}; it returned {got}"
        )

    def __repr__(self):
        return getattr(self.fn, "__name__", repr(self.fn))


def _takes_rng(fn: Callable) -> bool:
    """Whether ``fn`` can be called as ``fn(images, rng)`` (else it is called as ``fn(images)``)."""
    try:
        inspect.signature(fn).bind(None, None)
    except (TypeError, ValueError):  # no signature, or not two positional arguments
        return False
    return True


def as_transform(t) -> Transform:
    """A :class:`Transform` from a Transform, a list of them (composed), or a callable
    ``fn(images)`` / ``fn(images, rng)``."""
    if isinstance(t, Transform):
        return t
    if isinstance(t, (list, tuple)):
        return Compose(t)
    if callable(t):
        return _Callable(t, _takes_rng(t))
    raise ConfigError(f"a transform must be a Transform, a list of transforms or a callable, got {type(t).__name__}")


class Compose(Transform):
    """Apply transforms in order. A run of consecutive geometric transforms (Pad, Jitter,
    RandomScale, RandomRotate) is composed into one coordinate map and resampled once,
    bilinearly, from its input: one interpolation instead of several, and one pass over
    the pixels. Pixels sampled from outside the run's input get the filling of the run's
    first Pad (by default the constant 0.5), or the nearest edge pixel without a Pad."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = tuple(as_transform(t) for t in transforms)

    def __call__(self, x, rng):
        i, ts = 0, self.transforms
        while i < len(ts):
            if isinstance(ts[i], _Geometric):
                j = i
                while j < len(ts) and isinstance(ts[j], _Geometric):
                    j += 1
                x = _resample_run(x, ts[i:j], rng)
                i = j
            else:
                x = ts[i](x, rng)
                i += 1
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def standard_transforms(size: int) -> Compose:
    """The default: pad, jitter, random scale (0.9..1.1), random rotation (-10..10
    degrees), jitter, after Lucid's standard set, with pad and jitter scaled to the image
    ``size`` (``p = max(2, size // 16)``) and chosen so the output has the input's size:
    ``Pad(p), Jitter(2p - j), RandomScale(), RandomRotate(), Jitter(j)`` with
    ``j = max(1, p // 2)``."""
    p = max(2, int(size) // 16)
    j = max(1, p // 2)
    return Compose([Pad(p), Jitter(2 * p - j), RandomScale(), RandomRotate(), Jitter(j)])
