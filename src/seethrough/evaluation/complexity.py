"""Complexity metrics: how concentrated is an explanation?

A simpler (more concentrated) explanation is easier to read. All three metrics look at the
absolute attributions ``|a|`` of one map per sample, after the channels are combined by
``reduce``: the default ``"abs_sum"`` gives each position the sum of its channels' absolute
values (no cancellation between channels); ``"none"`` keeps every element (channel and
position) as its own feature, which is what Quantus does when given full-shape maps; the
other reductions of :func:`~seethrough.evaluation.pixel_maps` (``"sum"``, ``"mean"``,
``"max"``, ``"max_abs"``, ``"l2"``) are also accepted, followed by the absolute value.

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
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from .._core.errors import ConfigError
from .._core.reduce import REDUCTIONS
from ._common import pixel_maps
from .metric import MapMetric, MapRun, Score

__all__ = [
    "sparseness",
    "entropy_complexity",
    "effective_complexity",
    "ComplexityMetric",
    "Sparseness",
    "EntropyComplexity",
    "EffectiveComplexity",
    "METRICS",
]


@dataclass
class ComplexityRun(MapRun):
    """A complexity run: ``features``, the absolute attributions ``(N, n_features)`` float64
    on the CPU, after the channel reduction."""

    features: Tensor = field(kw_only=True)


class ComplexityMetric(MapMetric):
    """A metric on the absolute attributions of one map per sample (see the module docstring)."""

    family: ClassVar[str] = "complexity"
    higher_is_better: ClassVar[bool] = False
    allow_zero_maps = True
    #: ``"none"`` keeps every element (channel and position) as its own feature.
    reductions: ClassVar[tuple[str, ...]] = ("abs_sum", "none", *(r for r in REDUCTIONS if r != "abs_sum"))

    def prepare(self, model, inputs, maps, *, target, batching, seed, settings) -> ComplexityRun:
        run = super().prepare(model, inputs, maps, target=target, batching=batching, seed=seed, settings=settings)
        m, n = run.maps, run.maps.shape[0]
        if run.settings["reduce"] != "none":
            m = pixel_maps(m, run.view, reduce=run.settings["reduce"])
        return ComplexityRun(**vars(run), features=m.reshape(n, -1).double().abs().cpu())


def _per_sample_total(a: Tensor) -> Tensor:
    total = a.sum(dim=1)
    return torch.where(total > 0, total, torch.nan)


class Sparseness(ComplexityMetric):
    """Sparseness (Chalasani et al., 2020): the Gini index of the absolute attributions.

    Definition: with ``|a|`` sorted ascending, ``a_(1) <= ... <= a_(n)``,
    ``G = sum_k (2k - n - 1) a_(k) / (n sum_k a_(k))``. A constant map gives 0, a map with a
    single non-zero feature gives the maximum ``1 - 1/n``. Quantus's ``Sparseness`` adds
    1e-7 to every ``|a|`` first, which gives exactly ``G * S / (S + n 1e-7)`` with
    ``S = sum |a|``; this implementation adds nothing.

    Direction: higher is better (sparser). Default ``reduce="abs_sum"`` (see the module
    docstring). A sample whose reduced map is zero everywhere gets NaN.
    """

    name = "sparseness"
    higher_is_better = True
    defaults = {"reduce": "abs_sum"}

    def score(self, run: MapRun) -> Score:
        assert isinstance(run, ComplexityRun)  # made by ComplexityMetric.prepare
        a = run.features
        n_features = a.shape[1]
        ranked = a.sort(dim=1).values
        weights = 2.0 * torch.arange(1, n_features + 1, dtype=torch.float64) - n_features - 1
        values = (ranked * weights).sum(dim=1) / (n_features * _per_sample_total(a))
        return Score(
            values,
            settings={"reduce": run.settings["reduce"]},
            extras={"n_features": n_features, "max_value": 1.0 - 1.0 / n_features},
        )


class EntropyComplexity(ComplexityMetric):
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

    name = "entropy_complexity"
    defaults = {"reduce": "abs_sum"}

    def score(self, run: MapRun) -> Score:
        assert isinstance(run, ComplexityRun)  # made by ComplexityMetric.prepare
        a = run.features
        p = a / _per_sample_total(a).unsqueeze(1)
        return Score(
            -torch.xlogy(p, p).sum(dim=1),
            settings={"reduce": run.settings["reduce"]},
            extras={"n_features": a.shape[1], "max_value": math.log(a.shape[1])},
        )


class EffectiveComplexity(ComplexityMetric):
    """Effective complexity (Nguyen & Martínez, 2020): how many features matter.

    Definition: the number of features with ``|a_i| > eps * max_j |a_j|``: the threshold is
    relative to the sample's largest attribution, so the count does not depend on the map's
    scale. Default ``eps=1e-5``, as Quantus, whose default normalisation divides by the
    maximum too, but over the whole batch (a sample's count then depends on the others);
    here it is per sample, equal to Quantus on one sample at a time.

    Direction: lower is better (fewer features carry the explanation). Default
    ``reduce="abs_sum"``. ``extras``: ``"fraction"``, the count over the number of features.
    """

    name = "effective_complexity"
    defaults = {"eps": 1e-5, "reduce": "abs_sum"}

    def check(self, settings):
        eps = settings["eps"]
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
            raise ConfigError(f"eps must be a fraction of the largest |attribution| in [0, 1), got {eps!r}")
        return super().check(settings)

    def score(self, run: MapRun) -> Score:
        assert isinstance(run, ComplexityRun)  # made by ComplexityMetric.prepare
        a, eps = run.features, float(run.settings["eps"])
        top = a.amax(dim=1, keepdim=True)
        counts = (a > eps * top).sum(dim=1).double()
        counts = torch.where(top.squeeze(1) > 0, counts, torch.nan)
        return Score(
            counts,
            settings={"eps": eps, "reduce": run.settings["reduce"]},
            extras={"n_features": a.shape[1], "fraction": counts / a.shape[1]},
        )


sparseness = Sparseness()
entropy_complexity = EntropyComplexity()
effective_complexity = EffectiveComplexity()

METRICS = (sparseness, entropy_complexity, effective_complexity)
