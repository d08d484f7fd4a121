"""Input checks shared by every method.

Inputs are floating tensors with a leading batch dimension (images ``(B, C, H, W)``,
features ``(B, D)``, latent vectors ``(B, Z)``), or integer token ids ``(B, T)`` for a
method that attributes at a layer's output (``layer=``, usually the embedding): ids are
checked to be non-negative and, when that layer is an ``nn.Embedding``, below its
vocabulary size (an out-of-range id would abort a CUDA kernel instead of raising).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .errors import InputError
from .layers import LayerRef, resolve_layer

__all__ = ["check_inputs", "check_token_ids", "model_device"]

_TOKEN_METHODS = "Saliency, InputXGradient, IntegratedGradients, SmoothGrad or LayerGradientXActivation"


def _first_tensor(module: nn.Module, slots: str, seen: set[int] | None = None) -> Tensor | None:
    """The first of ``module.parameters()`` (``slots="_parameters"``) or ``module.buffers()``
    (``"_buffers"``), found depth first (each module once, as ``named_modules``) without its
    generators."""
    for t in module.__dict__.get(slots, {}).values():
        if t is not None:
            return t
    seen = {id(module)} if seen is None else seen
    for child in module.__dict__.get("_modules", {}).values():
        if child is not None and id(child) not in seen:
            seen.add(id(child))
            t = _first_tensor(child, slots, seen)
            if t is not None:
                return t
    return None


def model_device(model: nn.Module) -> torch.device | None:
    for slots in ("_parameters", "_buffers"):
        t = _first_tensor(model, slots)
        if t is not None:
            return t.device
    return None


def _all_finite(x: Tensor) -> bool:
    """Whether every value of ``x`` is finite. A finite sum proves it in one reduction (a NaN
    or an infinity makes the sum non-finite); only a non-finite sum, which an overflow can
    also cause, needs the elementwise check."""
    if x.numel() == 0 or math.isfinite(float(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_inputs(
    model: nn.Module, inputs: object, *, name: str = "inputs", token_layer: LayerRef | None = None
) -> Tensor:
    """Validate a batch of inputs: a floating tensor with a batch dimension, finite,
    on the model's device. Returns it detached; the methods run the model on copies, so
    the caller's tensor is never modified.

    ``token_layer``: the layer at whose output the method attributes, if any; integer
    inputs are then accepted as token ids and checked by :func:`check_token_ids`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"seethrough explains torch.nn.Module models, not {type(model).__name__}")
    if not isinstance(inputs, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor with a leading batch dimension, got "
            f"{type(inputs).__name__}; convert with torch.as_tensor(...)"
        )
    if not inputs.dtype.is_floating_point:
        if token_layer is not None and inputs.dtype != torch.bool and not inputs.is_complex():
            return check_token_ids(model, inputs, token_layer, name=name)
        raise InputError(
            f"{name} have dtype {inputs.dtype}; gradient and perturbation attributions with respect to the "
            f"inputs need floating-point inputs (use inputs.float()). For token ids, attribute at the embedding "
            f"layer's output instead: pass layer= (the embedding module or its name, e.g. layer='embed') to "
            f"{_TOKEN_METHODS}"
        )
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise InputError(
            f"{name} must have a leading batch dimension with at least one sample, got shape "
            f"{tuple(inputs.shape)}; for a single sample use x.unsqueeze(0)"
        )
    dev = model_device(model)
    if dev is not None and inputs.device != dev:
        raise InputError(
            f"{name} are on {inputs.device} but the model is on {dev}; move them with inputs.to({str(dev)!r})"
        )
    if not _all_finite(inputs):
        n_nan = int(torch.isnan(inputs).sum())
        n_inf = int(torch.isinf(inputs).sum())
        raise InputError(
            f"{name} contain {n_nan} NaN and {n_inf} infinite values; explanations of "
            f"non-finite inputs are meaningless. Clean the inputs (torch.nan_to_num) first."
        )
    return inputs.detach()


def check_token_ids(model: nn.Module, ids: Tensor, layer: LayerRef, *, name: str = "inputs") -> Tensor:
    """Validate integer token ids ``(B, T)`` explained at ``layer``'s output: batch first with
    at least one sample and one position, on the model's device, non-negative, and below
    ``num_embeddings`` when ``layer`` is an ``nn.Embedding``. Returns them detached."""
    layer_name, module = resolve_layer(model, layer)
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise InputError(
            f"token ids must have shape (B, T), batch first, with at least one sample and one position; got "
            f"{name} of shape {tuple(ids.shape)}"
            + ("; for a single sequence use ids.unsqueeze(0)" if ids.dim() == 1 else "")
        )
    dev = model_device(model)
    if dev is not None and ids.device != dev:
        raise InputError(f"{name} are on {ids.device} but the model is on {dev}; move them with .to({str(dev)!r})")
    lo = int(ids.min())
    if lo < 0:
        raise InputError(f"token ids must be >= 0, got {lo} in {name}")
    vocab = getattr(module, "num_embeddings", None)
    if isinstance(vocab, int):
        hi = int(ids.max())
        if hi >= vocab:
            raise InputError(
                f"token id {hi} is out of range for the embedding {layer_name!r} with {vocab} entries "
                f"(valid: 0..{vocab - 1})"
            )
    return ids.detach()
