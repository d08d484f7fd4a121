"""Targets: the scalar quantity of interest that an explanation explains, per sample.

A target turns the model output (and, for internal targets, one layer's activation)
into one score per row. Rows are the (possibly expanded: interpolation steps, noise
samples) inputs actually fed to the model; ``samples`` maps each row to the index of the
original sample it comes from, so per-sample targets follow their sample.

Accepted forms wherever a method takes ``target=``:

- ``None``: the predicted class of each sample (argmax of the output on the clean input),
  or the single output of a model with one output per sample;
- an ``int``: that output index for every sample; a sequence or 1-D tensor: one per sample;
- a :class:`Target` instance, such as :class:`ClassDifference`, :class:`Neuron`,
  :class:`Channel`;
- any other callable ``fn(output) -> Tensor[rows]``, wrapped in :class:`Custom`.

Scores are taken on the logits (pre-softmax) by default; ``Class(c, output="softmax")``
or ``"log_softmax"`` explains the probability instead.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence, Union

import torch
from torch import Tensor, nn

from .errors import TargetError
from .layers import LayerRef, resolve_layer

__all__ = [
    "Target",
    "Class",
    "ClassDifference",
    "Neuron",
    "Channel",
    "Custom",
    "Predicted",
    "TargetLike",
    "as_target",
]

_OUTPUTS = ("logit", "softmax", "log_softmax")


def _transform(output: Tensor, how: str) -> Tensor:
    if how == "logit":
        return output
    if how == "softmax":
        return output.softmax(dim=1)
    return output.log_softmax(dim=1)


def _flat(output: Tensor) -> Tensor:
    if output.dim() == 1:
        return output.unsqueeze(1)
    return output.reshape(output.shape[0], -1)


def _index_tensor(index: Any, name: str) -> Tensor:
    t = torch.as_tensor(index)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TargetError(f"{name} must be integer class indices, got dtype {t.dtype}")
    return t.long().reshape(-1) if t.dim() else t.long()


class Target(ABC):
    """One score per row, to be explained. Subclasses implement :meth:`score`."""

    #: Layer whose activation the target needs, or None for targets on the model output.
    layer: LayerRef | None = None

    @abstractmethod
    def score(self, output: Tensor, samples: Tensor, activation: Tensor | None = None) -> Tensor:
        """Scores of shape ``(rows,)``. ``samples[i]`` is the original sample of row ``i``."""

    def resolve(self, model: nn.Module, output: Tensor | None, n_samples: int) -> "Target":
        """Bind to a concrete model and batch; validate. ``output`` is the clean output."""
        return self

    @property
    def needs_clean_output(self) -> bool:
        return False

    @property
    def per_sample(self) -> bool:
        """Whether the target holds one value per sample (e.g. one class index each), so
        that a subset of the samples needs :meth:`take`."""
        return False

    def take(self, idx: Tensor | Sequence[int]) -> "Target":
        """The target for the samples ``idx`` of the batch it was made for (itself when it
        is the same for every sample)."""
        return self

    def describe(self) -> str:
        return repr(self)

    def to_json(self) -> Any:
        return self.describe()


def _take_index(index: Tensor, idx: Tensor | Sequence[int]) -> Tensor:
    if index.dim() == 0 or index.numel() == 1:
        return index
    i = torch.as_tensor(idx, dtype=torch.long).reshape(-1).cpu()
    if i.numel() and (int(i.max()) >= index.numel() or int(i.min()) < -index.numel()):
        raise TargetError(
            f"sample {int(i.max())} is out of range for a target with {index.numel()} per-sample indices"
        )
    return index[i]


class Class(Target):
    """The output of class ``index`` (an int, or one index per sample)."""

    def __init__(self, index: Union[int, Sequence[int], Tensor], *, output: str = "logit") -> None:
        if output not in _OUTPUTS:
            raise TargetError(f"output must be one of {_OUTPUTS}, got {output!r}")
        self.index = _index_tensor(index, "Class index")
        self.output = output

    def resolve(self, model, output, n_samples):
        if self.index.dim() == 1 and self.index.numel() not in (1, n_samples):
            raise TargetError(
                f"got {self.index.numel()} target indices for {n_samples} samples; give one "
                f"int for all samples or exactly one index per sample"
            )
        return self

    def _check_range(self, flat: Tensor) -> None:
        n = flat.shape[1]
        bad = (self.index < 0) | (self.index >= n)
        if bool(bad.any()):
            raise TargetError(
                f"target class {self.index[bad].tolist()[0]} is out of range for a model output "
                f"with {n} classes (valid: 0..{n - 1})"
            )

    @property
    def per_sample(self) -> bool:
        return self.index.dim() == 1 and self.index.numel() > 1

    def take(self, idx):
        return Class(_take_index(self.index, idx), output=self.output) if self.per_sample else self

    def per_row(self, samples: Tensor) -> Tensor:
        idx = self.index.to(samples.device)
        if idx.dim() == 0 or idx.numel() == 1:
            return idx.reshape(1).expand(samples.shape[0])
        return idx[samples]

    def score(self, output, samples, activation=None):
        flat = _flat(_transform(output, self.output) if output.dim() > 1 else output)
        self._check_range(flat)
        rows = torch.arange(flat.shape[0], device=flat.device)
        return flat[rows, self.per_row(samples).to(flat.device)]

    def describe(self):
        idx = self.index.tolist()
        suffix = "" if self.output == "logit" else f", output={self.output!r}"
        return f"Class({idx}{suffix})"


class Predicted(Target):
    """The class the model predicts on the clean input (argmax of the output)."""

    def __init__(self, *, output: str = "logit") -> None:
        self.output = output

    @property
    def needs_clean_output(self) -> bool:
        return True

    def resolve(self, model, output, n_samples):
        assert output is not None
        flat = _flat(output)
        if flat.shape[1] == 1:
            return Class(0, output="logit")
        return Class(flat.argmax(dim=1).cpu(), output=self.output)

    def score(self, output, samples, activation=None):  # pragma: no cover - resolved first
        raise TargetError("Predicted() must be resolved against the clean output first")

    def describe(self):
        return "Predicted()"


class ClassDifference(Target):
    """Comparative target ``score[a] - score[b]``: why ``a`` rather than ``b``."""

    def __init__(self, a, b, *, output: str = "logit") -> None:
        self.a = Class(a, output=output)
        self.b = Class(b, output=output)
        self.output = output

    @property
    def per_sample(self) -> bool:
        return self.a.per_sample or self.b.per_sample

    def take(self, idx):
        if not self.per_sample:
            return self
        return ClassDifference(self.a.take(idx).index, self.b.take(idx).index, output=self.output)

    def resolve(self, model, output, n_samples):
        self.a.resolve(model, output, n_samples)
        self.b.resolve(model, output, n_samples)
        return self

    def score(self, output, samples, activation=None):
        return self.a.score(output, samples) - self.b.score(output, samples)

    def describe(self):
        return f"ClassDifference({self.a.index.tolist()}, {self.b.index.tolist()})"


class _LayerTarget(Target):
    def __init__(self, layer: LayerRef) -> None:
        self.layer = layer
        self.layer_name: str | None = layer if isinstance(layer, str) else None

    def resolve(self, model, output, n_samples):
        self.layer_name, _ = resolve_layer(model, self.layer)
        return self


class Neuron(_LayerTarget):
    """One unit of a layer's output, indexed without the batch dimension.

    ``Neuron("features.3", (5, 2, 2))`` is channel 5 at row 2, column 2 of that layer.
    """

    def __init__(self, layer: LayerRef, index: Union[int, Sequence[int]]) -> None:
        super().__init__(layer)
        self.index = (index,) if isinstance(index, int) else tuple(int(i) for i in index)

    def score(self, output, samples, activation=None):
        if activation is None:
            raise TargetError("Neuron target needs the layer activation")
        shape = tuple(activation.shape[1:])
        if len(self.index) != len(shape) or any(
            not (-s <= i < s) for i, s in zip(self.index, shape)
        ):
            raise TargetError(
                f"neuron index {self.index} does not fit layer {self.layer_name!r} whose "
                f"output has per-sample shape {shape}"
            )
        return activation[(slice(None),) + self.index]

    def describe(self):
        return f"Neuron({self.layer_name!r}, {self.index})"


class Channel(_LayerTarget):
    """The mean (or sum) over positions of one channel of a layer's output."""

    def __init__(self, layer: LayerRef, channel: int, *, reduce: str = "mean") -> None:
        super().__init__(layer)
        if reduce not in ("mean", "sum"):
            raise TargetError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
        self.channel = int(channel)
        self.reduce = reduce

    def score(self, output, samples, activation=None):
        if activation is None or activation.dim() < 2:
            raise TargetError(
                f"Channel target needs a layer output with a channel dimension; layer "
                f"{self.layer_name!r} gives shape {None if activation is None else tuple(activation.shape)}"
            )
        c = activation.shape[1]
        if not -c <= self.channel < c:
            raise TargetError(
                f"channel {self.channel} is out of range for layer {self.layer_name!r} with {c} channels"
            )
        x = activation[:, self.channel].reshape(activation.shape[0], -1)
        return x.mean(dim=1) if self.reduce == "mean" else x.sum(dim=1)

    def describe(self):
        return f"Channel({self.layer_name!r}, {self.channel}, reduce={self.reduce!r})"


