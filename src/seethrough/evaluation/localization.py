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
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from .._core.errors import ConfigError
from .._core.seeds import generator
from ._common import pixel_maps
from .metric import MapMetric, MapRun, Score

__all__ = [
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "mask_iou",
    "LocalizationMetric",
    "PointingGame",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
    "MaskIoU",
    "METRICS",
]

_THRESHOLDS = ("topk", "otsu", "percentile", "fixed")


# --------------------------------------------------------------------------- shared helpers


def _random_keys(shape: tuple[int, ...], seed: int) -> Tensor:
    """Uniform keys from a seeded generator, used to break ties among equal map values."""
    return torch.rand(shape, generator=generator(seed), dtype=torch.float64)


def _order_desc(values: Tensor, keys: Tensor) -> Tensor:
    """Per-row order of positions by value (highest first), ties broken by ``keys``."""
    by_key = torch.argsort(keys, dim=1, descending=True)
    by_value = torch.argsort(values.gather(1, by_key), dim=1, descending=True, stable=True)
    return by_key.gather(1, by_value)


@dataclass
class LocalizationRun(MapRun):
    """A localization run: the maps reduced to one value per position, ``flat`` ``(N, P)``
    float64 on the CPU, the masks as ``fmask`` ``(N, P)`` and the positions' ``spatial`` shape."""

    flat: Tensor = field(kw_only=True)
    fmask: Tensor = field(kw_only=True)
    spatial: tuple[int, ...] = ()


class LocalizationMetric(MapMetric):
    """A metric comparing one map per sample with a ground-truth mask (``masks=``)."""

    family: ClassVar[str] = "localization"
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"masks"})

    def prepare(self, model, inputs, maps, *, target, batching, seed, settings) -> LocalizationRun:
        run = super().prepare(model, inputs, maps, target=target, batching=batching, seed=seed, settings=settings)
        assert run.masks is not None  # checked by MapMetric.prepare, as needs has "masks"
        pm = pixel_maps(run.maps, run.view, reduce=run.settings["reduce"]).double().cpu()
        n = pm.shape[0]
        return LocalizationRun(
            **vars(run), flat=pm.reshape(n, -1), fmask=run.masks.reshape(n, -1).cpu(), spatial=tuple(pm.shape[1:])
        )


# --------------------------------------------------------------------------- metrics


def _unravel(index: Tensor, shape: tuple[int, ...]) -> Tensor:
    out = []
    for size in reversed(shape):
        out.append(index % size)
        index = index // size
    return torch.stack(out[::-1], dim=1).double()


class PointingGame(LocalizationMetric):
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

    name = "pointing_game"
    defaults = {"masks": None, "tolerance": 0.0, "reduce": "sum"}

    def check(self, settings):
        tolerance = settings["tolerance"]
        if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance >= 0:
            raise ConfigError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")
        return super().check(settings)

    def score(self, run: MapRun) -> Score:
        assert isinstance(run, LocalizationRun)  # made by LocalizationMetric.prepare
        flat, fmask, n = run.flat, run.fmask, run.flat.shape[0]
        is_max = flat == flat.max(dim=1, keepdim=True).values
        keys = _random_keys(tuple(flat.shape), run.seed).masked_fill(~is_max, -1.0)
        chosen = keys.argmax(dim=1)
        coords = _unravel(torch.arange(flat.shape[1]), run.spatial)  # (P, d)
        distance = torch.empty(n, dtype=torch.float64)
        for i in range(n):
            if bool(fmask[i, chosen[i]]):
                distance[i] = 0.0
            else:
                distance[i] = (coords[fmask[i]] - coords[chosen[i]]).pow(2).sum(dim=1).min().sqrt()
        tolerance = float(run.settings["tolerance"])
        return Score(
            (distance <= tolerance).double(),
            settings={"tolerance": tolerance, "reduce": run.settings["reduce"], "seed": run.seed},
            extras={"distance": distance, "n_maxima": is_max.sum(dim=1)},
        )


