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

Outputs beyond class scores:

- sequence outputs ``(B, T, V)`` (language models): :class:`TokenAt` (the log-probability,
  by default, of one token at one position, e.g. the next token after the prompt:
  ``TokenAt(-1, token)``) and :class:`SequenceLogProb` (the teacher-forced log-probability
  of a continuation: position ``t`` predicts token ``t + 1``). On a ``(B, T, V)`` output,
  ``None``/:class:`Predicted` means the predicted next token at the last position,
  ``TokenAt(-1, argmax)`` on the logits; an ``int`` still indexes the flattened output;
- generated outputs such as images ``(B, C, H, W)`` from latent vectors ``(B, Z)``:
  :class:`Region` (the mean or sum of the output over a boolean mask) and
  :class:`Classify` (a target on a classifier's output on the generated image); any other
  scalar function of the output is a :class:`Custom` callable.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

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
    "TokenAt",
    "SequenceLogProb",
    "TokenDifference",
    "Region",
    "Classify",
    "TargetLike",
    "as_target",
    "resolve_target",
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
    def score(self, output: Tensor | None, samples: Tensor, activation: Tensor | None = None) -> Tensor:
        """Scores of shape ``(rows,)``. ``samples[i]`` is the original sample of row ``i``.
        ``output`` is None when the forward pass stopped at the target's ``layer``."""

    def resolve(self, model: nn.Module, output: Tensor | None, n_samples: int) -> Target:
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

    def take(self, idx: Tensor | Sequence[int]) -> Target:
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
        raise TargetError(f"sample {int(i.max())} is out of range for a target with {index.numel()} per-sample indices")
    return index[i]


class Class(Target):
    """The output of class ``index`` (an int, or one index per sample)."""

    def __init__(self, index: int | Sequence[int] | Tensor, *, output: str = "logit") -> None:
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

    def _index_range(self) -> tuple[int, int] | None:
        """The smallest and largest index as Python ints (None for no index), computed once
        per index tensor (and again if it is replaced or written in place): a range check
        per call is then two int comparisons, not a reduction and a device sync."""
        idx = self.index
        cached = self.__dict__.get("_range")
        if cached is None or cached[0] is not idx or cached[1] != idx._version:
            values = idx.reshape(-1)
            if not values.numel():
                span = None
            elif values.numel() <= 256 and values.device.type == "cpu":  # a few ints: no kernel
                ints = values.tolist()
                span = (min(ints), max(ints))
            else:
                span = (int(values.min()), int(values.max()))
            cached = self.__dict__["_range"] = (idx, idx._version, span)
        return cached[2]

    def _check_range(self, flat: Tensor) -> None:
        n = flat.shape[1]
        span = self._index_range()
        if span is not None and (span[0] < 0 or span[1] >= n):
            bad = (self.index < 0) | (self.index >= n)
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
    """The class the model predicts on the clean input (argmax of the output).

    On a sequence output ``(B, T, V)`` it is the token predicted at the last position,
    i.e. ``TokenAt(-1, argmax)`` with this target's ``output`` (logits by default).
    """

    def __init__(self, *, output: str = "logit") -> None:
        if output not in _OUTPUTS:
            raise TargetError(f"output must be one of {_OUTPUTS}, got {output!r}")
        self.output = output

    @property
    def needs_clean_output(self) -> bool:
        return True

    def resolve(self, model, output, n_samples):
        assert output is not None
        if output.dim() == 3:  # (B, T, V): the predicted next token at the last position
            if output.shape[1] == 0 or output.shape[2] == 0:
                raise TargetError(f"cannot predict a token from a sequence output of shape {tuple(output.shape)}")
            return TokenAt(-1, output[:, -1].argmax(dim=-1).cpu(), output=self.output)
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

    def __init__(self, layer: LayerRef, index: int | Sequence[int]) -> None:
        super().__init__(layer)
        self.index = (index,) if isinstance(index, int) else tuple(int(i) for i in index)

    def score(self, output, samples, activation=None):
        if activation is None:
            raise TargetError("Neuron target needs the layer activation")
        shape = tuple(activation.shape[1:])
        if len(self.index) != len(shape) or any(not (-s <= i < s) for i, s in zip(self.index, shape)):
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
            raise TargetError(f"channel {self.channel} is out of range for layer {self.layer_name!r} with {c} channels")
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


# -- sequence outputs (B, T, V) ------------------------------------------------------------


def _per_row(index: Tensor, samples: Tensor) -> Tensor:
    idx = index.to(samples.device)
    if idx.dim() == 0 or idx.numel() == 1:
        return idx.reshape(1).expand(samples.shape[0])
    return idx[samples]


def _check_count(index: Tensor, n_samples: int, what: str) -> None:
    if index.dim() == 1 and index.numel() not in (1, n_samples):
        raise TargetError(
            f"got {index.numel()} {what} for {n_samples} samples; give one int for all samples or exactly one per sample"
        )


def _sequence_output(output: Tensor | None, what: str) -> Tensor:
    if output is None or output.dim() != 3:
        got = "no output" if output is None else f"an output of shape {tuple(output.shape)}"
        raise TargetError(
            f"{what} needs a sequence output (B, T, V): one score per vocabulary entry at each position; the model "
            f"gives {got}"
        )
    return output


class TokenAt(Target):
    """The score of ``token`` at ``position`` of a sequence output ``(B, T, V)``.

    ``position`` may be negative (``-1``: the last position, whose output predicts the token
    after the input); ``position`` and ``token`` are each an int or one per sample. The score
    is the ``output`` transform over the vocabulary at that position: ``"log_softmax"``
    (default, the log-probability), ``"softmax"`` or ``"logit"``.
    """

    def __init__(
        self,
        position: int | Sequence[int] | Tensor,
        token: int | Sequence[int] | Tensor,
        *,
        output: str = "log_softmax",
    ) -> None:
        if output not in _OUTPUTS:
            raise TargetError(f"output must be one of {_OUTPUTS}, got {output!r}")
        self.position = _index_tensor(position, "TokenAt position")
        self.token = _index_tensor(token, "TokenAt token")
        self.output = output

    def resolve(self, model, output, n_samples):
        _check_count(self.position, n_samples, "positions")
        _check_count(self.token, n_samples, "tokens")
        return self

    @property
    def per_sample(self) -> bool:
        return any(t.dim() == 1 and t.numel() > 1 for t in (self.position, self.token))

    def take(self, idx):
        if not self.per_sample:
            return self
        return TokenAt(_take_index(self.position, idx), _take_index(self.token, idx), output=self.output)

    def score(self, output, samples, activation=None):
        out = _sequence_output(output, "TokenAt")
        T, V = out.shape[1], out.shape[2]
        pos = _per_row(self.position, samples).to(out.device)
        bad = (pos < -T) | (pos >= T)
        if bool(bad.any()):
            raise TargetError(
                f"position {pos[bad].tolist()[0]} is out of range for a sequence output of length {T} "
                f"(valid: {-T}..{T - 1})"
            )
        tok = _per_row(self.token, samples).to(out.device)
        bad = (tok < 0) | (tok >= V)
        if bool(bad.any()):
            raise TargetError(
                f"token {tok[bad].tolist()[0]} is out of range for a sequence output with a vocabulary of {V} "
                f"(valid: 0..{V - 1})"
            )
        rows = torch.arange(out.shape[0], device=out.device)
        at = _transform(out[rows, pos % T], self.output)  # (rows, V)
        return at[rows, tok]

    def describe(self):
        suffix = "" if self.output == "log_softmax" else f", output={self.output!r}"
        return f"TokenAt({self.position.tolist()}, {self.token.tolist()}{suffix})"


class SequenceLogProb(Target):
    """Teacher-forced log-probability of a continuation, from a sequence output ``(B, T, V)``.

    ``tokens``: the continuation, ``(L,)`` for every sample or ``(B, L)`` one per sample.
    ``start``: the position of ``tokens[0]`` in the input sequence (negative counts from the
    end); the output at position ``t`` predicts the token at ``t + 1``, so the score is
    ``sum_j log_softmax(output[:, start + j - 1])[tokens[j]]``. The default ``start = T - L``
    is a continuation that ends the input (the model was run on prompt + continuation);
    ``start = T - L + 1`` scores a continuation whose last token is not in the input. A
    continuation starting at position 0 has no prediction and is refused. ``reduce``:
    ``"sum"`` (the log-probability, default) or ``"mean"`` (per token).
    """

    def __init__(
        self, tokens: Sequence[int] | Sequence[Sequence[int]] | Tensor, *, start: int | None = None, reduce: str = "sum"
    ) -> None:
        from .reduce import check_reduce

        t = torch.as_tensor(tokens)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TargetError(f"SequenceLogProb tokens must be integer token ids, got dtype {t.dtype}")
        if t.dim() == 0:
            t = t.reshape(1)
        if t.dim() not in (1, 2) or t.shape[-1] == 0:
            raise TargetError(
                f"SequenceLogProb tokens must have shape (L,) or (B, L) with L >= 1, got {tuple(t.shape)}"
            )
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise TargetError(f"start must be an int position (or None), got {start!r}")
        self.tokens = t.long()
        self.start = start
        self.reduce = check_reduce(reduce, ("sum", "mean"), what="SequenceLogProb reduce")

    def resolve(self, model, output, n_samples):
        if self.tokens.dim() == 2 and self.tokens.shape[0] not in (1, n_samples):
            raise TargetError(
                f"got continuations for {self.tokens.shape[0]} samples for {n_samples} samples; give one (L,) "
                f"continuation for all samples or exactly one row per sample"
            )
        return self

    @property
    def per_sample(self) -> bool:
        return self.tokens.dim() == 2 and self.tokens.shape[0] > 1

    def take(self, idx):
        if not self.per_sample:
            return self
        i = torch.as_tensor(idx, dtype=torch.long).reshape(-1).cpu()
        if i.numel() and (int(i.max()) >= self.tokens.shape[0] or int(i.min()) < -self.tokens.shape[0]):
            raise TargetError(
                f"sample {int(i.max())} is out of range for a target with {self.tokens.shape[0]} continuations"
            )
        return SequenceLogProb(self.tokens[i], start=self.start, reduce=self.reduce)

    def span(self, length: int) -> int:
        """The position of the first continuation token in a sequence of ``length``."""
        L = self.tokens.shape[-1]
        s = length - L if self.start is None else (self.start + length if self.start < 0 else self.start)
        if s < 1 or s + L - 1 > length:
            where = "the default start (T - L)" if self.start is None else f"start={self.start}"
            raise TargetError(
                f"a continuation of {L} tokens at {where} does not fit a sequence output of length {length}: its "
                f"tokens are predicted at positions {s - 1}..{s + L - 2}, which must lie in 0..{length - 1} (position "
                f"t predicts token t + 1)"
            )
        return s

    def score(self, output, samples, activation=None):
        out = _sequence_output(output, "SequenceLogProb")
        T, V = out.shape[1], out.shape[2]
        L = self.tokens.shape[-1]
        s = self.span(T)
        tokens = self.tokens.to(out.device)
        bad = (tokens < 0) | (tokens >= V)
        if bool(bad.any()):
            raise TargetError(
                f"token {tokens[bad].tolist()[0]} is out of range for a sequence output with a vocabulary of {V} "
                f"(valid: 0..{V - 1})"
            )
        tok = (
            tokens.reshape(1, L).expand(out.shape[0], L)
            if tokens.dim() == 1 or tokens.shape[0] == 1
            else (tokens[samples])
        )
        logp = out[:, s - 1 : s - 1 + L].log_softmax(dim=-1)  # (rows, L, V)
        picked = logp.gather(2, tok.unsqueeze(2)).squeeze(2)
        return picked.sum(dim=1) if self.reduce == "sum" else picked.mean(dim=1)

    def describe(self):
        toks = self.tokens.tolist()
        start = "" if self.start is None else f", start={self.start}"
        red = "" if self.reduce == "sum" else f", reduce={self.reduce!r}"
        return f"SequenceLogProb({toks}{start}{red})"


class TokenDifference(Target):
    """Contrastive target on a sequence output ``(B, T, V)``: ``score(a) - score(b)`` at one
    ``position``, why token ``a`` rather than the foil ``b`` (Yin and Neubig, 2022). With the
    default ``output="log_softmax"`` it is ``log p(a) - log p(b)``, which equals the logit
    difference (the normaliser cancels). ``position``, ``a`` and ``b``: an int or one per sample.
    """

    def __init__(
        self,
        position: int | Sequence[int] | Tensor,
        a: int | Sequence[int] | Tensor,
        b: int | Sequence[int] | Tensor,
        *,
        output: str = "log_softmax",
    ) -> None:
        self.a = TokenAt(position, a, output=output)
        self.b = TokenAt(position, b, output=output)
        self.output = output

    @property
    def position(self) -> Tensor:
        return self.a.position

    def resolve(self, model, output, n_samples):
        self.a.resolve(model, output, n_samples)
        self.b.resolve(model, output, n_samples)
        return self

    @property
    def per_sample(self) -> bool:
        return self.a.per_sample or self.b.per_sample

    def take(self, idx):
        if not self.per_sample:
            return self
        a, b = self.a.take(idx), self.b.take(idx)
        assert isinstance(a, TokenAt) and isinstance(b, TokenAt)
        return TokenDifference(a.position, a.token, b.token, output=self.output)

    def score(self, output, samples, activation=None):
        return self.a.score(output, samples) - self.b.score(output, samples)

    def describe(self):
        suffix = "" if self.output == "log_softmax" else f", output={self.output!r}"
        return f"TokenDifference({self.a.position.tolist()}, {self.a.token.tolist()}, {self.b.token.tolist()}{suffix})"


# -- generated outputs ------------------------------------------------------------------------


class Region(Target):
    """The mean (or sum) of the model output over a boolean ``mask``: for a generator
    ``z (B, Z) -> image (B, C, H, W)``, how bright a region of the generated image is.

    ``mask`` is broadcast against one sample's output (``(H, W)`` covers every channel, ``(C,
    H, W)`` picks channels too); with ``per_sample=True`` its first dimension is the batch,
    one mask per sample. ``reduce``: ``"mean"`` (default) or ``"sum"`` (the core
    :mod:`~seethrough._core.reduce` vocabulary).
    """

    def __init__(self, mask: Tensor, *, reduce: str = "mean", per_sample: bool = False) -> None:
        from .reduce import check_reduce

        m = torch.as_tensor(mask)
        if m.dtype != torch.bool:
            raise TargetError(f"Region mask must be a boolean tensor, got dtype {m.dtype}; use e.g. mask > 0.5")
        if per_sample and m.dim() < 1:
            raise TargetError("a per-sample Region mask needs a leading batch dimension")
        self.mask = m.detach()
        self.reduce = check_reduce(reduce, ("mean", "sum"), what="Region reduce")
        self._per_sample = bool(per_sample)

    def resolve(self, model, output, n_samples):
        if self._per_sample and self.mask.shape[0] not in (1, n_samples):
            raise TargetError(f"got {self.mask.shape[0]} per-sample Region masks for {n_samples} samples")
        return self

    @property
    def per_sample(self) -> bool:
        return self._per_sample and self.mask.shape[0] > 1

    def take(self, idx):
        if not self.per_sample:
            return self
        i = torch.as_tensor(idx, dtype=torch.long).reshape(-1).cpu()
        return Region(self.mask[i], reduce=self.reduce, per_sample=True)

    def score(self, output, samples, activation=None):
        if output is None or output.dim() < 2:
            got = "no output" if output is None else f"shape {tuple(output.shape)}"
            raise TargetError(f"Region needs a model output with a batch dimension and per-sample values; got {got}")
        sample_shape = tuple(output.shape[1:])
        m = self.mask.to(output.device)
        if not self._per_sample:
            m = m.unsqueeze(0)
        per = tuple(m.shape[1:])  # one sample's mask, aligned to the output's trailing dims
        try:
            if len(per) > len(sample_shape):
                raise RuntimeError("the mask has more dimensions than a sample")
            m = torch.broadcast_to(
                m.reshape((m.shape[0],) + (1,) * (len(sample_shape) - len(per)) + per), (m.shape[0],) + sample_shape
            )
        except RuntimeError as e:
            raise TargetError(
                f"a Region mask of per-sample shape {per} does not fit the model output's per-sample shape "
                f"{sample_shape}; give a mask broadcastable to it (e.g. (H, W) for images (C, H, W))"
            ) from e
        m = m[samples] if m.shape[0] > 1 else m.expand((output.shape[0],) + sample_shape)
        mf = m.to(output.dtype).reshape(output.shape[0], -1)
        total = (output.reshape(output.shape[0], -1) * mf).sum(dim=1)
        if self.reduce == "sum":
            return total
        count = mf.sum(dim=1)
        if bool((count == 0).any()):
            raise TargetError("the Region mask selects no element of the output; its mean is undefined")
        return total / count

    def describe(self):
        kind = "per-sample mask" if self._per_sample else "mask"
        return f"Region({kind}{tuple(self.mask.shape)} with {int(self.mask.sum())} on, reduce={self.reduce!r})"


class Classify(Target):
    """A target on ``classifier``'s output on the model output: for a generator, e.g.
    ``Classify(classifier, 3)`` is the classifier's logit of class 3 on the generated image.

    ``target`` takes every form a method's ``target=`` does on the classifier's output
    (``None``: the class it predicts on the clean generated output). The classifier runs in
    eval mode with frozen parameters, restored afterwards, like the explained model.
    """

    def __init__(self, classifier: nn.Module, target: Any = None) -> None:
        if not isinstance(classifier, nn.Module):
            raise TargetError(f"Classify needs a torch.nn.Module classifier, got {type(classifier).__name__}")
        self.classifier = classifier
        self.target = as_target(target)
        if self.target.layer is not None:
            raise TargetError("Classify takes a target on the classifier's output, not on one of its layers")

    def _classify(self, generated: Tensor) -> Tensor:
        from .call import call_model
        from .state import model_guard

        with model_guard(self.classifier, method="Classify target"):
            return call_model(self.classifier, generated)

    @property
    def needs_clean_output(self) -> bool:
        return self.target.needs_clean_output

    def resolve(self, model, output, n_samples):
        clean = None
        if self.target.needs_clean_output:
            if output is None:  # pragma: no cover - the method computes it
                raise TargetError("Classify needs the clean output to resolve its target")
            with torch.no_grad():
                clean = self._classify(output)
        return Classify(self.classifier, self.target.resolve(self.classifier, clean, n_samples))

    @property
    def per_sample(self) -> bool:
        return self.target.per_sample

    def take(self, idx):
        return Classify(self.classifier, self.target.take(idx)) if self.per_sample else self

    def score(self, output, samples, activation=None):
        if output is None:
            raise TargetError("Classify needs the model output")
        return self.target.score(self._classify(output), samples)

    def describe(self):
        return f"Classify({type(self.classifier).__name__}, {self.target.describe()})"


TargetLike = None | int | Sequence[int] | Tensor | Target | Callable[..., Tensor]


def as_target(target: TargetLike) -> Target:
    """Normalise every accepted target form to a :class:`Target`."""
    if target is None:
        return Predicted()
    if isinstance(target, Target):
        return target
    if isinstance(target, bool):
        raise TargetError("a target cannot be a bool; give a class index")
    if isinstance(target, (int, Tensor, list, tuple)):
        return Class(target)
    if type(target).__module__ == "numpy":  # an array or a numpy integer
        return Class(torch.as_tensor(target))
    if callable(target):
        return Custom(target)
    raise TargetError(
        f"cannot use {type(target).__name__} as a target; give an int, one index per sample, "
        f"a seethrough Target (Class, ClassDifference, Neuron, Channel, TokenAt, SequenceLogProb, TokenDifference, Region, "
        f"Classify) or a callable"
    )


def resolve_target(model: nn.Module, x: Tensor, target: Target) -> tuple[Target, int]:
    """``target`` bound to ``model`` and the batch ``x`` (:meth:`Target.resolve`), and the
    number of rows the model evaluated for it: the clean output is computed (without
    gradients, on a copy of ``x``) only for a target that needs it (``None``: the predicted
    class), else 0. Run it inside :func:`~seethrough.model_guard`."""
    clean = None
    n_clean = 0
    if target.needs_clean_output:
        from .call import call_model

        with torch.no_grad():
            clean = call_model(model, x.clone())
        n_clean = int(x.shape[0])
    return target.resolve(model, clean, x.shape[0]), n_clean


class PredictedInPass(Target):
    """:class:`Predicted` read from the output of the pass being differentiated, for a method
    whose rows are the clean inputs themselves (a single-pass input method such as Saliency):
    that forward pass is the clean pass, so the predicted class of each row is taken from its
    output (the argmax, as :meth:`Predicted.resolve` does) before the row is scored, and no
    extra clean forward pass is run. :meth:`resolved` then gives the target
    :func:`resolve_target` would have given (``Class`` of the argmax, ``Class(0)`` for one
    output, ``TokenAt(-1, argmax)`` for a sequence output)."""

    def __init__(self, predicted: Predicted, n_samples: int) -> None:
        self.predicted = predicted
        self.n_samples = n_samples
        self._index: Tensor | None = None  # the predicted index of each sample
        self._kind: Target | None = None  # the last chunk's resolved target (its kind)

    def score(self, output, samples, activation=None):
        if output is None:  # pragma: no cover - a Predicted target has no layer
            raise TargetError("Predicted() needs the model output")
        chunk = self.predicted.resolve(None, output.detach(), output.shape[0])
        idx = chunk.token if isinstance(chunk, TokenAt) else chunk.index
        if idx.dim() == 1 and idx.numel() == samples.shape[0]:
            if self._index is None:
                self._index = torch.zeros(self.n_samples, dtype=torch.long)
            self._index[samples.cpu()] = idx
        self._kind = chunk
        return chunk.score(output, torch.arange(output.shape[0], device=samples.device), activation)

    def resolved(self) -> Target:
        """The target on the whole batch, once every sample has been scored."""
        kind = self._kind
        if kind is None:
            raise TargetError("Predicted() was not scored on any row")  # pragma: no cover
        if isinstance(kind, TokenAt):
            return TokenAt(-1, self._index, output=kind.output)  # type: ignore[arg-type]
        if self._index is None:  # one output: Class(0)
            return kind
        return Class(self._index, output=kind.output)  # type: ignore[attr-defined]

    def describe(self):
        return "Predicted()"
