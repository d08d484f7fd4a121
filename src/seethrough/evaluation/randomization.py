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

import contextlib
import copy
import difflib
import math
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .._core.errors import ConfigError, InputError, LayerError, ZeroAttributionWarning
from .._core.layers import LayerRef, resolve_layer
from .._core.result import _freeze
from .._core.state import model_guard
from .._core.targets import Class, Predicted, TargetLike, as_target
from .._core.validation import check_inputs
from ._common import MetricResult, pixel_maps
from .similarity import SIMILARITIES, _check_names
from .similarity import compare_maps as _similarity

__all__ = [
    "ModelRandomizationCheck",
    "SanityResult",
    "data_randomization_check",
    "model_randomization",
    "randomization_layers",
    "plot_randomization_curves",
    "plot_randomization_examples",
    "DEFAULT_THRESHOLDS",
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
_DEFAULT_MEASURES = ("spearman_abs", "spearman", "ssim", "hog")

MethodFactory = Union[str, Callable[[nn.Module], Any], Any]


# ---------------------------------------------------------------------------------------
# which layers, and how each is re-initialised
# ---------------------------------------------------------------------------------------
def _own_params(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters(recurse=False) if p is not None]


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _how(module: nn.Module) -> str | None:
    """"reset" (its own reset_parameters), "gaussian" (the fallback) or None (cannot)."""
    if callable(getattr(module, "reset_parameters", None)):
        return "reset"
    w = getattr(module, "weight", None)
    if isinstance(w, Tensor) and w.numel() > 1 and w.is_floating_point() and float(w.detach().std()) > 0:
        return "gaussian"
    return None


def _layer_seed(seed: int, name: str) -> int:
    """Seed of one layer's re-initialisation: from the check's seed and the layer's name."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63 - 1)


@contextlib.contextmanager
def _seeded_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Seed the generators that ``reset_parameters()`` draws from for a layer on ``device``
    (the CPU's and, for an accelerator, that device's) and restore them on exit.

    Not ``torch.manual_seed``: it seeds every accelerator, and for CUDA not yet initialised it
    queues the seed for later, so the caller's RNG state on other devices would change."""
    if device.type in ("cpu", "meta"):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    mod = torch.get_device_module(device.type)
    idx = device.index if device.index is not None else 0
    with torch.random.fork_rng(devices=[idx], device_type=device.type):
        torch.default_generator.manual_seed(seed)
        select = getattr(mod, "device", None)
        with select(idx) if callable(select) else contextlib.nullcontext():
            mod.manual_seed(seed)  # the current device's generator only
        yield


def _randomize_module(module: nn.Module, name: str, how: str, seed: int) -> None:
    s = _layer_seed(seed, name)
    params = _own_params(module)
    device = params[0][1].device if params else torch.device("cpu")
    with torch.no_grad():
        if how == "reset":
            with _seeded_rng(device, s):
                module.reset_parameters()
        else:
            w = module.weight
            std = float(w.detach().float().std())
            g = torch.Generator(device=device).manual_seed(s)
            for _, p in params:
                p.copy_(torch.randn(p.shape, generator=g, device=device, dtype=p.dtype) * std)


@dataclass(frozen=True)
class _Unit:
    """One randomization stage: a layer (or block) and the modules it re-initialises."""

    name: str
    members: tuple[tuple[str, str], ...]  # (module name, how)
    order: int


def _execution_order(model: nn.Module, x_row: Tensor) -> list[str]:
    """Names of the modules with own parameters, in the order their forward passes end."""
    order: list[str] = []
    handles = []
    for name, m in model.named_modules():
        if _own_params(m):
            handles.append(m.register_forward_hook(lambda _m, _i, _o, name=name: order.append(name)))
    try:
        with torch.no_grad():
            model(x_row)
    finally:
        for h in handles:
            h.remove()
    seen: dict[str, None] = {}
    for n in order:
        seen.setdefault(n, None)
    return list(seen)


def _plan(
    original: nn.Module,
    work: nn.Module,
    x_row: Tensor,
    layers: Sequence[LayerRef] | None,
    include_batchnorm: bool,
) -> tuple[list[_Unit], list[tuple[str, str]]]:
    """Stages in forward execution order, and the (layer, reason) pairs that were skipped."""
    ran = _execution_order(work, x_row)
    rank = {n: i for i, n in enumerate(ran)}
    modules = dict(work.named_modules())
    skipped: list[tuple[str, str]] = []
    units: list[_Unit] = []
    if layers is None:
        for name, m in work.named_modules():
            if not _own_params(m):
                continue
            if name not in rank:
                skipped.append((name, "does not run in the forward pass"))
            elif _is_batchnorm(m) and not include_batchnorm:
                skipped.append((name, "BatchNorm (include_batchnorm=False)"))
            elif _how(m) is None:
                skipped.append((name, f"{type(m).__name__} has no reset_parameters() and no weight to draw from"))
            else:
                units.append(_Unit(name, ((name, _how(m)),), rank[name]))  # type: ignore[arg-type]
        if not units:
            raise ConfigError(
                f"no layer of {type(original).__name__} can be randomized (skipped: "
                f"{'; '.join(f'{n}: {r}' for n, r in skipped[:5]) or 'the model has no parameters'})"
            )
    else:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        if len(layers) == 0:
            raise ConfigError("layers is empty; give layer names, or None for every layer")
        candidates = [n for n, m in work.named_modules() if _own_params(m) and n in rank]
        claimed: dict[str, str] = {}
        for ref in layers:
            name, _ = resolve_layer(original, ref)  # names as in the user's model (suggests on a miss)
            if name == "":
                raise LayerError("layers names the whole model; give its layers (or None for all of them)")
            block = modules[name]
            members: list[tuple[str, str]] = []
            for sub, m in block.named_modules(prefix=name):
                if not _own_params(m):
                    continue
                if _is_batchnorm(m) and not include_batchnorm and sub != name:
                    skipped.append((sub, "BatchNorm (include_batchnorm=False)"))
                    continue
                how = _how(m)
                if how is None and sub != name:  # inside a named block: skipped, as when iterating
                    skipped.append((sub, f"{type(m).__name__} has no reset_parameters() and no weight to draw from"))
                    continue
                if how is None:
                    raise LayerError(
                        f"cannot randomize layer {sub!r}: {type(m).__name__} has no reset_parameters() and no "
                        f"'weight' whose spread could be used; give the module a reset_parameters() method or "
                        f"leave it out of layers="
                    )
                if sub not in rank:
                    skipped.append((sub, "does not run in the forward pass"))
                    continue
                members.append((sub, how))
            if not members:
                hint = ", ".join(repr(c) for c in difflib.get_close_matches(name, candidates, n=4, cutoff=0.3)) or (
                    ", ".join(repr(c) for c in candidates[:4])
                )
                raise LayerError(
                    f"layer {name!r} ({type(block).__name__}) has no parameters that run in the forward pass, so "
                    f"there is nothing to randomize; choose a layer with parameters, e.g. {hint}"
                )
            for sub, _ in members:
                if sub in claimed:
                    raise ConfigError(
                        f"layers {claimed[sub]!r} and {name!r} overlap (both contain {sub!r}); list each layer once"
                    )
                claimed[sub] = name
            units.append(_Unit(name, tuple(members), min(rank[s] for s, _ in members)))
    units.sort(key=lambda u: u.order)
    return units, skipped


def randomization_layers(
    model: nn.Module,
    inputs: Tensor,
    *,
    layers: Sequence[LayerRef] | None = None,
    include_batchnorm: bool = True,
) -> tuple[list[str], list[tuple[str, str]]]:
    """The layers a randomization check would re-initialise, in forward execution order,
    and the ``(layer, reason)`` pairs it would skip. Runs one sample of ``inputs`` through a
    copy of ``model``."""
    x = check_inputs(model, inputs)
    work = _copy_model(model)
    units, skipped = _plan(model, work, x[:1].clone(), layers, include_batchnorm)
    return [u.name for u in units], skipped


def _copy_model(model: nn.Module) -> nn.Module:
    with model_guard(model, method="randomization check"):
        try:
            work = copy.deepcopy(model)
        except Exception as e:  # noqa: BLE001 - any failure of deepcopy means the same thing here
            raise ConfigError(
                f"cannot copy {type(model).__name__} with copy.deepcopy ({type(e).__name__}: {e}); the "
                f"randomization checks work on a copy so that your model is never modified. Make the "
                f"model deep-copyable (e.g. no open files or locks as attributes)"
            ) from e
    for p in work.parameters():
        p.grad = None
    return work.eval()


# ---------------------------------------------------------------------------------------
# the attribution method: built on the model it is given
# ---------------------------------------------------------------------------------------
def _attribution_type():
    from ..attribution._base import Attribution

    return Attribution


def _rebind(method: Any, source: nn.Module, target: nn.Module) -> Any:
    """A shallow copy of ``method`` working on ``target``: its model, its module-valued
    settings (layers given as modules of ``source``) and nested methods are moved over."""
    Attribution = _attribution_type()
    names = {id(m): n for n, m in source.named_modules()}
    modules = dict(target.named_modules())

    def move(obj: Any) -> Any:
        new = copy.copy(obj)
        for key, value in list(vars(new).items()):
            if key == "model" and value is source:
                new.model = target
            elif isinstance(value, nn.Module) and id(value) in names and value is not source:
                setattr(new, key, modules[names[id(value)]])
            elif isinstance(value, Attribution) and getattr(value, "model", None) is source:
                setattr(new, key, move(value))
        return new

    return move(method)


class _Factory:
    """``model -> Attribution`` from a callable, a registry name or a method instance."""

    def __init__(self, spec: MethodFactory, method_settings: Mapping[str, Any] | None, batching: Any) -> None:
        Attribution = _attribution_type()
        self.spec = spec
        self.settings = dict(method_settings or {})
        self.batching = batching
        if isinstance(spec, str):
            from ..attribution.registry import get_method

            get_method(spec)  # unknown names fail now, with suggestions
        elif isinstance(spec, Attribution):
            if self.settings:
                raise ConfigError("method_settings apply to a method given by name; this method is already built")
        elif not callable(spec):
            raise ConfigError(
                f"method_factory must be a callable model -> attribution method (e.g. "
                f"lambda m: seethrough.GradCAM(m, layer='features.16')), a registry name such as "
                f"'saliency', or a method instance; got {type(spec).__name__}"
            )
        elif self.settings:
            raise ConfigError("method_settings apply to a method given by name, not to a callable factory")

    def __call__(self, model: nn.Module, original: nn.Module) -> Any:
        Attribution = _attribution_type()
        spec = self.spec
        if isinstance(spec, str):
            from ..attribution.registry import build_method

            settings = dict(self.settings)
            method = build_method(spec, model, layer=settings.pop("layer", None), **settings)
        elif isinstance(spec, Attribution):
            if spec.model is not original:
                raise ConfigError(
                    f"the method instance explains another model than the one checked; build it on the checked "
                    f"model, or pass a factory such as lambda m: {type(spec).__name__}(m, ...)"
                )
            method = spec if model is original else _rebind(spec, original, model)
        else:
            method = spec(model)
            if not isinstance(method, Attribution):
                raise ConfigError(
                    f"method_factory returned {type(method).__name__}, not an attribution method; it must build "
                    f"one on the model it is given, e.g. lambda m: seethrough.Saliency(m)"
                )
            if model is not original:
                method = _rebind(method, original, model)
        if getattr(method, "model", None) is not model:
            raise ConfigError(
                "method_factory built its method on another model than the one it was given, so the "
                "randomized models would never be explained; use the argument: lambda m: Method(m, ...)"
            )
        if self.batching is not None:
            method = copy.copy(method)  # never change the caller's instance
            method.batching = self.batching
        return method


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
class SanityResult:
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
        object.__setattr__(self, "similarity", _freeze(self.similarity))
        object.__setattr__(self, "scores", _freeze(self.scores))
        object.__setattr__(self, "thresholds", _freeze(self.thresholds))
        object.__setattr__(self, "verdicts", _freeze(self.verdicts))
        object.__setattr__(self, "settings", _freeze(self.settings))
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
        self.method_factory = method_factory
        self.mode = mode
        self.layers = layers
        self.similarity = similarity
        self.seed = seed
        self.include_batchnorm = include_batchnorm
        self.thresholds = thresholds
        self.n_examples = n_examples
        self.method_settings = method_settings
        self.batching = batching

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


def _method_settings(method: Any) -> dict[str, Any]:
    try:
        return dict(method.settings())
    except Exception:  # noqa: BLE001 - settings are informative only
        return {}


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
        settings={"similarity": list(measures), "channel_reduction": "sum", "thresholds": thr,
                  "method_settings": _method_settings(method), "seed": seed},
        n_evaluations=expl.n_evaluations + e.n_evaluations,
        seconds=time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------------------
# the metric, with the uniform signature
# ---------------------------------------------------------------------------------------
def model_randomization(
    model: nn.Module,
    inputs: Tensor,
    maps: Any,
    *,
    target: TargetLike = None,
    batching: Any = None,
    seed: int = 0,
    similarity: str = "spearman_abs",
    layers: Sequence[LayerRef] | None = None,
    include_batchnorm: bool = True,
    aggregate: str = "final",
    method_settings: Mapping[str, Any] | None = None,
    method_factory: MethodFactory | None = None,
) -> MetricResult:
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
    from .._core.result import Explanation

    source = method_factory if method_factory is not None else maps
    if isinstance(source, (Tensor, np.ndarray, Explanation)):
        raise InputError(
            "model_randomization re-explains randomized copies of the model, so it needs the attribution "
            "method, not precomputed maps: pass e.g. seethrough.Saliency(model) or 'saliency'"
        )
    if not isinstance(similarity, str):
        raise ConfigError(f"similarity must be one measure name, got {similarity!r}")
    if aggregate not in ("final", "mean"):
        raise ConfigError(f"aggregate must be 'final' (fully randomized model) or 'mean' (over the cascade), "
                          f"got {aggregate!r}")
    check = ModelRandomizationCheck(
        source,
        mode="cascading",
        layers=layers,
        similarity=(similarity,),
        seed=seed,
        include_batchnorm=include_batchnorm,
        n_examples=0,
        method_settings=method_settings,
        batching=batching,
    )
    return randomization_metric(check.run(model, inputs, target=target), similarity=similarity, aggregate=aggregate)


def randomization_metric(res: "SanityResult", *, similarity: str = "spearman_abs", aggregate: str = "final") -> MetricResult:
    """The :func:`model_randomization` metric read off a cascading check already run (so a
    report that shows the curves does not randomize twice)."""
    if res.check != "cascading":
        raise ConfigError(f"model_randomization is defined on the cascading check, got a {res.check!r} one")
    if similarity not in res.similarity:
        raise ConfigError(f"the check did not compute {similarity!r}; it has {sorted(res.similarity)}")
    if aggregate not in ("final", "mean"):
        raise ConfigError(f"aggregate must be 'final' or 'mean', got {aggregate!r}")
    sims = res.similarity[similarity]
    return MetricResult(
        name="model_randomization",
        values=sims[-1] if aggregate == "final" else sims.mean(dim=0),
        higher_is_better=False,
        settings={**dict(res.settings), "method": res.method, "similarity": similarity, "aggregate": aggregate},
        curves={"similarity": sims.T.contiguous()},
        extras={"stages": res.stages, "skipped": res.skipped, "target_indices": res.target_indices},
        n_evaluations=res.n_evaluations,
        seconds=res.seconds,
    )


model_randomization.family = "randomization"  # type: ignore[attr-defined]
model_randomization.higher_is_better = False  # type: ignore[attr-defined]
model_randomization.needs = frozenset({"model", "method"})  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_randomization_curves(
    result: SanityResult,
    ax=None,
    *,
    measures: Sequence[str] | None = None,
    band: bool = True,
    thresholds: bool = True,
):
    """Mean similarity to the original maps after each randomization stage, one line per
    measure (the shaded band spans the 25th to 75th percentile over the samples). The first
    point, "original", is 1 by definition. Returns the figure (``ax.figure`` if given)."""
    if not isinstance(result, SanityResult):
        raise InputError(f"expected a SanityResult, got {type(result).__name__}")
    measures = list(measures) if measures is not None else list(result.similarity)
    for m in measures:
        if m not in result.similarity:
            raise ConfigError(f"measure {m!r} was not computed; computed: {', '.join(result.similarity)}")
    n = len(result.stages)
    fig, ax = _new_axes(ax, (max(4.0, 0.35 * n + 2.5), 3.4))
    xs = np.arange(n + 1)
    colors = ["C0", "C1", "C2", "C3", "C4", "C5"]
    for i, m in enumerate(measures):
        s = result.similarity[m].numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stages
            mean = np.concatenate([[1.0], np.nanmean(s, axis=1)])
            lo = np.concatenate([[1.0], np.nanpercentile(s, 25, axis=1)])
            hi = np.concatenate([[1.0], np.nanpercentile(s, 75, axis=1)])
        c = colors[i % len(colors)]
        ax.plot(xs, mean, marker="o", ms=3, color=c, label=f"{m} ({result.verdicts[m]})")
        if band:
            ax.fill_between(xs, lo, hi, color=c, alpha=0.15, linewidth=0)
        if thresholds:
            ax.axhline(result.thresholds[m], color=c, linestyle=":", linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels(["original", *result.stages], rotation=60, ha="right", fontsize=7)
    ax.set_ylim(min(-0.2, ax.get_ylim()[0]), 1.05)
    ax.set_ylabel("similarity to original map")
    what = {"cascading": "cascading randomization (output layer first)",
            "independent": "independent randomization (one layer at a time)",
            "data": "model trained on random labels"}.get(result.check, result.check)
    ax.set_title(f"{result.method}: {what}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return fig


def plot_randomization_examples(
    result: SanityResult,
    *,
    max_stages: int = 8,
    cell_size: float = 1.3,
):
    """Example maps per randomization stage: one row per kept sample, columns input,
    original map, then the maps after (up to ``max_stages``, evenly spaced, always including
    the last) stages. Each map is shown as its absolute value scaled to its own maximum.
    Returns the figure."""
    if not isinstance(result, SanityResult):
        raise InputError(f"expected a SanityResult, got {type(result).__name__}")
    k = int(result.original_maps.shape[0]) if result.original_maps.numel() else 0
    if k == 0:
        raise InputError("the result kept no example maps (n_examples=0); run the check with n_examples > 0")
    if result.original_maps.dim() != 3:
        raise InputError("example maps can be drawn for 2-D maps only")
    if max_stages < 1:
        raise ConfigError(f"max_stages must be at least 1, got {max_stages}")
    from ..report.plot import image_for_display

    n = len(result.stages)
    cols = sorted(set(np.linspace(0, n - 1, min(max_stages, n)).round().astype(int).tolist()) | {n - 1})
    from matplotlib.figure import Figure

    n_cols = 2 + len(cols)
    fig = Figure(figsize=(cell_size * n_cols, cell_size * k + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(k, n_cols, squeeze=False))

    def show(ax, heat: Tensor) -> None:
        h = heat.abs().numpy()
        top = float(h.max())
        ax.imshow(h / top if top > 0 else h, cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")

    for r in range(k):
        img = image_for_display(result.example_inputs[r])
        axes[r, 0].imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        show(axes[r, 1], result.original_maps[r])
        for j, s in enumerate(cols):
            show(axes[r, 2 + j], result.randomized_maps[s, r])
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=7)
    axes[0, 1].set_title("original", fontsize=7)
    for j, s in enumerate(cols):
        label = result.stages[s]
        axes[0, 2 + j].set_title(("+" if result.check == "cascading" else "") + label, fontsize=6)
    fig.suptitle(f"{result.method}: maps after each {result.check} randomization stage", fontsize=8)
    return fig


METRICS = (model_randomization,)
