"""Sanity checks of explanations (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

An explanation that is meant to say something about *the model* must change when the model
is destroyed. Two checks:

**Model parameter randomization** (:class:`ModelRandomizationCheck`). The layers of a copy of
the model are re-initialised, starting at the output layer and going back to the input
(``mode="cascading"``: cumulatively, so the last stage is a fully random network), or one at
a time with every other layer intact (``mode="independent"``). At each stage the method
explains the randomized model and its maps are compared with the original maps by the
measures of :mod:`seethrough.evaluation.similarity` (Spearman rank correlation with and
without absolute values, SSIM, HOG correlation). A method that passes loses the similarity;
one whose maps survive the randomization (guided backpropagation is the classic case) is
showing something other than what the model learned, typically edges of the input.

**Data randomization** (:func:`data_randomization_check`): the same comparison between the
model and a model of the same architecture trained on randomly permuted labels (the zoo's
``shapes-cnn-random-labels``): it cannot have learned anything about the task, so a faithful
explanation of it must differ.

Rules that hold throughout:

- The user's model is never modified: randomization works on a ``copy.deepcopy`` of it
  (made inside :func:`~seethrough._core.state.model_guard`, so it is in eval mode).
- Layers: every module with its own parameters that runs in the forward pass, in forward
  execution order (recorded with forward hooks on one sample). BatchNorm layers are included
  by default (``include_batchnorm=True``): their re-initialisation is not random (weight 1,
  bias 0, running mean 0, running variance 1), but keeping their trained statistics under
  a random convolution would normalise its output with statistics of another layer and wash
  the signal out, which is not what a random network computes. ``layers=`` names layers or
  blocks explicitly (a block randomizes every parameterised module inside it).
- Re-initialisation: the layer's own ``reset_parameters()`` with the torch RNG seeded from
  ``seed`` and the layer's name (so a layer gets the same random weights in both modes);
  only the generators it draws from (the CPU's and the layer's device's) are seeded, and
  restored afterwards, so the caller's RNG state on every device is left as it was;
  without ``reset_parameters()``, every parameter of the layer is redrawn from a Gaussian
  N(0, s^2), s the standard deviation of the layer's ``weight``. A layer with neither (no
  ``reset_parameters()`` and no ``weight`` with a spread) cannot be randomized: an error if
  it was asked for, skipped with a note in the result otherwise.
- Target: the class the *original* model predicts (or the target given) is kept fixed for
  every randomized model, so all maps explain the same output index.
- Maps are compared per position: channels are summed (signed), as
  :func:`~seethrough.evaluation.pixel_maps` does.
- Verdict per measure: PASS when the similarity to the original maps, averaged over the
  samples and over the randomization stages (the area under the similarity curve divided
  by its length), is below the measure's threshold (:data:`DEFAULT_THRESHOLDS`, 0.5). For
  the data check there is one stage, the random-label model. The average over the cascade
  rather than its last stage: a method that ignores the top layers (the ones that decide
  the class) fails Adebayo et al.'s test even if randomizing the first convolution finally
  changes its maps; on the bundled ``shapes-cnn`` guided backpropagation keeps a Spearman
  correlation of about 0.9 while the classifier and upper blocks are randomized and drops only
  with the first two convolutions, so its *last-stage* similarity is as low as the gradient's
  (numbers in ``docs/evaluation-sanity.md``). Adebayo et al. judged the maps visually; the
  thresholds are this package's choice, with the measured values in the docs.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .._core.errors import ConfigError, InputError, ZeroAttributionWarning
from .._core.layers import LayerRef
from .._core.result import Explanation, Result
from .._core.targets import Class, Predicted, TargetLike, as_target
from .._core.validation import check_inputs
from ._common import MetricResult, pixel_maps
from ._methods import MethodFactory, _Factory, _method_settings
from ._randomize import _copy_model, _plan, _randomize_module, _Unit, randomization_layers
from .metric import Metric, MetricRun, Score
from .similarity import SIMILARITIES, _check_names
from .similarity import compare_maps as _similarity

__all__ = [
    "ModelRandomizationCheck",
    "SanityResult",
    "data_randomization_check",
    "model_randomization",
    "randomization_metric",
    "randomization_layers",
    "ModelRandomization",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_MEASURES",
    "METRICS",
]

#: PASS when the mean similarity after randomization is below these (see the module doc).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "spearman_abs": 0.5,
    "spearman": 0.5,
    "ssim": 0.5,
    "hog": 0.5,
}

_MODES = ("cascading", "independent")
#: The similarity measures a check computes by default.
DEFAULT_MEASURES = ("spearman_abs", "spearman", "ssim", "hog")
_DEFAULT_MEASURES = DEFAULT_MEASURES


# ---------------------------------------------------------------------------------------
# maps and target
# ---------------------------------------------------------------------------------------
def _fixed_target(target: TargetLike, explanation: Any) -> Any:
    """The target for the randomized models: the original's predicted class, kept fixed."""
    t = as_target(target)
    if isinstance(t, Predicted) and explanation.target_indices is not None:
        return Class(explanation.target_indices.clone(), output=t.output)
    return t