class RelevanceMassAccuracy(LocalizationMetric):
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

    name = "relevance_mass_accuracy"
    defaults = {"masks": None, "reduce": "sum"}
    allow_zero_maps = True

    def score(self, run: MapRun) -> Score:
        assert isinstance(run, LocalizationRun)  # made by LocalizationMetric.prepare
        pos, fmask = run.flat.clamp(min=0), run.fmask
        total = pos.sum(dim=1)
        inside = (pos * fmask).sum(dim=1)
        values = torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), torch.nan)
        return Score(
            values,
            settings={"reduce": run.settings["reduce"]},
            extras={"area_fraction": fmask.double().mean(dim=1), "positive_mass": total},
        )


class RelevanceRankAccuracy(LocalizationMetric):
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

    name = "relevance_rank_accuracy"
    defaults = {"masks": None, "reduce": "sum"}

    def score(self, run: MapRun) -> Score:
        assert isinstance(run, LocalizationRun)  # made by LocalizationMetric.prepare
        flat, fmask = run.flat, run.fmask
        k = fmask.sum(dim=1)
        ranked = flat.sort(dim=1, descending=True).values
        kth = ranked.gather(1, (k - 1).unsqueeze(1))  # value of the K-th highest position
        above = flat > kth
        tied = flat == kth
        n_above = above.sum(dim=1).double()
        tied_inside = (tied & fmask).sum(dim=1).double()
        hits = (above & fmask).sum(dim=1).double() + (k.double() - n_above) * tied_inside / tied.sum(dim=1).double()
        return Score(
            hits / k.double(),
            settings={"reduce": run.settings["reduce"]},
            extras={"area_fraction": fmask.double().mean(dim=1), "k": k},
        )


class MaskIoU(LocalizationMetric):
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

    name = "mask_iou"
    defaults = {"masks": None, "threshold": "topk", "value": None, "absolute": False, "reduce": "sum"}

    def check(self, settings):
        threshold, value = settings["threshold"], settings["value"]
        if threshold not in _THRESHOLDS:
            raise ConfigError(f"unknown threshold={threshold!r}; choose one of {_THRESHOLDS}")
        if threshold in ("percentile", "fixed"):
            if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"threshold={threshold!r} needs a finite value= (see mask_iou's docstring)")
            if threshold == "percentile" and not 0 <= value <= 100:
                raise ConfigError(f"threshold='percentile' needs value= between 0 and 100, got {value!r}")
        elif value is not None:
            raise ConfigError(f"threshold={threshold!r} takes no value=; it is only for 'percentile' and 'fixed'")
        return super().check(settings)

    def score(self, run: MapRun) -> Score:
        assert isinstance(run, LocalizationRun)  # made by LocalizationMetric.prepare
        from ..attribution.segmentation import threshold_map

        s = run.settings
        flat, fmask, n = run.flat, run.fmask, run.flat.shape[0]
        if s["absolute"]:
            flat = flat.abs()
        if s["threshold"] == "topk":
            k = fmask.sum(dim=1)
            order = _order_desc(flat, _random_keys(tuple(flat.shape), run.seed))
            rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order))
            selected = rank < k.unsqueeze(1)
        else:
            # threshold_map works on (B, H, W); flatten the positions into one row per map.
            selected = threshold_map(flat.unsqueeze(1), method=s["threshold"], value=s["value"]).reshape(n, -1)
        inter = (selected & fmask).sum(dim=1).double()
        union = (selected | fmask).sum(dim=1).double()
        size = selected.sum(dim=1).double()
        precision = torch.where(size > 0, inter / size.clamp(min=1), torch.nan)
        return Score(
            inter / union,
            settings={
                "threshold": s["threshold"],
                "value": s["value"],
                "absolute": bool(s["absolute"]),
                "reduce": s["reduce"],
                "seed": run.seed,
            },
            extras={
                "precision": precision,
                "recall": inter / fmask.sum(dim=1).double(),
                "selected_fraction": size / flat.shape[1],
            },
        )


pointing_game = PointingGame()
relevance_mass_accuracy = RelevanceMassAccuracy()
relevance_rank_accuracy = RelevanceRankAccuracy()
mask_iou = MaskIoU()

METRICS = (pointing_game, relevance_mass_accuracy, relevance_rank_accuracy, mask_iou)
