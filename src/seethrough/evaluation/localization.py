"""Localization metrics: does the explanation point at the known evidence?

Each metric compares one map per sample with a ground-truth mask of the positions that hold
the evidence (e.g. the object pixels of :func:`seethrough.data.make_shapes`). Maps are first
reduced to one value per position with :func:`~seethrough.evaluation.pixel_maps`; the default
``reduce="sum"`` adds the channels with their sign, which is what Quantus's localisation
metrics see when given channel-summed maps. Maps with one channel (Grad-CAM) are unchanged by
any reduction except the absolute ones.

- :func:`pointing_game`: 1 if the map's maximum lies in (or within ``tolerance`` pixels
  of) the mask, else 0. Higher is better.
- :func:`relevance_mass_accuracy`: positive relevance inside the mask / positive relevance
  overall. Higher is better.
- :func:`relevance_rank_accuracy`: fraction of the K highest positions that lie in the
  mask, K = mask size. Higher is better.
- :func:`mask_iou`: intersection over union of the thresholded map and the mask. Higher is
  better.

No metric here evaluates the model: ``n_evaluations`` is 0 for precomputed maps and
Explanations, and the method's own count when ``maps`` is an attribution method run here.
Inputs of shape ``(N, D)`` (tabular) are treated as ``D`` positions of one channel.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching
from .._core.errors import ConfigError, InputError
from .._core.targets import TargetLike
from ._common import MetricResult, _check_seed, _source_name, check_masks, pixel_maps, resolve_maps

__all__ = [
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "mask_iou",
    "METRICS",
]

_REDUCTIONS = ("sum", "abs_sum", "mean", "max_abs", "l2")
_THRESHOLDS = ("topk", "otsu", "percentile", "fixed")


# --------------------------------------------------------------------------- shared helpers


def _as_inputs(inputs: Any) -> Tensor:
    """The inputs as a tensor with a channel axis: ``(N, D)`` becomes ``(N, 1, D)``."""
    if not isinstance(inputs, Tensor):
        try:
            inputs = torch.as_tensor(inputs)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(
                f"inputs must be a torch.Tensor with a leading batch dimension, got "
                f"{type(inputs).__name__}; convert with torch.as_tensor(...)"
            ) from None
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise InputError(
            f"inputs of shape {tuple(inputs.shape)} cannot be evaluated: give a batch (N, C, ...) "
            f"or (N, D) with at least one sample (a single sample needs x.unsqueeze(0))"
        )
    return inputs


def _positions_view(inputs: Tensor) -> Tensor:
    return inputs.unsqueeze(1) if inputs.dim() == 2 else inputs


def _check_reduce(reduce: str, allowed: tuple[str, ...] = _REDUCTIONS) -> None:
    if reduce not in allowed:
        raise ConfigError(f"unknown channel reduction reduce={reduce!r}; choose one of {allowed}")


def _resolve(
    model: nn.Module | None,
    inputs: Tensor,
    maps: Any,
    *,
    target: TargetLike,
    batching: Batching | int | None,
    allow_zero: bool = False,
) -> tuple[Tensor, Tensor, int]:
    """``(view, maps, n_evaluations)``: the inputs with a channel axis, the resolved maps
    (detached, on the inputs' device) and the model rows a method used to make them.

    A method given as ``maps`` is run on the original inputs with its own batching (it is
    configured on the method); ``batching`` is only validated, since nothing here evaluates
    the model.
    """
    from ..attribution._base import Attribution

    as_batching(batching)
    n_evaluations = 0
    if isinstance(maps, Attribution):
        maps = maps.attribute(inputs, target=target)
        n_evaluations = int(maps.n_evaluations)
    view = _positions_view(inputs)
    resolved = resolve_maps(maps, view, model=model, target=target, allow_zero=allow_zero)
    return view, resolved, n_evaluations


def _masks(masks: Any, view: Tensor) -> Tensor:
    if masks is None:
        raise InputError(
            "localization metrics need masks=: one ground-truth mask per input marking the "
            "evidence (e.g. make_shapes(...).masks)"
        )
    return check_masks(masks, view)


def _random_keys(shape: tuple[int, ...], seed: int) -> Tensor:
    """Uniform keys from a seeded generator, used to break ties among equal map values."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _order_desc(values: Tensor, keys: Tensor) -> Tensor:
    """Per-row order of positions by value (highest first), ties broken by ``keys``."""
    by_key = torch.argsort(keys, dim=1, descending=True)
    by_value = torch.argsort(values.gather(1, by_key), dim=1, descending=True, stable=True)
    return by_key.gather(1, by_value)


def _set_attrs(fn, family: str, higher_is_better: bool, needs: set[str]):
    fn.family = family
    fn.higher_is_better = higher_is_better
    fn.needs = frozenset(needs)
    return fn


# --------------------------------------------------------------------------- metrics


def pointing_game(
    model: nn.Module | None,
    inputs: Tensor,
    maps: Any,
    *,
    masks: Any,
    target: TargetLike = None,
    batching: Batching | int | None = None,
    seed: int = 0,
    tolerance: float = 0.0,
    reduce: str = "sum",
) -> MetricResult:
    """Pointing game (Zhang et al., 2018): does the map's maximum hit the evidence?

    Definition: the map is reduced over channels (``reduce``, default ``"sum"``, signed) and
    its maximum position ``p`` is taken; the value is 1 ("hit") if the Euclidean distance from
    ``p`` to the nearest mask position is at most ``tolerance`` pixels, else 0. With
    ``tolerance=0`` (the default, as in Quantus) ``p`` must lie inside the mask; Zhang et al.
    used 15 pixels at their image size. When several positions share the maximum, one of them
    is drawn uniformly with ``seed`` (Quantus instead counts a hit if *any* of them is inside,
    which a constant map always wins).

    Direction: higher is better (the mean is the hit rate).

    ``extras``: ``"distance"`` from the chosen maximum to the mask (0 inside) and
    ``"n_maxima"``, the number of positions sharing the maximum. ``model`` may be None when
    ``maps`` is precomputed; ``target`` is used only when ``maps`` is a method to run.
    """
    start = time.perf_counter()
    x = _as_inputs(inputs)
    view = _positions_view(x)
    _check_reduce(reduce)
    _check_seed(seed)
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance >= 0:
        raise ConfigError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")
    mk = _masks(masks, view)
    view, m, n_eval = _resolve(model, x, maps, target=target, batching=batching)
    pm = pixel_maps(m, view, reduce=reduce).double().cpu()
    n = pm.shape[0]
    flat = pm.reshape(n, -1)
    fmask = mk.reshape(n, -1).cpu()
    spatial = tuple(pm.shape[1:])

    is_max = flat == flat.max(dim=1, keepdim=True).values
    keys = _random_keys(tuple(flat.shape), seed).masked_fill(~is_max, -1.0)
    chosen = keys.argmax(dim=1)
    coords = _unravel(torch.arange(flat.shape[1]), spatial)  # (P, d)
    distance = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        if bool(fmask[i, chosen[i]]):
            distance[i] = 0.0
        else:
            distance[i] = (coords[fmask[i]] - coords[chosen[i]]).pow(2).sum(dim=1).min().sqrt()
    hits = (distance <= float(tolerance)).double()
    return MetricResult(
        name="pointing_game",
        values=hits,
        higher_is_better=True,
        settings={"tolerance": float(tolerance), "reduce": reduce, "seed": seed, "maps": _source_name(maps)},
        extras={"distance": distance, "n_maxima": is_max.sum(dim=1)},
        n_evaluations=n_eval,
        seconds=time.perf_counter() - start,
    )


def _unravel(index: Tensor, shape: tuple[int, ...]) -> Tensor:
    out = []
    for size in reversed(shape):
        out.append(index % size)
        index = index // size
    return torch.stack(out[::-1], dim=1).double()


def relevance_mass_accuracy(
    model: nn.Module | None,
    inputs: Tensor,
    maps: Any,
    *,
    masks: Any,
    target: TargetLike = None,
    batching: Batching | int | None = None,
    seed: int = 0,
    reduce: str = "sum",
) -> MetricResult:
    """Relevance mass accuracy (Arras et al., 2022): the share of positive relevance that
    falls inside the mask.

    Definition: with ``R`` the map reduced over channels (``reduce``, default ``"sum"``,
    signed) and ``R+ = max(R, 0)``, the value is ``sum(R+ inside the mask) / sum(R+)``, in
    [0, 1]. Negative relevance is dropped on both sides of the ratio (it is evidence *against*
    the target and would otherwise let a map push the ratio outside [0, 1]); a sample without
    any positive relevance gets NaN (skipped by ``MetricResult.mean``). Quantus divides the
    signed sums instead; on maps without negative values both agree exactly. A map equal to
    the mask gives 1. A map spread uniformly gives the mask's area fraction, reported as
    ``extras["area_fraction"]`` (the chance level).

    Direction: higher is better. Invariant to positive scaling of the map.
    """
    start = time.perf_counter()
    x = _as_inputs(inputs)
    view = _positions_view(x)
    _check_reduce(reduce)
    _check_seed(seed)
    mk = _masks(masks, view)
    view, m, n_eval = _resolve(model, x, maps, target=target, batching=batching, allow_zero=True)
    pm = pixel_maps(m, view, reduce=reduce).double().cpu()
    n = pm.shape[0]
    pos = pm.reshape(n, -1).clamp(min=0)
    fmask = mk.reshape(n, -1).cpu()
    total = pos.sum(dim=1)
    inside = (pos * fmask).sum(dim=1)
    values = torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), torch.nan)
    return MetricResult(
        name="relevance_mass_accuracy",
        values=values,
        higher_is_better=True,
        settings={"reduce": reduce, "maps": _source_name(maps)},
        extras={"area_fraction": fmask.double().mean(dim=1), "positive_mass": total},
        n_evaluations=n_eval,
        seconds=time.perf_counter() - start,
    )