def _flat_maps(attributions: Tensor, inputs: Tensor) -> Tensor:
    """One value per position and sample: channels summed (signed), float64 on the CPU."""
    a = attributions.detach()
    if a.dim() == inputs.dim() and a.dim() >= 3:
        a = pixel_maps(a, inputs, reduce="sum")
    return a.to(torch.float64).cpu()


def _is_constant(maps: Tensor) -> Tensor:
    flat = maps.reshape(maps.shape[0], -1)
    return (flat == flat[:, :1]).all(dim=1)


# ---------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SanityResult(Result):
    """The outcome of a sanity check.

    Attributes
    ----------
    check:
        ``"cascading"``, ``"independent"`` or ``"data"``.
    method:
        The attribution method's registry name.
    stages:
        What was randomized at each stage, in order: layer names from the output layer
        back to the input (model checks), or ``("random labels",)`` (data check).
    similarity:
        Per measure, the similarity of every sample's map to its original map at every
        stage, ``(n_stages, N)`` float64 (NaN for samples whose original map is constant).
    scores:
        Per measure, the number the verdict compares with the threshold: the similarity
        averaged over the samples and the stages (NaN samples skipped).
    thresholds, verdicts:
        Per measure, the threshold and ``"PASS"`` (score below it), ``"FAIL"``, or ``"N/A"``.
    target:
        The explained target, kept fixed for every randomized model.
    target_indices:
        The class explained per sample (the original model's prediction by default).
    example_indices, example_inputs, original_maps, randomized_maps:
        A few samples for plotting: their inputs, original maps ``(k, *spatial)`` and maps at
        every stage ``(n_stages, k, *spatial)`` (channels summed).
    skipped:
        ``(layer, reason)`` for the layers that were not randomized.
    settings, n_evaluations, seconds:
        The check's settings, model rows evaluated by the explanations, wall-clock time.

    ``plot()`` draws the similarity curves and ``to_html()`` the table, curves and example
    maps (:mod:`seethrough.evaluation.views`); ``save``/``load`` keep it in one file.
    """

    check: str
    method: str
    stages: tuple[str, ...]
    similarity: Mapping[str, Tensor]
    scores: Mapping[str, float]
    thresholds: Mapping[str, float]
    verdicts: Mapping[str, str]
    target: str
    target_indices: Tensor | None
    example_indices: Tensor
    example_inputs: Tensor
    original_maps: Tensor
    randomized_maps: Tensor
    skipped: tuple[tuple[str, str], ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    n_evaluations: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()  # the mappings, frozen deeply
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "skipped", tuple(tuple(s) for s in self.skipped))

    @property
    def measures(self) -> tuple[str, ...]:
        return tuple(self.similarity)

    @property
    def passed(self) -> bool:
        """Whether every measure's verdict is PASS."""
        return all(v == "PASS" for v in self.verdicts.values())

    def mean_curve(self, measure: str) -> Tensor:
        """Mean similarity over the samples at each stage, ``(n_stages,)`` (NaN skipped)."""
        if measure not in self.similarity:
            raise ConfigError(f"measure {measure!r} was not computed; computed: {', '.join(self.similarity)}")
        return torch.nanmean(self.similarity[measure], dim=1)

    def final(self, measure: str) -> Tensor:
        """Per-sample similarity at the last stage, ``(N,)``."""
        if measure not in self.similarity:
            raise ConfigError(f"measure {measure!r} was not computed; computed: {', '.join(self.similarity)}")
        return self.similarity[measure][-1]

    def verdict_text(self) -> str:
        """One line: each measure's score, threshold and verdict, e.g.
        ``"spearman_abs 0.596 >= 0.5 FAIL; hog 0.632 >= 0.5 FAIL"``."""
        parts = []
        for m in self.similarity:
            score, thr, v = self.scores[m], self.thresholds[m], self.verdicts[m]
            rel = "?" if v == "N/A" else ("<" if v == "PASS" else ">=")
            parts.append(f"{m} {score:.3f} {rel} {thr:g} {v}")
        return "; ".join(parts)

    def table(self) -> list[dict[str, Any]]:
        """One row per measure: score, threshold, verdict (for reports)."""
        return [
            {"measure": m, "score": self.scores[m], "threshold": self.thresholds[m], "verdict": self.verdicts[m]}
            for m in self.similarity
        ]

    def __repr__(self) -> str:
        parts = ", ".join(f"{m}={self.scores[m]:.3f} {self.verdicts[m]}" for m in self.similarity)
        return f"SanityResult({self.check}, method={self.method!r}, {len(self.stages)} stages: {parts})"


