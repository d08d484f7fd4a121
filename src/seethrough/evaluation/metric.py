"""The one base of every evaluation metric: :class:`Metric`.

A metric is an instance of a :class:`Metric` subclass, called like a function with the
family's one signature::

    metric(model, inputs, maps, *, target=None, batching=None, seed=0, **settings) -> MetricResult

(localization metrics also take ``masks=``). A call goes through three steps:

1. :meth:`Metric.prepare`: the settings are checked (:meth:`Metric.check`, and ``reduce``
   against :data:`Metric.reductions`), the inputs, masks and target validated and the maps
   resolved from an attribution method (run here), an :class:`~seethrough.Explanation` or
   a tensor. The result is a :class:`MetricRun`.
2. :meth:`Metric.score`: the metric's own computation, the one step every metric
   overrides; it returns a :class:`Score` (values per sample, the settings to record,
   curves, extras).
3. :meth:`Metric.result`: the :class:`~seethrough.evaluation.MetricResult`.

The registry (:mod:`seethrough.evaluation.registry`) reads each metric's ``name``,
``family``, ``higher_is_better`` and ``needs`` from its class. A metric can be configured
once, ``Deletion(baseline="blur")``, and called with the same signature; keyword settings
of a call override the configured ones.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor, nn

from .._core.batching import as_batching
from .._core.errors import InputError
from .._core.reduce import REDUCTIONS, check_reduce
from .._core.seeds import check_seed
from .._core.targets import TargetLike
from ._common import MetricResult, _source_name, check_masks, resolve_maps

__all__ = ["Metric", "MetricRun", "Score", "MapMetric"]


@dataclass
class MetricRun:
    """What :meth:`Metric.prepare` hands to :meth:`Metric.score`.

    ``x``: the validated inputs; ``maps``: the resolved maps (None for metrics that explain
    by themselves); ``target``: what is scored or explained; ``settings``: the metric's own
    settings, checked; ``record``: settings every result of the family records (the target,
    where the maps came from); ``n_evaluations``: model rows spent so far."""

    model: nn.Module | None
    x: Tensor
    maps: Tensor | None
    target: Any
    settings: dict[str, Any]
    seed: int
    batching: Any
    source: str = "precomputed"
    n_evaluations: int = 0
    record: dict[str, Any] = field(default_factory=dict)


#: The run a metric's :meth:`Metric.prepare` hands to its :meth:`Metric.score`.
RunT = TypeVar("RunT", bound=MetricRun)


@dataclass
class Score:
    """What :meth:`Metric.score` computes: one value per sample and what it reports."""

    values: Tensor
    settings: Mapping[str, Any] = field(default_factory=dict)
    curves: Mapping[str, Tensor] = field(default_factory=dict)
    extras: Mapping[str, Any] = field(default_factory=dict)


class Metric(Generic[RunT]):
    """Base of every evaluation metric (see the module docstring).

    Subclasses set ``name``, ``family``, ``higher_is_better``, ``needs`` (a subset of
    ``{"model", "masks", "method"}``) and ``defaults`` (the metric's own settings, in
    signature order), and implement :meth:`score`; a family overrides :meth:`prepare`
    when its metrics evaluate the model. The class docstring is the metric's documentation
    (its first line is the registry's summary).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"model"})
    #: The metric's own settings and their defaults, in signature order.
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Channel reductions accepted for a ``reduce`` setting.
    reductions: ClassVar[tuple[str, ...]] = REDUCTIONS

    def __init__(self, **settings: Any) -> None:
        self.configured = self._merge({}, settings)
        # read like the function it replaces: by the registry, in reprs and in help()
        self.__name__ = self.__qualname__ = self.name
        self.__signature__ = self._signature()

    # -- the call --------------------------------------------------------------------------
    def __call__(
        self,
        model: nn.Module | None,
        inputs: Tensor,
        maps: Any,
        *,
        target: TargetLike = None,
        batching: Any = None,
        seed: int = 0,
        **settings: Any,
    ) -> MetricResult:
        start = time.perf_counter()
        run = self.prepare(
            model,
            inputs,
            maps,
            target=target,
            batching=batching,
            seed=check_seed(seed),
            settings=self._merge(self.configured, settings),
        )
        return self.result(run, self.score(run), seconds=time.perf_counter() - start)

    def check(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The metric's own settings, validated (before any model runs); the base checks
        ``reduce``. Subclasses extend it and return the (possibly normalised) settings."""
        if "reduce" in settings:
            check_reduce(settings["reduce"], self.reductions, what="channel reduction reduce=")
        return settings

    def prepare(
        self,
        model: nn.Module | None,
        inputs: Any,
        maps: Any,
        *,
        target: TargetLike,
        batching: Any,
        seed: int,
        settings: dict[str, Any],
    ) -> RunT:
        """Validate the settings and inputs and resolve the maps (overridden by families
        whose metrics evaluate the model)."""
        raise NotImplementedError  # pragma: no cover - every family prepares

    def score(self, run: RunT) -> Score:
        """The metric's computation on a prepared run."""
        raise NotImplementedError  # pragma: no cover - every metric scores

    def result(self, run: MetricRun, score: Score, *, seconds: float) -> MetricResult:
        """The :class:`MetricResult` of a run and its score."""
        return MetricResult(
            name=self.name,
            values=score.values,
            higher_is_better=self.higher_is_better,
            settings={**score.settings, **run.record},
            curves=score.curves,
            extras=score.extras,
            n_evaluations=run.n_evaluations,
            seconds=seconds,
        )

    # -- settings and signature --------------------------------------------------------
    def _merge(self, base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [k for k in given if k not in self.defaults]
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise TypeError(f"{self.name}() got an unexpected keyword argument {unknown[0]!r} (settings: {known})")
        return {**self.defaults, **base, **given}

    def _signature(self) -> inspect.Signature:
        kw = inspect.Parameter.KEYWORD_ONLY
        pos = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [inspect.Parameter(n, pos) for n in ("model", "inputs", "maps")]
        settings = dict(self.configured)
        if "masks" in settings:  # localization: first, as the one extra input
            params.append(inspect.Parameter("masks", kw, default=settings.pop("masks")))
        params += [inspect.Parameter(n, kw, default=d) for n, d in (("target", None), ("batching", None), ("seed", 0))]
        params += [inspect.Parameter(n, kw, default=d) for n, d in settings.items()]
        return inspect.Signature(params, return_annotation=MetricResult)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.configured.items() if self.defaults.get(k) is not v}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"


# =========================================================================== metrics on maps alone


def as_batch(inputs: Any) -> Tensor:
    """The inputs as a tensor with a batch axis and at least one sample."""
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


@dataclass
class MapRun(MetricRun):
    """A run of a metric on maps alone: ``view`` is the inputs with a channel axis (``(N, D)``
    becomes ``(N, 1, D)``), ``masks`` the checked ground truth ``(N, *spatial)`` or None."""

    maps: Tensor  # resolved: never None here
    view: Tensor = field(kw_only=True)
    masks: Tensor | None = None


class MapMetric(Metric[MapRun]):
    """A metric computed on the maps alone (localization, complexity): the model runs only
    when ``maps`` is an attribution method, which is run here on the inputs and ``target``
    with its own batching (``batching`` is only validated)."""

    needs: ClassVar[frozenset[str]] = frozenset()
    #: Whether maps that are zero everywhere for a sample are accepted (the value is then NaN).
    allow_zero_maps: ClassVar[bool] = False

    def prepare(self, model, inputs, maps, *, target, batching, seed, settings) -> MapRun:
        x = as_batch(inputs)
        view = x.unsqueeze(1) if x.dim() == 2 else x
        settings = self.check(settings)
        masks = None
        if "masks" in self.needs:
            if settings.get("masks") is None:
                raise InputError(
                    f"{self.name} needs masks=: one ground-truth mask per input marking the evidence "
                    f"(e.g. make_shapes(...).masks)"
                )
            masks = check_masks(settings.pop("masks"), view)
        as_batching(batching)
        source = _source_name(maps)
        n_evaluations = 0
        from ..attribution import Attribution

        if isinstance(maps, Attribution):
            maps = maps.attribute(x, target=target)
            n_evaluations = int(maps.n_evaluations)
        resolved = resolve_maps(maps, view, model=model, target=target, allow_zero=self.allow_zero_maps)
        return MapRun(
            model,
            x,
            resolved,
            target,
            settings,
            seed,
            batching,
            source,
            n_evaluations,
            record={"maps": source},
            view=view,
            masks=masks,
        )
