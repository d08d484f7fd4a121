"""Synthetic "shapes" images with known ground truth.

Every image shows one object whose *shape* alone decides the class (circle, square,
triangle, cross). Position, size, rotation and colour are random and independent of the
class, the background is a random texture (colour gradients, stripes, low-frequency
noise, speckle, or a blend of two), and optional distractors (line segments, rings,
elongated blobs, none of them a class shape) are scattered around without touching the
object. ``masks`` marks the object's pixels: the only evidence for the label.

With ``shortcut=True`` a small class-specific mark (its colour *and* its corner encode the
class) is also drawn into a corner; ``shortcut_masks`` marks its pixels. Objects and
distractors always keep clear of all four corner boxes, whether or not a mark is drawn,
so clean and marked data differ only by the mark.

Generation is deterministic for a seed (one ``numpy.random.Generator`` consumed image
after image) and fast: each image is a handful of vectorised numpy operations on
coordinate grids, polygons are intersections of half-planes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from ._index import as_index

__all__ = ["CLASSES", "SHORTCUT_COLORS", "ShapesData", "make_shapes"]

#: Class names, in label order.
CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

#: Colour of the shortcut mark for each class (RGB in [0, 1]), in label order.
SHORTCUT_COLORS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (1.0, 1.0, 0.0),
)

# Size of the object ("radius" r in pixels at 64x64); scaled linearly with image size.
_R_MIN, _R_MAX = 8.0, 18.0
# Half-extent of each class shape in units of r (radius of a disc that contains it).
_SQUARE_HALF = 0.85  # half side of the square
_TRI_CIRCUM = 1.2  # circumradius of the equilateral triangle
_CROSS_ARM = 1.0  # half length of each bar of the cross
_CROSS_HALF_WIDTH = 0.32  # half width of each bar of the cross
_EXTENT = (
    1.0,
    _SQUARE_HALF * math.sqrt(2.0),
    _TRI_CIRCUM,
    math.hypot(_CROSS_ARM, _CROSS_HALF_WIDTH),
)
_MIN_CONTRAST = 0.3  # wanted 10th-percentile RGB distance between object and background


@dataclass(frozen=True, eq=False)
class ShapesData:
    """A batch of shapes images with their labels and ground-truth masks.

    Attributes:
        images: float32 ``(N, 3, S, S)`` in ``[0, 1]``.
        labels: int64 ``(N,)``, indices into ``classes``.
        masks: bool ``(N, 1, S, S)``, the object's pixels (the class evidence).
        shortcut_masks: bool ``(N, 1, S, S)`` with the shortcut mark's pixels (all
            ``False`` for images drawn without a mark), or ``None`` when the data were
            made without shortcut.
        classes: the class names, in label order.

    Instances compare by identity (tensors have no single truth value).
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    shortcut_masks: torch.Tensor | None = None
    classes: tuple[str, ...] = field(default=CLASSES)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.labels.shape != (n,) or self.masks.shape[0] != n:
            raise ValueError("images, labels and masks must have the same length")
        if self.shortcut_masks is not None and self.shortcut_masks.shape != self.masks.shape:
            raise ValueError("shortcut_masks must have the shape of masks")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: int | slice | Sequence[int] | np.ndarray | torch.Tensor) -> ShapesData:
        """The images selected by ``idx`` (an int, a slice, indices or a boolean mask)."""
        sel = as_index(idx)
        return ShapesData(
            images=self.images[sel],
            labels=self.labels[sel],
            masks=self.masks[sel],
            shortcut_masks=None if self.shortcut_masks is None else self.shortcut_masks[sel],
            classes=self.classes,
        )


# --------------------------------------------------------------------------- helpers