def _verdicts(sims: Mapping[str, Tensor], thresholds: Mapping[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    scores: dict[str, float] = {}
    verdicts: dict[str, str] = {}
    for m, s in sims.items():
        score = float(torch.nanmean(torch.nanmean(s, dim=1)))
        scores[m] = score
        verdicts[m] = "N/A" if math.isnan(score) else ("PASS" if score < thresholds[m] else "FAIL")
    return scores, verdicts


def _thresholds(measures: Sequence[str], given: Mapping[str, float] | None) -> dict[str, float]:
    out = {m: DEFAULT_THRESHOLDS[m] for m in measures}
    for k, v in dict(given or {}).items():
        if k not in SIMILARITIES:
            raise ConfigError(f"threshold given for unknown measure {k!r}; measures: {', '.join(SIMILARITIES)}")
        if not isinstance(v, (int, float)) or not -1.0 <= float(v) <= 1.0:
            raise ConfigError(f"threshold of {k!r} must be a number in [-1, 1], got {v!r}")
        if k in out:
            out[k] = float(v)
    return out


class _Comparer:
    """Holds the original maps; compares the maps of each stage with them."""

    def __init__(self, original: Tensor, measures: Sequence[str], n_examples: int) -> None:
        self.original = original
        self.measures = tuple(measures)
        self.undefined = _is_constant(original)
        self.k = min(max(int(n_examples), 0), original.shape[0])
        self.sims: dict[str, list[Tensor]] = {m: [] for m in self.measures}
        self.examples: list[Tensor] = []
        # fail on maps a measure cannot compare (too small, not 2-D) before any randomization
        for m in self.measures:
            _similarity(m, original[:1], original[:1])

    def add(self, maps: Tensor) -> None:
        if maps.shape != self.original.shape:
            raise InputError(
                f"the method returned maps of shape {tuple(maps.shape)} for the randomized model but "
                f"{tuple(self.original.shape)} for the original; it must return maps of one shape"
            )
        for m in self.measures:
            s = _similarity(m, self.original, maps).to(torch.float64)
            s[self.undefined] = float("nan")
            self.sims[m].append(s)
        self.examples.append(maps[: self.k].clone())

    def stacked(self) -> tuple[dict[str, Tensor], Tensor]:
        sims = {m: torch.stack(v) for m, v in self.sims.items()}
        ex = torch.stack(self.examples) if self.examples else torch.empty(0)
        return sims, ex


def _explain(method: Any, x: Tensor, target: Any, quiet: bool) -> Any:
    if not quiet:
        return method.attribute(x, target=target)
    with warnings.catch_warnings():
        # randomized networks often give all-zero maps (dead ReLUs); that is the finding, not a fault
        warnings.simplefilter("ignore", ZeroAttributionWarning)
        return method.attribute(x, target=target)


# ---------------------------------------------------------------------------------------
# model parameter randomization
# ---------------------------------------------------------------------------------------
class ModelRandomizationCheck:
    """Model parameter randomization test (Adebayo et al. 2018).

    Parameters
    ----------
    method_factory:
        A callable ``model -> attribution method`` (``lambda m: seethrough.GradCAM(m,
        layer="features.16")``), a registry name (``"saliency"``; settings and ``layer`` in
        ``method_settings``), or a method instance built on the checked model (it is re-bound
        to each randomized copy, layers given as modules included).
    mode:
        ``"cascading"`` (default): re-initialise the layers from the output layer backwards,
        cumulatively. ``"independent"``: one layer at a time, the others as trained.
    layers:
        Layer names or modules (or blocks) to randomize; ``None`` (default): every
        parameterised module that runs in the forward pass (BatchNorm per
        ``include_batchnorm``).
    similarity:
        Measures to compute (default: all four: ``"spearman_abs"``, ``"spearman"``,
        ``"ssim"``, ``"hog"``); see :mod:`seethrough.evaluation.similarity`.
    seed:
        Seeds the re-initialisation (per layer: from ``seed`` and the layer's name).
    include_batchnorm:
        Randomize BatchNorm layers too (default True; see the module docstring).
    thresholds:
        Per-measure thresholds overriding :data:`DEFAULT_THRESHOLDS`.
    n_examples:
        Samples whose maps are kept for plotting (the first ``n_examples``; default 4).
    method_settings:
        Settings of a method given by registry name (``{"layer": "features.16"}``).
    batching:
        Batching given to every method built (``None``: the method's own).

    The similarity at each stage is between the map of the randomized model and the
    original map, for the original model's predicted class (or ``target``), kept fixed.
    """

    def __init__(
        self,
        method_factory: MethodFactory,
        *,
        mode: str = "cascading",
        layers: Sequence[LayerRef] | None = None,
        similarity: Sequence[str] | str = _DEFAULT_MEASURES,
        seed: int = 0,
        include_batchnorm: bool = True,
        thresholds: Mapping[str, float] | None = None,
        n_examples: int = 4,
        method_settings: Mapping[str, Any] | None = None,
        batching: Any = None,
    ) -> None:
        # what is explained, what is randomized, and how the maps are compared
        self.method_factory, self.method_settings, self.batching = method_factory, method_settings, batching
        self.mode, self.layers, self.include_batchnorm, self.seed = mode, layers, include_batchnorm, seed
        self.similarity, self.thresholds, self.n_examples = similarity, thresholds, n_examples

    def settings(self) -> dict[str, Any]:
        layers = None
        if self.layers is not None:
            refs = [self.layers] if isinstance(self.layers, (str, nn.Module)) else list(self.layers)
            layers = [r if isinstance(r, str) else type(r).__name__ for r in refs]
        return {
            "mode": self.mode,
            "layers": layers,
            "similarity": list(_check_names(self.similarity)),
            "seed": self.seed,
            "include_batchnorm": self.include_batchnorm,
            "channel_reduction": "sum",
        }

    def _check_settings(self) -> tuple[str, ...]:
        if self.mode not in _MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; use 'cascading' or 'independent'")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")
        if not isinstance(self.n_examples, int) or self.n_examples < 0:
            raise ConfigError(f"n_examples must be a non-negative int, got {self.n_examples!r}")
        return _check_names(self.similarity)

    # -- the randomized copies ------------------------------------------------------
    def randomized_models(self, model: nn.Module, inputs: Tensor) -> Iterator[tuple[str, nn.Module]]:
        """Yield ``(layer name, randomized copy)`` for each stage, output layer first.

        One copy of ``model`` is made and modified in place from stage to stage
        (cumulatively for ``"cascading"``; for ``"independent"`` the previous layer is
        restored before the next is randomized), so use each copy before advancing. One
        sample of ``inputs`` runs through the copy to record the execution order.
        """
        if self.mode not in _MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; use 'cascading' or 'independent'")
        x = check_inputs(model, inputs)
        work = _copy_model(model)
        units, _ = _plan(model, work, x[:1].clone(), self.layers, self.include_batchnorm)
        yield from self._stages(work, units)

    def _stages(self, work: nn.Module, units: list[_Unit]) -> Iterator[tuple[str, nn.Module]]:
        modules = dict(work.named_modules())
        for unit in reversed(units):
            # by name, so a reset_parameters() that assigns new tensors is undone as well
            saved: list[tuple[nn.Module, str, str, Tensor]] = []
            if self.mode == "independent":
                for sub, _ in unit.members:
                    m = modules[sub]
                    for kind in ("_parameters", "_buffers"):
                        for key, t in getattr(m, kind).items():
                            if t is not None:
                                saved.append((m, kind, key, t.detach().clone()))
            for sub, how in unit.members:
                _randomize_module(modules[sub], sub, how, self.seed)
            yield unit.name, work
            if self.mode == "independent":
                with torch.no_grad():
                    for m, kind, key, value in saved:
                        getattr(m, kind)[key].copy_(value)

    # -- the check ------------------------------------------------------------------
    def run(self, model: nn.Module, inputs: Tensor, target: TargetLike = None) -> SanityResult:
        """Run the check on ``inputs`` (a batch) and return a :class:`SanityResult`."""
        start = time.perf_counter()
        measures = self._check_settings()
        thresholds = _thresholds(measures, self.thresholds)
        x = check_inputs(model, inputs)
        factory = _Factory(self.method_factory, self.method_settings, self.batching)
        method = factory(model, model)
        expl = method.attribute(x, target=target)
        fixed = _fixed_target(target, expl)
        comparer = _Comparer(_flat_maps(expl.attributions, x), measures, self.n_examples)
        n_eval = expl.n_evaluations

        work = _copy_model(model)
        units, skipped = _plan(model, work, x[:1].clone(), self.layers, self.include_batchnorm)
        n_eval += 1
        stages: list[str] = []
        for name, randomized in self._stages(work, units):
            e = _explain(factory(randomized, model), x, fixed, quiet=True)
            comparer.add(_flat_maps(e.attributions, x))
            n_eval += e.n_evaluations
            stages.append(name)
        sims, examples = comparer.stacked()
        scores, verdicts = _verdicts(sims, thresholds)
        k = comparer.k
        return SanityResult(
            check=self.mode,
            method=getattr(method, "name", type(method).__name__),
            stages=tuple(stages),
            similarity=sims,
            scores=scores,
            thresholds=thresholds,
            verdicts=verdicts,
            target=expl.target if not isinstance(fixed, Class) else fixed.describe(),
            target_indices=expl.target_indices,
            example_indices=torch.arange(k),
            example_inputs=x[:k].detach().cpu().clone(),
            original_maps=comparer.original[:k].clone(),
            randomized_maps=examples,
            skipped=tuple(skipped),
            settings={**self.settings(), "method_settings": _method_settings(method), "thresholds": thresholds},
            n_evaluations=n_eval,
            seconds=time.perf_counter() - start,
        )

    def __repr__(self) -> str:
        return f"ModelRandomizationCheck(mode={self.mode!r}, seed={self.seed}, similarity={self.similarity!r})"


# ---------------------------------------------------------------------------------------
# data randomization
# ---------------------------------------------------------------------------------------
def _same_architecture(model: nn.Module, other: nn.Module) -> None:
    if not isinstance(other, nn.Module):
        raise TypeError(f"random_label_model must be a torch.nn.Module, not {type(other).__name__}")
    a = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in other.state_dict().items()}
    if a != b:
        diff = sorted(set(a.items()) ^ set(b.items()))[:3]
        raise ConfigError(
            f"random_label_model must have the architecture of model (same parameter names and shapes); they "
            f"differ at {', '.join(f'{k} {s}' for k, s in diff)}. Train the same architecture on permuted "
            f"labels, e.g. zoo.load('shapes-cnn-random-labels') for 'shapes-cnn'"
        )
    if other is model:
        raise ConfigError("random_label_model is the model itself; pass the model trained on permuted labels")