def relevance_rank_accuracy(
    model: nn.Module | None,
    inputs: Tensor,
    maps: Any,
    *,
    masks: Any,
    target: TargetLike = None,
    batching: Batching | int | None = None,
    seed: int = 0,
    reduce: str = "sum",
) -> MetricResult:
    """Relevance rank accuracy (Arras et al., 2022): how many of the K most relevant
    positions lie in the mask, K being the mask's size.

    Definition: with ``R`` the map reduced over channels (``reduce``, default ``"sum"``,
    signed), take the K positions of highest ``R`` (K = number of mask positions of that
    sample); the value is the fraction of them inside the mask, in [0, 1]. Positions tied
    with the K-th highest value are counted by their expected share under a uniformly random
    tie order (so the value does not depend on the position order, e.g. for the many zeros
    of a Grad-CAM map); without ties at that value it is exactly Quantus's
    ``RelevanceRankAccuracy``. A map equal to the mask gives 1; a random map gives the
    area fraction on average (``extras["area_fraction"]``).

    Direction: higher is better. Invariant to positive scaling of the map.
    """
    start = time.perf_counter()
    x = _as_inputs(inputs)
    view = _positions_view(x)
    _check_reduce(reduce)
    _check_seed(seed)
    mk = _masks(masks, view)
    view, m, n_eval = _resolve(model, x, maps, target=target, batching=batching)
    pm = pixel_maps(m, view, reduce=reduce).double().cpu()
    n = pm.shape[0]
    flat = pm.reshape(n, -1)
    fmask = mk.reshape(n, -1).cpu()
    k = fmask.sum(dim=1)
    ranked = flat.sort(dim=1, descending=True).values
    kth = ranked.gather(1, (k - 1).unsqueeze(1))  # value of the K-th highest position
    above = flat > kth
    tied = flat == kth
    n_above = above.sum(dim=1).double()
    tied_inside = (tied & fmask).sum(dim=1).double()
    hits = (above & fmask).sum(dim=1).double() + (k.double() - n_above) * tied_inside / tied.sum(dim=1).double()
    return MetricResult(
        name="relevance_rank_accuracy",
        values=hits / k.double(),
        higher_is_better=True,
        settings={"reduce": reduce, "maps": _source_name(maps)},
        extras={"area_fraction": fmask.double().mean(dim=1), "k": k},
        n_evaluations=n_eval,
        seconds=time.perf_counter() - start,
    )