class _Canvas:
    """Coordinate grids and fixed regions for one image size."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.scale = size / 64.0
        c = np.arange(size, dtype=np.float32) + 0.5
        self.y, self.x = np.meshgrid(c, c, indexing="ij")
        # Corner boxes that may carry the shortcut mark: (y0, y1, x0, x1), class order.
        m = max(2, round(4 * self.scale))
        g = max(1, round(2 * self.scale))
        lo, hi = g, size - g - m
        self.mark_size = m
        self.corners = (
            (lo, lo + m, lo, lo + m),  # top left
            (lo, lo + m, hi, hi + m),  # top right
            (hi, hi + m, lo, lo + m),  # bottom left
            (hi, hi + m, hi, hi + m),  # bottom right
        )

    def clear_of_corners(self, cy: float, cx: float, radius: float) -> bool:
        """Whether a disc keeps at least one pixel away from every corner box."""
        for y0, y1, x0, x1 in self.corners:
            dy = max(y0 - cy, 0.0, cy - y1)
            dx = max(x0 - cx, 0.0, cx - x1)
            if dy * dy + dx * dx <= (radius + 1.0) ** 2:
                return False
        return True


class _NoiseBank:
    """Gaussian noise fields cut at random from one large pre-drawn field.

    Drawing fresh normal samples for every image dominated the generation time; random
    crops (and transposes) of a field four times the image side are just as good as
    sensor noise and texture grain.
    """

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.size = size
        self.field = rng.standard_normal((3, 4 * size, 4 * size), dtype=np.float32)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        y, x = rng.integers(0, 3 * self.size + 1, 2)
        crop = self.field[:, y : y + self.size, x : x + self.size]
        return crop.transpose(0, 2, 1) if rng.random() < 0.5 else crop


@lru_cache(maxsize=32)
def _interp_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) matrix of linear interpolation weights from a coarse grid."""
    t = (np.arange(size) + 0.5) / size * (grid - 1)
    i0 = np.minimum(np.floor(t).astype(int), grid - 2)
    frac = t - i0
    frac = frac * frac * (3 - 2 * frac)  # smoothstep: no visible grid lines
    m = np.zeros((size, grid), dtype=np.float32)
    m[np.arange(size), i0] = 1 - frac
    m[np.arange(size), i0 + 1] = frac
    return m


def _color_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    c0 = rng.random(3, dtype=np.float32)
    c1 = np.clip(c0 + rng.uniform(-0.5, 0.5, 3).astype(np.float32), 0.0, 1.0)
    return c0, c1


def _background(rng: np.random.Generator, cv: _Canvas, kind: int, noise: _NoiseBank) -> np.ndarray:
    """One (3, S, S) texture: 0 gradient, 1 stripes, 2 low-frequency noise, 3 speckle."""
    s = cv.size
    if kind == 0:
        c0, c1 = _color_pair(rng)
        phi = rng.uniform(0, 2 * np.pi)
        proj = (cv.x - s / 2) * np.cos(phi) + (cv.y - s / 2) * np.sin(phi)
        t = proj / (s * 0.75) + 0.5
        t = np.clip(t, 0.0, 1.0)
        return c0[:, None, None] + (c1 - c0)[:, None, None] * t[None]
    if kind == 1:
        c0, c1 = _color_pair(rng)
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(4.0, 16.0) * cv.scale
        sharp = rng.uniform(0.5, 6.0)
        proj = cv.x * np.cos(phi) + cv.y * np.sin(phi)
        wave = np.sin(2 * np.pi * proj / period + rng.uniform(0, 2 * np.pi))
        t = 0.5 + 0.5 * np.tanh(sharp * wave) / np.tanh(sharp)
        return c0[:, None, None] + (c1 - c0)[:, None, None] * t[None]
    if kind == 2:
        g = int(rng.integers(3, 8))
        base = rng.random(3, dtype=np.float32)
        amp = rng.uniform(0.2, 0.6)
        grid = base[:, None, None] + amp * (rng.random((3, g, g), dtype=np.float32) - 0.5)
        m = _interp_matrix(s, g)
        return np.matmul(np.matmul(m, grid), m.T)
    base = rng.random(3, dtype=np.float32)
    sigma = rng.uniform(0.03, 0.15)
    img = base[:, None, None] + sigma * noise.draw(rng)
    dots = rng.random((s, s)) < rng.uniform(0.01, 0.08)
    img[:, dots] = rng.random((3, int(dots.sum())), dtype=np.float32)
    return img


