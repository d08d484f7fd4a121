"""Synthetic concept images with pixel masks, and loaders for a user's concept sets.

Three kinds of concepts (:data:`CONCEPT_KINDS`):

* colours: ``red``, ``green``, ``blue``, ``yellow``: saturated regions whose hue lies
  within 8 degrees of the named hue. Other saturated hues (orange, cyan, purple,
  magenta) also appear, unlabelled, so a colour detector has to be specific.
* textures: ``stripes`` (any orientation; ``horizontal_stripes`` and
  ``vertical_stripes`` also label the bands that run horizontally or vertically),
  ``dots`` and ``checkerboard``, drawn in two low-saturation colours.
* shapes: the classes of :func:`~seethrough.data.make_shapes` (``circle``, ``square``,
  ``triangle``, ``cross``), drawn with its code, filled with a named colour (which then
  also labels the pixels), another saturated hue or a low-saturation colour.

Backgrounds are "natural-ish": low-saturation colour gradients modulated by
low-frequency noise, plus sensor grain. Nothing but a named colour region or a coloured
shape is ever saturated, so every pixel mask is exact.

Generators:

* :func:`concept_images`: examples of one concept for TCAV: a random image without the
  concept, with one or two instances of it on top, varied in size, placement and
  colour;
* :func:`random_images`: the random counterpart (the same backgrounds with zero to
  three random elements; ``exclude`` keeps chosen concepts out);
* :func:`concept_scenes`: scenes of two to four elements with a pixel mask per concept,
  for network dissection.

All are deterministic for a seed (one ``numpy.random.Generator`` consumed image after
image; each concept, the random images and the scenes draw from their own stream, so
the same seed gives unrelated images across them). :func:`load_concept_images` reads a user's concept set from a folder of images
or a tensor file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from .._core.errors import InputError
from .shapes import CLASSES as SHAPE_CLASSES
from .shapes import _Canvas, _interp_matrix, _NoiseBank, _shape_mask

__all__ = [
    "COLORS",
    "TEXTURES",
    "SHAPES",
    "CONCEPTS",
    "CONCEPT_KINDS",
    "ConceptScenes",
    "concept_images",
    "random_images",
    "concept_scenes",
    "concept_dataset",
    "load_concept_images",
]

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow")
TEXTURES: tuple[str, ...] = ("stripes", "horizontal_stripes", "vertical_stripes", "dots", "checkerboard")
SHAPES: tuple[str, ...] = tuple(SHAPE_CLASSES)
#: Every concept the generators know, colours first, then textures, then shapes.
CONCEPTS: tuple[str, ...] = COLORS + TEXTURES + SHAPES
#: Concept name -> ``"color"``, ``"texture"`` or ``"shape"``.
CONCEPT_KINDS: Mapping[str, str] = MappingProxyType(
    {**{c: "color" for c in COLORS}, **{t: "texture" for t in TEXTURES}, **{s: "shape" for s in SHAPES}}
)

# Hues in degrees. Named colours get a jitter of +-_HUE_JITTER; the unnamed saturated hues
# (orange, cyan, purple, magenta) keep at least 11 degrees away from every named one.
_HUES = {"red": 0.0, "yellow": 55.0, "green": 120.0, "blue": 225.0}
_OTHER_HUES = (28.0, 185.0, 275.0, 315.0)
_HUE_JITTER = 8.0
_STRIPE_ORIENTATIONS = (0.0, 45.0, 90.0, 135.0)  # degrees of the bands; 0 = horizontal bands
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# --------------------------------------------------------------------------- colours


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    """One RGB colour (float32, in [0, 1]) from hue in degrees, saturation, value."""
    h = (h_deg % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    i = int(h) % 6
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][i]
    m = v - c
    return np.array([r + m, g + m, b + m], dtype=np.float32)


def _named_color(rng: np.random.Generator, name: str) -> np.ndarray:
    h = _HUES[name] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)
    return _hsv(h, rng.uniform(0.7, 1.0), rng.uniform(0.65, 1.0))


def _other_color(rng: np.random.Generator) -> np.ndarray:
    h = _OTHER_HUES[int(rng.integers(len(_OTHER_HUES)))] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)
    return _hsv(h, rng.uniform(0.7, 1.0), rng.uniform(0.65, 1.0))


def _dull_color(rng: np.random.Generator, v_lo: float = 0.1, v_hi: float = 0.95) -> np.ndarray:
    """A low-saturation colour (saturation at most 0.2): never one of the named colours."""
    return _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.2), rng.uniform(v_lo, v_hi))


def _dull_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two low-saturation colours whose values differ by 0.35 to 0.55 (a visible texture)."""
    v1 = rng.uniform(0.05, 0.45)
    v2 = min(1.0, v1 + rng.uniform(0.35, 0.55))
    a = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.2), v1)
    b = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.2), v2)
    return (a, b) if rng.random() < 0.5 else (b, a)


