"""Robustness metrics: does the explanation stay put when the input barely moves?

Max-sensitivity and average-sensitivity (Yeh et al., 2019) re-explain slightly perturbed
copies of each input with the *same* attribution method and measure how far the maps move:

    sensitivity(x, x') = ||phi(x') - phi(x)||_2 / ||phi(x)||_2

with ``x' = x + u``, ``u`` uniform in the L-infinity ball of radius ``radius`` (every element
independently in ``[-radius, radius]``), the Frobenius (L2) norm of the whole map (all
channels and positions) in numerator and denominator. :func:`max_sensitivity` reports the
maximum over ``n_samples`` draws per input, :func:`avg_sensitivity` the mean. Lower is
better for both; a map that does not depend on the input scores 0.

Because the perturbed inputs must be re-explained, ``maps`` must be the attribution method
itself (``needs={"model", "method"}``), not an Explanation or a tensor. The method explains
the same class for every perturbed copy as for the original (the predicted class of the
original by default; the paper fixes the label too); a Target object is explained as given
(``Predicted(output="softmax")``: the predicted class's probability). Maps that are NaN or
inf on a perturbed copy raise :class:`InputError` naming the samples. All perturbed copies of all inputs are
explained in as few calls as possible: ``batching`` sets how many perturbed inputs go into
one call of the method (default: all of them, up to 4096), and the method chunks its own
model evaluations with its own batching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._core.batching import Batching, as_batching
from .._core.errors import InputError
from .._core.result import Explanation
from .._core.seeds import generator
from .._core.state import model_guard
from .._core.targets import Class, Target
from .._core.validation import check_inputs
from ._common import _check_float, _check_int, resolve_maps
from .faithfulness import _is_target_object, _scoring_target
from .metric import Metric, MetricRun, Score

__all__ = ["max_sensitivity", "avg_sensitivity", "SensitivityMetric", "MaxSensitivity", "AvgSensitivity", "METRICS"]

_MAX_CALL_ROWS = 4096


def _ball_noise(seed: int, sample: int, n_samples: int, shape: tuple[int, ...], radius: float) -> Tensor:
    """The ``n_samples`` perturbations of one sample, ``(n_samples, *shape)`` float64, uniform in
    ``[-radius, radius]`` per element, from a generator seeded with ``(seed, sample)``."""
    g = generator(seed, sample)
    return (torch.rand((n_samples, *shape), generator=g, dtype=torch.float64) * 2.0 - 1.0) * radius


@dataclass
class _SensitivityRun(MetricRun):
    """A sensitivity run: ``method`` re-explains the perturbed copies; ``phi`` holds the maps of
    the inputs, ``(N, elements)`` float64 on the CPU, and ``shape`` their per-sample shape."""

    method: Any = None
    phi: Tensor = field(kw_only=True)
    shape: tuple[int, ...] = ()


class SensitivityMetric(Metric[_SensitivityRun]):
    """Max- and average-sensitivity: the relative change of the maps of perturbed copies of
    each input, re-explained by the method given as ``maps`` (see the module docstring)."""

    family: ClassVar[str] = "robustness"
    higher_is_better: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset({"model", "method"})
    defaults: ClassVar[dict[str, Any]] = {"radius": 0.2, "n_samples": 50}

    def check(self, settings):
        settings = super().check(settings)
        settings["radius"] = _check_float(
            "radius", settings["radius"], strict=True, hint=" (half-width of the L-infinity ball of perturbations)"
        )
        settings["n_samples"] = _check_int(
            "n_samples", settings["n_samples"], hint=" (perturbed copies re-explained per input)"
        )
        return settings

    def prepare(self, model, inputs, maps, *, target, batching, seed, settings) -> _SensitivityRun:
        from ..attribution import Attribution

        settings = self.check(settings)
        as_batching(batching)
        if not isinstance(maps, Attribution):
            got = "an Explanation" if isinstance(maps, Explanation) else f"a {type(maps).__name__}"
            raise InputError(
                f"{self.name} re-explains perturbed copies of the inputs, so it needs the attribution method "
                f"itself, not {got}: pass the method as maps (e.g. maps=seethrough.IntegratedGradients(model))"
            )
        if maps.model is not model:
            raise InputError(
                f"the {type(maps).__name__} passed as maps is bound to another model; build it on the "
                f"model being evaluated"
            )
        x = check_inputs(model, inputs)
        with model_guard(model, method=self.name):
            t, indices, n_eval, _ = _scoring_target(model, x, target, "logit")
        if not _is_target_object(target) and indices is not None:
            t = Class(indices)  # a class given as None, an int or indices: explained on the logit
        exp = maps.attribute(x, target=t)
        n_eval += int(exp.n_evaluations)
        phi = resolve_maps(exp, x, what=f"maps of {maps.name}").double().cpu().reshape(x.shape[0], -1)
        return _SensitivityRun(
            model,
            x,
            None,
            t,
            settings,
            seed,
            batching,
            maps.name,
            n_eval,
            record={"target": t.describe(), "maps": maps.name},
            method=maps,
            phi=phi,
            shape=tuple(exp.attributions.shape[1:]),
        )

    def sensitivities(self, run: _SensitivityRun) -> Tensor:
        """``(N, n_samples)``: the relative change of the map of every perturbed copy."""
        x, phi, method, t = run.x, run.phi, run.method, run.target
        radius, n_samples = run.settings["radius"], run.settings["n_samples"]
        n = x.shape[0]
        norms = phi.norm(dim=1)
        total = n * n_samples
        b = as_batching(run.batching)
        per_call = b.batch_size if b.batch_size is not None else min(total, _MAX_CALL_ROWS)
        sens = torch.empty(n, n_samples, dtype=torch.float64)
        shape = tuple(x.shape[1:])
        cache: dict[int, Tensor] = {}

        def noise_of(s: int) -> Tensor:
            if s not in cache:
                cache.clear()
                cache[s] = _ball_noise(run.seed, s, n_samples, shape, radius).to(device=x.device, dtype=x.dtype)
            return cache[s]

        for sl in Batching.chunks(total, per_call):
            r = torch.arange(sl.start, sl.stop)
            bs, ks = r // n_samples, r % n_samples
            xs = torch.stack([x[s] + noise_of(s)[k] for s, k in zip(bs.tolist(), ks.tolist())])
            e = method.attribute(xs, target=t.take(bs) if isinstance(t, Target) else t)
            run.n_evaluations += int(e.n_evaluations)
            a = e.attributions.detach().double().cpu().reshape(len(r), -1)
            if a.shape[1] != phi.shape[1]:
                raise InputError(
                    f"{method.name} returned maps of shape {tuple(e.attributions.shape[1:])} on perturbed inputs "
                    f"but {run.shape} on the inputs; sensitivity needs maps of one shape"
                )
            finite = torch.isfinite(a).all(dim=1)
            if not bool(finite.all()):
                bad = sorted(set(bs[~finite].tolist()))
                first = int((~finite).nonzero()[0])
                raise InputError(
                    f"{self.name}: {method.name} returned maps with NaN or inf on perturbed copies of samples "
                    f"{bad[:8]}{' ...' if len(bad) > 8 else ''} (first: sample {int(bs[first])}, draw "
                    f"{int(ks[first])}), which would make the sensitivity NaN. The perturbations (radius "
                    f"{radius:g}) likely leave the model's domain (e.g. sqrt or log of an input that "
                    f"becomes negative): use a smaller radius, or inputs further inside the domain"
                )
            sens[bs, ks] = (a - phi[bs]).norm(dim=1) / norms[bs]
        return sens

    def recorded(self, run: _SensitivityRun) -> dict[str, Any]:
        return {
            "radius": run.settings["radius"],
            "n_samples": run.settings["n_samples"],
            "norm": "l2",
            "seed": run.seed,
        }


class MaxSensitivity(SensitivityMetric):
    """Max-sensitivity (Yeh et al., 2019): the largest relative change of the map under small
    input noise.

    Definition: ``max_k ||phi(x + u_k) - phi(x)||_2 / ||phi(x)||_2`` over ``n_samples`` draws
    ``u_k`` uniform in the L-infinity ball of radius ``radius``; ``phi`` is the method given as
    ``maps`` re-run on each perturbed copy, explaining the same class as on ``x``; the norm
    is the Frobenius norm of the whole map. ``extras``: ``"sensitivities"``
    ``(N, n_samples)`` and ``"mean"`` (the average-sensitivity, for free).

    Direction: lower is better (0: the map does not move).

    Defaults: ``radius=0.2`` and ``n_samples=50``, the paper's settings (Quantus also uses
    radius 0.2, with 200 samples). ``batching``: perturbed inputs per call of the method.
    """

    name = "max_sensitivity"

    def score(self, run: _SensitivityRun) -> Score:
        sens = self.sensitivities(run)
        return Score(
            sens.max(dim=1).values,
            settings=self.recorded(run),
            extras={"sensitivities": sens, "mean": sens.mean(dim=1)},
        )


class AvgSensitivity(SensitivityMetric):
    """Average-sensitivity (Yeh et al., 2019): the mean relative change of the map under small
    input noise.

    Definition: ``mean_k ||phi(x + u_k) - phi(x)||_2 / ||phi(x)||_2``, with the same draws,
    re-explanations and norm as :func:`max_sensitivity` (the same ``seed`` gives the same
    draws, so the two are consistent). ``extras``: ``"sensitivities"`` and ``"max"``.

    Direction: lower is better.

    Defaults: ``radius=0.2``, ``n_samples=50``.
    """

    name = "avg_sensitivity"

    def score(self, run: _SensitivityRun) -> Score:
        sens = self.sensitivities(run)
        return Score(
            sens.mean(dim=1), settings=self.recorded(run), extras={"sensitivities": sens, "max": sens.max(dim=1).values}
        )


max_sensitivity = MaxSensitivity()
avg_sensitivity = AvgSensitivity()

METRICS = (max_sensitivity, avg_sensitivity)