def _contrasting_color(rng: np.random.Generator, under: np.ndarray, tries: int = 16) -> np.ndarray:
    """A random colour that stands out from the background pixels ``under`` (3, P).

    Candidates are drawn uniformly; the first whose 10th-percentile distance to the
    background pixels reaches ``_MIN_CONTRAST`` is taken, else the best one. The choice
    depends on the background only, never on the class.
    """
    cand = rng.random((tries, 3), dtype=np.float32)
    if under.shape[1] == 0:
        return cand[0]
    if under.shape[1] > 96:  # a fixed subsample is plenty for the percentile
        under = under[:, :: under.shape[1] // 96 + 1]
    d = np.sqrt(((cand[:, :, None] - under[None]) ** 2).sum(axis=1))  # (tries, P)
    k = max(0, int(0.1 * d.shape[1]) - 1)
    q = np.partition(d, k, axis=1)[:, k]
    ok = np.flatnonzero(q >= _MIN_CONTRAST)
    return cand[ok[0]] if ok.size else cand[int(np.argmax(q))]


def _shape_mask(cv: _Canvas, label: int, cy: float, cx: float, r: float, theta: float) -> np.ndarray:
    dx = cv.x - cx
    dy = cv.y - cy
    if label == 0:  # circle
        return dx * dx + dy * dy <= r * r
    ct, st = math.cos(theta), math.sin(theta)
    u = dx * ct + dy * st
    v = -dx * st + dy * ct
    if label == 1:  # square: |u|, |v| <= half side
        h = _SQUARE_HALF * r
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    if label == 2:  # equilateral triangle: three half-planes at the inradius
        inr = 0.5 * _TRI_CIRCUM * r
        mask = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = math.pi + 2 * math.pi * k / 3
            mask &= u * math.cos(a) + v * math.sin(a) <= inr
        return mask
    # cross: union of two perpendicular bars
    au, av = np.abs(u), np.abs(v)
    arm, w = _CROSS_ARM * r, _CROSS_HALF_WIDTH * r
    return ((au <= arm) & (av <= w)) | ((au <= w) & (av <= arm))


def _distractor(rng: np.random.Generator, cv: _Canvas, cy: float, cx: float, size: float) -> np.ndarray:
    """Mask of one distractor (segment, ring or elongated blob) of extent ``size``."""
    dx = cv.x - cx
    dy = cv.y - cy
    kind = int(rng.integers(0, 3))
    phi = rng.uniform(0, np.pi)
    if kind == 0:  # thick short line segment through the centre
        half = size * rng.uniform(0.6, 0.8)
        thick = max(1.0, size * rng.uniform(0.2, 0.3))
        u = dx * math.cos(phi) + dy * math.sin(phi)
        v = -dx * math.sin(phi) + dy * math.cos(phi)
        du = np.maximum(np.abs(u) - half, 0.0)
        return du * du + v * v <= thick * thick
    if kind == 1:  # ring outline
        outer = size
        width = max(1.0, size * rng.uniform(0.25, 0.35))
        d2 = dx * dx + dy * dy
        return (d2 <= outer * outer) & (d2 >= (outer - width) ** 2)
    # elongated filled ellipse (never round enough to pass as a circle)
    a = size
    b = a * rng.uniform(0.3, 0.55)
    u = dx * math.cos(phi) + dy * math.sin(phi)
    v = -dx * math.sin(phi) + dy * math.cos(phi)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _place(
    rng: np.random.Generator, cv: _Canvas, extent: float, avoid: tuple[float, float, float] | None, tries: int = 50
) -> tuple[float, float] | None:
    """A centre for a disc of radius ``extent`` inside the image, clear of the corner
    boxes and (if given) of the disc ``avoid = (cy, cx, radius)``."""
    lo, hi = extent + 1.0, cv.size - extent - 1.0
    if hi <= lo:
        return None
    for _ in range(tries):
        cy, cx = rng.uniform(lo, hi, 2)
        if not cv.clear_of_corners(cy, cx, extent):
            continue
        if avoid is not None:
            ay, ax, ar = avoid
            if (cy - ay) ** 2 + (cx - ax) ** 2 <= (ar + extent + 2.0) ** 2:
                continue
        return float(cy), float(cx)
    return None


# --------------------------------------------------------------------------- public


def make_shapes(
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    distractors: bool = True,
    shortcut: bool = False,
    shortcut_prob: float = 1.0,
) -> ShapesData:
    """Generate ``n`` shapes images (classes balanced, in random order).

    Args:
        n: number of images.
        seed: seed of the numpy generator; the same seed gives identical data.
        size: side length in pixels (at least 24; object sizes scale with it).
        distractors: draw 0-3 small non-class objects clear of the main object.
        shortcut: draw a class-specific mark into the class's corner
            (class k: top-left, top-right, bottom-left, bottom-right; colour
            ``SHORTCUT_COLORS[k]``) with probability ``shortcut_prob``.
        shortcut_prob: probability that an image gets the mark (``shortcut=True`` only).

    Returns:
        A :class:`ShapesData`; ``shortcut_masks`` is ``None`` unless ``shortcut``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 24:
        raise ValueError(f"size must be at least 24 pixels, got {size}")
    if not 0.0 <= shortcut_prob <= 1.0:
        raise ValueError(f"shortcut_prob must be in [0, 1], got {shortcut_prob}")

    rng = np.random.default_rng(seed)
    cv = _Canvas(size)
    noise = _NoiseBank(rng, size)
    k = len(CLASSES)
    labels = rng.permutation(np.arange(n) % k)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, 1, size, size), dtype=bool)
    sc_masks = np.zeros((n, 1, size, size), dtype=bool) if shortcut else None

    for i in range(n):
        label = int(labels[i])
        # background: one texture, half of the time blended with a second one
        kinds = rng.permutation(4)
        bg = _background(rng, cv, int(kinds[0]), noise)
        if rng.random() < 0.5:
            alpha = rng.uniform(0.25, 0.5)
            bg = (1 - alpha) * bg + alpha * _background(rng, cv, int(kinds[1]), noise)
        img = np.clip(bg, 0.0, 1.0).astype(np.float32, copy=False)

        # the object
        r = rng.uniform(_R_MIN, _R_MAX) * cv.scale
        theta = rng.uniform(0, 2 * np.pi)
        ext = _EXTENT[label] * r
        pos = None
        while pos is None:  # always succeeds quickly; shrink if the image is crowded
            pos = _place(rng, cv, ext, None)
            if pos is None:
                r *= 0.9
                ext = _EXTENT[label] * r
        cy, cx = pos
        obj = _shape_mask(cv, label, cy, cx, r, theta)
        color = _contrasting_color(rng, img[:, obj])
        img[:, obj] = color[:, None]
        masks[i, 0] = obj

        # distractors, never touching the object's disc nor the corner boxes; they use
        # their own generator, so the rest of the image does not depend on them
        dseed = int(rng.integers(0, 2**63))
        if distractors:
            drng = np.random.default_rng(dseed)
            for _ in range(int(drng.integers(0, 4))):
                dsize = drng.uniform(3.0, 6.0) * cv.scale
                dpos = _place(drng, cv, dsize + 1.0, (cy, cx, ext), tries=20)
                if dpos is None:
                    continue
                dmask = _distractor(drng, cv, dpos[0], dpos[1], dsize)
                dcolor = _contrasting_color(drng, img[:, dmask], tries=8)
                img[:, dmask] = dcolor[:, None]

        # the shortcut mark (the coin is tossed even without shortcut, so that the same
        # seed gives the same images with and without marks, differing only in the mark)
        if rng.random() < shortcut_prob and shortcut:
            y0, y1, x0, x1 = cv.corners[label]
            img[:, y0:y1, x0:x1] = np.asarray(SHORTCUT_COLORS[label], dtype=np.float32)[:, None, None]
            assert sc_masks is not None  # made when shortcut
            sc_masks[i, 0, y0:y1, x0:x1] = True

        # sensor noise everywhere
        sigma = rng.uniform(0.0, 0.04)
        if sigma > 0:
            img = img + sigma * noise.draw(rng)
        images[i] = np.clip(img, 0.0, 1.0)

    return ShapesData(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        masks=torch.from_numpy(masks),
        shortcut_masks=None if sc_masks is None else torch.from_numpy(sc_masks),
        classes=CLASSES,
    )
