"""One table of every evaluation metric, read by the trust report and the CLI.

Each metric is an instance of a :class:`~seethrough.evaluation.metric.Metric` subclass,
callable as ``metric(model, inputs, maps, *, target=None, batching=None, seed=0, **settings)
-> MetricResult`` and listed in its family module's ``METRICS``; the table reads its class's
``name``, ``family``, ``higher_is_better`` and ``needs`` (a subset of ``{"model", "masks",
"method"}``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from .._core.errors import ConfigError

__all__ = ["MetricSpec", "METRIC_FAMILIES", "metrics", "get_metric", "metric_names"]

#: Families in the order the trust report shows them.
METRIC_FAMILIES = ("randomization", "faithfulness", "robustness", "localization", "complexity")


@dataclass(frozen=True)
class MetricSpec:
    """One row of the table: the metric (``fn``, a :class:`~seethrough.evaluation.metric.Metric`)
    and what its class declares."""

    name: str
    fn: Callable
    family: str
    higher_is_better: bool
    needs: frozenset

    def __str__(self) -> str:  # how a saved TrustReport names it
        return self.name

    @property
    def summary(self) -> str:
        doc = (self.fn.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


_TABLE: dict[str, MetricSpec] | None = None


def metrics() -> dict[str, MetricSpec]:
    """Every registered metric by name, grouped by family in :data:`METRIC_FAMILIES` order."""
    global _TABLE
    if _TABLE is None:
        from . import complexity, faithfulness, localization, randomization, robustness

        specs: list[MetricSpec] = []
        for module in (randomization, faithfulness, robustness, localization, complexity):
            for metric in module.METRICS:
                cls = type(metric)
                if cls.family not in METRIC_FAMILIES:  # pragma: no cover - a programming error
                    raise RuntimeError(f"metric {cls.name} has unknown family {cls.family!r}")
                specs.append(MetricSpec(cls.name, metric, cls.family, bool(cls.higher_is_better), frozenset(cls.needs)))
        specs.sort(key=lambda s: METRIC_FAMILIES.index(s.family))
        _TABLE = {s.name: s for s in specs}
    return dict(_TABLE)


def metric_names() -> list[str]:
    return list(metrics())


def get_metric(name: str) -> MetricSpec:
    table = metrics()
    key = name.strip().lower().replace("-", "_")
    if key in table:
        return table[key]
    families = [s.name for s in table.values() if s.family == key]
    if families:
        raise ConfigError(f"{name!r} is a metric family; name its metrics: {', '.join(families)}")
    near = difflib.get_close_matches(key, list(table), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise ConfigError(f"unknown metric {name!r}.{hint} Known metrics: {', '.join(table)}")


def select_metrics(names=None, *, families=None, have_masks: bool) -> list[MetricSpec]:
    """The metrics to run: by name, by family, or all whose needs are met (localization
    metrics only with ground-truth masks)."""
    if names is not None and families is not None:
        raise ConfigError("give metrics by name or by family, not both")
    if names is not None:
        specs = [get_metric(n) for n in names]
        for s in specs:
            if "masks" in s.needs and not have_masks:
                raise ConfigError(f"metric {s.name!r} needs ground-truth masks; pass masks=")
        return specs
    table = metrics()
    if families is not None:
        bad = [f for f in families if f not in METRIC_FAMILIES]
        if bad:
            raise ConfigError(f"unknown metric families {bad}; choose from {METRIC_FAMILIES}")
        specs = [s for s in table.values() if s.family in families]
    else:
        specs = list(table.values())
    return [s for s in specs if have_masks or "masks" not in s.needs]
