"""Redirected ReLU gradients for the first optimisation steps (after Lucid).

A unit whose inputs are all negative on the starting image has a zero gradient through
its ReLU: plain gradient ascent can never wake it up, and its visualization stays gray.
The redirected rule keeps the ordinary ReLU gradient wherever it is not zero; for an
image (batch element) whose gradient through a ReLU is zero everywhere, it passes the
incoming gradient where a descent step would push the ReLU's input up (towards positive)
and blocks it only where the input is already negative and would be pushed further down.

Used through :func:`redirected_relu`, a context manager built on the same torch-function
mechanism as :func:`seethrough._core.hooks.relu_backward_override`, so ``nn.ReLU`` modules
(in place or not) and functional ``F.relu``/``torch.relu`` calls are all covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .._core.hooks import _RELU_INPLACE, _RELU_OUT

__all__ = ["redirected_relu"]


class _RedirectedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, inplace: bool) -> Tensor:
        if inplace:
            out = x.clamp_(min=0)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (out,) = ctx.saved_tensors
        alive = out > 0
        normal = grad * alive.to(grad.dtype)
        if grad.dim() == 0:
            return normal, None
        n = grad.shape[0]
        dead = normal.reshape(n, -1).abs().amax(dim=1) == 0 if normal.numel() else torch.ones(n, dtype=torch.bool)
        if not bool(dead.any()):
            return normal, None
        # descent moves the input by -grad: where it is not alive and grad > 0 it would
        # be pushed further down; block only those
        redirected = grad * (~(~alive & (grad > 0))).to(grad.dtype)
        dead = dead.view((n,) + (1,) * (grad.dim() - 1))
        return torch.where(dead, redirected, normal), None


class _RedirectMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_OUT:
            inplace = bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            return _RedirectedReLU.apply(args[0], inplace)
        if func in _RELU_INPLACE:
            return _RedirectedReLU.apply(args[0], True)
        return func(*args, **kwargs)


@contextmanager
def redirected_relu() -> Iterator[None]:
    """Every ReLU run inside the block gets the redirected backward rule."""
    with _RedirectMode():
        yield