def data_randomization_check(
    method_factory: MethodFactory,
    model: nn.Module,
    random_label_model: nn.Module,
    inputs: Tensor,
    *,
    target: TargetLike = None,
    similarity: Sequence[str] | str = _DEFAULT_MEASURES,
    thresholds: Mapping[str, float] | None = None,
    n_examples: int = 4,
    method_settings: Mapping[str, Any] | None = None,
    batching: Any = None,
    seed: int = 0,
) -> SanityResult:
    """Data randomization test (Adebayo et al. 2018).

    Compares the maps of ``model`` with those of ``random_label_model``, the same
    architecture trained on randomly permuted labels, for the same inputs and the same
    target (``model``'s predicted class unless ``target`` is given). Same measures,
    thresholds and verdict as :class:`ModelRandomizationCheck` (PASS: mean similarity below
    the threshold). ``method_factory`` as there. Neither model is modified. ``seed`` is
    accepted for a call uniform with the model check; this check draws nothing at random.
    """
    start = time.perf_counter()
    measures = _check_names(similarity)
    thr = _thresholds(measures, thresholds)
    if not isinstance(n_examples, int) or n_examples < 0:
        raise ConfigError(f"n_examples must be a non-negative int, got {n_examples!r}")
    x = check_inputs(model, inputs)
    _same_architecture(model, random_label_model)
    check_inputs(random_label_model, x, name="inputs (for random_label_model)")
    factory = _Factory(method_factory, method_settings, batching)
    method = factory(model, model)
    expl = method.attribute(x, target=target)
    fixed = _fixed_target(target, expl)
    comparer = _Comparer(_flat_maps(expl.attributions, x), measures, n_examples)
    e = _explain(factory(random_label_model, model), x, fixed, quiet=True)
    comparer.add(_flat_maps(e.attributions, x))
    sims, examples = comparer.stacked()
    scores, verdicts = _verdicts(sims, thr)
    k = comparer.k
    return SanityResult(
        check="data",
        method=getattr(method, "name", type(method).__name__),
        stages=("random labels",),
        similarity=sims,
        scores=scores,
        thresholds=thr,
        verdicts=verdicts,
        target=fixed.describe() if isinstance(fixed, Class) else expl.target,
        target_indices=expl.target_indices,
        example_indices=torch.arange(k),
        example_inputs=x[:k].detach().cpu().clone(),
        original_maps=comparer.original[:k].clone(),
        randomized_maps=examples,
        settings={
            "similarity": list(measures),
            "channel_reduction": "sum",
            "thresholds": thr,
            "method_settings": _method_settings(method),
            "seed": seed,
        },
        n_evaluations=expl.n_evaluations + e.n_evaluations,
        seconds=time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------------------
# the metric, with the uniform signature
# ---------------------------------------------------------------------------------------
@dataclass
class _RandomizationRun(MetricRun):
    """A run of :class:`ModelRandomization`: the cascading check's result."""

    check: SanityResult = field(kw_only=True)


class ModelRandomization(Metric[_RandomizationRun]):
    """Model parameter randomization as a metric: per sample, the similarity between the
    original map and the map of the fully randomized model (cascading randomization of every
    layer, output layer first; see :class:`ModelRandomizationCheck`).

    Definition: ``values[i] = sim(E(f, x_i), E(f_rand, x_i))`` with ``sim`` the measure
    ``similarity`` (default ``"spearman_abs"``), ``f_rand`` the model with all its layers
    re-initialised (seeded by ``seed``), both explained for ``f``'s predicted class (or
    ``target``). Direction: **lower is better** (an explanation that depends on the model
    changes when the model is destroyed). Defaults: Spearman correlation of absolute values,
    BatchNorm randomized too, seed 0, ``aggregate="final"``.

    ``aggregate="mean"`` gives instead the similarity averaged over the cascade stages (the
    quantity :class:`ModelRandomizationCheck` bases its verdict on), which also penalises a
    method that ignores only the top layers, such as guided backpropagation.

    ``maps`` must be something that can explain the randomized models: an attribution
    method instance, a registry name, or a factory ``model -> method``; precomputed maps
    cannot be re-explained and are refused unless ``method_factory`` (a factory, name or
    instance, which then takes precedence) is given. ``batching`` is given to every method
    built.
    Curves: ``similarity`` ``(N, n_stages)``, the similarity after each cascade stage.
    """

    name = "model_randomization"
    family = "randomization"
    higher_is_better = False
    needs = frozenset({"model", "method"})
    defaults = {
        "similarity": "spearman_abs",
        "layers": None,
        "include_batchnorm": True,
        "aggregate": "final",
        "method_settings": None,
        "method_factory": None,
    }
    _AGGREGATES: ClassVar[tuple[str, ...]] = ("final", "mean")

    def check(self, settings):
        if not isinstance(settings["similarity"], str):
            raise ConfigError(f"similarity must be one measure name, got {settings['similarity']!r}")
        if settings["aggregate"] not in self._AGGREGATES:
            raise ConfigError(
                f"aggregate must be 'final' (fully randomized model) or 'mean' (over the cascade), "
                f"got {settings['aggregate']!r}"
            )
        return super().check(settings)

    def prepare(self, model, inputs, maps, *, target, batching, seed, settings) -> _RandomizationRun:
        source = settings["method_factory"] if settings["method_factory"] is not None else maps
        if isinstance(source, (Tensor, np.ndarray, Explanation)):
            raise InputError(
                "model_randomization re-explains randomized copies of the model, so it needs the attribution "
                "method, not precomputed maps: pass e.g. seethrough.Saliency(model) or 'saliency'"
            )
        settings = self.check(settings)
        check = ModelRandomizationCheck(
            source,
            mode="cascading",
            layers=settings["layers"],
            similarity=(settings["similarity"],),
            seed=seed,
            include_batchnorm=settings["include_batchnorm"],
            n_examples=0,
            method_settings=settings["method_settings"],
            batching=batching,
        ).run(model, inputs, target=target)
        return self.run_of(check, similarity=settings["similarity"], aggregate=settings["aggregate"])

    def run_of(self, res: SanityResult, *, similarity: str, aggregate: str) -> _RandomizationRun:
        """A run made of a cascading check already computed."""
        if res.check != "cascading":
            raise ConfigError(f"model_randomization is defined on the cascading check, got a {res.check!r} one")
        if similarity not in res.similarity:
            raise ConfigError(f"the check did not compute {similarity!r}; it has {sorted(res.similarity)}")
        if aggregate not in self._AGGREGATES:
            raise ConfigError(f"aggregate must be 'final' or 'mean', got {aggregate!r}")
        return _RandomizationRun(
            None,
            res.example_inputs,
            None,
            res.target,
            {"similarity": similarity, "aggregate": aggregate},
            int(res.settings.get("seed", 0)),
            None,
            res.method,
            res.n_evaluations,
            check=res,
        )

    def score(self, run: _RandomizationRun) -> Score:
        res, similarity, aggregate = run.check, run.settings["similarity"], run.settings["aggregate"]
        sims = res.similarity[similarity]
        return Score(
            sims[-1] if aggregate == "final" else sims.mean(dim=0),
            settings={**dict(res.settings), "method": res.method, "similarity": similarity, "aggregate": aggregate},
            curves={"similarity": sims.T.contiguous()},
            extras={"stages": res.stages, "skipped": res.skipped, "target_indices": res.target_indices},
        )


model_randomization = ModelRandomization()


def randomization_metric(
    res: SanityResult, *, similarity: str = "spearman_abs", aggregate: str = "final"
) -> MetricResult:
    """The :func:`model_randomization` metric read off a cascading check already run (so a
    report that shows the curves does not randomize twice)."""
    run = model_randomization.run_of(res, similarity=similarity, aggregate=aggregate)
    return model_randomization.result(run, model_randomization.score(run), seconds=res.seconds)


METRICS = (model_randomization,)
