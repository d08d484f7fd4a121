"""One vocabulary of reductions, used wherever a method, metric or plot takes ``reduce=``.

=========  ==========================================
name       value over the reduced dimension(s)
=========  ==========================================
sum        signed sum
mean       signed mean
max        largest value
abs_sum    sum of absolute values
max_abs    largest absolute value
l2         Euclidean norm
none       no reduction: every element is kept (only where a function says so, e.g.
           the complexity metrics, which then count channels as features)
=========  ==========================================

A function accepts the subset that makes sense for it (a channel target: ``mean`` or
``sum``; the positions of an influence slice: ``max`` or ``mean``) and names the others
in its error; no function gives one of these names another meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError, InputError

__all__ = ["REDUCTIONS", "check_reduce", "apply_reduce", "to_heatmap"]

REDUCTIONS: tuple[str, ...] = ("sum", "mean", "max", "abs_sum", "max_abs", "l2")


def check_reduce(how: object, allowed: Sequence[str] = REDUCTIONS, *, what: str = "reduce") -> str:
    """``how`` if it is one of ``allowed``, else a :class:`ConfigError` that lists them."""
    if not isinstance(how, str) or how not in allowed:
        raise ConfigError(f"{what} must be one of {tuple(allowed)}, got {how!r}")
    return how


def apply_reduce(t: Tensor, how: str, dim: int | tuple[int, ...] = 1) -> Tensor:
    """``t`` reduced over ``dim`` by ``how`` (one of :data:`REDUCTIONS`)."""
    check_reduce(how)
    if how == "sum":
        return t.sum(dim=dim)
    if how == "mean":
        return t.mean(dim=dim)
    if how == "max":
        return t.amax(dim=dim)
    if how == "abs_sum":
        return t.abs().sum(dim=dim)
    if how == "max_abs":
        return t.abs().amax(dim=dim)
    return torch.linalg.vector_norm(t, ord=2, dim=dim)


def _as_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        t = x.detach()
    elif isinstance(x, (np.ndarray, list, tuple)):
        t = torch.as_tensor(np.asarray(x))
    else:
        raise InputError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if t.is_complex():
        raise InputError(f"{name} are complex; take .abs() or .real before plotting")
    return t.cpu()


def to_heatmap(attributions: Any, reduce: str = "sum") -> Tensor:
    """Attributions reduced to one value per position, for display.

    ``attributions``: ``(B, C, H, W)``, ``(B, H, W)`` single-channel maps, or ``(B, D)``
    attributions of flat inputs. ``reduce`` combines the channels (``sum``, ``mean``,
    ``max``, ``abs_sum``, ``max_abs`` or ``l2``). Returns a ``(B, H, W)`` float tensor on
    the CPU; ``(B, 1, D)`` for ``(B, D)`` inputs, so the map can be drawn as a strip.
    """
    how = check_reduce(reduce)
    a = _as_tensor(attributions, "attributions")
    if a.dtype != torch.float64:
        a = a.float()
    if a.dim() == 2:  # (B, D): one channel per feature
        a = a.unsqueeze(1).unsqueeze(1)  # (B, 1, 1, D)
    elif a.dim() == 3:  # (B, H, W)
        a = a.unsqueeze(1)
    elif a.dim() != 4:
        raise InputError(
            f"cannot make a heatmap from attributions of shape {tuple(a.shape)}: expected "
            f"(B, C, H, W), (B, 1, H, W), (B, H, W) or (B, D) with a leading batch dimension"
            + ("; for a single sample use x.unsqueeze(0)" if a.dim() < 2 else "")
        )
    if a.shape[0] == 0:
        raise InputError(f"attributions of shape {tuple(a.shape)} hold no samples")
    return apply_reduce(a, how, 1).contiguous()
