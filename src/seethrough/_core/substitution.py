"""Attribution at a layer's output: run the model with one layer's output substituted.

Inputs that cannot be differentiated or interpolated (integer token ids ``(B, T)``) are
explained at the output of a layer instead, usually the embedding: the clean layer
output is read once (:func:`layer_output`), the method makes its rows in that space
(interpolation points, noisy copies), and every forward pass runs on the original inputs
with the layer's output replaced by the row (:func:`substitute_output`). This is what
Captum's ``LayerIntegratedGradients`` does; the gradient is taken with respect to the
substituted value.

:func:`layer_space` gives a method the three things it needs in one call: the values to
attribute (the inputs themselves, or the layer's clean output), the ``(name, module)``
for :class:`~seethrough._core.engine.GradientRunner` and the inputs to feed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .errors import InputError, LayerError
from .hooks import StopForward, capture_activation
from .layers import LayerRef, resolve_layer

__all__ = ["substitute_output", "layer_output", "layer_space"]


@contextmanager
def substitute_output(module: nn.Module, values: Tensor, store: dict | None = None) -> Iterator[dict]:
    """While active, ``module``'s output is replaced by ``values`` (same shape).

    ``store["layer"]`` is set to ``values`` when the module runs, so a caller can check that
    it ran; the rest of the network gets a copy, so an in-place operation after the layer
    cannot overwrite ``values``. A module that runs more than once per forward pass is
    ambiguous and refused with :class:`LayerError`.
    """
    store = {} if store is None else store

    def hook(mod: nn.Module, _inp: object, out: object) -> Tensor:
        if not isinstance(out, Tensor):
            raise LayerError(
                f"layer {type(mod).__name__} returns a {type(out).__name__}; attribute at a layer that returns a "
                f"single tensor"
            )
        if "layer" in store:
            raise LayerError(
                f"the layer module ({type(mod).__name__}) runs more than once per forward pass (a reused module), so "
                f"its output cannot be substituted; attribute at a module that runs once"
            )
        if tuple(out.shape) != tuple(values.shape):
            raise LayerError(
                f"layer {type(mod).__name__} gives an output of shape {tuple(out.shape)} but the values put in its "
                f"place have shape {tuple(values.shape)}"
            )
        store["layer"] = values
        return values.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def layer_output(model: nn.Module, x: Tensor, module: nn.Module, *, name: str | None = None) -> Tensor:
    """``module``'s output (detached) when ``model`` runs on ``x``; the forward pass stops there."""
    from .call import call_model

    store: dict = {}
    with torch.no_grad():
        with capture_activation(module, store, stop=True):
            try:
                call_model(model, x.clone())
            except StopForward:
                pass
    if "act" not in store:
        raise LayerError(
            f"layer {name or type(module).__name__!r} did not run during the forward pass; pick a layer on the path "
            f"to the output"
        )
    out = store["act"]
    if not isinstance(out, Tensor) or not out.dtype.is_floating_point:
        got = type(out).__name__ if not isinstance(out, Tensor) else f"a {out.dtype} tensor"
        raise LayerError(
            f"layer {name or type(module).__name__!r} returns {got}; attribution at a layer needs a floating-point "
            f"tensor output (e.g. the embedding layer's)"
        )
    if out.shape[0] != x.shape[0]:
        raise LayerError(
            f"layer {name or type(module).__name__!r} gives an output of shape {tuple(out.shape)}, without the batch "
            f"of {x.shape[0]} samples first; pick a layer whose output is batch first"
        )
    return out.detach()


def layer_space(
    model: nn.Module, x: Tensor, layer: LayerRef | None
) -> tuple[Tensor, tuple[str, nn.Module] | None, Tensor | None]:
    """``(values, runner_layer, feed)``: what a gradient method attributes and how to run it.

    With ``layer=None``: ``(x, None, None)``, attribution with respect to the inputs. With a
    layer: ``(layer's clean output, (name, module), x)``: rows are made from the layer's
    output and :class:`~seethrough._core.engine.GradientRunner` substitutes them there.
    """
    if layer is None:
        if not x.dtype.is_floating_point:  # pragma: no cover - check_inputs refuses these first
            raise InputError("integer inputs are attributed at a layer's output: pass layer= (the embedding)")
        return x, None, None
    name, module = resolve_layer(model, layer)
    return layer_output(model, x, module, name=name), (name, module), x