def mask_iou(
    model: nn.Module | None,
    inputs: Tensor,
    maps: Any,
    *,
    masks: Any,
    target: TargetLike = None,
    batching: Batching | int | None = None,
    seed: int = 0,
    threshold: str = "topk",
    value: float | None = None,
    absolute: bool = False,
    reduce: str = "sum",
) -> MetricResult:
    """Intersection over union of the thresholded map with the mask.

    Definition: the map is reduced over channels (``reduce``, default ``"sum"``, signed;
    ``absolute=True`` then takes ``|R|``) and binarised into a set ``S`` of positions; the
    value is ``|S ∩ M| / |S ∪ M|`` for the mask ``M``, in [0, 1] (0 when ``S`` is empty).

    ``threshold`` chooses ``S``:

    - ``"topk"`` (default): the K highest positions, K = the mask's size, ties at the K-th
      value broken uniformly at random with ``seed``. The map is given the mask's area, so
      the IoU only measures *where* it puts it: with relevance rank accuracy ``r`` (no ties),
      IoU = r / (2 - r).
    - ``"otsu"``, ``"percentile"`` (``value`` in [0, 100], e.g. 90 keeps the top 10%) or
      ``"fixed"`` (``value`` is the threshold): as
      :func:`seethrough.attribution.threshold_map`; the map then also decides its extent.

    Direction: higher is better. ``extras``: ``"precision"`` (|S ∩ M| / |S|, NaN for empty
    ``S``), ``"recall"`` (|S ∩ M| / |M|) and ``"selected_fraction"`` (|S| / positions).
    """
    from ..attribution.segmentation import threshold_map

    start = time.perf_counter()
    x = _as_inputs(inputs)
    view = _positions_view(x)
    _check_reduce(reduce)
    _check_seed(seed)
    if threshold not in _THRESHOLDS:
        raise ConfigError(f"unknown threshold={threshold!r}; choose one of {_THRESHOLDS}")
    if threshold in ("percentile", "fixed"):
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"threshold={threshold!r} needs a finite value= (see mask_iou's docstring)")
        if threshold == "percentile" and not 0 <= value <= 100:
            raise ConfigError(f"threshold='percentile' needs value= between 0 and 100, got {value!r}")
    elif value is not None:
        raise ConfigError(f"threshold={threshold!r} takes no value=; it is only for 'percentile' and 'fixed'")
    mk = _masks(masks, view)
    view, m, n_eval = _resolve(model, x, maps, target=target, batching=batching)
    pm = pixel_maps(m, view, reduce=reduce).double().cpu()
    n = pm.shape[0]
    flat = pm.reshape(n, -1)
    if absolute:
        flat = flat.abs()
    fmask = mk.reshape(n, -1).cpu()
    if threshold == "topk":
        k = fmask.sum(dim=1)
        order = _order_desc(flat, _random_keys(tuple(flat.shape), seed))
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order))
        selected = rank < k.unsqueeze(1)
    else:
        # threshold_map works on (B, H, W); flatten the positions into one row per map.
        selected = threshold_map(flat.unsqueeze(1), method=threshold, value=value).reshape(n, -1)
    inter = (selected & fmask).sum(dim=1).double()
    union = (selected | fmask).sum(dim=1).double()
    size = selected.sum(dim=1).double()
    precision = torch.where(size > 0, inter / size.clamp(min=1), torch.nan)
    return MetricResult(
        name="mask_iou",
        values=inter / union,
        higher_is_better=True,
        settings={
            "threshold": threshold,
            "value": value,
            "absolute": bool(absolute),
            "reduce": reduce,
            "seed": seed,
            "maps": _source_name(maps),
        },
        extras={
            "precision": precision,
            "recall": inter / fmask.sum(dim=1).double(),
            "selected_fraction": size / flat.shape[1],
        },
        n_evaluations=n_eval,
        seconds=time.perf_counter() - start,
    )


_set_attrs(pointing_game, "localization", True, {"masks"})
_set_attrs(relevance_mass_accuracy, "localization", True, {"masks"})
_set_attrs(relevance_rank_accuracy, "localization", True, {"masks"})
_set_attrs(mask_iou, "localization", True, {"masks"})

METRICS = (pointing_game, relevance_mass_accuracy, relevance_rank_accuracy, mask_iou)
