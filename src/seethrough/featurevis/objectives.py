"""Objectives: what a feature visualization maximises, one score per image.

An objective maps a batch of images (through the model) to one score per image, shape
``(K,)``; :func:`~seethrough.featurevis.render` **maximises** it. Objectives are linear
combinations of terms and compose with ``+``, ``-``, scalar ``*`` and ``/`` and unary
``-``::

    channel("features.7", 12) - 0.05 * TotalVariation() + 0.5 * diversity("features.7")

Terms on a layer's output (``(C, H, W)`` for convolutions, ``(C,)`` for linear layers),
made by Lucid-style factories (the classes behind them in brackets):

- :func:`channel` ``(layer, c, reduce="mean")`` (:class:`ChannelObjective`): the mean (or
  sum) over positions of channel ``c`` (a linear layer: unit ``c``);
- :func:`neuron` ``(layer, c, x=None, y=None)`` (:class:`NeuronObjective`): channel ``c``
  at one position (default: the centre); on a linear layer, unit ``c`` (a position is an
  error);
- :func:`deep_dream` ``(layer)`` (:class:`DeepDream`): the mean (or sum) of squared
  activations;
- :func:`direction` ``(layer, vector)`` (:class:`Direction`): the dot product of the
  activation with a direction in channel space, averaged over positions (optionally
  weighted by the cosine to the power ``cossim_pow``);
- :func:`diversity` ``(layer)`` (:class:`Diversity`): minus the mean cosine similarity
  between this image's Gram matrix (channel correlations) and those of the other images of
  the batch whose objective also has diversity at that layer (images without it are left
  out); adding it makes the images of one batch differ in style (Lucid);

on the model output: :func:`class_logit` ``(c)`` (:class:`ClassLogit`); any target of the
package (:class:`seethrough.Channel`, :class:`seethrough.Neuron`, :class:`seethrough.Class`,
:class:`seethrough.Custom`, ...) through :func:`from_target` (``render`` also takes a
target directly); and regularisers on the displayable image ``u`` in [0, 1] (before
transforms), penalties to subtract: :class:`L1`, :class:`L2`, :class:`TotalVariation`,
:class:`BlurPenalty`.

Objectives are per image, so ONE render can optimise a different objective for each
image: pass a list, image ``k`` maximises ``objectives[k]``. Terms that differ only in
their unit (``channel(layer, 0)``, ``channel(layer, 1)``, ...) are evaluated together by a
single gather, so rendering every channel of a layer costs one batched optimisation.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._core import targets as _targets
from .._core.errors import ConfigError, LayerError, TargetError
from .._core.layers import LayerRef, resolve_layer

__all__ = [
    "Objective",
    "ChannelObjective",
    "NeuronObjective",
    "DeepDream",
    "ClassLogit",
    "Direction",
    "Diversity",
    "TargetObjective",
    "L1",
    "L2",
    "TotalVariation",
    "BlurPenalty",
    "channel",
    "neuron",
    "deep_dream",
    "class_logit",
    "direction",
    "diversity",
    "from_target",
    "as_objectives",
]


def _is_scalar(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _fmt(c: float) -> str:
    return f"{c:g}"


class Objective:
    """A linear combination of terms; one score per image (see the module docstring)."""

    def _terms(self) -> tuple[tuple[float, Term], ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- algebra ------------------------------------------------------------------------
    def __add__(self, other):
        if isinstance(other, Objective):
            return _Combination(self._terms() + other._terms())
        if _is_scalar(other) and float(other) == 0.0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    def __radd__(self, other):
        if _is_scalar(other) and float(other) == 0.0:
            return self
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, Objective):
            return self + (-other)
        if _is_scalar(other) and float(other) == 0.0:
            return self
        return NotImplemented

    def __rsub__(self, other):
        if _is_scalar(other) and float(other) == 0.0:
            return -self
        return NotImplemented

    def __neg__(self):
        return self * -1.0

    def __mul__(self, other):
        if not _is_scalar(other):
            return NotImplemented
        return _Combination(tuple((c * float(other), t) for c, t in self._terms()))

    __rmul__ = __mul__

    def __truediv__(self, other):
        if not _is_scalar(other) or float(other) == 0.0:
            return NotImplemented
        return self * (1.0 / float(other))

    def __pos__(self):
        return self

    # -- description ---------------------------------------------------------------------
    def describe(self) -> str:
        parts: list[str] = []
        for c, t in self._terms():
            body = t.describe()
            if not parts:
                parts.append(body if c == 1 else ("-" + body if c == -1 else f"{_fmt(c)} * {body}"))
            elif c >= 0:
                parts.append("+ " + (body if c == 1 else f"{_fmt(c)} * {body}"))
            else:
                parts.append("- " + (body if c == -1 else f"{_fmt(-c)} * {body}"))
        return " ".join(parts) if parts else "0"

    def __repr__(self) -> str:
        return self.describe()

    @property
    def terms(self) -> tuple[tuple[float, Term], ...]:
        """``(coefficient, term)`` pairs."""
        return self._terms()


class _Combination(Objective):
    def __init__(self, terms: tuple[tuple[float, Term], ...]) -> None:
        merged: dict[int, list] = {}
        order: list[int] = []
        for c, t in terms:
            key = id(t)
            if key in merged:
                merged[key][0] += c
            else:
                merged[key] = [c, t]
                order.append(key)
        self._items = tuple((merged[k][0], merged[k][1]) for k in order if merged[k][0] != 0.0)

    def _terms(self):
        return self._items


class Term(Objective):
    """One scored quantity. ``source`` is ``"layer"``, ``"output"`` or ``"image"``."""

    source = "layer"
    #: whether an image's score depends on the other images of the batch
    coupled = False
    layer: LayerRef | None = None

    def _terms(self):
        return ((1.0, self),)

    def bind(self, model: nn.Module) -> None:
        """Called once per render with the model, before the term is checked or scored."""

    # identity of the term apart from its layer (for evaluating identical terms once)
    def params_key(self) -> tuple:
        return ()

    # terms with equal fuse keys (and layer) are evaluated together by ``score_fused``
    def fuse_key(self) -> tuple | None:
        return None

    def check(self, shape: tuple[int, ...], where: str) -> None:
        """Validate against the per-image shape of the source; ``where`` names it."""

    def score(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def score_fused(cls, terms: Sequence[Term], x: Tensor, rows: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _layer_text(self) -> str:
        if isinstance(self.layer, nn.Module):
            return type(self.layer).__name__
        return repr(self.layer)


def _check_layer_ref(layer: Any) -> LayerRef:
    if not isinstance(layer, (str, nn.Module)):
        raise LayerError(f"a layer is given as a dotted name (str) or a module, not {type(layer).__name__}")
    return layer


def _check_index(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TargetError(f"{name} must be an int, got {value!r}")
    return int(value)


def _unit_range_error(what: str, index: int, n: int, where: str) -> TargetError:
    return TargetError(f"{what} {index} is out of range for {where} with {n} {what}s (valid: 0..{n - 1})")


class ChannelObjective(Term):
    """Mean (``reduce="mean"``) or sum over positions of channel ``channel`` (a linear
    layer: that unit). Made by :func:`channel`; :func:`from_target` turns a
    :class:`seethrough.Channel` target into one."""

    def __init__(self, layer: LayerRef, channel: int, *, reduce: str = "mean") -> None:
        self.layer = _check_layer_ref(layer)
        self.channel = _check_index(channel, "channel")
        if reduce not in ("mean", "sum"):
            raise ConfigError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
        self.reduce = reduce

    def params_key(self):
        return (self.channel, self.reduce)

    def fuse_key(self):
        return (self.reduce,)

    def check(self, shape, where):
        if len(shape) < 1:
            raise LayerError(f"{where} gives a scalar per image; channel() needs a channel dimension")
        if not 0 <= self.channel < shape[0]:
            raise _unit_range_error("channel", self.channel, shape[0], where)

    def _reduce(self, x: Tensor) -> Tensor:
        return x.mean(dim=1) if self.reduce == "mean" else x.sum(dim=1)

    def score(self, x):
        return self._reduce(x[:, self.channel].reshape(x.shape[0], -1))

    @classmethod
    def score_fused(cls, terms, x, rows):
        ch = torch.tensor([t.channel for t in terms], device=x.device)
        return terms[0]._reduce(x[rows, ch].reshape(len(terms), -1))

    def describe(self):
        how = "" if self.reduce == "mean" else f", reduce={self.reduce!r}"
        return f"channel({self._layer_text()}, {self.channel}{how})"


class NeuronObjective(Term):
    """Channel ``channel`` at position ``(y, x)`` of a convolutional output (default: the
    centre, ``(H // 2, W // 2)``), or unit ``channel`` of a linear layer (no position).
    Made by :func:`neuron`; :func:`from_target` turns a :class:`seethrough.Neuron` target
    ``(c, y, x)`` into one."""

    def __init__(self, layer: LayerRef, channel: int, x: int | None = None, y: int | None = None) -> None:
        self.layer = _check_layer_ref(layer)
        self.channel = _check_index(channel, "channel")
        self.x = None if x is None else _check_index(x, "x")
        self.y = None if y is None else _check_index(y, "y")
        self._pos: tuple[int, int] | None = None

    def params_key(self):
        return (self.channel, self.x, self.y)

    def fuse_key(self):
        return (self.x, self.y)

    def check(self, shape, where):
        if len(shape) == 1:
            if self.x is not None or self.y is not None:
                raise LayerError(
                    f"{where} gives per-image shape {tuple(shape)}, a vector without spatial positions, "
                    f"so neuron(x=..., y=...) cannot pick a position on it; drop x/y to use unit "
                    f"{self.channel}, or pick a convolutional layer (output (C, H, W))"
                )
        elif len(shape) != 3:
            raise LayerError(
                f"{where} gives per-image shape {tuple(shape)}; neuron() needs a (C, H, W) "
                f"convolutional output or a (C,) vector"
            )
        if not 0 <= self.channel < shape[0]:
            raise _unit_range_error("channel", self.channel, shape[0], where)
        if len(shape) == 3:
            h, w = shape[1], shape[2]
            y = h // 2 if self.y is None else self.y
            x = w // 2 if self.x is None else self.x
            if not (0 <= y < h and 0 <= x < w):
                raise TargetError(
                    f"position (y={y}, x={x}) is outside {where}'s {h}x{w} map (valid: y 0..{h - 1}, x 0..{w - 1})"
                )
            self._pos = (y, x)

    def _where(self, x: Tensor) -> tuple:
        if x.dim() == 2:
            return ()
        if self._pos is None:  # not checked: the centre
            return (x.shape[2] // 2 if self.y is None else self.y, x.shape[3] // 2 if self.x is None else self.x)
        return self._pos

    def score(self, x):
        return x[(slice(None), self.channel) + self._where(x)]

    @classmethod
    def score_fused(cls, terms, x, rows):
        ch = torch.tensor([t.channel for t in terms], device=x.device)
        return x[(rows, ch) + terms[0]._where(x)]

    def describe(self):
        pos = "" if self.x is None and self.y is None else f", x={self.x}, y={self.y}"
        return f"neuron({self._layer_text()}, {self.channel}{pos})"


class DeepDream(Term):
    """The mean (``reduce="mean"``) or sum of the squared activations of a layer: every
    feature of the layer amplified at once (Mordvintsev et al., 2015)."""

    def __init__(self, layer: LayerRef, *, reduce: str = "mean") -> None:
        self.layer = _check_layer_ref(layer)
        if reduce not in ("mean", "sum"):
            raise ConfigError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
        self.reduce = reduce

    def params_key(self):
        return (self.reduce,)

    def score(self, x):
        sq = x.reshape(x.shape[0], -1) ** 2
        return sq.mean(dim=1) if self.reduce == "mean" else sq.sum(dim=1)

    def describe(self):
        how = "" if self.reduce == "mean" else f", reduce={self.reduce!r}"
        return f"deep_dream({self._layer_text()}{how})"


class ClassLogit(Term):
    """The model's output ``index`` (a logit for classifiers)."""

    source = "output"

    def __init__(self, index: int) -> None:
        self.index = _check_index(index, "class index")

    def params_key(self):
        return (self.index,)

    def fuse_key(self):
        return ()

    def check(self, shape, where):
        n = math.prod(shape) if shape else 1
        if not 0 <= self.index < n:
            raise _unit_range_error("class", self.index, n, where)

    def score(self, x):
        return x.reshape(x.shape[0], -1)[:, self.index]

    @classmethod
    def score_fused(cls, terms, x, rows):
        idx = torch.tensor([t.index for t in terms], device=x.device)
        return x.reshape(x.shape[0], -1)[rows, idx]

    def describe(self):
        return f"class_logit({self.index})"


class Direction(Term):
    """Dot product of the activation (per position) with ``vector`` (one value per
    channel), averaged over positions. With ``cossim_pow > 0`` each position's dot
    product is multiplied by ``max(cos, 0.1) ** cossim_pow``, favouring activations that
    point along the direction rather than merely large ones (Lucid's direction_neuron)."""

    def __init__(self, layer: LayerRef, vector: Any, *, cossim_pow: float = 0.0) -> None:
        self.layer = _check_layer_ref(layer)
        v = torch.as_tensor(vector, dtype=torch.float32).detach().reshape(-1).clone()
        if v.numel() == 0 or not bool(torch.isfinite(v).all()) or float(v.norm()) == 0.0:
            raise ConfigError("Direction needs a non-zero, finite vector")
        if not _is_scalar(cossim_pow) or cossim_pow < 0:
            raise ConfigError(f"cossim_pow must be a non-negative number, got {cossim_pow!r}")
        self.vector = v
        self.cossim_pow = float(cossim_pow)

    def params_key(self):
        return (tuple(self.vector.tolist()), self.cossim_pow)

    def fuse_key(self):
        return (self.cossim_pow,)

    def check(self, shape, where):
        if len(shape) < 1 or shape[0] != self.vector.numel():
            raise TargetError(
                f"Direction vector has {self.vector.numel()} values but {where} has "
                f"{shape[0] if shape else 0} channels (per-image shape {tuple(shape)}); give one "
                f"value per channel"
            )

    @staticmethod
    def _score(x: Tensor, v: Tensor, p: float) -> Tensor:
        # x (n, C, ...), v (n, C)
        n, c = x.shape[:2]
        a = x.reshape(n, c, -1)
        dot = (a * v.unsqueeze(-1)).sum(dim=1)  # (n, P)
        if p > 0:
            cos = dot / (a.norm(dim=1) * v.norm(dim=1, keepdim=True) + 1e-6)
            dot = dot * cos.clamp(min=0.1) ** p
        return dot.mean(dim=1)

    def score(self, x):
        v = self.vector.to(x.device, x.dtype).expand(x.shape[0], -1)
        return self._score(x, v, self.cossim_pow)

    @classmethod
    def score_fused(cls, terms, x, rows):
        v = torch.stack([t.vector for t in terms]).to(x.device, x.dtype)
        return cls._score(x[rows], v, terms[0].cossim_pow)

    def describe(self):
        pw = f", cossim_pow={self.cossim_pow:g}" if self.cossim_pow else ""
        return f"direction({self._layer_text()}, <{self.vector.numel()}-vector>{pw})"


class Diversity(Term):
    """Minus the mean cosine similarity between this image's Gram matrix at ``layer``
    (channel-by-channel correlations over positions) and those of the other images in
    the batch whose objective also has Diversity at ``layer`` (with one objective per
    image, images without it are left out). In [-1, 1] for non-negative activations;
    zero for a single such image."""

    coupled = True

    def __init__(self, layer: LayerRef) -> None:
        self.layer = _check_layer_ref(layer)

    def score(self, x):
        k = x.shape[0]
        if k < 2:
            return x.reshape(k, -1).sum(dim=1) * 0.0
        a = x.reshape(k, x.shape[1], -1)
        gram = (a @ a.transpose(1, 2)) / a.shape[2]
        g = F.normalize(gram.reshape(k, -1), dim=1)
        sim = g @ g.T
        off = sim.sum(dim=1) - sim.diagonal()
        return -off / (k - 1)

    def describe(self):
        return f"diversity({self._layer_text()})"


class TargetObjective(Term):
    """Any target of the package (:class:`seethrough.Target`) as an objective term: its
    score per image, on its layer's activation (a target with a ``layer``) or on the model
    output (:class:`seethrough.Class`, :class:`seethrough.Custom`, ...).

    The target must be the same for every image (one objective per image gives each image
    its own: ``[from_target(Class(c)) for c in ...]``); ``Predicted()`` is refused (a
    feature visualization has no input to predict on). :func:`from_target` makes these,
    or a fused term (:class:`ChannelObjective`, :class:`NeuronObjective`,
    :class:`ClassLogit`) where one computes the same score.
    """

    def __init__(self, target: _targets.Target) -> None:
        if not isinstance(target, _targets.Target):
            raise ConfigError(f"TargetObjective needs a seethrough Target, got {type(target).__name__}")
        if target.needs_clean_output:
            raise ConfigError(
                f"{target.describe()} depends on the model's prediction on an input, which a feature "
                f"visualization does not have; give the class: Class(c) or class_logit(c)"
            )
        if target.per_sample:
            raise ConfigError(
                f"{target.describe()} holds one value per sample; give one objective per image instead, "
                f"e.g. [from_target(t.take([k])) for k in range(n)]"
            )
        self.target = target
        self.layer = None if target.layer is None else _check_layer_ref(target.layer)
        self.source = "output" if target.layer is None else "layer"

    def bind(self, model: nn.Module) -> None:
        self.target.resolve(model, None, 1)

    def params_key(self):
        return (id(self.target),)

    def check(self, shape, where):
        probe = torch.zeros((1, *shape))
        try:
            s = self.score(probe)
        except TargetError as e:
            raise TargetError(f"{self.describe()} does not fit {where}: {e}") from e
        if not isinstance(s, Tensor) or tuple(s.shape) != (1,):
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise TargetError(f"{self.describe()} must give one score per image on {where}, got {got}")

    def score(self, x):
        samples = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        if self.source == "layer":
            return self.target.score(x, samples, x)
        return self.target.score(x, samples)

    def describe(self):
        return f"from_target({self.target.describe()})"


class _ImageTerm(Term):
    source = "image"

    def check(self, shape, where):
        if len(shape) != 3:
            raise LayerError(f"{type(self).__name__} needs images (C, H, W), got per-image shape {tuple(shape)}")


class _Deviation(_ImageTerm):
    """A deviation of the image from a constant grey level."""

    def __init__(self, constant: float = 0.5) -> None:
        if not _is_scalar(constant):
            raise ConfigError(f"constant must be a number, got {constant!r}")
        self.constant = float(constant)

    def params_key(self):
        return (self.constant,)

    def describe(self):
        return f"{type(self).__name__}({self.constant:g})"


class L1(_Deviation):
    """Mean absolute deviation of the image (in [0, 1]) from ``constant`` (default 0.5; a
    penalty: subtract it)."""

    def score(self, x):
        return (x - self.constant).abs().reshape(x.shape[0], -1).mean(dim=1)


class L2(_Deviation):
    """Root mean square deviation of the image (in [0, 1]) from ``constant`` (default 0.5;
    a penalty: subtract it)."""

    def score(self, x):
        return ((x - self.constant) ** 2).reshape(x.shape[0], -1).mean(dim=1).add(1e-12).sqrt()


class TotalVariation(_ImageTerm):
    """Mean absolute difference between horizontally and vertically neighbouring pixels
    (anisotropic total variation; a penalty: subtract it)."""

    def score(self, x):
        n = x.shape[0]
        dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().reshape(n, -1).mean(dim=1)
        dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().reshape(n, -1).mean(dim=1)
        return dx + dy

    def describe(self):
        return "TotalVariation()"


class BlurPenalty(_ImageTerm):
    """Half the mean squared difference between the image and a 3x3 box-blurred copy
    of it, the copy held constant: its gradient pulls each pixel towards its
    neighbourhood's mean (Lucid's blur_input_each_step; a penalty: subtract it)."""

    def score(self, x):
        with torch.no_grad():
            blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return 0.5 * ((x - blurred) ** 2).reshape(x.shape[0], -1).mean(dim=1)

    def describe(self):
        return "BlurPenalty()"


# ---------------------------------------------------------------------------------------
# factories (Lucid's spelling)
# ---------------------------------------------------------------------------------------
def channel(layer: LayerRef, c: int, *, reduce: str = "mean") -> ChannelObjective:
    """The mean (or sum) over positions of channel ``c`` of ``layer`` (a linear layer: unit ``c``)."""
    return ChannelObjective(layer, c, reduce=reduce)


def neuron(layer: LayerRef, c: int, x: int | None = None, y: int | None = None) -> NeuronObjective:
    """Channel ``c`` of ``layer`` at position ``(y, x)`` (default: the centre); a linear layer: unit ``c``."""
    return NeuronObjective(layer, c, x=x, y=y)


def deep_dream(layer: LayerRef, *, reduce: str = "mean") -> DeepDream:
    """The mean (or sum) of the squared activations of ``layer``."""
    return DeepDream(layer, reduce=reduce)


def class_logit(c: int) -> ClassLogit:
    """The model's output ``c`` (a logit for classifiers)."""
    return ClassLogit(c)


def direction(layer: LayerRef, vector: Any, *, cossim_pow: float = 0.0) -> Direction:
    """The activation of ``layer`` along ``vector`` (one value per channel), averaged over positions."""
    return Direction(layer, vector, cossim_pow=cossim_pow)


def diversity(layer: LayerRef) -> Diversity:
    """Minus the mean Gram-matrix cosine similarity to the batch's other images at ``layer``."""
    return Diversity(layer)


def from_target(target: Any) -> Term:
    """An objective from a target of the package: :class:`seethrough.Channel` ->
    :func:`channel`, :class:`seethrough.Neuron` with a ``(c, y, x)`` index -> :func:`neuron`,
    ``Class(c)`` on the logits -> :func:`class_logit` (these are fused across images);
    any other :class:`seethrough.Target` (a ``(c,)`` neuron, ``Class(c, output="softmax")``,
    ``ClassDifference``, ``Custom``, ...) -> :class:`TargetObjective`, scored by the target
    itself. An objective is returned as it is."""
    if isinstance(target, Term):
        return target
    if not isinstance(target, _targets.Target):
        raise ConfigError(
            f"from_target needs a seethrough Target (Channel, Neuron, Class, Custom, ...), got {type(target).__name__}"
        )
    exact = type(target) in (_targets.Channel, _targets.Neuron, _targets.Class)  # subclasses may score otherwise
    if exact and isinstance(target, _targets.Channel) and target.channel >= 0:
        return ChannelObjective(_check_layer_ref(target.layer), target.channel, reduce=target.reduce)
    if exact and isinstance(target, _targets.Neuron) and len(target.index) == 3 and min(target.index) >= 0:
        c, y, x = target.index
        return NeuronObjective(_check_layer_ref(target.layer), c, x=x, y=y)
    if exact and isinstance(target, _targets.Class) and target.output == "logit" and target.index.numel() == 1:
        index = int(target.index.reshape(-1)[0])
        if index >= 0:
            return ClassLogit(index)
    return TargetObjective(target)


def as_objectives(objective: Any, batch: int | None) -> list[Objective]:
    """One objective per image: a single objective repeated ``batch`` times (default 1)
    or a sequence of objectives (one per image; ``batch``, if given, must match). A
    :class:`seethrough.Target` stands for :func:`from_target` of it."""
    if isinstance(objective, _targets.Target):
        objective = from_target(objective)
    if isinstance(objective, (list, tuple)):
        objective = [from_target(o) if isinstance(o, _targets.Target) else o for o in objective]
    if isinstance(objective, Objective):
        k = 1 if batch is None else batch
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"batch must be a positive int, got {batch!r}")
        return [objective] * k
    if isinstance(objective, (list, tuple)):
        objs = list(objective)
        if not objs:
            raise ConfigError("got an empty list of objectives; give at least one")
        bad = [type(o).__name__ for o in objs if not isinstance(o, Objective)]
        if bad:
            raise ConfigError(
                f"every objective must be an Objective (channel(...), neuron(...), ...) or a Target, got {bad[0]}"
            )
        if batch is not None and batch != len(objs):
            raise ConfigError(
                f"got {len(objs)} objectives (one per image) but batch={batch}; drop batch= or make them agree"
            )
        return objs
    raise ConfigError(
        f"objective must be an Objective (e.g. channel('layer', 3)), a Target or a list of them, got "
        f"{type(objective).__name__}"
    )


# ---------------------------------------------------------------------------------------
# evaluation plan: every image's objective, grouped so that each group is one tensor op
# ---------------------------------------------------------------------------------------
class _Group:
    __slots__ = ("kind", "source", "name", "terms", "rows", "coefs", "all_rows")

    def __init__(self, kind: str, source: str, name: str | None) -> None:
        self.kind = kind  # "fused", "same" or "coupled"
        self.source = source
        self.name = name
        self.terms: list[Term] = []
        self.rows: Any = []
        self.coefs: Any = []
        self.all_rows = False


class _Plan:
    """Evaluates ``objectives[k]`` on image ``k`` for every ``k`` with few tensor ops."""

    def __init__(self, model: nn.Module, objectives: Sequence[Objective]) -> None:
        self.k = len(objectives)
        self.modules: dict[str, nn.Module] = {}
        self.names: dict[int, str] = {}
        groups: dict[tuple, _Group] = {}
        term_cache: dict[int, tuple] = {}
        for row, obj in enumerate(objectives):
            for coef, term in obj._terms():
                tid = id(term)
                if tid not in term_cache:
                    term.bind(model)
                    name = None
                    if term.source == "layer":
                        assert term.layer is not None  # a layer term names its layer
                        name, module = resolve_layer(model, term.layer)
                        self.modules[name] = module
                    fk = term.fuse_key()
                    if term.coupled:
                        key = ("coupled", type(term), name, term.params_key())
                    elif fk is not None:
                        key = ("fused", type(term), name, fk)
                    else:
                        key = ("same", type(term), name, term.params_key())
                    term_cache[tid] = (key, name)
                key, name = term_cache[tid]
                self.names[tid] = name
                g = groups.get(key)
                if g is None:
                    g = groups[key] = _Group(key[0], term.source, name)
                g.terms.append(term)
                g.rows.append(row)
                g.coefs.append(coef)
        for g in groups.values():
            g.all_rows = g.rows == list(range(self.k))
            g.rows = torch.tensor(g.rows, dtype=torch.long)
            g.coefs = torch.tensor(g.coefs, dtype=torch.float32)
        self.groups = list(groups.values())
        self.descriptions = [o.describe() for o in objectives]
        if not self.groups:
            raise ConfigError("the objective has no terms left (e.g. a - a); give something to maximise")
        self.needs_output = any(g.source == "output" for g in self.groups)

    def check(self, shapes: dict[str, tuple[int, ...]], output_shape, image_shape) -> None:
        seen: set[int] = set()
        for g in self.groups:
            for t in g.terms:
                if id(t) in seen:
                    continue
                seen.add(id(t))
                if g.source == "layer":
                    assert g.name is not None  # a layer group names its layer
                    t.check(shapes[g.name], f"layer {g.name!r}")
                elif g.source == "output":
                    t.check(output_shape, "the model output")
                else:
                    t.check(image_shape, "the image")

    def evaluate(self, acts: dict[str, Tensor], output: Tensor | None, image: Tensor) -> Tensor:
        total = None
        for g in self.groups:
            if g.source == "layer":
                assert g.name is not None  # a layer group names its layer
                src: Tensor | None = acts[g.name]
            else:
                src = output if g.source == "output" else image
            assert src is not None  # the output is given when a term needs it (needs_output)
            rows = g.rows.to(src.device)
            if g.kind == "fused":
                vals = type(g.terms[0]).score_fused(g.terms, src, rows)
            elif g.kind == "coupled":
                # coupled only among the images whose objective has the term: the others
                # neither enter its value nor receive its gradient (a row listed twice, by two
                # equal terms of one objective, is one image)
                if g.all_rows:
                    vals = g.terms[0].score(src)
                else:
                    members, where = torch.unique(rows, return_inverse=True)
                    vals = g.terms[0].score(src[members])[where]
            else:
                vals = g.terms[0].score(src if g.all_rows else src[rows])
            vals = vals.float() * g.coefs.to(vals.device)
            if g.all_rows:
                total = vals if total is None else total + vals
            else:
                base = torch.zeros(self.k, device=vals.device) if total is None else total
                total = base.index_add(0, rows, vals)
        assert total is not None
        return total
