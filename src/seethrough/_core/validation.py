"""Input checks shared by every method."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import InputError

__all__ = ["check_inputs", "model_device"]


def model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return None


def check_inputs(model: nn.Module, inputs: object, *, name: str = "inputs") -> Tensor:
    """Validate a batch of inputs: a floating tensor with a batch dimension, finite,
    on the model's device. Returns it detached; the methods run the model on copies, so
    the caller's tensor is never modified."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"seethrough explains torch.nn.Module models, not {type(model).__name__}")
    if not isinstance(inputs, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor with a leading batch dimension, got "
            f"{type(inputs).__name__}; convert with torch.as_tensor(...)"
        )
    if not inputs.dtype.is_floating_point:
        raise InputError(
            f"{name} have dtype {inputs.dtype}; gradient and perturbation attributions need "
            f"floating-point inputs (use inputs.float(); for token ids attribute at the "
            f"embedding layer instead)"
        )
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise InputError(
            f"{name} must have a leading batch dimension with at least one sample, got shape "
            f"{tuple(inputs.shape)}; for a single sample use x.unsqueeze(0)"
        )
    dev = model_device(model)
    if dev is not None and inputs.device != dev:
        raise InputError(
            f"{name} are on {inputs.device} but the model is on {dev}; move them with "
            f"inputs.to({str(dev)!r})"
        )
    if not bool(torch.isfinite(inputs).all()):
        n_nan = int(torch.isnan(inputs).sum())
        n_inf = int(torch.isinf(inputs).sum())
        raise InputError(
            f"{name} contain {n_nan} NaN and {n_inf} infinite values; explanations of "
            f"non-finite inputs are meaningless. Clean the inputs (torch.nan_to_num) first."
        )
    return inputs.detach()
