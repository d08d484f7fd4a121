"""Frozen results: one base for every result object, and the attribution result.

:class:`Result` is the base of every result a method, metric or fitted object returns:
a frozen dataclass whose mapping fields are frozen deeply on construction, that saves
itself to one ``.safetensors`` file (tensors in the body, everything else as JSON in the
header) and loads back, and whose ``plot(ax=...)`` and ``to_html()`` are supplied by a
view registered for its class (:func:`register_view`), so that this module imports no
plotting code: ``seethrough.report`` registers the views of the core results, and each
family those of its own.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = ["Result", "Explanation", "register_view"]

_FORMAT = "seethrough.result/1"


#: exact types that are never mappings nor sequences to freeze: returned as they are without
#: the (slower) ``isinstance`` checks against the ``Mapping`` ABC
_LEAF_TYPES = frozenset({str, int, float, bool, type(None), Tensor, torch.dtype, torch.device})
_MAPPING_TYPES = (dict, MappingProxyType)


def _deep_freeze(v: Any) -> Any:
    t = type(v)
    if t in _LEAF_TYPES:
        return v
    if t in _MAPPING_TYPES:
        return MappingProxyType({k: _deep_freeze(x) for k, x in v.items()})
    if t is tuple or t is list:
        return tuple(_deep_freeze(x) for x in v)
    if isinstance(v, Mapping):
        return MappingProxyType({k: _deep_freeze(x) for k, x in v.items()})
    if isinstance(v, (list, tuple)):
        return tuple(_deep_freeze(x) for x in v)
    return v


def _freeze(m: Mapping | None) -> Mapping:
    return _deep_freeze(dict(m or {}))


def _thaw(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


_VIEWS: dict[type, dict[str, Callable[..., Any]]] = {}


def register_view(cls: type, *, plot: Callable[..., Any] | None = None, html: Callable[..., Any] | None = None) -> None:
    """Give the results of class ``cls`` (and its subclasses) a ``plot`` (``fn(result, *,
    ax=None, **kw) -> Figure``) and/or a ``to_html`` (``fn(result, **kw) -> str``)."""
    views = _VIEWS.setdefault(cls, {})
    if plot is not None:
        views["plot"] = plot
    if html is not None:
        views["html"] = html


def _view(result: Any, kind: str) -> Callable[..., Any]:
    for klass in type(result).__mro__:
        fn = _VIEWS.get(klass, {}).get(kind)
        if fn is not None:
            return fn
    from .errors import ConfigError

    what = "plot" if kind == "plot" else "HTML view"
    raise ConfigError(
        f"{type(result).__name__} has no {what} registered; import seethrough (or the family that "
        f"defines it) first, or register one with seethrough._core.result.register_view"
    )


# -- persistence: tensors go to the safetensors body, everything else into JSON ------------
def _encode(v: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(v, Tensor):
        # a copy with its own storage: safetensors refuses tensors that share memory (views, shared inputs)
        tensors[key] = v.detach().cpu().clone(memory_format=torch.contiguous_format)
        return {"__tensor__": key}
    if isinstance(v, Result):
        return {"__result__": f"{type(v).__module__}:{type(v).__qualname__}", "fields": v._encode_fields(key, tensors)}
    if isinstance(v, Mapping):
        if all(isinstance(k, str) for k in v):
            return {"__map__": {k: _encode(x, f"{key}.{k}", tensors) for k, x in v.items()}}
        return {
            "__items__": [
                [_encode(k, f"{key}.k{i}", tensors), _encode(x, f"{key}.{i}", tensors)]
                for i, (k, x) in enumerate(v.items())
            ]
        }
    if isinstance(v, (list, tuple)):
        return {"__seq__": [_encode(x, f"{key}.{i}", tensors) for i, x in enumerate(v)], "tuple": isinstance(v, tuple)}
    if isinstance(v, float) and v != v:
        return {"__float__": "nan"}
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return {"__float__": "inf" if v > 0 else "-inf"}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:  # numpy scalars
        return v.item()
    if hasattr(v, "__array__"):  # numpy arrays
        return _encode(torch.as_tensor(v), key, tensors)
    return {"__str__": str(v)}


def _result_class(path: str) -> type:
    from .errors import InputError

    module, _, qual = path.partition(":")
    if not (module == "seethrough" or module.startswith("seethrough.")):
        raise InputError(f"refusing to load a result of class {path!r}: only seethrough result classes are loaded")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Result)):
        raise InputError(f"{path!r} is not a seethrough result class")
    return obj


def _decode(v: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(v, list):
        return [_decode(x, tensors) for x in v]
    if not isinstance(v, dict):
        return v
    if "__tensor__" in v:
        return tensors[v["__tensor__"]]
    if "__result__" in v:
        cls = _result_class(v["__result__"])
        return cls(**{k: _decode(x, tensors) for k, x in v["fields"].items()})
    if "__map__" in v:
        return {k: _decode(x, tensors) for k, x in v["__map__"].items()}
    if "__items__" in v:
        return {_decode(k, tensors): _decode(x, tensors) for k, x in v["__items__"]}
    if "__seq__" in v:
        items = [_decode(x, tensors) for x in v["__seq__"]]
        return tuple(items) if v.get("tuple") else items
    if "__float__" in v:
        return float(v["__float__"])
    if "__str__" in v:
        return v["__str__"]
    return {k: _decode(x, tensors) for k, x in v.items()}


class Result:
    """Base of every frozen result object (subclasses are ``@dataclass(frozen=True, eq=False)``).

    * Mapping-valued fields are frozen deeply on construction (read-only views, tuples).
    * :meth:`save` / :meth:`load`: one ``.safetensors`` file; tensors (also inside mappings
      and nested results) in its body, the other fields as JSON in its header.
    * :meth:`plot` and :meth:`to_html` use the view registered for the class.
    """

    #: Fields not written by :meth:`save` (e.g. large caches that can be recomputed).
    _transient: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if type(v) not in _LEAF_TYPES and isinstance(v, Mapping):
                object.__setattr__(self, f.name, _freeze(v))

    # -- persistence -------------------------------------------------------------------
    def _encode_fields(self, prefix: str, tensors: dict[str, Tensor]) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name in self._transient:
                continue
            key = f"{prefix}.{f.name}" if prefix else f.name
            v = getattr(self, f.name)  # a tuple field stays a tuple; frozen mappings are thawed
            out[f.name] = _encode(_thaw(v) if isinstance(v, Mapping) else v, key, tensors)
        return out

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (a ``.safetensors`` file); :meth:`load` reads it back."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors: dict[str, Tensor] = {}
        fields = self._encode_fields("", tensors)
        meta = {
            "format": _FORMAT,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "fields": json.dumps(fields, allow_nan=False),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Read a result written by :meth:`save` (of this class or a subclass)."""
        from safetensors import safe_open

        from .errors import InputError

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, RuntimeError, ValueError) as e:  # missing file, not safetensors
            raise InputError(f"cannot read {str(path)!r} as a seethrough result file: {e}") from e
        if meta.get("format") != _FORMAT:
            raise InputError(f"{path} is not a seethrough result file (format {meta.get('format')!r})")
        klass = _result_class(meta["class"])
        if not issubclass(klass, cls):
            raise InputError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        fields = {k: _decode(v, tensors) for k, v in json.loads(meta["fields"]).items()}
        return klass(**fields)

    # -- display -----------------------------------------------------------------------
    def plot(self, *args: Any, ax: Any = None, **kwargs: Any) -> Any:
        """A matplotlib figure of the result (drawn into ``ax`` when given)."""
        return _view(self, "plot")(self, *args, ax=ax, **kwargs)

    def to_html(self, **kwargs: Any) -> str:
        """A self-contained HTML fragment (images embedded)."""
        return _view(self, "html")(self, **kwargs)


