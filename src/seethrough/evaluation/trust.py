"""The trust report: every metric for every method on one model and data set, with the
randomization curves, example maps and a ranking per metric family.

    report = trust_report(model, images, ["saliency", "integrated_gradients", "gradcam"],
                          masks=evidence_masks, layer="features.16")
    report.save("trust.html")
    report.table()          # one dict per method: metric -> mean value

Every method explains the same target: by default the class the model predicts on each input,
fixed once before any method runs (also for the randomized models of the sanity check).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._core.errors import ConfigError, SeethroughError
from .._core.result import Explanation, Result
from .._core.validation import check_inputs
from ._common import MetricResult, check_masks, resolve_target_indices
from ._methods import method_factory
from .registry import METRIC_FAMILIES, MetricSpec, get_metric, select_metrics

__all__ = ["TrustReport", "trust_report", "method_factory", "family_rankings"]

MethodLike = Any  # a registry name, an Attribution, or a callable model -> Attribution


#: Settings the trust report uses instead of a metric's own defaults, and why.
REPORT_DEFAULTS: dict[str, dict[str, Any]] = {"deletion": {"baseline": "blur"}}
REPORT_DEFAULT_REASONS = {
    "deletion": "deleting to black leaves the object's silhouette and scatters out-of-distribution "
    "black pixels, so on the bundled shapes data a random map scored close to integrated gradients; "
    "deleting to the blurred image separates them (docs/evaluation-faithfulness.md)",
}


#: Metrics that perturb image regions, left out (with a note) for other inputs.
IMAGE_ONLY = ("region_perturbation", "road")


def _measures_for(x: Tensor) -> tuple[str, ...]:
    """Similarity measures that apply to maps of ``x``: SSIM and HOG need 2-D maps of at least
    16 x 16; the Spearman measures apply to any map."""
    from .randomization import DEFAULT_MEASURES

    if x.dim() == 4 and min(x.shape[-2:]) >= 16:
        return tuple(DEFAULT_MEASURES)
    return ("spearman_abs", "spearman")


def _fix_target(model: nn.Module, x: Tensor, target) -> tuple[Any, Tensor | None]:
    """The target every method explains, fixed once: the predicted class (None, or a
    ``Predicted`` with its output kept), the given indices, or a Target object as given."""
    from .._core.targets import Class, Predicted, Target

    if isinstance(target, Target) and not isinstance(target, Predicted):
        idx = resolve_target_indices(model, x, target) if isinstance(target, Class) else None
        return target, idx
    idx = resolve_target_indices(model, x, None if isinstance(target, Predicted) else target)
    if isinstance(target, Predicted):
        assert idx is not None  # the predicted class always resolves
        return Class(idx, output=getattr(target, "output", "logit")), idx
    return idx, idx


def family_rankings(
    results: Mapping[str, Mapping[str, MetricResult]], specs: Sequence[MetricSpec], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{family: {method: mean rank}}``: each metric ranks only the methods that have a value
    for it (a missing value is not a bad one); a method's family rank is its mean over the
    metrics it has (NaN if none)."""
    rankings: dict[str, dict[str, float]] = {}
    for fam in METRIC_FAMILIES:
        per_metric = []
        for s in (s for s in specs if s.family == fam):
            vals = {m: results[m][s.name].mean for m in names if s.name in results.get(m, {})}
            vals = {m: v for m, v in vals.items() if not np.isnan(v)}
            if vals:
                per_metric.append(_ranks(vals, s.higher_is_better))
        if per_metric:
            rankings[fam] = {
                m: float(np.mean([r[m] for r in per_metric if m in r]))
                if any(m in r for r in per_metric)
                else float("nan")
                for m in names
            }
    return rankings


