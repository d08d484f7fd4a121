"""Scoped hooks: activations captured and ReLU backward rules overridden, inside ``with``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["capture_activation", "StopForward", "relu_backward_override"]


class StopForward(Exception):
    """Raised from a hook to end a forward pass once the needed activation is captured."""


@contextmanager
def capture_activation(module: nn.Module, store: dict, *, stop: bool = False, key: str = "act") -> Iterator[dict]:
    """Record ``module``'s output into ``store[key]`` during forward passes.

    With ``stop=True`` the forward pass is cut short right after the module runs by
    raising :class:`StopForward` (the caller catches it), which saves the rest of the
    network's compute when only this activation is needed.
    """

    def hook(_mod, _inp, out):
        if isinstance(out, tuple):
            out = out[0]
        store[key] = out
        if stop:
            raise StopForward

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


class _ModifiedReLU(torch.autograd.Function):
    """ReLU whose backward ignores or keeps the forward mask and clips the gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, guided: bool, inplace: bool) -> Tensor:
        if inplace:
            out = x.clamp_(min=0)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0)
        ctx.guided = guided
        if guided:
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        g = grad.clamp(min=0)
        if ctx.guided:
            # the gradient where the output is positive, else 0: one kernel for the mask and
            # the product (the values of ``g * (out > 0)`` for every finite gradient)
            (out,) = ctx.saved_tensors
            g = torch.ops.aten.threshold_backward(g, out, 0)
        return g, None, None


_RELU_OUT = {F.relu, torch.relu, Tensor.relu}
_RELU_INPLACE = {F.relu_, torch.relu_, Tensor.relu_}
_RELU_ANY = frozenset(_RELU_OUT | _RELU_INPLACE)


def _positive(grad: Tensor) -> Tensor:
    return grad.clamp(min=0)


class _ReLUOverride(TorchFunctionMode):
    def __init__(self, guided: bool) -> None:
        super().__init__()
        self.guided = guided

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # every torch function of the forward pass comes here: anything but a ReLU goes on
        # after one set lookup
        if func not in _RELU_ANY:
            return func(*args, **kwargs) if kwargs else func(*args)
        if self.guided:
            # guided: the native ReLU (its backward keeps the forward mask, the same kernel as
            # ``threshold_backward`` below), with the incoming gradient clipped by a tensor hook
            # first: the values of _ModifiedReLU without a Python autograd Function per call
            out = func(*args, **kwargs) if kwargs else func(*args)
            if isinstance(out, Tensor) and out.requires_grad:
                out.register_hook(_positive)
            return out
        if func in _RELU_INPLACE:
            return _ModifiedReLU.apply(args[0], self.guided, True)
        kwargs = kwargs or {}
        inplace = bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        return _ModifiedReLU.apply(args[0], self.guided, inplace)


@contextmanager
def relu_backward_override(rule: str) -> Iterator[None]:
    """Replace the backward pass of every ReLU run inside the block.

    ``rule="guided"``: gradient passes where both the forward input and the gradient are
    positive (Springenberg et al., guided backpropagation). ``rule="deconv"``: gradient
    passes where it is positive, whatever the forward input (Zeiler and Fergus).

    Works at the level of torch functions, so ``nn.ReLU`` modules (in-place or not),
    a single ReLU module reused several times, and functional ``F.relu``/``torch.relu``
    calls are all covered.
    """
    if rule not in ("guided", "deconv"):
        raise ValueError(f"unknown ReLU rule {rule!r}; use 'guided' or 'deconv'")
    with _ReLUOverride(guided=rule == "guided"):
        yield