@dataclass(frozen=True, eq=False)
class Explanation(Result):
    """An attribution and everything needed to interpret and reproduce it.

    Attributes
    ----------
    attributions:
        Same shape as the inputs for input attributions; for layer methods the map
        named by ``kind`` (e.g. a Grad-CAM map upsampled to the input, ``(B, 1, H, W)``).
    method:
        The method's registry name, e.g. ``"integrated_gradients"``.
    settings:
        The method's settings, JSON-serialisable.
    target:
        A description of the explained quantity, e.g. ``"Class([3, 1])"``.
    target_indices:
        The class index explained for each sample, when the target is a class.
    inputs:
        The explained inputs (detached), kept for plotting; may be None.
    scores:
        The target score on each (clean) input.
    layer:
        Dotted name of the layer for layer methods, else None.
    extras:
        Method-specific tensors: ``"delta"`` (integrated gradients' completeness
        error per sample), ``"layer_map"`` (Grad-CAM at layer resolution), ...
    n_evaluations:
        Rows evaluated by the model (forward, with backward for gradient methods).
    seconds:
        Wall-clock time of :meth:`attribute`.
    """

    attributions: Tensor
    method: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    target: str = ""
    target_indices: Tensor | None = None
    inputs: Tensor | None = None
    scores: Tensor | None = None
    layer: str | None = None
    extras: Mapping[str, Tensor] = field(default_factory=dict)
    n_evaluations: int = 0
    seconds: float = 0.0
    signed: bool = True

    # -- conveniences ---------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.attributions.shape[0])

    def __repr__(self) -> str:
        shape = tuple(self.attributions.shape)
        extra = f", layer={self.layer!r}" if self.layer else ""
        return f"Explanation(method={self.method!r}, shape={shape}, target={self.target}{extra})"

    @property
    def delta(self) -> Tensor | None:
        """Completeness error per sample (integrated gradients), if the method has one."""
        return self.extras.get("delta")

    def heatmap(self, reduce: str = "sum") -> Tensor:
        """A ``(B, H, W)`` map for display, channels combined by ``reduce`` (see
        :mod:`seethrough._core.reduce`)."""
        from .reduce import to_heatmap

        return to_heatmap(self.attributions, reduce=reduce)
