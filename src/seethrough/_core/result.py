"""The result object every attribution method returns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from torch import Tensor

__all__ = ["Explanation"]

_FORMAT = "seethrough.explanation/1"


def _deep_freeze(v: Any) -> Any:
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


@dataclass(frozen=True, eq=False)
class Explanation:
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", _freeze(self.settings))
        object.__setattr__(self, "extras", _freeze(self.extras))

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
        """A ``(B, H, W)`` map for display: channels reduced by ``sum``, ``abs`` or ``max``."""
        from ..report.plot import to_heatmap

        return to_heatmap(self.attributions, reduce=reduce)

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save as one ``.safetensors`` file (tensors) with the metadata in its header."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors: dict[str, Tensor] = {"attributions": self.attributions}
        for name in ("target_indices", "inputs", "scores"):
            value = getattr(self, name)
            if value is not None:
                tensors[name] = value
        for k, v in self.extras.items():
            tensors[f"extras.{k}"] = v
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {
            "format": _FORMAT,
            "method": self.method,
            "settings": json.dumps(_thaw(self.settings), default=str),
            "target": self.target,
            "layer": self.layer or "",
            "n_evaluations": str(self.n_evaluations),
            "seconds": repr(self.seconds),
            "signed": str(self.signed),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Explanation":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                from .errors import InputError

                raise InputError(f"{path} is not a seethrough explanation file (format {meta.get('format')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        extras = {k[len("extras."):]: v for k, v in tensors.items() if k.startswith("extras.")}
        return cls(
            attributions=tensors["attributions"],
            method=meta["method"],
            settings=json.loads(meta["settings"]),
            target=meta["target"],
            target_indices=tensors.get("target_indices"),
            inputs=tensors.get("inputs"),
            scores=tensors.get("scores"),
            layer=meta["layer"] or None,
            extras=extras,
            n_evaluations=int(meta["n_evaluations"]),
            seconds=float(meta["seconds"]),
            signed=meta.get("signed", "True") == "True",
        )

    # -- display -------------------------------------------------------------------
    def plot(self, index: int = 0, *, ax=None, **kwargs):
        """Heatmap of sample ``index`` over its input; returns the matplotlib figure."""
        from ..report.plot import plot_explanation

        return plot_explanation(self, index=index, ax=ax, **kwargs)

    def to_html(self, **kwargs) -> str:
        """A self-contained HTML fragment (images embedded) of every sample."""
        from ..report.html import explanation_html

        return explanation_html(self, **kwargs)
