"""Complexity metrics: how concentrated is an explanation?

A simpler (more concentrated) explanation is easier to read. All three metrics look at the
absolute attributions ``|a|`` of one map per sample, after the channels are combined by
``reduce``: the default ``"abs_sum"`` gives each position the sum of its channels' absolute
values (no cancellation between channels); ``"none"`` keeps every element (channel and
position) as its own feature, which is what Quantus does when given full-shape maps; the
other reductions of :func:`~seethrough.evaluation.pixel_maps` (``"sum"``, ``"mean"``,
``"max_abs"``, ``"l2"``) are also accepted, followed by the absolute value.

============================== ============================================= =========
metric                         value per sample                              direction
============================== ============================================= =========
:func:`sparseness`             Gini index of ``|a|``, in [0, 1 - 1/n]        higher
:func:`entropy_complexity`     entropy of ``|a| / sum |a|``, in [0, log n]   lower
:func:`effective_complexity`   number of features with |a| > eps * max |a|   lower
============================== ============================================= =========

``n`` is the number of features. None of them evaluates the model (``n_evaluations`` is 0
unless ``maps`` is a method run here) and all three are invariant to positive scaling of
the map.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.errors import ConfigError
from .._core.targets import TargetLike
from ._common import MetricResult, pixel_maps
from .localization import _as_inputs, _check_reduce, _check_seed, _resolve, _set_attrs, _source_name

__all__ = ["sparseness", "entropy_complexity", "effective_complexity", "METRICS"]

_REDUCTIONS = ("abs_sum", "none", "sum", "mean", "max_abs", "l2")


def _abs_features(
    model: nn.Module | None,
    inputs: Any,
    maps: Any,
    *,
    target: TargetLike,
    batching: Batching | int | None,
    seed: Any,
    reduce: str,
) -> tuple[Tensor, int]:
    """``(|a| as (N, n_features) float64 on the CPU, n_evaluations)``."""
    x = _as_inputs(inputs)
    _check_reduce(reduce, _REDUCTIONS)
    _check_seed(seed)
    view, m, n_eval = _resolve(model, x, maps, target=target, batching=batching, allow_zero=True)
    n = m.shape[0]
    if reduce != "none":
        m = pixel_maps(m, view, reduce=reduce)
    return m.reshape(n, -1).double().abs().cpu(), n_eval


def _per_sample_total(a: Tensor) -> Tensor:
    total = a.sum(dim=1)
    return torch.where(total > 0, total, torch.nan)


def sparseness(
    model: nn.Module | None,
    inputs: Tensor,
    maps: Any,
    *,
    target: TargetLike = None,
    batching: Batching | int | None = None,
    seed: int = 0,
    reduce: str = "abs_sum",
) -> MetricResult:
    """Sparseness (Chalasani et al., 2020): the Gini index of the absolute attributions.

    Definition: with ``|a|`` sorted ascending, ``a_(1) <= ... <= a_(n)``,
    ``G = sum_k (2k - n - 1) a_(k) / (n sum_k a_(k))``. A constant map gives 0, a map with a
    single non-zero feature gives the maximum ``1 - 1/n``. Quantus's ``Sparseness`` adds
    1e-7 to every ``|a|`` first, which gives exactly ``G * S / (S + n 1e-7)`` with
    ``S = sum |a|``; this implementation adds nothing.

    Direction: higher is better (sparser). Default ``reduce="abs_sum"`` (see the module
    docstring). A sample whose reduced map is zero everywhere gets NaN.
    """
    start = time.perf_counter()
    a, n_eval = _abs_features(model, inputs, maps, target=target, batching=batching, seed=seed, reduce=reduce)
    n_features = a.shape[1]
    ranked = a.sort(dim=1).values
    weights = 2.0 * torch.arange(1, n_features + 1, dtype=torch.float64) - n_features - 1
    values = (ranked * weights).sum(dim=1) / (n_features * _per_sample_total(a))
    return MetricResult(
        name="sparseness",
        values=values,
        higher_is_better=True,
        settings={"reduce": reduce, "maps": _source_name(maps)},
        extras={"n_features": n_features, "max_value": 1.0 - 1.0 / n_features},
        n_evaluations=n_eval,
        seconds=time.perf_counter() - start,
    )


def entropy_complexity(
    model: nn.Module | None,
    inputs: Tensor,
    maps: Any,
    *,
    target: TargetLike = None,
    batching: Batching | int | None = None,
    seed: int = 0,
    reduce: str = "abs_sum",
) -> MetricResult:
    """Complexity (Bhatt et al., 2020; Quantus ``Complexity``): the entropy of the fractional
    contributions. Named ``entropy_complexity`` so that it does not shadow this module.

    Definition: ``p_i = |a_i| / sum_j |a_j|`` and ``H = -sum_i p_i log p_i`` (natural log,
    ``0 log 0 = 0``), in [0, log n]: 0 when one feature carries everything, ``log n`` for a
    constant map. Quantus's ``Complexity`` computes ``-sum p log(p + 1e-12)``; the two agree
    to about ``n * 1e-12``.

    Direction: lower is better (simpler). Default ``reduce="abs_sum"``. ``extras``:
    ``"max_value"`` = log n, to read the value on its scale. A sample whose reduced map is
    zero everywhere gets NaN.
    """
    start = time.perf_counter()
    a, n_eval = _abs_features(model, inputs, maps, target=target, batching=batching, seed=seed, reduce=reduce)
    p = a / _per_sample_total(a).unsqueeze(1)
    values = -torch.xlogy(p, p).sum(dim=1)
    return MetricResult(
        name="entropy_complexity",
        values=values,
        higher_is_better=False,
        settings={"reduce": reduce, "maps": _source_name(maps)},
        extras={"n_features": a.shape[1], "max_value": math.log(a.shape[1])},
        n_evaluations=n_eval,
        seconds=time.perf_counter() - start,
    )


def effective_complexity(
    model: nn.Module | None,
    inputs: Tensor,
    maps: Any,
    *,
    target: TargetLike = None,
    batching: Batching | int | None = None,
    seed: int = 0,
    eps: float = 1e-5,
    reduce: str = "abs_sum",
) -> MetricResult:
    """Effective complexity (Nguyen & Martínez, 2020): how many features matter.

    Definition: the number of features with ``|a_i| > eps * max_j |a_j|``: the threshold is
    relative to the sample's largest attribution, so the count does not depend on the map's
    scale. Default ``eps=1e-5``, as Quantus, whose default normalisation divides by the
    maximum too, but over the whole batch (a sample's count then depends on the others);
    here it is per sample, equal to Quantus on one sample at a time.

    Direction: lower is better (fewer features carry the explanation). Default
    ``reduce="abs_sum"``. ``extras``: ``"fraction"``, the count over the number of features.
    """
    start = time.perf_counter()
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
        raise ConfigError(f"eps must be a fraction of the largest |attribution| in [0, 1), got {eps!r}")
    a, n_eval = _abs_features(model, inputs, maps, target=target, batching=batching, seed=seed, reduce=reduce)
    top = a.amax(dim=1, keepdim=True)
    counts = (a > eps * top).sum(dim=1).double()
    counts = torch.where(top.squeeze(1) > 0, counts, torch.nan)
    return MetricResult(
        name="effective_complexity",
        values=counts,
        higher_is_better=False,
        settings={"eps": float(eps), "reduce": reduce, "maps": _source_name(maps)},
        extras={"n_features": a.shape[1], "fraction": counts / a.shape[1]},
        n_evaluations=n_eval,
        seconds=time.perf_counter() - start,
    )


_set_attrs(sparseness, "complexity", True, set())
_set_attrs(entropy_complexity, "complexity", False, set())
_set_attrs(effective_complexity, "complexity", False, set())

METRICS = (sparseness, entropy_complexity, effective_complexity)
