"""Resolve a layer given by dotted ``named_modules()`` path or by module object."""

from __future__ import annotations

import difflib

from torch import nn

from .errors import LayerError

__all__ = ["LayerRef", "resolve_layer", "layer_names", "layer_label"]

LayerRef = str | nn.Module


def layer_label(layer: LayerRef) -> str:
    """A layer setting as shown in settings: its dotted name, or the module's class."""
    return layer if isinstance(layer, str) else type(layer).__name__


def layer_names(model: nn.Module) -> list[str]:
    """Every addressable layer path of ``model`` (``named_modules`` order, root excluded)."""
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, layer: LayerRef) -> tuple[str, nn.Module]:
    """Return ``(dotted_name, module)`` for ``layer``.

    ``layer`` is a dotted path as printed by ``model.named_modules()`` (for example
    ``"layer4.1.conv2"``) or a module object that belongs to ``model``. An unknown name
    raises :class:`LayerError` listing the closest valid names.
    """
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise LayerError(
            f"the module {type(layer).__name__} passed as layer is not part of the model "
            f"{type(model).__name__}; pass a submodule of this model or its dotted name "
            f"(see seethrough.layer_names(model))"
        )
    if not isinstance(layer, str):
        raise LayerError(f"a layer is given as a dotted name (str) or a module, not {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer in modules:
        return layer, modules[layer]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.4)
    if not close:
        # Fall back to names sharing the last path component, then to the first few.
        tail = layer.rsplit(".", 1)[-1]
        close = [n for n in names if n.rsplit(".", 1)[-1] == tail][:5] or names[:5]
    hint = ", ".join(repr(n) for n in close) if close else "(the model has no submodules)"
    raise LayerError(
        f"unknown layer {layer!r} in {type(model).__name__}; closest names: {hint}. "
        f"Layer names are dotted paths from model.named_modules()."
    )