def _ranks(values: Mapping[str, float], higher_is_better: bool) -> dict[str, float]:
    """Rank 1 = best; ties share their mean rank; NaN ranks last."""
    names = list(values)
    v = np.array([values[n] for n in names], dtype=float)
    key = np.where(np.isnan(v), np.inf, -v if higher_is_better else v)
    order = np.argsort(key, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for val in np.unique(key):
        same = key == val
        ranks[same] = ranks[same].mean()
    return {n: float(r) for n, r in zip(names, ranks)}


@dataclass(frozen=True, eq=False)
class TrustReport(Result):
    """Every metric for every method, with the sanity-check curves and example maps.

    Attributes
    ----------
    methods: method names in the order given.
    metrics: the metric specs that were run, in family order.
    results: ``results[method][metric]`` is a :class:`MetricResult`.
    failures: ``failures[method][metric]`` says why a value is missing (an error the metric
        raised on this method's maps, or the time budget).
    explanations: the maps each method produced on the inputs.
    sanity: ``sanity[method]`` the model-randomization result (curves per layer), when run.
    data_randomization: ``data_randomization[method]``, when a random-label model was given.
    rankings: ``rankings[family][method]`` the mean rank (1 = best) over the family's metrics.

    ``to_html()`` renders the report page (:mod:`seethrough.evaluation.views`);
    ``save("trust.html")`` writes it, ``save("trust.safetensors")`` keeps the whole report in
    one file that :meth:`load` reads back.
    """

    title: str
    methods: tuple[str, ...]
    metrics: tuple[MetricSpec, ...]
    results: Mapping[str, Mapping[str, MetricResult]]
    failures: Mapping[str, Mapping[str, str]]
    explanations: Mapping[str, Explanation]
    inputs: Tensor
    masks: Tensor | None
    target_indices: Tensor | None
    sanity: Mapping[str, Any] = field(default_factory=dict)
    data_randomization: Mapping[str, Any] = field(default_factory=dict)
    rankings: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    def value(self, method: str, metric: str) -> float:
        r = self.results.get(method, {}).get(metric)
        return float("nan") if r is None else r.mean

    def table(self) -> list[dict[str, Any]]:
        """One row per method: ``{"method": name, metric: mean value, ...}`` (NaN where missing)."""
        return [{"method": m, **{s.name: self.value(m, s.name) for s in self.metrics}} for m in self.methods]

    def best(self, metric: str) -> str:
        spec = next((s for s in self.metrics if s.name == metric), None)
        if spec is None:
            raise ConfigError(f"metric {metric!r} was not run; run: {[s.name for s in self.metrics]}")
        ranks = _ranks({m: self.value(m, metric) for m in self.methods}, spec.higher_is_better)
        return min(ranks, key=ranks.__getitem__)

    def __post_init__(self) -> None:
        super().__post_init__()
        # a loaded report names its metrics; the registry gives their specs back
        specs = tuple(get_metric(m) if isinstance(m, str) else m for m in self.metrics)
        object.__setattr__(self, "metrics", specs)

    def save(self, path: str | Path) -> Path:
        """Write the report: an HTML page for ``.html``/``.htm`` paths, else every field in
        one ``.safetensors`` file (see :class:`~seethrough._core.result.Result`)."""
        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            return super().save(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(), encoding="utf-8")
        return path


def trust_report(
    model: nn.Module,
    inputs: Tensor,
    methods: Sequence[MethodLike],
    *,
    target=None,
    masks: Any = None,
    layer=None,
    metrics: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    metric_settings: Mapping[str, Mapping[str, Any]] | None = None,
    randomization: bool = True,
    random_label_model: nn.Module | None = None,
    class_names: Sequence[str] | None = None,
    time_budget: float | None = None,
    max_samples: int | None = None,
    batching=None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    title: str = "seethrough trust report",
) -> TrustReport:
    """Evaluate ``methods`` on ``model`` and ``inputs`` with every applicable metric.

    ``masks``: ground-truth evidence masks ``(N, H, W)``; localization metrics run only with
    them. ``metrics``/``families`` choose a subset (default: all that apply).
    ``metric_settings``: per-metric keyword arguments, e.g. ``{"deletion": {"steps": 32}}``.
    ``randomization``: run the cascading model-parameter randomization check (curves in the
    report). ``random_label_model``: the same architecture trained on permuted labels, for
    the data randomization check. ``time_budget`` (seconds) stops starting new metric
    computations once spent (what was skipped is listed); ``max_samples`` uses only the first
    inputs. ``progress`` receives one line per step.
    """
    from . import randomization as rnd

    t0 = time.perf_counter()
    x = check_inputs(model, inputs)
    if max_samples is not None:
        if max_samples < 1:
            raise ConfigError(f"max_samples must be at least 1, got {max_samples}")
        x = x[:max_samples]
    if masks is not None:
        masks = check_masks(torch.as_tensor(masks)[: x.shape[0]], x)
    if not methods:
        raise ConfigError("give at least one method (e.g. ['saliency', 'integrated_gradients'])")
    if time_budget is not None and time_budget <= 0:
        raise ConfigError(f"time_budget must be positive seconds, got {time_budget}")
    specs = select_metrics(metrics, families=families, have_masks=masks is not None)
    settings = {k: dict(v) for k, v in (metric_settings or {}).items()}
    unknown = set(settings) - {s.name for s in specs}
    if unknown:
        raise ConfigError(f"metric_settings for metrics that are not run: {sorted(unknown)}")
    notes: list[str] = []
    images = x.dim() == 4
    if not images:
        dropped = [s.name for s in specs if s.name in IMAGE_ONLY and metrics is None]
        if dropped:
            specs = [s for s in specs if s.name not in dropped]
            notes.append(f"Left out on non-image inputs (they perturb image regions): {', '.join(dropped)}.")
        if any(s.name == "insertion" for s in specs) and "baseline" not in settings.get("insertion", {}):
            settings["insertion"] = {"baseline": 0.0, **settings.get("insertion", {})}
            notes.append("insertion starts from zeros here (its blurred start needs images).")
    for name, defaults in REPORT_DEFAULTS.items() if images else ():
        if any(s.name == name for s in specs):
            changed = {k: v for k, v in defaults.items() if k not in settings.get(name, {})}
            if changed:
                settings[name] = {**changed, **settings.get(name, {})}
                notes.append(f"{name} runs with {changed} in this report ({REPORT_DEFAULT_REASONS[name]}).")
    say = progress or (lambda _s: None)

    fixed_target, target_indices = _fix_target(model, x, target)

    factories: dict[str, Callable] = {}
    for m in methods:
        name, factory = method_factory(m, model, layer=layer)
        if name in factories:
            name = f"{name}-{len(factories)}"
        factories[name] = factory

    def over_budget() -> bool:
        return time_budget is not None and time.perf_counter() - t0 > time_budget

    results: dict[str, dict[str, MetricResult]] = {n: {} for n in factories}
    failures: dict[str, dict[str, str]] = {n: {} for n in factories}
    explanations: dict[str, Explanation] = {}
    sanity: dict[str, Any] = {}
    sanity_failed: set[str] = set()
    data_rand: dict[str, Any] = {}
    measures = _measures_for(x)

    for name, factory in factories.items():
        method = factory(model)
        if over_budget():
            failures[name] = {s.name: "time budget spent" for s in specs}
            continue
        say(f"{name}: maps")
        try:
            explanations[name] = method.attribute(x, target=fixed_target)
        except SeethroughError as e:
            failures[name] = {s.name: f"the method failed: {type(e).__name__}: {e}" for s in specs}
            continue
        for spec in specs:
            if over_budget():
                failures[name][spec.name] = "time budget spent"
                continue
            say(f"{name}: {spec.name}")
            source = method if "method" in spec.needs else explanations[name]
            kwargs = dict(settings.get(spec.name, {}))
            if "masks" in spec.needs:
                kwargs["masks"] = masks
            if spec.family == "randomization":
                kwargs.setdefault("method_factory", factory)
            shared = results[name].get("max_sensitivity")
            if (
                spec.name == "avg_sensitivity"
                and shared is not None
                and settings.get("avg_sensitivity", {}) == settings.get("max_sensitivity", {})
            ):
                # Same seed and settings give the same draws: the mean is in max_sensitivity's extras.
                results[name][spec.name] = MetricResult(
                    name="avg_sensitivity",
                    values=shared.extras["mean"],
                    higher_is_better=False,
                    settings=shared.settings,
                    extras={
                        "sensitivities": shared.extras["sensitivities"],
                        "max": shared.values,
                        "shared_with": "max_sensitivity",
                    },
                )
                continue
            if spec.name == "model_randomization" and randomization and not (set(kwargs) - {"method_factory"}):
                # The curves below run the same cascade with every measure: read the metric off it.
                try:
                    sanity[name] = rnd.ModelRandomizationCheck(
                        factory, mode="cascading", seed=seed, similarity=measures, batching=batching
                    ).run(model, x, target=fixed_target)
                    results[name][spec.name] = rnd.randomization_metric(sanity[name])
                except SeethroughError as e:
                    failures[name][spec.name] = f"{type(e).__name__}: {e}"
                    sanity_failed.add(name)
                continue
            try:
                results[name][spec.name] = spec.fn(
                    model, x, source, target=fixed_target, batching=batching, seed=seed, **kwargs
                )
            except SeethroughError as e:
                failures[name][spec.name] = f"{type(e).__name__}: {e}"
        if randomization and name not in sanity and name not in sanity_failed and not over_budget():
            say(f"{name}: randomization curves")
            try:
                check = rnd.ModelRandomizationCheck(
                    factory, mode="cascading", seed=seed, similarity=measures, batching=batching
                )
                sanity[name] = check.run(model, x, target=fixed_target)
            except SeethroughError as e:
                notes.append(f"{name}: the randomization curves could not be computed ({type(e).__name__}: {e}).")
        if random_label_model is not None and not over_budget():
            say(f"{name}: data randomization")
            try:
                data_rand[name] = rnd.data_randomization_check(
                    factory,
                    model,
                    random_label_model,
                    x,
                    target=fixed_target,
                    seed=seed,
                    similarity=measures,
                    batching=batching,
                )
            except SeethroughError as e:
                notes.append(f"{name}: the data randomization check failed ({type(e).__name__}: {e}).")

    if time_budget is not None and over_budget():
        notes.append(f"The time budget of {time_budget:g} s was spent; the missing values are listed below.")

    names = list(factories)
    rankings = family_rankings(results, specs, names)

    return TrustReport(
        title=title,
        methods=tuple(names),
        metrics=tuple(specs),
        results={k: dict(v) for k, v in results.items()},
        failures={k: dict(v) for k, v in failures.items() if v},
        explanations=explanations,
        inputs=x.detach().cpu(),
        masks=None if masks is None else masks.cpu(),
        target_indices=target_indices,
        sanity=sanity,
        data_randomization=data_rand,
        rankings=rankings,
        class_names=tuple(class_names) if class_names else None,
        notes=tuple(notes),
        seconds=time.perf_counter() - t0,
    )
