"""dSprites-like coloured scenes whose generative factors are known exactly.

Every image shows one object on a black background. Six factors decide it completely:

=========  ==========================================  ==================================
factor     meaning                                     unit and sampled range
=========  ==========================================  ==================================
shape      index into :data:`SHAPE_NAMES`              category: square, ellipse,
                                                       triangle, heart
color      index into :data:`COLOR_NAMES`              category: red, green, blue,
                                                       yellow, white (:data:`COLORS`)
scale      radius of the disc (centred on the          fraction of the image side,
           object's centroid) that just contains the   ``[0.12, 0.22]``
           object, whatever the rotation
x          horizontal position of the object's         fraction of the image side from
           centroid                                    the left edge, ``[0.25, 0.75]``
y          vertical position of the object's centroid  fraction of the image side from
                                                       the top edge, ``[0.25, 0.75]``
rotation   counter-clockwise rotation as displayed     degrees, ``[0, 360)``
=========  ==========================================  ==================================

At rotation 0 the square's sides are axis-parallel, the ellipse's long axis (aspect
ratio 2:1) is horizontal, the triangle points up and the heart's tip points down. A shape
of symmetry order ``k`` (:data:`SYMMETRY_ORDER`: square 4, ellipse 2, triangle 3,
heart 1) looks the same at ``rotation`` and ``rotation + 360 / k``, so rotation is only
defined modulo ``360 / k``; :func:`canonical_rotation` reduces it to ``[0, 360 / k)``.
With the sampled ranges every object lies wholly inside the image.

Rendering is anti-aliased: each pixel averages ``4 x 4`` sub-pixel samples of the
object's indicator, so moving, scaling or rotating an object changes the pixels
smoothly. A pixel's value is ``colour x coverage``; ``masks`` marks the pixels covered at
least half. :func:`render_scenes` draws given factor rows (any position, scale > 0) exactly
as :func:`make_factor_scenes` does, so traversals along ONE true factor are easy:

>>> import torch
>>> from seethrough.data.factors import make_factor_scenes, render_scenes
>>> base = make_factor_scenes(1, seed=3).factors.repeat(5, 1)
>>> base[:, 3] = torch.linspace(0.3, 0.7, 5)      # move x only
>>> walk = render_scenes(base)

Generation is deterministic for a seed (one ``numpy.random.Generator``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ._index import as_index

__all__ = [
    "FACTOR_NAMES",
    "CATEGORICAL_FACTORS",
    "SHAPE_NAMES",
    "COLOR_NAMES",
    "COLORS",
    "SYMMETRY_ORDER",
    "FACTOR_RANGES",
    "FactorScenes",
    "make_factor_scenes",
    "render_scenes",
    "sample_factors",
    "canonical_rotation",
]

#: The factors, in column order of :attr:`FactorScenes.factors`.
FACTOR_NAMES: tuple[str, ...] = ("shape", "color", "scale", "x", "y", "rotation")
#: The factors that are category indices (the others are continuous).
CATEGORICAL_FACTORS: tuple[str, ...] = ("shape", "color")
#: Shape names, in index order.
SHAPE_NAMES: tuple[str, ...] = ("square", "ellipse", "triangle", "heart")
#: Rotational symmetry order of each shape (rotation is defined modulo ``360 / order``).
SYMMETRY_ORDER: tuple[int, ...] = (4, 2, 3, 1)
#: Colour names, in index order.
COLOR_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "white")
#: RGB in ``[0, 1]`` of each colour, in index order.
COLORS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.15, 0.15),
    (0.15, 1.0, 0.15),
    (0.2, 0.35, 1.0),
    (1.0, 0.9, 0.1),
    (1.0, 1.0, 1.0),
)
#: Sampled range of each continuous factor, ``(low, high)`` (see the module docstring).
FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "scale": (0.12, 0.22),
    "x": (0.25, 0.75),
    "y": (0.25, 0.75),
    "rotation": (0.0, 360.0),
}

_SUPERSAMPLE = 4
_CHUNK = 256  # images rendered at once (bounded memory)
# The heart (x^2 + y^2 - 1)^3 <= x^2 y^3 (y up) has its centroid at y = 0.2935 and reaches
# 1.2935 from it: unit-frame point (p, q) maps to heart coordinates (R p, R q + C).
_HEART_C = 0.29348
_HEART_R = 1.29348
_SQUARE_HALF = 1.0 / math.sqrt(2.0)
_ELLIPSE_B = 0.5


@dataclass(frozen=True, eq=False)
class FactorScenes:
    """Scenes with their generative factors and object masks.

    Attributes:
        images: float32 ``(N, 3, S, S)`` in ``[0, 1]`` (black background).
        factors: float32 ``(N, 6)``, columns :data:`FACTOR_NAMES`: shape and colour as
            category indices, scale / x / y as fractions of the image side, rotation in
            degrees (as drawn; not reduced modulo the symmetry).
        masks: bool ``(N, S, S)``, the pixels at least half covered by the object.
        factor_names: the column names of ``factors``.
        categorical: the categorical factors.

    Instances compare by identity (tensors have no single truth value).
    """

    images: torch.Tensor
    factors: torch.Tensor
    masks: torch.Tensor
    factor_names: tuple[str, ...] = field(default=FACTOR_NAMES)
    categorical: tuple[str, ...] = field(default=CATEGORICAL_FACTORS)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.factors.shape != (n, len(self.factor_names)) or self.masks.shape[0] != n:
            raise ValueError("images, factors and masks must have the same length")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def factor(self, name: str) -> torch.Tensor:
        """The column of ``factors`` called ``name`` (one of :data:`FACTOR_NAMES`)."""
        if name not in self.factor_names:
            raise KeyError(f"unknown factor {name!r}; choose from {', '.join(self.factor_names)}")
        return self.factors[:, self.factor_names.index(name)]

    def subset(self, idx: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> FactorScenes:
        """The scenes selected by ``idx`` (an int, a slice, indices or a boolean mask)."""
        sel = as_index(idx)
        return FactorScenes(self.images[sel], self.factors[sel], self.masks[sel], self.factor_names, self.categorical)


def sample_factors(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` factor rows drawn independently and uniformly (categories uniform, continuous
    factors uniform in :data:`FACTOR_RANGES`); float32 ``(n, 6)``, deterministic for a seed."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(FACTOR_NAMES)), dtype=np.float64)
    out[:, 0] = rng.integers(0, len(SHAPE_NAMES), n)
    out[:, 1] = rng.integers(0, len(COLOR_NAMES), n)
    for j, name in enumerate(FACTOR_NAMES[2:], start=2):
        lo, hi = FACTOR_RANGES[name]
        out[:, j] = rng.uniform(lo, hi, n)
    return torch.from_numpy(out.astype(np.float32))


def canonical_rotation(factors: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Rotation of each row reduced to ``[0, 360 / k)`` for its shape's symmetry order ``k``
    (rows that look alike get the same value). Returns float32 ``(N,)``."""
    f = _check_factors(factors)
    order = torch.tensor(SYMMETRY_ORDER, dtype=torch.float64)[f[:, 0].long()]
    period = 360.0 / order
    return torch.remainder(f[:, 5], period).float()