def _contrasting_dull(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A low-saturation colour whose value differs from the mean of ``under`` by >= 0.3."""
    v_under = float(under.max(axis=0).mean()) if under.size else 0.5
    lo, hi = v_under - 0.3, v_under + 0.3
    if lo < 0.05:
        v = rng.uniform(max(hi, 0.05), 1.0) if hi < 1.0 else 1.0
    elif hi > 1.0:
        v = rng.uniform(0.0, lo)
    else:
        v = rng.uniform(0.0, lo) if rng.random() < 0.5 else rng.uniform(hi, 1.0)
    return _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.2), v)


# --------------------------------------------------------------------------- drawing


def _background(rng: np.random.Generator, cv: _Canvas) -> np.ndarray:
    """Low-saturation colour gradient modulated by low-frequency luminance noise."""
    s = cv.size
    c0, c1 = _dull_color(rng, 0.15, 0.9), _dull_color(rng, 0.15, 0.9)
    phi = rng.uniform(0, 2 * np.pi)
    t = ((cv.x - s / 2) * np.cos(phi) + (cv.y - s / 2) * np.sin(phi)) / s + 0.5
    img = c0[:, None, None] + (c1 - c0)[:, None, None] * np.clip(t, 0.0, 1.0)[None]
    g = int(rng.integers(3, 8))
    m = _interp_matrix(s, g)
    lum = m @ (rng.random((g, g), dtype=np.float32) - 0.5) @ m.T
    img = img * (1.0 + rng.uniform(0.2, 0.6) * lum)[None]
    return img.astype(np.float32, copy=False)


def _region(rng: np.random.Generator, cv: _Canvas, cy: float, cx: float, r: float) -> np.ndarray:
    """Mask of a region: a smooth random blob (half the time), an ellipse or a rectangle."""
    dx, dy = cv.x - cx, cv.y - cy
    kind = rng.random()
    if kind < 0.5:
        ang = np.arctan2(dy, dx)
        rad = np.full_like(ang, r)
        for k in (2, 3, 4):
            rad = rad + r * rng.uniform(0.0, 0.15) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
        return dx * dx + dy * dy <= rad * rad
    phi = rng.uniform(0, np.pi)
    u = dx * math.cos(phi) + dy * math.sin(phi)
    v = -dx * math.sin(phi) + dy * math.cos(phi)
    a, b = r, r * rng.uniform(0.55, 1.0)
    if kind < 0.75:
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return (np.abs(u) <= a * 0.9) & (np.abs(v) <= b * 0.9)


def _texture(rng: np.random.Generator, cv: _Canvas, kind: str, orientation: float | None) -> np.ndarray:
    """A full-image (3, S, S) texture in two low-saturation colours."""
    a, b = _dull_pair(rng)
    sc = cv.scale
    if kind == "stripes":
        period = rng.uniform(5.0, 9.0) * sc
        theta = math.radians(orientation if orientation is not None else rng.uniform(0, 180))
        # bands at angle theta: the intensity varies across them (along the normal)
        proj = -cv.x * math.sin(theta) + cv.y * math.cos(theta)
        on = np.sin(2 * np.pi * proj / period + rng.uniform(0, 2 * np.pi)) > 0
    elif kind == "dots":
        period = rng.uniform(6.0, 10.0) * sc
        rad = rng.uniform(0.22, 0.32) * period
        phi = rng.uniform(0, np.pi / 2)
        u = cv.x * math.cos(phi) + cv.y * math.sin(phi) + rng.uniform(0, period)
        v = -cv.x * math.sin(phi) + cv.y * math.cos(phi) + rng.uniform(0, period)
        du = (u % period) - period / 2
        dv = (v % period) - period / 2
        on = du * du + dv * dv <= rad * rad
    else:  # checkerboard
        cell = rng.uniform(3.0, 6.0) * sc
        phi = rng.uniform(0, np.pi / 2)
        u = cv.x * math.cos(phi) + cv.y * math.sin(phi) + rng.uniform(0, cell)
        v = -cv.x * math.sin(phi) + cv.y * math.cos(phi) + rng.uniform(0, cell)
        on = (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0
    return np.where(on[None], a[:, None, None], b[:, None, None]).astype(np.float32)


@dataclass
class _Element:
    """One thing to draw: its concept labels and how to paint it."""

    labels: tuple[str, ...]
    draw: Callable[[np.random.Generator, _Canvas, np.ndarray, float], np.ndarray]  # returns the mask


def _color_element(name: str | None) -> _Element:
    def draw(rng, cv, img, scale):
        r = rng.uniform(7.0, 16.0) * scale * cv.scale
        cy, cx = rng.uniform(0.15 * cv.size, 0.85 * cv.size, 2)
        m = _region(rng, cv, cy, cx, r)
        img[:, m] = (_named_color(rng, name) if name else _other_color(rng))[:, None]
        return m

    return _Element((name,) if name else (), draw)


def _texture_element(kind: str, orientation: float | None, full: bool = False) -> _Element:
    labels: tuple[str, ...] = (kind,)
    if kind == "stripes" and orientation == 0.0:
        labels = ("stripes", "horizontal_stripes")
    elif kind == "stripes" and orientation == 90.0:
        labels = ("stripes", "vertical_stripes")

    def draw(rng, cv, img, scale):
        tex = _texture(rng, cv, kind, orientation)
        if full:
            m = np.ones((cv.size, cv.size), dtype=bool)
        else:
            r = rng.uniform(9.0, 18.0) * scale * cv.scale
            cy, cx = rng.uniform(0.15 * cv.size, 0.85 * cv.size, 2)
            m = _region(rng, cv, cy, cx, r)
        img[:, m] = tex[:, m]
        return m

    return _Element(labels, draw)


def _shape_element(label: int, fill: str | None) -> _Element:
    """``fill``: a named colour, ``"other"`` (an unnamed saturated hue) or None (dull)."""
    labels = (SHAPES[label],) + ((fill,) if fill in _HUES else ())

    def draw(rng, cv, img, scale):
        r = rng.uniform(7.0, 14.0) * scale * cv.scale
        margin = 1.25 * r
        lo, hi = margin, cv.size - margin
        cy, cx = rng.uniform(lo, hi, 2) if hi > lo else (cv.size / 2, cv.size / 2)
        m = _shape_mask(cv, label, cy, cx, r, rng.uniform(0, 2 * np.pi))
        if fill in _HUES:
            color = _named_color(rng, fill)
        elif fill == "other":
            color = _other_color(rng)
        else:
            color = _contrasting_dull(rng, img[:, m])
        img[:, m] = color[:, None]
        return m

    return _Element(labels, draw)


def _concept_element(rng: np.random.Generator, name: str) -> _Element:
    """An element that shows concept ``name`` (its other properties random)."""
    kind = CONCEPT_KINDS[name]
    if kind == "color":
        if rng.random() < 0.7:
            return _color_element(name)
        return _shape_element(int(rng.integers(len(SHAPES))), name)
    if kind == "texture":
        if name == "horizontal_stripes":
            kind_, orient = "stripes", 0.0
        elif name == "vertical_stripes":
            kind_, orient = "stripes", 90.0
        elif name == "stripes":
            kind_, orient = "stripes", float(rng.uniform(0, 180))
        else:
            kind_, orient = name, None
        return _texture_element(kind_, orient, full=rng.random() < 0.15)
    u = rng.random()
    fill = str(rng.choice(COLORS)) if u < 0.3 else ("other" if u < 0.5 else None)
    return _shape_element(SHAPES.index(name), fill)


def _random_element(rng: np.random.Generator, exclude: frozenset[str]) -> _Element:
    """A random element whose labels avoid ``exclude``."""
    for _ in range(200):
        cat = rng.random()
        if cat < 1 / 3:
            el = _color_element(str(rng.choice(COLORS)) if rng.random() < 0.75 else None)
        elif cat < 2 / 3:
            kind = ("stripes", "dots", "checkerboard")[int(rng.integers(3))]
            orient = _STRIPE_ORIENTATIONS[int(rng.integers(4))] if kind == "stripes" else None
            el = _texture_element(kind, orient)
        else:
            u = rng.random()
            fill = str(rng.choice(COLORS)) if u < 0.4 else ("other" if u < 0.6 else None)
            el = _shape_element(int(rng.integers(len(SHAPES))), fill)
        if not exclude.intersection(el.labels):
            return el
    raise InputError(f"cannot draw random elements that avoid all of {sorted(exclude)}")  # pragma: no cover


def _finish(rng: np.random.Generator, img: np.ndarray, noise: _NoiseBank) -> np.ndarray:
    sigma = rng.uniform(0.0, 0.03)
    if sigma > 0:
        img = img + sigma * noise.draw(rng)
    return np.clip(img, 0.0, 1.0)


def _to_tensor(images: np.ndarray, channels: int) -> torch.Tensor:
    x = torch.from_numpy(images)
    if channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).reshape(1, 3, 1, 1)
        x = (x * w).sum(dim=1, keepdim=True)
    return x


def _check_common(n: int, size: int, channels: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise InputError(f"n must be a non-negative int, got {n!r}")
    if size < 24:
        raise InputError(f"size must be at least 24 pixels, got {size}; smaller images cannot show textures")
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")


def _check_concept(name: str) -> None:
    if name not in CONCEPT_KINDS:
        import difflib

        close = difflib.get_close_matches(str(name), CONCEPTS, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise InputError(
            f"unknown concept {name!r}.{hint} Generated concepts: {', '.join(CONCEPTS)}; "
            f"for your own concept, load its images with load_concept_images(folder)."
        )


def _as_exclude(exclude: str | Iterable[str]) -> frozenset[str]:
    names = [exclude] if isinstance(exclude, str) else list(exclude)
    for name in names:
        _check_concept(name)
    out = set(names)
    if "stripes" in out:  # every oriented stripe is also "stripes"
        out |= {"horizontal_stripes", "vertical_stripes"}
    return frozenset(out)


# --------------------------------------------------------------------------- public


def concept_images(name: str, n: int, *, seed: int = 0, size: int = 64, channels: int = 3) -> torch.Tensor:
    """``n`` images that show concept ``name``: float32 ``(n, channels, size, size)`` in [0, 1].

    Each image is drawn like a :func:`random_images` image whose elements never carry
    ``name`` (a background and zero to three random elements), with one or two instances
    of the concept on top: a colour as a region of random form (or a shape filled with
    it), a texture as a region (or, 15% of the time, the whole image), a shape at a
    random size, angle and fill. So concept and random images differ by the concept, not
    by how busy they are. ``channels=1`` converts to luminance.
    """
    _check_concept(name)
    _check_common(n, size, channels)
    rng = np.random.default_rng([seed, 1 + CONCEPTS.index(name)])
    cv = _Canvas(size)
    noise = _NoiseBank(rng, size)
    exclude = _as_exclude(name)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        img = _background(rng, cv)
        for _ in range(int(rng.integers(0, 4))):
            _random_element(rng, exclude).draw(rng, cv, img, 1.0)
        for _ in range(int(rng.integers(1, 3))):
            _concept_element(rng, name).draw(rng, cv, img, 1.0)
        out[i] = _finish(rng, img, noise)
    return _to_tensor(out, channels)


def random_images(
    n: int, *, seed: int = 0, size: int = 64, channels: int = 3, exclude: str | Sequence[str] = ()
) -> torch.Tensor:
    """``n`` random counterpart images for TCAV: float32 ``(n, channels, size, size)``.

    The backgrounds of :func:`concept_images` with zero to three random elements (any
    concept, unless listed in ``exclude``; ``"stripes"`` excludes every orientation).
    """
    _check_common(n, size, channels)
    ex = _as_exclude(exclude)
    rng = np.random.default_rng([seed, 0])
    cv = _Canvas(size)
    noise = _NoiseBank(rng, size)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        img = _background(rng, cv)
        for _ in range(int(rng.integers(0, 4))):
            _random_element(rng, ex).draw(rng, cv, img, 1.0)
        out[i] = _finish(rng, img, noise)
    return _to_tensor(out, channels)


@dataclass(frozen=True, eq=False)
class ConceptScenes:
    """Scenes with a pixel mask per concept (for network dissection).

    Attributes:
        images: float32 ``(N, C, S, S)`` in ``[0, 1]``.
        masks: concept name -> bool ``(N, S, S)``, the pixels that show the concept
            (a pixel can carry several: a red square is ``red`` and ``square``).
        concepts: the concept names, in :data:`CONCEPTS` order.
        kinds: concept name -> ``"color"``, ``"texture"`` or ``"shape"``.

    Instances compare by identity.
    """

    images: torch.Tensor
    masks: Mapping[str, torch.Tensor]
    concepts: tuple[str, ...] = CONCEPTS
    kinds: Mapping[str, str] = field(default_factory=lambda: CONCEPT_KINDS)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4:
            raise InputError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if set(self.masks) != set(self.concepts):
            raise InputError("masks must have exactly one entry per concept")
        for k, m in self.masks.items():
            if m.shape != (n,) + tuple(self.images.shape[2:]) or m.dtype != torch.bool:
                raise InputError(
                    f"mask of {k!r} must be bool of shape {(n,) + tuple(self.images.shape[2:])}, "
                    f"got {m.dtype} {tuple(m.shape)}"
                )
        object.__setattr__(self, "masks", MappingProxyType(dict(self.masks)))
        object.__setattr__(self, "kinds", MappingProxyType({c: self.kinds.get(c, "custom") for c in self.concepts}))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: slice | Sequence[int] | torch.Tensor) -> ConceptScenes:
        """The scenes selected by ``idx`` (a slice, indices or a boolean mask)."""
        if not isinstance(idx, slice):
            idx = torch.as_tensor(idx)
            if idx.dtype != torch.bool:
                idx = idx.long()
        return ConceptScenes(
            images=self.images[idx],
            masks={k: v[idx] for k, v in self.masks.items()},
            concepts=self.concepts,
            kinds=self.kinds,
        )

    def coverage(self) -> dict[str, float]:
        """Fraction of all pixels that carry each concept."""
        return {k: float(self.masks[k].float().mean()) for k in self.concepts}


def concept_scenes(n: int, *, seed: int = 0, size: int = 64, channels: int = 3) -> ConceptScenes:
    """``n`` scenes of two to four elements (colour regions, texture regions, shapes) on
    natural-ish backgrounds, with an exact pixel mask for every concept.

    Later elements cover earlier ones and take their pixels out of the earlier masks.
    """
    _check_common(n, size, channels)
    rng = np.random.default_rng([seed, 1 + len(CONCEPTS)])
    cv = _Canvas(size)
    noise = _NoiseBank(rng, size)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = {c: np.zeros((n, size, size), dtype=bool) for c in CONCEPTS}
    none: frozenset[str] = frozenset()
    for i in range(n):
        img = _background(rng, cv)
        for _ in range(int(rng.integers(2, 5))):
            el = _random_element(rng, none)
            m = el.draw(rng, cv, img, 1.0)
            for c in CONCEPTS:
                masks[c][i] &= ~m
            for c in el.labels:
                masks[c][i] |= m
        images[i] = _finish(rng, img, noise)
    return ConceptScenes(
        images=_to_tensor(images, channels),
        masks={c: torch.from_numpy(m) for c, m in masks.items()},
    )


def concept_dataset(
    n: int, concept: str, *, seed: int = 0, size: int = 64, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """A classification task decided by one concept: ``(images, labels)``.

    Every image is a random image (background plus zero to three random elements, none
    carrying ``concept``); half of them (label 1, in random order) also get one instance
    of ``concept`` drawn on top. Everything else has the same distribution in both
    classes, so a model that learns the task can only rely on the concept (ground truth
    for TCAV: the concept matters for class 1, other concepts do not).
    """
    _check_concept(concept)
    _check_common(n, size, channels)
    rng = np.random.default_rng([seed, 2 + len(CONCEPTS) + CONCEPTS.index(concept)])
    cv = _Canvas(size)
    noise = _NoiseBank(rng, size)
    exclude = _as_exclude(concept)
    labels = rng.permutation(np.arange(n) % 2)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        img = _background(rng, cv)
        for _ in range(int(rng.integers(0, 4))):
            _random_element(rng, exclude).draw(rng, cv, img, 1.0)
        if labels[i]:
            _concept_element(rng, concept).draw(rng, cv, img, 1.0)
        out[i] = _finish(rng, img, noise)
    return _to_tensor(out, channels), torch.from_numpy(labels.astype(np.int64))


def load_concept_images(
    source: str | Path | torch.Tensor,
    *,
    size: int | tuple[int, int] | None = None,
    channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    key: str | None = None,
) -> torch.Tensor:
    """A user's concept (or random) examples as a float tensor ``(N, C, H, W)``.

    ``source`` is a folder of images (every ``.png``, ``.jpg``, ... file in it, sorted by
    name, read with :func:`seethrough._core.files.load_images` and the given
    ``size``/``channels``/``mean``/``std``), a tensor file (``.npy``, ``.safetensors``
    with ``key``, or a torch tensor file; read with
    :func:`seethrough._core.files.load_tensor`, used as stored), or a tensor.
    """
    from .._core.files import load_images, load_tensor

    if isinstance(source, torch.Tensor):
        x = source.detach()
        what = "the concept tensor"
    else:
        path = Path(source)
        what = repr(str(path))
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not files:
                raise InputError(
                    f"folder {str(path)!r} holds no image files ({', '.join(_IMAGE_SUFFIXES)}); "
                    f"put the concept's example images in it"
                )
            x = load_images(files, size=size, channels=channels, mean=mean, std=std)
        elif path.is_file():
            x = load_tensor(path, key)
        else:
            raise InputError(f"concept source {str(path)!r} is neither a folder of images nor a tensor file")
    if x.dim() != 4:
        raise InputError(f"{what} must hold images shaped (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        x = x.float()
    return x
