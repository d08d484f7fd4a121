"""What every evaluation metric shares: where maps come from, how they are checked, and the
result object.

A metric is evaluated on *maps*: one relevance value per input element (or per pixel). The
maps come from one of

- an :class:`~seethrough.attribution.Attribution` method (it is run on the inputs and target),
- an :class:`~seethrough.Explanation` (its ``attributions``), or
- a precomputed tensor or numpy array.

:func:`resolve_maps` turns any of these into a float tensor shaped like the inputs or like
their spatial part, and refuses maps that cannot be evaluated (wrong shape, NaN or inf, all
zeros) with an error that says what to do. :func:`pixel_maps` reduces channels to one map
per sample, ``(N, H, W)``, the form most image metrics work on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._core.errors import ConfigError, InputError, TargetError
from .._core.reduce import REDUCTIONS, apply_reduce, check_reduce
from .._core.result import Explanation, Result
from .._core.targets import Predicted, Target, TargetLike, as_target

__all__ = [
    "MapSource",
    "MetricResult",
    "resolve_maps",
    "pixel_maps",
    "resolve_target_indices",
    "per_sample_indices",
    "check_masks",
]

#: What a metric accepts as maps: an attribution method (``seethrough.Attribution``, run on the
#: inputs), an Explanation, or precomputed maps.
MapSource = Any | Explanation | Tensor | np.ndarray


@dataclass(frozen=True, eq=False)
class MetricResult(Result):
    """The value of one metric on a batch.

    Attributes
    ----------
    name:
        The metric's name, e.g. ``"deletion_auc"``.
    values:
        One value per sample, ``(N,)`` (float64, on the CPU).
    higher_is_better:
        The metric's direction.
    settings:
        The settings that produced it (JSON-serialisable, frozen).
    curves:
        Curves behind the value when there are any, e.g. ``"scores"`` of a deletion curve,
        ``(N, steps + 1)``, with ``"fractions"``, ``(steps + 1,)``.
    extras:
        Anything else the metric reports (per-sample tensors or numbers).
    n_evaluations:
        Model rows evaluated to compute it (0 for metrics on maps alone).
    seconds:
        Wall-clock time.
    """

    name: str
    values: Tensor
    higher_is_better: bool
    settings: Mapping[str, Any] = field(default_factory=dict)
    curves: Mapping[str, Tensor] = field(default_factory=dict)
    extras: Mapping[str, Any] = field(default_factory=dict)
    n_evaluations: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", torch.as_tensor(self.values, dtype=torch.float64).detach().cpu().reshape(-1))
        super().__post_init__()  # settings, curves and extras frozen deeply

    @property
    def mean(self) -> float:
        """Mean over the samples that have a value (NaN ones are skipped)."""
        v = self.values[~torch.isnan(self.values)]
        return float(v.mean()) if v.numel() else float("nan")

    @property
    def std(self) -> float:
        v = self.values[~torch.isnan(self.values)]
        return float(v.std()) if v.numel() > 1 else 0.0

    def __repr__(self) -> str:
        arrow = "higher is better" if self.higher_is_better else "lower is better"
        return f"MetricResult({self.name}={self.mean:.4g} over {self.values.numel()} samples, {arrow})"


def _method_types():
    from ..attribution import Attribution

    return Attribution


def per_sample_indices(index: Tensor, n: int) -> Tensor:
    """One class index per sample from one index for all (expanded) or one per sample."""
    idx = torch.as_tensor(index).reshape(-1)
    return idx.expand(n).clone() if idx.numel() == 1 else idx.clone()


def resolve_target_indices(model: nn.Module, inputs: Tensor, target: TargetLike) -> Tensor | None:
    """Class index per sample for a class target (``None`` = predicted class), else None."""
    from .._core.call import call_model
    from .._core.state import model_guard

    t = as_target(target)
    n = inputs.shape[0]
    if isinstance(t, Predicted):
        with model_guard(model), torch.no_grad():
            out = call_model(model, inputs.clone())
        return out.reshape(out.shape[0], -1).argmax(dim=1).cpu()
    index = getattr(t, "index", None)
    if index is not None and isinstance(t, Target):
        idx = torch.as_tensor(index).reshape(-1)
        if idx.numel() not in (1, n):
            raise TargetError(
                f"got {idx.numel()} target indices for {n} inputs; give one int for all inputs "
                f"or exactly one index per input"
            )
        return per_sample_indices(idx, n)
    return None


def resolve_maps(
    source: Any,
    inputs: Tensor,
    *,
    model: nn.Module | None = None,
    target: TargetLike = None,
    allow_zero: bool = False,
    what: str = "maps",
    **attribute_kwargs: Any,
) -> Tensor:
    """The maps of ``source`` for ``inputs`` as a detached float tensor on the inputs' device.

    ``source`` is an attribution method (run here on ``inputs`` and ``target``, so ``model``
    is not needed), an :class:`Explanation`, or a tensor/array. Accepted shapes: the inputs'
    shape ``(N, C, ...)``, ``(N, 1, ...)``, or the spatial shape ``(N, ...)`` without the channel
    axis. Refused: other shapes, NaN or inf, and (unless ``allow_zero``) maps that are zero
    everywhere for a sample, since a metric on them measures nothing.
    """
    Attribution = _method_types()
    if isinstance(source, Attribution):
        if model is not None and source.model is not model:
            raise InputError(
                f"the {type(source).__name__} passed as {what} is bound to another model; build it on "
                f"the model being evaluated"
            )
        maps = source.attribute(inputs, target=target, **attribute_kwargs).attributions
    elif isinstance(source, Explanation):
        if source.inputs is not None:
            stored = source.inputs.detach().to(inputs.device)
            if tuple(stored.shape) != tuple(inputs.shape) or not torch.allclose(
                stored.to(inputs.dtype), inputs.detach(), rtol=1e-5, atol=1e-6
            ):
                raise InputError(
                    f"the Explanation passed as {what} explains other inputs (shape "
                    f"{tuple(stored.shape)}) than the ones evaluated (shape {tuple(inputs.shape)}); "
                    f"evaluate it on explanation.inputs, or re-explain these inputs"
                )
        maps = source.attributions
    elif isinstance(source, (Tensor, np.ndarray)):
        maps = torch.as_tensor(source)
    else:
        raise InputError(
            f"cannot evaluate {type(source).__name__} as {what}: give an attribution method "
            f"(e.g. seethrough.IntegratedGradients(model)), an Explanation, or a tensor of maps"
        )
    if not maps.dtype.is_floating_point:
        maps = maps.float()
    maps = maps.detach().to(inputs.device)
    if inputs.dim() == 2:  # tabular (N, D): maps must be (N, D)
        if tuple(maps.shape) != tuple(inputs.shape):
            raise InputError(
                f"{what} of shape {tuple(maps.shape)} do not match tabular inputs of shape "
                f"{tuple(inputs.shape)}: give one value per feature, shaped {tuple(inputs.shape)}"
            )
        inputs_for_shape = inputs.unsqueeze(1)
        maps = maps.unsqueeze(1)
    else:
        inputs_for_shape = inputs
    _check_finite_nonzero(maps, inputs_for_shape, allow_zero=allow_zero, what=what)
    return maps.squeeze(1) if inputs.dim() == 2 else maps


def _check_finite_nonzero(maps: Tensor, inputs: Tensor, *, allow_zero: bool, what: str) -> None:
    n, spatial = inputs.shape[0], tuple(inputs.shape[2:])
    ok = (
        tuple(maps.shape) == tuple(inputs.shape)
        or (
            maps.dim() == inputs.dim()
            and maps.shape[0] == n
            and maps.shape[1] == 1
            and tuple(maps.shape[2:]) == spatial
        )
        or (tuple(maps.shape) == (n, *spatial) and inputs.dim() > 2)
    )
    if not ok:
        raise InputError(
            f"{what} of shape {tuple(maps.shape)} do not match inputs of shape {tuple(inputs.shape)}: "
            f"give maps shaped like the inputs {tuple(inputs.shape)}, with one channel "
            f"{(n, 1, *spatial)}, or without the channel axis {(n, *spatial)}"
        )
    if not bool(torch.isfinite(maps).all()):
        bad = (~torch.isfinite(maps)).reshape(n, -1).any(dim=1).nonzero().flatten().tolist()
        raise InputError(
            f"{what} contain NaN or inf (samples {bad[:8]}); recompute them (a NaN map usually "
            f"means the model output or the baseline was not finite)"
        )
    if not allow_zero:
        zero = (maps.reshape(n, -1) == 0).all(dim=1)
        if bool(zero.any()):
            raise InputError(
                f"{what} are zero everywhere for samples {zero.nonzero().flatten().tolist()[:8]}: the "
                f"metric would measure nothing. Check the method (e.g. Grad-CAM's ReLU can zero a "
                f"map whose evidence is all negative) or drop those samples"
            )


def pixel_maps(maps: Tensor, inputs: Tensor, *, reduce: str = "sum") -> Tensor:
    """One map per sample over the spatial positions, ``(N, *spatial)``.

    ``reduce`` combines the channels, one of :data:`seethrough._core.reduce.REDUCTIONS`:
    ``"sum"`` (signed, the default, as Quantus does), ``"mean"``, ``"max"``, ``"abs_sum"``,
    ``"max_abs"`` or ``"l2"``.
    """
    check_reduce(reduce, REDUCTIONS, what="channel reduction reduce=")
    if inputs.dim() == 2:  # tabular: one value per feature already
        return maps
    if maps.dim() == inputs.dim() - 1:
        return maps
    return apply_reduce(maps, reduce, dim=1)


def check_masks(masks: Any, inputs: Tensor, *, what: str = "ground-truth masks") -> Tensor:
    """Boolean evidence masks ``(N, *spatial)`` for ``inputs``; accepts ``(N, 1, *spatial)``
    and ``(N, C, *spatial)`` (a position is in the mask if any channel is)."""
    m = torch.as_tensor(masks)
    if inputs.dim() == 2:  # tabular: one flag per feature
        inputs = inputs.unsqueeze(1)
        if m.dim() == 2:
            m = m.unsqueeze(1)
        return _check_masks(m, inputs, what)
    return _check_masks(m, inputs, what)


def _check_masks(m: Tensor, inputs: Tensor, what: str) -> Tensor:
    n, spatial = inputs.shape[0], tuple(inputs.shape[2:])
    if m.dim() == inputs.dim() and m.shape[0] == n and tuple(m.shape[2:]) == spatial:
        m = m.reshape(n, m.shape[1], *spatial).bool().any(dim=1)
    if tuple(m.shape) != (n, *spatial):
        raise InputError(
            f"{what} of shape {tuple(m.shape)} do not match inputs of shape {tuple(inputs.shape)}: "
            f"give one mask per input, shaped {(n, *spatial)} (or with a channel axis)"
        )
    if m.dtype != torch.bool and not bool(((m == 0) | (m == 1)).all()):
        raise InputError(
            f"{what} must be boolean or 0/1, got values {sorted(set(m.unique().tolist()))[:6]}; threshold "
            f"soft masks, or pick one label of a label map (masks == k)"
        )
    m = m.bool().to(inputs.device)
    empty = ~m.reshape(n, -1).any(dim=1)
    if bool(empty.any()):
        raise InputError(
            f"{what} are empty for samples {empty.nonzero().flatten().tolist()[:8]}; localization "
            f"needs at least one ground-truth position per sample"
        )
    return m


# -- settings checks shared by the metrics ------------------------------------------------


def _check_int(name: str, value: Any, *, low: int = 1, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}{hint}")
    return int(value)


def _check_float(name: str, value: Any, *, low: float = 0.0, strict: bool = False, hint: str = "") -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        ok = float(value) > low if strict else float(value) >= low
    if not ok:
        rel = ">" if strict else ">="
        raise ConfigError(f"{name} must be a finite number {rel} {low:g}, got {value!r}{hint}")
    return float(value)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {tuple(choices)}")
    return value


def _source_name(maps: Any) -> str:
    """How a metric records where its maps came from: the method's name, or "precomputed"."""
    if isinstance(maps, _method_types()):
        return maps.name
    if isinstance(maps, Explanation):
        return maps.method
    return "precomputed"