class Custom(Target):
    """A callable ``fn(output) -> Tensor[rows]`` (or ``fn(output, samples)``)."""

    def __init__(self, fn: Callable[..., Tensor], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom")
        try:
            params = inspect.signature(fn).parameters.values()
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            self._takes_samples = len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
        except (TypeError, ValueError):
            self._takes_samples = False

    @property
    def per_sample(self) -> bool:
        return self._takes_samples

    def take(self, idx):
        if not self._takes_samples:
            return self
        sub = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        fn = self.fn
        return Custom(lambda output, samples: fn(output, sub.to(samples.device)[samples]), name=self.name)

    def score(self, output, samples, activation=None):
        s = self.fn(output, samples) if self._takes_samples else self.fn(output)
        if not isinstance(s, Tensor) or s.dim() != 1 or s.shape[0] != output.shape[0]:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise TargetError(
                f"custom target {self.name!r} must return one score per row, a tensor of "
                f"shape ({output.shape[0]},); it returned {got}"
            )
        return s

    def describe(self):
        return f"Custom({self.name})"


TargetLike = Union[None, int, Sequence[int], Tensor, Target, Callable[..., Tensor]]


def as_target(target: TargetLike) -> Target:
    """Normalise every accepted target form to a :class:`Target`."""
    if target is None:
        return Predicted()
    if isinstance(target, Target):
        return target
    if isinstance(target, bool):
        raise TargetError("a target cannot be a bool; give a class index")
    if isinstance(target, (int, Tensor, list, tuple)) or type(target).__module__ == "numpy":
        return Class(target)
    if callable(target):
        return Custom(target)
    raise TargetError(
        f"cannot use {type(target).__name__} as a target; give an int, one index per sample, "
        f"a seethrough Target (Class, ClassDifference, Neuron, Channel) or a callable"
    )