def _check_factors(factors: torch.Tensor | np.ndarray) -> torch.Tensor:
    f = torch.as_tensor(np.asarray(factors) if not isinstance(factors, torch.Tensor) else factors)
    f = f.detach().cpu().double()
    if f.dim() == 1:
        f = f[None]
    if f.dim() != 2 or f.shape[1] != len(FACTOR_NAMES):
        raise ValueError(
            f"factors must have shape (N, {len(FACTOR_NAMES)}) with columns {FACTOR_NAMES}, got {tuple(f.shape)}"
        )
    if not torch.isfinite(f).all():
        raise ValueError("factors contain NaN or infinite values")
    for j, names in ((0, SHAPE_NAMES), (1, COLOR_NAMES)):
        col = f[:, j]
        bad = (col != col.round()) | (col < 0) | (col >= len(names))
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"factor {FACTOR_NAMES[j]!r} must be an integer index in [0, {len(names) - 1}] "
                f"({', '.join(names)}); row {i} has {float(col[i])}"
            )
    if (f[:, 2] <= 0).any():
        i = int((f[:, 2] <= 0).nonzero()[0, 0])
        raise ValueError(f"factor 'scale' must be > 0; row {i} has {float(f[i, 2])}")
    return f


def _inside(shape: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Indicator of each shape in its unit frame (p right, q up; radius 1 from the centroid).

    ``shape`` (B, 1, 1); ``p``, ``q`` (B, H, W)."""
    out = np.zeros(p.shape, dtype=bool)
    for k in range(len(SHAPE_NAMES)):
        sel = shape[:, 0, 0] == k
        if not sel.any():
            continue
        u, v = p[sel], q[sel]
        if k == 0:
            m = (np.abs(u) <= _SQUARE_HALF) & (np.abs(v) <= _SQUARE_HALF)
        elif k == 1:
            m = u * u + (v / _ELLIPSE_B) ** 2 <= 1.0
        elif k == 2:  # equilateral triangle, circumradius 1, apex up: three half-planes at the inradius
            m = v >= -0.5
            for a in (math.pi / 6, 5 * math.pi / 6):
                m &= u * math.cos(a) + v * math.sin(a) <= 0.5
        else:
            hx, hy = _HEART_R * u, _HEART_R * v + _HEART_C
            r = hx * hx + hy * hy - 1.0
            m = r * r * r <= hx * hx * hy * hy * hy
        out[sel] = m
    return out


def _render(f: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, S, S) float32 and masks (N, S, S) of validated float64 factor rows."""
    n = f.shape[0]
    ss = _SUPERSAMPLE
    images = np.zeros((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    c = (np.arange(size * ss, dtype=np.float64) + 0.5) / (size * ss)  # sub-pixel centres, image-side units
    colors = np.asarray(COLORS, dtype=np.float32)
    for s in range(0, n, _CHUNK):
        b = f[s : s + _CHUNK]
        shape = b[:, 0].astype(np.int64)[:, None, None]
        scale, x0, y0 = (b[:, j, None, None] for j in (2, 3, 4))
        th = np.deg2rad(b[:, 5])[:, None, None]
        dx = (c[None, None, :] - x0) / scale  # (B, 1, W)
        dyu = (y0 - c[None, :, None]) / scale  # (B, H, 1), up is positive
        ct, st = np.cos(th), np.sin(th)
        # rotate the sample points by -theta into the object's frame
        p = dx * ct + dyu * st
        q = -dx * st + dyu * ct
        inside = _inside(shape, p, q)
        cov = inside.reshape(len(b), size, ss, size, ss).mean(axis=(2, 4), dtype=np.float32)
        col = colors[b[:, 1].astype(np.int64)]  # (B, 3)
        images[s : s + len(b)] = col[:, :, None, None] * cov[:, None]
        masks[s : s + len(b)] = cov >= 0.5
    return images, masks


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 pixels, got {size!r}")
    return size


def render_scenes(factors: torch.Tensor | np.ndarray, size: int = 32) -> FactorScenes:
    """Draw the scenes of given factor rows (columns :data:`FACTOR_NAMES`, units as in the
    module docstring) exactly as :func:`make_factor_scenes` would.

    Any position and rotation is allowed (objects may leave the image) and any scale > 0;
    shape and colour must be valid integer indices. Raises ``ValueError`` otherwise.
    """
    size = _check_size(size)
    f = _check_factors(factors)
    images, masks = _render(f.numpy(), size)
    return FactorScenes(torch.from_numpy(images), f.float(), torch.from_numpy(masks))


def make_factor_scenes(
    n: int, *, seed: int = 0, size: int = 32, factors: torch.Tensor | np.ndarray | None = None
) -> FactorScenes:
    """``n`` scenes with independently, uniformly drawn factors (:func:`sample_factors`).

    Args:
        n: number of scenes.
        seed: seed of the factor draw; the same seed gives identical scenes.
        size: image side in pixels (positions and scales are fractions of it, so the same
            factors give the same scene at any resolution).
        factors: optional ``(n, 6)`` rows to draw instead of random ones (then ``seed`` is
            unused; same as :func:`render_scenes`).
    """
    size = _check_size(size)
    if factors is None:
        rows = sample_factors(n, seed)
    else:
        rows = _check_factors(factors).float()
        if rows.shape[0] != n:
            raise ValueError(f"n={n} but {rows.shape[0]} factor rows were given")
    # draw from the float32 values that are stored, so render_scenes(scenes.factors) matches exactly
    return render_scenes(rows, size)
