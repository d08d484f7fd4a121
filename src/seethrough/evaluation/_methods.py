"""The attribution method of an evaluation, built on the model it is given: from a registry
name, a method instance (re-bound to copies of its model) or a factory ``model -> method``.
Used by the sanity checks (to explain randomized copies) and the trust report."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .._core.errors import ConfigError, InputError

__all__ = ["MethodFactory", "method_factory"]

MethodFactory = str | Callable[[nn.Module], Any] | Any


def _attribution_type():
    from ..attribution import Attribution

    return Attribution


def _rebind(method: Any, source: nn.Module, target: nn.Module) -> Any:
    """A shallow copy of ``method`` working on ``target``: its model, its module-valued
    settings (layers given as modules of ``source``) and nested methods are moved over."""
    Attribution = _attribution_type()
    names = {id(m): n for n, m in source.named_modules()}
    modules = dict(target.named_modules())

    def move(obj: Any) -> Any:
        new = copy.copy(obj)
        for key, value in list(vars(new).items()):
            if key == "model" and value is source:
                new.model = target
            elif isinstance(value, nn.Module) and id(value) in names and value is not source:
                setattr(new, key, modules[names[id(value)]])
            elif isinstance(value, Attribution) and getattr(value, "model", None) is source:
                setattr(new, key, move(value))
        return new

    return move(method)


class _Factory:
    """``model -> Attribution`` from a callable, a registry name or a method instance."""

    def __init__(self, spec: MethodFactory, method_settings: Mapping[str, Any] | None, batching: Any) -> None:
        Attribution = _attribution_type()
        self.spec = spec
        self.settings = dict(method_settings or {})
        self.batching = batching
        if isinstance(spec, str):
            from ..attribution.registry import get_method

            get_method(spec)  # unknown names fail now, with suggestions
        elif isinstance(spec, Attribution):
            if self.settings:
                raise ConfigError("method_settings apply to a method given by name; this method is already built")
        elif not callable(spec):
            raise ConfigError(
                f"method_factory must be a callable model -> attribution method (e.g. "
                f"lambda m: seethrough.GradCAM(m, layer='features.16')), a registry name such as "
                f"'saliency', or a method instance; got {type(spec).__name__}"
            )
        elif self.settings:
            raise ConfigError("method_settings apply to a method given by name, not to a callable factory")

    def __call__(self, model: nn.Module, original: nn.Module) -> Any:
        Attribution = _attribution_type()
        spec = self.spec
        if isinstance(spec, str):
            from ..attribution.registry import build_method

            settings = dict(self.settings)
            method = build_method(spec, model, layer=settings.pop("layer", None), **settings)
        elif isinstance(spec, Attribution):
            if spec.model is not original:
                raise ConfigError(
                    f"the method instance explains another model than the one checked; build it on the checked "
                    f"model, or pass a factory such as lambda m: {type(spec).__name__}(m, ...)"
                )
            method = spec if model is original else _rebind(spec, original, model)
        else:
            method = spec(model)
            if not isinstance(method, Attribution):
                raise ConfigError(
                    f"method_factory returned {type(method).__name__}, not an attribution method; it must build "
                    f"one on the model it is given, e.g. lambda m: seethrough.Saliency(m)"
                )
            if model is not original:
                method = _rebind(method, original, model)
        if getattr(method, "model", None) is not model:
            raise ConfigError(
                "method_factory built its method on another model than the one it was given, so the "
                "randomized models would never be explained; use the argument: lambda m: Method(m, ...)"
            )
        if self.batching is not None:
            method = copy.copy(method)  # never change the caller's instance
            method.batching = self.batching
        return method


def method_factory(method: Any, model: nn.Module, *, layer=None) -> tuple[str, Callable[[nn.Module], Any]]:
    """``(name, factory)`` where ``factory(m)`` builds the method on model ``m``: from a
    registry name (with ``layer`` for layer methods), an Attribution bound to ``model``, or
    a callable ``m -> Attribution``."""
    from ..attribution.registry import build_method, get_method

    Attribution = _attribution_type()
    if isinstance(method, str):
        spec = get_method(method)
        layer_arg = layer if spec.needs_layer else None
        if spec.needs_layer and layer is None:
            raise ConfigError(f"method {spec.name!r} needs a layer: pass layer= (e.g. the last conv layer)")
        return spec.name, lambda m: build_method(spec.name, m, layer=layer_arg)
    if isinstance(method, Attribution):
        if method.model is not model:
            raise InputError(
                f"the {type(method).__name__} passed is bound to another model; build it on the "
                f"model being evaluated or pass its registry name"
            )
        return method.name, lambda m: method if m is model else _rebind(method, model, m)
    if callable(method):
        probe = method(model)
        if not isinstance(probe, Attribution):
            raise InputError(f"a method factory must return a seethrough Attribution, got {type(probe).__name__}")
        return probe.name, method
    raise InputError(
        f"cannot use {type(method).__name__} as a method: give a registry name (see "
        f"'seethrough methods'), an Attribution, or a callable model -> Attribution"
    )


def _method_settings(method: Any) -> dict[str, Any]:
    try:
        return dict(method.settings())
    except Exception:  # noqa: BLE001 - settings are informative only
        return {}
