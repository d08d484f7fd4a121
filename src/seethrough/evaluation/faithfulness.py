"""Faithfulness metrics: does the model's output change the way the explanation says it should?

Each metric perturbs the inputs according to the map and watches the target's score. The
map is first reduced to one value per *feature*: per pixel for images (the channels are
combined by ``reduce``, signed ``"sum"`` by default, as Quantus does; a removed pixel loses
all its channels), per element for tabular inputs ``(N, D)``. Where a metric orders
features, ties are broken by a seeded random order (never by raster position).

========================================= ========================================================= =========
metric                                    value per sample                                          direction
========================================= ========================================================= =========
:func:`deletion`                          area under the score curve as the most relevant pixels   lower
                                          are replaced by a baseline (Petsiuk et al. 2018)
:func:`insertion`                         area under the score curve as the most relevant pixels   higher
                                          are put back into a blurred image (Petsiuk et al. 2018)
:func:`region_perturbation`               AOPC(MoRF) - AOPC(LeRF) of r x r regions perturbed in    higher
                                          order (Samek et al. 2017); both AOPCs in ``extras``
:func:`road`                              area(LeRF) - area(MoRF) under ROAD curves with noisy      higher
                                          linear imputation (Rong et al. 2022)
:func:`infidelity`                        E[(I . phi - (f(x) - f(x - I)))^2], with the optimal      lower
                                          scale of phi by default (Yeh et al. 2019)
:func:`faithfulness_correlation`          Pearson correlation of subset relevance sums and score   higher
                                          drops (Bhatt et al. 2020)
========================================= ========================================================= =========

The score is the target's softmax probability for the curve metrics (``output="softmax"``, as
in the papers; ``"logit"`` or ``"accuracy"``, 1 while the model still predicts the target
class, are the alternatives) and the logit for :func:`infidelity` and
:func:`faithfulness_correlation`, which compare the map's sums with score changes and so
need the quantity the map explains.

``target`` is the class predicted on the clean input by default, an int, or one index per
sample; these classes are scored as ``output``. When ``target`` is ``None`` and ``maps`` is an
:class:`~seethrough.Explanation` that records its classes (``target_indices``), those classes
are scored, not the predicted ones, so a map is judged on the class it explains. A
:class:`~seethrough.Target` object (or a callable) is scored as it is, with its own output
transform, e.g. ``Class(3, output="log_softmax")`` or ``Predicted(output="softmax")``; ``output=``
must then be left at its default (a different value raises :class:`ConfigError`: set the
output on the Target instead). ``settings["output"]`` records the transform actually used:
``output``, ``"logit"`` for a model with one output, the Target's own ``output``, or
``"target"`` for targets without one (a callable, ``Neuron``, ``Channel``).

A model output that is NaN or inf on any scored row (the clean input or a perturbed one, e.g.
a model taking ``log(x)`` whose inputs are removed to 0) raises :class:`InputError` naming the
samples and the step, rather than turning the metric's value into NaN.

Every perturbed input is one row scored by :class:`~seethrough._core.forward.ForwardRunner`
(chunked by ``batching``, rows made on demand) inside :func:`~seethrough._core.state.model_guard`;
random draws (tie-breaking keys, noise, subsets, squares) are made up front or per sample
from generators seeded with ``seed``, so the values do not depend on the chunk size.
``n_evaluations`` counts every model row, the clean pass included (and the method's rows
when ``maps`` is an attribution method run here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import spsolve
from torch import Tensor, nn

from .._core.batching import as_batching
from .._core.call import call_model
from .._core.errors import ConfigError, InputError, TargetError
from .._core.forward import ForwardRunner
from .._core.result import Explanation
from .._core.seeds import check_seed, generator
from .._core.state import model_guard
from .._core.targets import Class, Custom, Predicted, Target, TargetLike, as_target
from .._core.validation import check_inputs
from ._common import (
    _check_choice,
    _check_float,
    _check_int,
    _source_name,
    per_sample_indices,
    pixel_maps,
    resolve_maps,
)
from .metric import Metric, MetricRun, Score

__all__ = [
    "deletion",
    "insertion",
    "region_perturbation",
    "road",
    "infidelity",
    "faithfulness_correlation",
    "noisy_linear_imputation",
    "FaithfulnessMetric",
    "Deletion",
    "Insertion",
    "RegionPerturbation",
    "ROAD",
    "Infidelity",
    "FaithfulnessCorrelation",
    "METRICS",
]

_OUTPUTS = ("softmax", "logit", "accuracy")


# =========================================================================== setup


@dataclass
class _Setup(MetricRun):
    """A faithfulness run: the scored target (``target``), the class per sample when the
    target is a class (``indices``) and the output transform actually scored (``output``)."""

    model: nn.Module  # the model evaluated: never None here
    maps: Tensor  # resolved: never None here
    indices: Tensor | None = None
    output: str = ""  # the output transform actually scored, for settings["output"]
    method: str = ""  # the metric's name, for errors

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def features(self, reduce: str) -> Tensor:
        """One map value per feature, ``(N, P)`` float64 on the CPU."""
        return _feature_values(self.maps, self.x, reduce)

    @property
    def grid(self) -> tuple[int, ...]:
        """Shape of the feature grid: the spatial shape, or ``(D,)`` for ``(N, D)`` inputs."""
        return _grid(self.x)

    def expand(self, m: Tensor) -> Tensor:
        """Per-feature masks ``(rows, P)`` as masks broadcastable to rows of the inputs."""
        return m.reshape(m.shape[0], *self.grid) if self.x.dim() == 2 else m.reshape(m.shape[0], 1, *self.grid)


def _grid(x: Tensor) -> tuple[int, ...]:
    return (int(x.shape[1]),) if x.dim() == 2 else tuple(int(s) for s in x.shape[2:])


def _feature_values(maps: Tensor, x: Tensor, reduce: str) -> Tensor:
    n = x.shape[0]
    if x.dim() == 2:
        return maps.reshape(n, -1).detach().double().cpu()
    return pixel_maps(maps, x, reduce=reduce).reshape(n, -1).detach().double().cpu()


def _accuracy_target(indices: Tensor) -> Target:
    idx = indices.clone()

    def still_predicted(output: Tensor, samples: Tensor) -> Tensor:
        flat = output.reshape(output.shape[0], -1)
        return (flat.argmax(dim=1) == idx.to(flat.device)[samples]).to(flat.dtype)

    return Custom(still_predicted, name="accuracy")


def _is_target_object(target: TargetLike) -> bool:
    """True for a Target instance or a callable: scored as it is, ``output=`` does not apply.
    False for ``None``, an int, a sequence or a tensor of class indices."""
    return isinstance(target, Target) or not isinstance(as_target(target), (Class, Predicted))


def _target_output(t: Target) -> str:
    """The output transform a Target object scores with, for ``settings["output"]``."""
    out = getattr(t, "output", None)
    return out if isinstance(out, str) else "target"


def _scoring_target(
    model: nn.Module, x: Tensor, target: TargetLike, output: str
) -> tuple[Target, Tensor | None, int, str]:
    """The target each perturbed row is scored with, the class per sample, the rows spent and
    the output transform actually used.

    ``None`` (the predicted class), an int or indices are scored as ``output``; a Target
    object (or a callable) as it is, with its own output (``Predicted(output=...)`` becomes the
    predicted class with that output). One clean forward pass finds the predicted class and
    the output size.
    """
    n = x.shape[0]
    with torch.no_grad():
        clean = call_model(model, x.clone())
    flat = clean.reshape(n, -1) if clean.dim() > 1 else clean.reshape(n, 1)
    if _is_target_object(target):
        t = as_target(target).resolve(model, clean, n)
        indices = per_sample_indices(t.index, n) if isinstance(t, Class) else None
        return t, indices, n, _target_output(t)
    t = as_target(target)
    if isinstance(t, Predicted):
        indices = flat.argmax(dim=1).cpu()
    else:  # an int or one index per sample
        resolved = t.resolve(model, clean, n)
        assert isinstance(resolved, Class)  # not a Target object, nor Predicted: a class index
        indices = per_sample_indices(resolved.index, n)
        bad = (indices < 0) | (indices >= flat.shape[1])
        if bool(bad.any()):
            raise TargetError(
                f"target class {int(indices[bad][0])} is out of range for a model output with "
                f"{flat.shape[1]} classes (valid: 0..{flat.shape[1] - 1})"
            )
    if output == "accuracy":
        if flat.shape[1] == 1:
            raise ConfigError(
                "output='accuracy' needs a classifier with several outputs; this model has one "
                "output per sample, use output='logit'"
            )
        return _accuracy_target(indices), indices, n, output
    if flat.shape[1] == 1:  # a softmax over one output is constant
        return Class(0, output="logit"), indices, n, "logit"
    return Class(indices, output=output), indices, n, output


def _method_target(target: TargetLike, t: Target, indices: Tensor | None):
    """What an attribution method run here explains: a Target object as scored (the resolved
    one, so ``Predicted(output=...)`` keeps its output), else the class the metric scores for
    each sample."""
    if _is_target_object(target):
        return t
    return indices if indices is not None else target


def _explained_classes(maps: Any, n: int) -> Tensor | None:
    """The classes an Explanation records, one per sample, if it records them for ``n`` samples."""
    if not isinstance(maps, Explanation) or maps.target_indices is None:
        return None
    idx = torch.as_tensor(maps.target_indices).detach().cpu().reshape(-1).long()
    return per_sample_indices(idx, n) if idx.numel() in (1, n) else None  # another size: resolve_maps refuses the maps


def _setup(
    model: nn.Module,
    inputs: Any,
    maps: Any,
    target: TargetLike,
    settings: dict[str, Any],
    *,
    seed: int,
    batching: Any,
    method: str,
    default_output: str,
) -> _Setup:
    from ..attribution import Attribution

    output = settings["output"]
    x = check_inputs(model, inputs)
    if x.dim() < 2:
        raise InputError(
            f"inputs of shape {tuple(x.shape)} cannot be evaluated: give a batch (N, C, H, W), (N, C, ...) or (N, D)"
        )
    if _is_target_object(target) and output != default_output:
        desc = as_target(target).describe()
        how = (
            "to score output='accuracy', give the class as an int or indices (target=c) instead of a Target object"
            if output == "accuracy"
            else f"set the output on the Target instead, e.g. target=Class(c, output={output!r}) or "
            f"Predicted(output={output!r}), and leave output= at its default {default_output!r}; or "
            f"give the class as an int or indices (target=c) with output={output!r}"
        )
        raise ConfigError(
            f"{method}: output={output!r} does not apply to the Target object {desc}, which is "
            f"scored as it is, with its own output; {how}"
        )
    if target is None:
        explained = _explained_classes(maps, x.shape[0])
        if explained is not None:
            target = explained  # score the classes the Explanation explains, not the predicted ones
    with model_guard(model, method=method):
        t, indices, n_eval, used = _scoring_target(model, x, target, output)
    source = _source_name(maps)
    if isinstance(maps, Attribution):
        exp = maps.attribute(x, target=_method_target(target, t, indices))
        n_eval += int(exp.n_evaluations)
        maps = exp
    if x.dim() == 2 and isinstance(maps, (Tensor, np.ndarray, Explanation)):
        m = maps.attributions if isinstance(maps, Explanation) else torch.as_tensor(maps)
        if m.dim() == 3 and m.shape[0] == x.shape[0] and m.shape[1] == 1 and m.shape[2] == x.shape[1]:
            maps = m.reshape(x.shape)  # (N, 1, D) maps of (N, D) inputs
    resolved = resolve_maps(maps, x, model=model, target=target)
    return _Setup(
        model,
        x,
        resolved,
        t,
        settings,
        seed,
        batching,
        source,
        n_eval,
        record={"target": t.describe(), "maps": source},
        indices=indices,
        output=used,
        method=method,
    )


def _score_rows(
    setup: _Setup,
    n_rows: int,
    make_rows: Callable[[slice], tuple[Tensor, Tensor]],
    *,
    per: int,
    describe: Callable[[int], str],
    fix: str = "",
    clean: int | None = 0,
) -> Tensor:
    """Scores of ``n_rows`` rows made on demand, ``(n_rows,)`` float64; rows are counted.

    Row ``r`` belongs to sample ``r // per``; ``describe(r % per)`` names its step for the
    error raised when a score is NaN or inf (``fix`` adds the metric's own remedy); row
    ``clean`` of each sample is the unperturbed input (None: there is none)."""
    scores = torch.empty(n_rows, dtype=torch.float64)

    def consume(sl: slice, s: Tensor) -> None:
        scores[sl] = s.detach().to(device="cpu", dtype=torch.float64)

    with model_guard(setup.model, method=setup.method):
        runner = ForwardRunner(setup.model, setup.target, batching=as_batching(setup.batching), progress=False)
        runner.run(n_rows, make_rows, consume)
    setup.n_evaluations += runner.n_evaluations
    _check_finite_scores(scores, setup, method=setup.method, per=per, describe=describe, fix=fix, clean=clean)
    return scores


def _check_finite_scores(
    scores: Tensor,
    setup: _Setup,
    *,
    method: str,
    per: int,
    describe: Callable[[int], str],
    fix: str,
    clean: int | None,
) -> None:
    """Refuse NaN or inf scores: they would turn the metric's value into NaN silently."""
    bad = ~torch.isfinite(scores)
    if not bool(bad.any()):
        return
    rows = bad.nonzero().flatten()
    samples = sorted({int(r) // per for r in rows.tolist()})
    first = int(rows[0])
    where = describe(first % per)
    value = float(scores[first])
    if clean is not None and bool(bad.reshape(-1, per)[:, clean].any()):
        remedy = (
            "the score is not finite on the unperturbed inputs themselves: check the inputs and "
            "the model, or score a quantity that is finite there (output=, or the Target's output)"
        )
    else:
        remedy = (
            "the perturbed inputs leave the model's domain (e.g. a model that takes log(x), with "
            "features removed to 0). Choose a baseline/perturbation inside the model's domain"
            + (f" ({fix})" if fix else "")
            + ", or score a quantity that stays finite (output=, or the Target's output)"
        )
    raise InputError(
        f"{method}: the model's score ({setup.target.describe()}) is {value} for samples "
        f"{samples[:8]}{' ...' if len(samples) > 8 else ''} (first at sample {first // per}, "
        f"{where}), which would make the metric NaN; {remedy}"
    )


def _order(values: Tensor, seed: int, *, descending: bool) -> Tensor:
    """Per-row order of features by value, ties broken by seeded random keys."""
    keys = torch.rand(values.shape, generator=generator(seed), dtype=torch.float64)
    by_key = torch.argsort(keys, dim=1)
    by_value = torch.argsort(values.gather(1, by_key), dim=1, descending=descending, stable=True)
    return by_key.gather(1, by_value)


def _ranks(order: Tensor) -> Tensor:
    """``rank[b, f]`` = position of feature ``f`` in ``order[b]``."""
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order).contiguous())
    return ranks


def _reference(spec: Any, x: Tensor, seed: int, what: str) -> Tensor:
    """A reference input per sample (what removed features become) from a baseline spec:
    a number, ``"blur"``, ``"mean"`` (per-channel mean), ``"uniform"`` (noise between each
    sample's min and max, seeded here), a Baseline or a tensor."""
    from ..attribution.baselines import as_baselines
    from ..attribution.perturbation import ChannelMean

    if isinstance(spec, str) and spec == "uniform":
        n = x.shape[0]
        flat = x.reshape(n, -1)
        shape = (n,) + (1,) * (x.dim() - 1)
        lo, hi = flat.min(1).values.reshape(shape), flat.max(1).values.reshape(shape)
        u = torch.rand(x.shape, generator=generator(seed, 7), dtype=x.dtype).to(x.device)
        return lo + (hi - lo) * u
    if isinstance(spec, str) and spec == "blur" and x.dim() != 4:
        raise InputError(
            f"a blurred {what} needs images (N, C, H, W); the inputs have shape {tuple(x.shape)}. "
            f"Give a constant {what} instead (e.g. 0.0)"
        )
    if isinstance(spec, str) and spec in ("mean", "channel_mean"):
        spec = ChannelMean()
    specs = as_baselines(spec)
    if len(specs) != 1:
        raise ConfigError(f"give one {what}, not a list")
    ref = specs[0](x)
    if tuple(ref.shape) != tuple(x.shape):
        raise InputError(f"the {what} has shape {tuple(ref.shape)} but the inputs have {tuple(x.shape)}")
    return ref.to(device=x.device, dtype=x.dtype)


def _describe(spec: Any) -> Any:
    from ..attribution.baselines import describe_baseline

    return describe_baseline(spec)


def _counts(n_features: int, steps: int) -> Tensor:
    """Features removed after each of ``steps`` steps, ``k * P / steps`` rounded half up."""
    k = torch.arange(steps + 1, dtype=torch.long)
    return (2 * k * n_features + steps) // (2 * steps)


class FaithfulnessMetric(Metric[_Setup]):
    """A metric that perturbs the inputs according to the map and scores the target on the
    perturbed inputs (see the module docstring): ``prepare`` validates the inputs, fixes the
    scored target with one clean pass and resolves the maps (running a method given as
    ``maps`` on the class the metric scores).

    ``target``: ``None`` (the predicted class, or the classes an Explanation given as ``maps``
    records in ``target_indices``), an int or one index per sample, all scored as ``output``; or
    a Target object (or callable), scored with its own output, e.g. ``Class(c, output="softmax")``,
    with ``output`` left at the metric's default (else :class:`ConfigError`). A non-finite score
    raises :class:`InputError`.
    """

    family: ClassVar[str] = "faithfulness"
    needs: ClassVar[frozenset[str]] = frozenset({"model"})
    #: Output transforms the metric can score.
    outputs: ClassVar[tuple[str, ...]] = _OUTPUTS

    def check(self, settings):
        _check_choice("output", settings["output"], self.outputs)
        return super().check(settings)

    def prepare(self, model, inputs, maps, *, target, batching, seed, settings) -> _Setup:
        settings = self.check(settings)
        return _setup(
            model,
            inputs,
            maps,
            target,
            settings,
            seed=seed,
            batching=batching,
            method=self.name,
            default_output=self.defaults["output"],
        )


# =========================================================================== deletion / insertion


class _CurveMetric(FaithfulnessMetric):
    """Deletion and insertion: the score along a walk that removes (inserts) features in the
    map's order."""

    def check(self, settings):
        settings = super().check(settings)
        if settings["steps"] is not None:
            settings["steps"] = _check_int(
                "steps", settings["steps"], hint=" (the number of removal steps; None: one image row per step)"
            )
        return settings

    def score(self, setup: _Setup) -> Score:
        name, s, seed = self.name, setup.settings, setup.seed
        steps, baseline, reduce = s["steps"], s["baseline"], s["reduce"]
        x = setup.x
        n_feat = math.prod(setup.grid)
        if steps is None:  # one row of pixels (the paper's W pixels) per step; one feature for (N, D)
            steps = n_feat if len(setup.grid) < 2 else -(-n_feat // setup.grid[-1])
        if steps > n_feat:
            raise ConfigError(f"steps={steps} is more than the {n_feat} features; use at most {n_feat} steps")
        reference = _reference(baseline, x, seed, "baseline" if name == "deletion" else "starting image")
        values = setup.features(reduce)
        ranks = _ranks(_order(values, seed, descending=True)).to(x.device)
        counts = _counts(n_feat, steps)
        counts_dev = counts.to(x.device)
        per = steps + 1
        n = setup.n

        def rows(sl: slice) -> tuple[Tensor, Tensor]:
            r = torch.arange(sl.start, sl.stop, device=x.device)
            bs, ks = r // per, r % per
            chosen = setup.expand(ranks[bs] < counts_dev[ks][:, None])
            if name == "deletion":
                return torch.where(chosen, reference[bs], x[bs]), bs
            return torch.where(chosen, x[bs], reference[bs]), bs

        fractions = counts.double() / n_feat
        verb = "removed" if name == "deletion" else "inserted"
        scores = _score_rows(
            setup,
            n * per,
            rows,
            per=per,
            describe=lambda k: f"step {k} of {steps}, {float(fractions[k]):.3g} of the features {verb}",
            fix="e.g. baseline='blur' or 'mean'" if name == "deletion" else "e.g. baseline='blur'",
            clean=0 if name == "deletion" else steps,
        ).reshape(n, per)
        return Score(
            torch.trapezoid(scores, fractions, dim=1),
            settings={
                "steps": steps,
                "baseline": _describe(baseline),
                "output": setup.output,
                "reduce": reduce,
                "seed": seed,
            },
            curves={"scores": scores, "fractions": fractions},
            extras={"clean_score": scores[:, 0].clone(), "final_score": scores[:, -1].clone()},
        )


class Deletion(_CurveMetric):
    """Deletion AUC (Petsiuk et al., 2018): the score as the most relevant pixels are removed.

    Definition: pixels are ordered by the map, most relevant first (ties in random order,
    ``seed``); after step ``k`` of ``steps`` the first ``round(k P / steps)`` of the ``P``
    pixels are replaced by ``baseline`` (all channels). The curve is the target's score at
    fractions ``0, 1/steps, ..., 1`` of pixels removed (``curves["scores"]``,
    ``(N, steps + 1)``, and ``curves["fractions"]``); the value is its area by the trapezoid
    rule over ``[0, 1]``. A faithful map makes the score fall early.

    Direction: lower is better.

    Defaults: ``steps=None`` removes one image row's worth of pixels (``W``) per step, i.e.
    ``H`` steps, as the paper does (224 pixels per step at 224 x 224), and one feature per
    step for ``(N, D)`` inputs; ``baseline=0.0`` (also a
    number, ``"blur"``, ``"mean"``, ``"uniform"``, a Baseline or a tensor); ``output="softmax"``
    (the paper's probability; ``"logit"``, ``"accuracy"``); ``reduce="sum"`` combines channels.

    ``target`` and non-finite scores: as for every :class:`FaithfulnessMetric` (``output`` left
    at ``'softmax'`` for a Target object).
    """

    name = "deletion"
    higher_is_better = False
    defaults = {"steps": None, "baseline": 0.0, "output": "softmax", "reduce": "sum"}


class Insertion(_CurveMetric):
    """Insertion AUC (Petsiuk et al., 2018): the score as the most relevant pixels are put back.

    Definition: the walk starts from ``baseline`` (a blurred copy of the input by default,
    Gaussian ``sigma=5`` as in the paper's code, which truncates the kernel at 11 pixels where
    ours extends to 3 sigma) and after step ``k`` the first ``round(k P / steps)``
    pixels in the map's order (most relevant first, ties in random order) hold their original
    values. The curve is the target's score at fractions ``0, 1/steps, ..., 1`` of pixels
    inserted; the value is its area by the trapezoid rule over ``[0, 1]``. A faithful map makes
    the score rise early.

    Direction: higher is better.

    Defaults: ``steps=None`` (``W`` pixels per step, i.e. ``H`` steps), ``baseline="blur"``
    (any baseline spec, e.g. ``0.0`` for a black start), ``output="softmax"``, ``reduce="sum"``.

    ``target`` and non-finite scores: as for every :class:`FaithfulnessMetric` (``output`` left
    at ``'softmax'`` for a Target object).
    """

    name = "insertion"
    higher_is_better = True
    defaults = {"steps": None, "baseline": "blur", "output": "softmax", "reduce": "sum"}


# =========================================================================== region perturbation


def _region_ids(grid: tuple[int, ...], patch_size: int) -> tuple[Tensor, int]:
    """Region id of every feature for square tiles of ``patch_size`` (border tiles cut)."""
    if len(grid) == 1:
        ids = torch.arange(grid[0]) // patch_size
        return ids, int(ids.max()) + 1
    axes = [torch.arange(s) // patch_size for s in grid]
    counts = [-(-s // patch_size) for s in grid]
    ids = torch.zeros(grid, dtype=torch.long)
    for d, a in enumerate(axes):
        shape = [1] * len(grid)
        shape[d] = grid[d]
        ids = ids * counts[d] + a.reshape(shape)
    return ids.reshape(-1), math.prod(counts)


class RegionPerturbation(FaithfulnessMetric):
    """Region perturbation (Samek et al., 2017; pixel flipping of Bach et al., 2015, with
    ``patch_size=1``): AOPC of the most and of the least relevant regions first.

    Definition: the image is tiled into ``patch_size x patch_size`` regions (border tiles
    are cut), each region's relevance is the sum of the map over it, and regions are
    perturbed cumulatively, one per step, for ``L = min(steps, regions)`` steps, in MoRF
    order (most relevant first) and, separately, in LeRF order (least relevant first); ties
    in random order (``seed``). ``AOPC = 1/(L+1) sum_{k=0..L} (f(x) - f(x_k))`` (the
    paper's average over perturbation steps, ``k = 0`` included). The value is
    ``AOPC_MoRF - AOPC_LeRF``: a faithful map makes the score fall fast when its relevant
    regions go and slowly when its irrelevant ones go.

    Direction: higher is better for the value and for ``extras["aopc_morf"]``; lower is
    better for ``extras["aopc_lerf"]``. ``curves``: ``"morf"`` and ``"lerf"``, the scores
    ``f(x_k)`` for ``k = 0..L``, ``(N, L + 1)``, and ``"steps"``.

    Defaults: ``patch_size=8``, ``steps=100`` (Quantus's defaults); ``perturbation=
    "uniform"``: each perturbed pixel takes a value drawn uniformly between the sample's
    minimum and maximum (one noise image per sample from ``seed``, the same for both orders),
    as in the paper; a number, ``"blur"``, ``"mean"``, a Baseline or a tensor replace
    regions with that reference instead. ``output="softmax"``, ``reduce="sum"``.

    ``target`` and non-finite scores: as for every :class:`FaithfulnessMetric` (``output`` left
    at ``'softmax'`` for a Target object).

    Quantus's ``RegionPerturbation`` returns the per-step drops ``f(x) - f(x_k)`` for
    ``k = 1..L`` of one order; ``AOPC = sum(drops) / (L + 1)`` (tested) — and pads the image
    to a multiple of the patch size instead of cutting the border tiles.
    """

    name = "region_perturbation"
    higher_is_better = True
    defaults = {"patch_size": 8, "steps": 100, "perturbation": "uniform", "output": "softmax", "reduce": "sum"}

    def check(self, settings):
        settings = super().check(settings)
        settings["patch_size"] = _check_int(
            "patch_size", settings["patch_size"], hint=" (side of the square regions, in pixels)"
        )
        settings["steps"] = _check_int(
            "steps", settings["steps"], hint=" (the number of regions perturbed, one per step)"
        )
        return settings

    def score(self, setup: _Setup) -> Score:
        s, seed = setup.settings, setup.seed
        patch_size, steps, perturbation, reduce = s["patch_size"], s["steps"], s["perturbation"], s["reduce"]
        x = setup.x
        if patch_size > min(setup.grid):
            raise ConfigError(
                f"patch_size={patch_size} is larger than the inputs' spatial size {setup.grid}; use a "
                f"patch_size of at most {min(setup.grid)}"
            )
        pert = _reference(perturbation, x, seed, "perturbation")
        rid, n_regions = _region_ids(setup.grid, patch_size)
        L = min(steps, n_regions)
        values = setup.features(reduce)
        n = setup.n
        region_rel = torch.zeros(n, n_regions, dtype=torch.float64).index_add_(1, rid, values)
        morf = _ranks(_order(region_rel, seed, descending=True))[:, rid].to(x.device)  # (N, P)
        lerf = _ranks(_order(region_rel, seed, descending=False))[:, rid].to(x.device)
        per = 1 + 2 * L

        def rows(sl: slice) -> tuple[Tensor, Tensor]:
            r = torch.arange(sl.start, sl.stop, device=x.device)
            bs, j = r // per, r % per
            is_lerf = j > L
            k = torch.where(is_lerf, j - L, j)
            rank = torch.where(is_lerf[:, None], lerf[bs], morf[bs])
            chosen = setup.expand(rank < k[:, None])
            return torch.where(chosen, pert[bs], x[bs]), bs

        scores = _score_rows(
            setup,
            n * per,
            rows,
            per=per,
            describe=lambda j: (
                "the clean input" if j == 0 else (f"MoRF step {j} of {L}" if j <= L else f"LeRF step {j - L} of {L}")
            ),
            fix="e.g. perturbation='blur' or 'mean'",
        ).reshape(n, per)
        clean = scores[:, :1]
        morf_curve = torch.cat([clean, scores[:, 1 : L + 1]], dim=1)
        lerf_curve = torch.cat([clean, scores[:, L + 1 :]], dim=1)
        aopc_morf = (clean - morf_curve).mean(dim=1)
        aopc_lerf = (clean - lerf_curve).mean(dim=1)
        settings = {
            "patch_size": patch_size,
            "steps": L,
            "perturbation": _describe(perturbation),
            "output": setup.output,
            "reduce": reduce,
            "seed": seed,
            "regions": n_regions,
        }
        return Score(
            aopc_morf - aopc_lerf,
            settings=settings,
            curves={"morf": morf_curve, "lerf": lerf_curve, "steps": torch.arange(L + 1)},
            extras={"aopc_morf": aopc_morf, "aopc_lerf": aopc_lerf},
        )


# =========================================================================== ROAD

# Neighbour weights of the noisy linear imputation (Rong et al. 2022): direct neighbours
# 1/6, diagonal neighbours 1/12.
_NEIGHBOURS = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)


def _linear_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``image`` (C, H, W) float64 with the ``removed`` (H, W) pixels replaced by the
    solution of the neighbour-average system (no noise)."""
    C, H, W = image.shape
    ids = np.flatnonzero(removed.reshape(-1))
    out = image.copy()
    m = ids.size
    if m == 0:
        return out
    if m == H * W:
        raise InputError(
            "noisy linear imputation cannot fill an image whose every pixel is removed: keep at "
            "least one pixel (removal fractions must be below 1)"
        )
    var = np.full(H * W, -1, dtype=np.int64)
    var[ids] = np.arange(m)
    r, c = np.divmod(ids, W)
    flat = image.reshape(C, H * W)
    diag = np.zeros(m)
    rhs = np.zeros((m, C))
    rows, cols, vals = [], [], []
    for dr, dc, w in _NEIGHBOURS:
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
        i = np.flatnonzero(inside)
        nb = rr[inside] * W + cc[inside]
        diag[i] += w
        unknown = var[nb] >= 0
        rows.append(i[unknown])
        cols.append(var[nb[unknown]])
        vals.append(np.full(int(unknown.sum()), -w))
        known = ~unknown
        rhs[i[known]] += w * flat[:, nb[known]].T  # i is unique within one offset
    rows.append(np.arange(m))
    cols.append(np.arange(m))
    vals.append(diag)
    A = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))
    sol = np.asarray(spsolve(A, rhs)).reshape(m, C)
    out.reshape(C, H * W)[:, ids] = sol.T
    return out


def noisy_linear_imputation(image: Tensor, removed: Tensor, *, noise_std: float = 0.01, seed: int = 0) -> Tensor:
    """ROAD's noisy linear imputation (Rong et al., 2022) of one image.

    Every removed pixel ``p`` is set to the weighted mean of its (up to 8) neighbours inside
    the image, direct neighbours with weight 1/6 and diagonal ones 1/12, where neighbours that
    are removed too are unknowns: the values solve one sparse linear system (``scipy.sparse``,
    one right-hand side per channel). Gaussian noise of standard deviation ``noise_std`` (in
    input units; drawn from ``seed``) is then added to the imputed pixels only.

    ``image``: ``(C, H, W)`` or ``(H, W)``; ``removed``: boolean ``(H, W)``. Returns a new
    tensor of the image's shape and dtype.
    """
    img = torch.as_tensor(image)
    if img.dim() not in (2, 3):
        raise InputError(f"noisy_linear_imputation takes one image (C, H, W) or (H, W), got shape {tuple(img.shape)}")
    chw = img.unsqueeze(0) if img.dim() == 2 else img
    rm = torch.as_tensor(removed).bool()
    if tuple(rm.shape) != tuple(chw.shape[1:]):
        raise InputError(
            f"removed must be a boolean (H, W) mask of shape {tuple(chw.shape[1:])}, got {tuple(rm.shape)}"
        )
    noise_std = _check_float("noise_std", noise_std)
    out = _linear_imputation(chw.detach().double().cpu().numpy(), rm.cpu().numpy())
    res = torch.from_numpy(out)
    if noise_std > 0:
        z = torch.randn(res.shape, generator=generator(check_seed(seed)), dtype=torch.float64)
        res = torch.where(rm.cpu(), res + noise_std * z, res)
    return res.to(device=img.device, dtype=img.dtype).reshape(img.shape)


def _check_road_fractions(fracs: list[float]) -> None:
    """ROAD's areas are means over the fractions, i.e. areas for equally spaced fractions:
    require them strictly increasing and equally spaced."""
    if any(b <= a for a, b in zip(fracs, fracs[1:])):
        raise ConfigError(
            f"percentages must be strictly increasing (each fraction once), got {fracs!r}; "
            f"give them sorted, e.g. {sorted(set(fracs))!r}"
        )
    gaps = [b - a for a, b in zip(fracs, fracs[1:])]
    if gaps and any(not math.isclose(g, gaps[0], rel_tol=1e-6, abs_tol=1e-9) for g in gaps):
        raise ConfigError(
            f"percentages must be equally spaced (the areas are means over the fractions, which "
            f"weight every fraction alike), got {fracs!r} with gaps {[round(g, 6) for g in gaps]}; "
            f"give e.g. {[round(fracs[0] + i * (fracs[-1] - fracs[0]) / (len(fracs) - 1), 6) for i in range(len(fracs))]!r}"
        )


class ROAD(FaithfulnessMetric):
    """ROAD, RemOve And Debias (Rong et al., 2022), without retraining.

    Definition: for each fraction ``p`` in ``percentages`` the ``floor(p P)`` most relevant
    pixels (MoRF) or least relevant pixels (LeRF) are removed and filled by noisy linear
    imputation (:func:`noisy_linear_imputation`: neighbour averages solved as one sparse
    linear system, plus Gaussian noise of std ``noise_std``), which leaks far less of the
    removed shape to the model than a constant fill. The curves are the target's score at
    each fraction (``curves["morf"]``, ``curves["lerf"]``, ``(N, K)``, and
    ``curves["fractions"]``); the areas ``extras["area_morf"]`` and ``extras["area_lerf"]``
    are the curves' means over the fractions (the midpoint-rule area over the span of the
    fractions, widened by half a gap at each end, divided by that width). ``percentages``
    must therefore be strictly increasing and equally spaced (else :class:`ConfigError`); one
    fraction alone is allowed. The value is ``area_LeRF - area_MoRF``, the gap between the
    orders that the paper compares.

    Direction: higher is better (MoRF area: lower is better; LeRF area: higher is better).

    Defaults: ``percentages`` 10 % to 90 % in steps of 10 %; ``noise_std=0.01`` (the
    authors' code's and Quantus's); ``output="softmax"``; ``output="accuracy"`` gives the paper's
    accuracy curves (1 while the model still predicts the target class). One noise image per
    sample (``seed``) serves every fraction and both orders.

    ``target`` and non-finite scores: as for every :class:`FaithfulnessMetric` (``output`` left
    at ``'softmax'`` for a Target object).

    Quantus's ``ROAD`` is MoRF only and returns the accuracy per fraction averaged over the
    batch; with ``noise_std=0`` and single-channel images it equals
    ``curves["morf"].mean(0)`` with ``output="accuracy"`` (tested; with several channels it
    indexes the broadcast map's elements as pixels).
    """

    name = "road"
    higher_is_better = True
    defaults = {
        "percentages": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        "noise_std": 0.01,
        "output": "softmax",
        "reduce": "sum",
    }

    def check(self, settings):
        settings = super().check(settings)
        percentages = settings["percentages"]
        try:
            fracs = [float(p) for p in percentages]
        except (TypeError, ValueError):
            raise ConfigError(f"percentages must be a sequence of fractions in (0, 1), got {percentages!r}") from None
        if not fracs or any(not (0.0 < p < 1.0) for p in fracs):
            raise ConfigError(
                f"percentages must be a non-empty sequence of fractions strictly between 0 and 1 "
                f"(e.g. 0.1 for 10 %), got {list(percentages)!r}"
            )
        _check_road_fractions(fracs)
        settings["percentages"] = fracs
        settings["noise_std"] = _check_float(
            "noise_std", settings["noise_std"], hint=" (standard deviation of the imputation noise)"
        )
        return settings

    def score(self, setup: _Setup) -> Score:
        s, seed = setup.settings, setup.seed
        fracs, noise_std, reduce = s["percentages"], s["noise_std"], s["reduce"]
        x = setup.x
        if x.dim() != 4:
            raise InputError(
                f"ROAD imputes pixels from their image neighbours, so it needs images (N, C, H, W); "
                f"got inputs of shape {tuple(x.shape)}"
            )
        n, C, H, W = x.shape
        P = H * W
        counts = [math.floor(p * P + 1e-9) for p in fracs]
        values = setup.features(reduce)
        morf = _order(values, seed, descending=True)
        lerf = _order(values, seed, descending=False)
        noise = torch.randn(x.shape, generator=generator(seed, 11), dtype=torch.float64)
        x64 = x.detach().double().cpu().numpy()
        K = len(fracs)
        per = 2 * K

        def one(b: int, o: int, k: int) -> Tensor:
            order = (morf if o == 0 else lerf)[b, : counts[k]].numpy()
            flat_removed = np.zeros(P, dtype=bool)
            flat_removed[order] = True
            removed = flat_removed.reshape(H, W)
            img = torch.from_numpy(_linear_imputation(x64[b], removed))
            if noise_std > 0:
                img = torch.where(torch.from_numpy(removed), img + noise_std * noise[b], img)
            return img

        def rows(sl: slice) -> tuple[Tensor, Tensor]:
            imgs, bs = [], []
            for r in range(sl.start, sl.stop):
                b, j = divmod(r, per)
                o, k = divmod(j, K)
                imgs.append(one(b, o, k))
                bs.append(b)
            out = torch.stack(imgs).to(device=x.device, dtype=x.dtype)
            return out, torch.tensor(bs, device=x.device)

        scores = _score_rows(
            setup,
            n * per,
            rows,
            per=per,
            describe=lambda j: f"{'MoRF' if j < K else 'LeRF'} with {fracs[j % K]:g} of the pixels imputed",
            fix="e.g. a smaller noise_std",
            clean=None,
        ).reshape(n, 2, K)
        morf_curve, lerf_curve = scores[:, 0], scores[:, 1]
        area_morf, area_lerf = morf_curve.mean(dim=1), lerf_curve.mean(dim=1)
        settings = {
            "percentages": fracs,
            "noise_std": noise_std,
            "output": setup.output,
            "reduce": reduce,
            "seed": seed,
        }
        return Score(
            area_lerf - area_morf,
            settings=settings,
            curves={"morf": morf_curve, "lerf": lerf_curve, "fractions": torch.tensor(fracs, dtype=torch.float64)},
            extras={"area_morf": area_morf, "area_lerf": area_lerf, "removed": torch.tensor(counts)},
        )


# =========================================================================== infidelity

_PERTURBATIONS = ("gaussian", "square")


def _gaussian_perturbations(seed: int, sample: int, n_perturbations: int, shape: tuple[int, ...], std: float) -> Tensor:
    """The ``n_perturbations`` Gaussian perturbations ``I`` of one sample, ``(K, *shape)``,
    float64, from a generator seeded with ``(seed, sample)``."""
    g = generator(seed, sample)
    return std * torch.randn((n_perturbations, *shape), generator=g, dtype=torch.float64)


def _random_squares(seed: int, n: int, k: int, grid: tuple[int, int], sizes: Sequence[int]) -> Tensor:
    """``(n, k, 3)`` squares ``(side, top, left)``: uniform over every placement of every side
    in ``sizes`` (a side is drawn in proportion to its number of placements)."""
    H, W = grid
    sides = torch.tensor(sizes, dtype=torch.long)
    places = ((H - sides + 1) * (W - sides + 1)).double()
    g = generator(seed, 13)
    pick = torch.multinomial(places / places.sum(), n * k, replacement=True, generator=g)
    side = sides[pick]
    u = torch.rand(n * k, 2, generator=g, dtype=torch.float64)
    top = (u[:, 0] * (H - side + 1).double()).long()
    left = (u[:, 1] * (W - side + 1).double()).long()
    return torch.stack([side, top, left], dim=1).reshape(n, k, 3)


def _square_masks(squares: Tensor, grid: tuple[int, int]) -> Tensor:
    """Boolean masks ``(rows, H, W)`` of squares ``(rows, 3)``."""
    H, W = grid
    side, top, left = squares[:, 0, None], squares[:, 1, None], squares[:, 2, None]
    rr = torch.arange(H)[None]
    cc = torch.arange(W)[None]
    in_r = (rr >= top) & (rr < top + side)
    in_c = (cc >= left) & (cc < left + side)
    return in_r[:, :, None] & in_c[:, None, :]


def _removal_masks(perturbation: Any) -> Tensor | None:
    """Removal masks given as ``perturbation=`` (boolean, on the CPU), or None for a named
    perturbation; anything else is refused."""
    if isinstance(perturbation, (Tensor, np.ndarray)):
        explicit = torch.as_tensor(perturbation).detach().cpu()  # indexed with CPU indices, dotted with CPU maps
        if explicit.dtype.is_floating_point and not bool(((explicit == 0) | (explicit == 1)).all()):
            raise ConfigError("removal masks given as perturbation= must be boolean or 0/1")
        return explicit.bool()
    if not isinstance(perturbation, str) or perturbation not in _PERTURBATIONS:
        raise ConfigError(
            f"unknown perturbation {perturbation!r}; choose 'gaussian', 'square' or give a "
            f"boolean tensor of removal masks (K, H, W)"
        )
    return None


class Infidelity(FaithfulnessMetric):
    """Explanation infidelity (Yeh et al., 2019): how badly ``I . phi`` predicts the score drop.

    Definition: ``INFD = E_I[(I . phi - (f(x) - f(x - I)))^2]``, a Monte-Carlo mean over
    ``n_perturbations`` perturbations ``I`` per sample. With ``scaling="optimal"`` (the
    default, as in the paper's experiments) the map is first multiplied by the scale that
    minimises the error, ``beta = E[(I . phi) d] / E[(I . phi)^2]`` with
    ``d = f(x) - f(x - I)``, so maps are compared whatever their units;
    ``extras["beta"]`` holds it (a negative beta means the map is anti-correlated with the
    drops), ``extras["unscaled"]`` the infidelity of the map as given, which
    ``scaling="none"`` reports as the value.

    Perturbations:

    - ``"gaussian"`` (default): ``I ~ N(0, noise_std^2)``, so ``x - I`` is ``x`` plus noise, and
      ``I . phi`` is the element-wise product summed. A map with one value per pixel (one
      channel or none) gets one noise value per pixel, shared by the channels. The exact
      phi of a linear model is its gradient.
    - ``"square"``: a square of side drawn from ``square_sizes`` (default: 1 to a third of
      the shorter image side; the paper uses 1 to 10 at 28 x 28) is set to ``baseline``,
      uniformly over all placements of all sides. As in the paper's code, ``I`` is then the
      binary indicator of the square, so ``I . phi`` is the map summed over the square
      (channels summed by ``reduce``): the exact phi of a linear model is its
      contribution ``w * (x - baseline)``.
    - a boolean tensor of removal masks, ``(K, H, W)`` for every sample or ``(N, K, H, W)``:
      each mask is one ``I``, used like squares (e.g. every square, as the paper enumerates);
      the masks may be on any device.

    Direction: lower is better.

    Defaults: ``n_perturbations=100``; ``noise_std=0.01`` in input units (small enough that
    the model responds almost linearly, so the metric tells maps apart; at 0.2, the std of
    Yeh et al.'s noisy baselines, maps on the bundled shapes model score close to a random
    one: docs/evaluation-faithfulness.md has the measurements); ``baseline=0.0``;
    ``output="logit"`` (the maps explain logits); ``reduce="sum"``.

    ``target`` and non-finite scores: as for every :class:`FaithfulnessMetric` (``output`` left
    at ``'logit'`` for a Target object).

    Quantus's ``Infidelity`` removes patches in raster order, cumulatively, and uses
    ``I = x - x_perturbed`` element-wise with no scaling; for removal to 0 its value equals
    this function's with ``scaling="none"``, those masks, and ``phi * x`` as the map (tested).
    """

    name = "infidelity"
    higher_is_better = False
    outputs = ("logit", "softmax")
    defaults = {
        "perturbation": "gaussian",
        "n_perturbations": 100,
        "noise_std": 0.01,
        "square_sizes": None,
        "baseline": 0.0,
        "scaling": "optimal",
        "output": "logit",
        "reduce": "sum",
    }

    def check(self, settings):
        settings = super().check(settings)
        _check_choice("scaling", settings["scaling"], ("optimal", "none"))
        if _removal_masks(settings["perturbation"]) is None:
            settings["n_perturbations"] = _check_int("n_perturbations", settings["n_perturbations"])
        settings["noise_std"] = _check_float("noise_std", settings["noise_std"], strict=True)
        return settings

    def score(self, setup: _Setup) -> Score:
        s, seed = setup.settings, setup.seed
        perturbation, n_perturbations, noise_std = s["perturbation"], s["n_perturbations"], s["noise_std"]
        square_sizes, baseline, scaling, reduce = s["square_sizes"], s["baseline"], s["scaling"], s["reduce"]
        explicit = _removal_masks(perturbation)
        kind = "masks" if explicit is not None else perturbation
        x = setup.x
        n = setup.n
        grid = setup.grid

        if kind == "gaussian":
            per_element = setup.maps.dim() == x.dim() and tuple(setup.maps.shape) == tuple(x.shape) and x.dim() > 2
            per_element = per_element or x.dim() == 2
            shape = tuple(x.shape[1:]) if per_element else grid
            phi = setup.maps.detach().double().cpu().reshape(n, -1) if per_element else setup.features(reduce)
            K = n_perturbations
            dots = torch.stack(
                [
                    (_gaussian_perturbations(seed, b, K, shape, noise_std).reshape(K, -1) * phi[b]).sum(1)
                    for b in range(n)
                ]
            )
            cache: dict[int, Tensor] = {}

            def noise_of(b: int) -> Tensor:
                if b not in cache:
                    cache.clear()
                    cache[b] = _gaussian_perturbations(seed, b, K, shape, noise_std).to(device=x.device, dtype=x.dtype)
                return cache[b]

            def perturbed(bs: Tensor, ks: Tensor) -> Tensor:
                out = x[bs].clone()
                for i, (b, k) in enumerate(zip(bs.tolist(), ks.tolist())):
                    delta = noise_of(b)[k]
                    out[i] -= delta if per_element else delta.unsqueeze(0)
                return out

            settings_extra = {
                "noise_std": noise_std,
                "n_perturbations": K,
                "granularity": "element" if per_element else "pixel",
            }
        else:
            if x.dim() != 4:
                raise InputError(
                    f"square and mask perturbations remove pixels of images (N, C, H, W); got inputs of "
                    f"shape {tuple(x.shape)}. Use perturbation='gaussian'"
                )
            H, W = grid
            if kind == "square":
                if square_sizes is None:
                    sizes = list(range(1, max(1, min(H, W) // 3) + 1))
                else:
                    sizes = [_check_int("square side", s) for s in square_sizes]
                    if not sizes or max(sizes) > min(H, W):
                        raise ConfigError(
                            f"square_sizes must be sides between 1 and {min(H, W)}, got {list(square_sizes)!r}"
                        )
                K = n_perturbations
                squares = _random_squares(seed, n, K, (H, W), sizes)

                def masks_of(bs: Tensor, ks: Tensor) -> Tensor:
                    return _square_masks(squares[bs.cpu(), ks.cpu()], (H, W))

                settings_extra = {"n_perturbations": K, "square_sizes": sizes}
            else:
                assert explicit is not None  # kind == "masks"
                m = explicit
                if m.dim() == 3 and tuple(m.shape[1:]) == (H, W):
                    m = m.unsqueeze(0).expand(n, *m.shape)
                if m.dim() != 4 or m.shape[0] != n or tuple(m.shape[2:]) != (H, W) or m.shape[1] == 0:
                    raise InputError(
                        f"removal masks of shape {tuple(explicit.shape)} do not fit inputs {tuple(x.shape)}: "
                        f"give (K, {H}, {W}) masks for every sample or (N, K, {H}, {W})"
                    )
                K = int(m.shape[1])

                def masks_of(bs: Tensor, ks: Tensor) -> Tensor:
                    return m[bs.cpu(), ks.cpu()]

                settings_extra = {"n_perturbations": K, "masks": list(explicit.shape)}
            ref = _reference(baseline, x, seed, "baseline")
            phi = setup.features(reduce)  # (N, P)
            dots = torch.zeros(n, K, dtype=torch.float64)
            for b in range(n):
                mk = masks_of(torch.full((K,), b), torch.arange(K)).reshape(K, -1).double()
                dots[b] = mk @ phi[b]

            def perturbed(bs: Tensor, ks: Tensor) -> Tensor:
                mk = masks_of(bs, ks).to(x.device).unsqueeze(1)
                return torch.where(mk, ref[bs], x[bs])

            settings_extra["baseline"] = _describe(baseline)

        per = K + 1

        def rows(sl: slice) -> tuple[Tensor, Tensor]:
            r = torch.arange(sl.start, sl.stop, device=x.device)
            bs, j = r // per, r % per
            out = x[bs].clone()
            pert = j > 0
            if bool(pert.any()):
                out[pert] = perturbed(bs[pert], j[pert] - 1)
            return out, bs

        scores = _score_rows(
            setup,
            n * per,
            rows,
            per=per,
            describe=lambda j: "the clean input" if j == 0 else f"{kind} perturbation {j - 1} of {K}",
            fix="e.g. a smaller noise_std" if kind == "gaussian" else "e.g. another baseline",
        ).reshape(n, per)
        drops = scores[:, :1] - scores[:, 1:]  # (N, K)
        unscaled = ((dots - drops) ** 2).mean(dim=1)
        den = (dots * dots).mean(dim=1)
        beta = torch.where(den > 0, (dots * drops).mean(dim=1) / den.clamp(min=1e-300), torch.zeros_like(den))
        scaled = ((beta[:, None] * dots - drops) ** 2).mean(dim=1)
        value = scaled if scaling == "optimal" else unscaled
        settings = {
            "perturbation": kind,
            "scaling": scaling,
            "output": setup.output,
            "reduce": reduce,
            "seed": seed,
            **settings_extra,
        }
        return Score(
            value,
            settings=settings,
            extras={"beta": beta, "unscaled": unscaled, "scaled": scaled, "drops": drops, "map_sums": dots},
        )


# =========================================================================== faithfulness correlation


def _random_subsets(seed: int, n: int, k: int, n_features: int, size: int) -> Tensor:
    """``(n, k, size)`` feature indices: ``k`` uniformly random subsets of ``size`` distinct
    features per sample, sample ``b`` from a generator seeded with ``(seed, b)``."""
    out = torch.empty(n, k, size, dtype=torch.long)
    for b in range(n):
        keys = torch.rand(k, n_features, generator=generator(seed, b))
        out[b] = keys.topk(size, dim=1).indices
    return out


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of ``(N, K)`` tensors; NaN where either row is constant."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    den = (a.pow(2).sum(dim=1) * b.pow(2).sum(dim=1)).sqrt()
    num = (a * b).sum(dim=1)
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(den, float("nan")))


class FaithfulnessCorrelation(FaithfulnessMetric):
    """Faithfulness correlation (Bhatt et al., 2020): do relevance sums predict score drops?

    Definition: for ``n_subsets`` random subsets ``S`` of ``|S| = subset_size`` features
    (pixels, all channels; elements for ``(N, D)`` inputs), drawn uniformly without
    replacement per sample, the value is the Pearson correlation over the subsets between
    ``sum_{i in S} phi_i`` and ``f(x) - f(x with S replaced by baseline)``. It is NaN for a
    sample where either is constant over the subsets (e.g. a constant map), which
    :attr:`MetricResult.mean` skips.

    Direction: higher is better (1: the map's sums track the drops exactly, as for
    ``w * x`` on a linear model with a zero baseline).

    Defaults: ``n_subsets=100`` (Quantus's); ``subset_size=0.05``: an int is a number of
    features, a float in (0, 1) a fraction of them (the paper fixes no size; Quantus uses 224
    elements); ``baseline=0.0``; ``output="logit"``; ``reduce="sum"``. ``extras``:
    ``"drops"`` and ``"map_sums"``, ``(N, n_subsets)``.

    ``target`` and non-finite scores: as for every :class:`FaithfulnessMetric` (``output`` left
    at ``'logit'`` for a Target object).
    """

    name = "faithfulness_correlation"
    higher_is_better = True
    outputs = ("logit", "softmax")
    defaults = {"n_subsets": 100, "subset_size": 0.05, "baseline": 0.0, "output": "logit", "reduce": "sum"}

    def check(self, settings):
        settings = super().check(settings)
        settings["n_subsets"] = _check_int(
            "n_subsets", settings["n_subsets"], low=2, hint=" (a correlation needs at least 2 subsets)"
        )
        subset_size = settings["subset_size"]
        if isinstance(subset_size, bool) or not isinstance(subset_size, (int, float, np.integer, np.floating)):
            raise ConfigError(f"subset_size must be an int (features) or a fraction in (0, 1), got {subset_size!r}")
        return settings

    def score(self, setup: _Setup) -> Score:
        s, seed = setup.settings, setup.seed
        K, subset_size, baseline, reduce = s["n_subsets"], s["subset_size"], s["baseline"], s["reduce"]
        x = setup.x
        P = math.prod(setup.grid)
        if isinstance(subset_size, (float, np.floating)):
            if not 0.0 < float(subset_size) < 1.0:
                raise ConfigError(f"a fractional subset_size must be in (0, 1), got {subset_size!r}")
            size = max(1, int(round(float(subset_size) * P)))
        else:
            size = int(subset_size)
            if not 1 <= size < P:
                raise ConfigError(f"subset_size={size} must be between 1 and {P - 1} (the inputs have {P} features)")
        ref = _reference(baseline, x, seed, "baseline")
        values = setup.features(reduce)
        n = setup.n
        subsets = _random_subsets(seed, n, K, P, size)
        sums = values.gather(1, subsets.reshape(n, -1)).reshape(n, K, size).sum(dim=2)
        sub_dev = subsets.to(x.device)
        per = K + 1

        def rows(sl: slice) -> tuple[Tensor, Tensor]:
            r = torch.arange(sl.start, sl.stop, device=x.device)
            bs, j = r // per, r % per
            chosen = torch.zeros(r.numel(), P, dtype=torch.bool, device=x.device)
            pert = j > 0
            if bool(pert.any()):
                idx = sub_dev[bs[pert], j[pert] - 1]
                sel = torch.zeros(idx.shape[0], P, dtype=torch.bool, device=x.device)
                sel.scatter_(1, idx, True)
                chosen[pert] = sel
            return torch.where(setup.expand(chosen), ref[bs], x[bs]), bs

        scores = _score_rows(
            setup,
            n * per,
            rows,
            per=per,
            describe=lambda j: "the clean input" if j == 0 else f"subset {j - 1} of {K} replaced by the baseline",
            fix="e.g. baseline='mean'",
        ).reshape(n, per)
        drops = scores[:, :1] - scores[:, 1:]
        corr = _pearson(sums, drops)
        settings = {
            "n_subsets": K,
            "subset_size": size,
            "baseline": _describe(baseline),
            "output": setup.output,
            "reduce": reduce,
            "seed": seed,
        }
        return Score(corr, settings=settings, extras={"drops": drops, "map_sums": sums})


# =========================================================================== the metrics

deletion = Deletion()
insertion = Insertion()
region_perturbation = RegionPerturbation()
road = ROAD()
infidelity = Infidelity()
faithfulness_correlation = FaithfulnessCorrelation()

METRICS = (deletion, insertion, region_perturbation, road, infidelity, faithfulness_correlation)
