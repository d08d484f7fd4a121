"""Helpers shared by the influence modules: neurons of a slice, labels and class
selection, slice activations without gradients, and masking neurons in a forward hook.

Capture, streaming, chunk sizing, reductions and per-sample targets are core services
(:mod:`seethrough._core.capture`, :mod:`seethrough._core.reduce`,
:meth:`~seethrough.Target.take`); only what is specific to influence lives here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.capture import collect_activations
from .._core.errors import InputError, LayerError
from .._core.reduce import apply_reduce, check_reduce
from .._core.targets import Class, ClassDifference

__all__ = [
    "POSITION_REDUCTIONS",
    "check_position_reduce",
    "neuron_values",
    "neuron_kind",
    "check_labels",
    "class_of_target",
    "select_class",
    "slice_activations",
    "mask_neurons",
]

#: How the influence of a channel is reduced over its positions (names of the core ``reduce=`` vocabulary).
POSITION_REDUCTIONS = ("max", "mean")


def check_position_reduce(how: object) -> str:
    """``how`` if it is ``"max"`` or ``"mean"``, else a :class:`ConfigError` naming both."""
    return check_reduce(how, allowed=POSITION_REDUCTIONS, what="reduce")


def neuron_kind(slice_shape: tuple[int, ...]) -> str:
    """``"channel"`` for slices with positions (conv maps), ``"unit"`` for flat ones."""
    return "channel" if len(slice_shape) >= 2 else "unit"


def neuron_values(maps: Tensor, reduce: str) -> Tensor:
    """``(B, n_neurons)`` from per-instance maps ``(B, *slice_shape)``.

    Dimension 1 is the neuron (channel) dimension; the remaining dimensions are positions,
    reduced by ``max`` or ``mean``. A flat slice ``(B, D)`` has one neuron per unit.
    """
    if maps.dim() == 1:
        return maps.unsqueeze(1)
    if maps.dim() == 2:
        return maps
    return apply_reduce(maps.reshape(maps.shape[0], maps.shape[1], -1), check_position_reduce(reduce), dim=2)


def check_labels(labels: object, n: int) -> Tensor:
    """Labels as a 1-D int64 CPU tensor of length ``n``."""
    t = torch.as_tensor(labels)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise InputError(f"labels must be integer class indices, got dtype {t.dtype}; use labels.long()")
    t = t.reshape(-1).long().cpu()
    if t.numel() != n:
        raise InputError(f"got {t.numel()} labels for {n} inputs; give exactly one label per input")
    return t


def class_of_target(target: object) -> int | None:
    """The single class a target is about (``c`` for ``Class(c)``, ``a`` for
    ``ClassDifference(a, b)``), or None when there is no single one."""
    if isinstance(target, bool):
        return None
    if isinstance(target, int):
        return int(target)
    if isinstance(target, ClassDifference):
        target = target.a
    if isinstance(target, Class) and target.index.numel() == 1:
        return int(target.index.reshape(-1)[0])
    return None


def select_class(labels: Tensor, cls: int, *, what: str = "inputs") -> Tensor:
    """Indices of the instances labelled ``cls``; a clear error when there are none."""
    idx = (labels == int(cls)).nonzero().flatten()
    if idx.numel() == 0:
        present = sorted(set(labels.tolist()))
        shown = present[:20]
        more = "" if len(present) <= 20 else f" and {len(present) - 20} more"
        raise InputError(
            f"class {cls} has no instances among the {labels.numel()} labelled {what} (classes present: "
            f"{shown}{more}); pick a class that occurs in the data, or pass data that contains it"
        )
    return idx


def slice_activations(model: nn.Module, name: str, module: nn.Module, x: Tensor, batching: Batching) -> Tensor:
    """The slice's output for every input, without gradients, on the inputs' device (the
    core :func:`~seethrough._core.capture.collect_activations`: chunked, each pass stopped
    once the slice has run). A slice that does not run raises :class:`LayerError`."""
    return collect_activations(model, {name: module}, x, batching=batching, device=None)[name]


@contextmanager
def mask_neurons(module: nn.Module, masks: Tensor, calls: list[int] | None = None) -> Iterator[None]:
    """Multiply ``module``'s output by 0/1 neuron masks in a forward hook.

    ``masks`` is ``(M, n_neurons)``; a channel's mask value covers all its positions. The
    output of a batch of ``B`` rows is replaced by ``M * B`` rows, mask-major (rows
    ``m * B`` to ``m * B + B - 1`` carry mask ``m``), so that one pass through the layers
    before the slice serves every mask. ``calls[0]`` counts the hook's calls.
    """

    def hook(_mod, _inp, out):
        if calls is not None:
            calls[0] += 1
        if isinstance(out, (tuple, list)):
            raise LayerError(
                f"layer {type(_mod).__name__} returns a {type(out).__name__}; mask a layer that returns a tensor"
            )
        m = masks.to(device=out.device, dtype=out.dtype)
        if out.dim() < 2 or out.shape[1] != m.shape[1]:
            raise LayerError(f"masks over {m.shape[1]} neurons do not fit the layer output of shape {tuple(out.shape)}")
        shape = (m.shape[0], 1, m.shape[1]) + (1,) * (out.dim() - 2)
        masked = out.unsqueeze(0) * m.reshape(shape)
        return masked.reshape((m.shape[0] * out.shape[0],) + tuple(out.shape[1:]))

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
