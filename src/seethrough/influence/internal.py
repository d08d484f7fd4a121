"""Internal influence (Leino, Sen, Datta, Fredrikson and Li, ITC 2018).

An influence-directed explanation has three parameters:

* a **quantity of interest** ``q``: a scalar function of the model output per instance,
  given as a target: ``Class(c)`` (the logit of ``c``), ``ClassDifference(c1, c2)`` (the
  comparative quantity ``logit c1 - logit c2``), or any callable on the output;
* a **distribution of interest** ``P``: one point, a set of instances (for example every
  instance of a class in a data set) or the straight path from a baseline to an input;
* a **slice**: a layer ``z = g(x)`` that splits the model into ``q(x) = h(g(x))``.

The internal influence of the slice element ``j`` is the expected gradient

    chi_j = E_{x ~ P} [ dh/dz_j (g(x)) ]

which is the paper's definition: the plain averaged gradient, not multiplied by the
activation (``multiply_by_activation=True`` multiplies, see :class:`InternalInfluence`).
A neuron is a unit of a flat slice or a channel of a convolutional one; a channel's
influence is its element influences reduced over positions by ``max`` (default) or
``mean``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching
from .._core.call import ForwardFailed
from .._core.engine import ChunkResult, GradientRunner, forward_scores, layer_gradients
from .._core.errors import ConfigError, InputError, ZeroAttributionWarning
from .._core.layers import LayerRef, layer_label, resolve_layer
from .._core.result import Result
from .._core.state import model_guard
from .._core.targets import TargetLike, as_target, resolve_target
from .._core.validation import check_inputs
from ..attribution.baselines import BaselineLike, as_baselines, describe_baseline
from ..attribution.integrated import integration_points
from ._common import (
    check_labels,
    check_position_reduce,
    class_of_target,
    neuron_kind,
    neuron_values,
    select_class,
    slice_activations,
)

__all__ = ["InternalInfluence", "InfluenceResult", "DISTRIBUTIONS"]

#: The distributions of interest.
DISTRIBUTIONS = ("point", "class", "path")


@dataclass(frozen=True, eq=False)
class InfluenceResult(Result):
    """The internal influence of every neuron of a slice.

    A :class:`~seethrough._core.result.Result`: frozen, ``save``/``load``, and
    ``plot(ax=..., k=5)`` (:func:`seethrough.influence.plot_influence`) and ``to_html()``
    from the views registered in :mod:`seethrough.influence.views`.

    Attributes
    ----------
    influence:
        ``(*slice_shape)``: the influence of every element of the slice, averaged over
        the distribution of interest (``E_P[dq/dz]``, times the activation when
        ``multiply_by_activation``).
    neuron_influence:
        ``(n_neurons,)``: ``influence`` per neuron; for a convolutional slice each
        channel's map reduced over positions by ``reduce``.
    per_instance:
        ``(N, n_neurons)``: each instance's own neuron influence (for ``"path"``, its own
        path), reduced the same way. ``neuron_influence`` is the reduction of the mean map,
        so for ``reduce="max"`` it is not the mean of these rows.
    instances:
        ``(N,)``: indices, into the inputs passed, of the instances that make up the
        distribution (all of them, or those of the selected class).
    scores:
        ``(N,)``: the quantity of interest on each instance.
    layer, target, distribution, reduce, multiply_by_activation:
        The slice, the quantity (``Target.describe()``), the distribution of interest,
        how channels were reduced (None for a flat slice) and whether gradients were
        multiplied by activations.
    neuron:
        ``"channel"`` (convolutional slice) or ``"unit"`` (flat slice).
    settings:
        Every setting, JSON-serialisable.
    """

    influence: Tensor
    neuron_influence: Tensor
    per_instance: Tensor
    instances: Tensor
    scores: Tensor
    layer: str
    target: str
    distribution: str
    reduce: str | None
    multiply_by_activation: bool
    neuron: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    n_evaluations: int = 0
    seconds: float = 0.0

    @property
    def n_neurons(self) -> int:
        return int(self.neuron_influence.numel())

    @property
    def n_instances(self) -> int:
        return int(self.instances.numel())

    def _check_k(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive int, got {k!r}")
        if k > self.n_neurons:
            raise ConfigError(
                f"k={k} is larger than the {self.n_neurons} {self.neuron}s of layer {self.layer!r}; "
                f"use k <= {self.n_neurons}"
            )
        return k

    def top_positive(self, k: int = 5) -> Tensor:
        """Indices of the ``k`` neurons with the largest influence, largest first (ties: lower index)."""
        k = self._check_k(k)
        return _stable_order(self.neuron_influence, descending=True)[:k]

    def top_negative(self, k: int = 5) -> Tensor:
        """Indices of the ``k`` neurons with the most negative influence, most negative first."""
        k = self._check_k(k)
        return _stable_order(self.neuron_influence, descending=False)[:k]

    def __repr__(self) -> str:
        return (
            f"InfluenceResult(layer={self.layer!r}, target={self.target}, distribution={self.distribution!r}, "
            f"{self.n_neurons} {self.neuron}s, {self.n_instances} instances)"
        )


def _stable_order(values: Tensor, *, descending: bool) -> Tensor:
    v = values.detach().double().cpu()
    return torch.sort(-v if descending else v, stable=True).indices


class InternalInfluence:
    """Internal influence of the neurons of ``layer`` for a quantity of interest.

    Parameters
    ----------
    layer:
        The slice: a dotted ``named_modules()`` name or a module of the model.
    distribution:
        ``"point"``: each input on its own; ``per_instance`` holds each input's influence
        and ``influence`` their mean (the uniform distribution over the inputs given).
        ``"class"``: the inputs whose label is ``of_class`` (``compute(..., labels=)``).
        ``"path"``: the straight path ``x' + a (x - x')``, ``a`` in [0, 1], from the
        baseline ``x'`` to each input ``x``, integrated with the quadrature ``rule`` and
        ``steps`` points; the gradient is taken at the slice activation of each point of
        the input-space path (as Captum's ``LayerIntegratedGradients``).
    reduce:
        ``"max"`` (default) or ``"mean"``: how a channel's influence map is reduced over
        its positions.
    multiply_by_activation:
        False (default, the paper's definition): the influence is the averaged gradient.
        True: each instance's averaged gradient is multiplied elementwise by its
        activation, ``g(x)`` for ``"point"``/``"class"`` (gradient times activation) and
        ``g(x) - g(x')`` for ``"path"`` (layer integrated gradients), before averaging
        over instances.
    baseline, steps, rule:
        The path distribution's baseline (see :mod:`seethrough.attribution.baselines`; a
        list averages over baselines), number of points and quadrature rule.
    batching:
        Chunking of the forward and backward passes (:class:`~seethrough.Batching`).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: LayerRef,
        distribution: str = "point",
        reduce: str = "max",
        multiply_by_activation: bool = False,
        baseline: BaselineLike = "zeros",
        steps: int = 50,
        rule: str = "gausslegendre",
        batching: Batching | int | None = None,
    ) -> None:
        self.model, self.layer, self.distribution = model, layer, distribution
        self.reduce, self.multiply_by_activation = reduce, multiply_by_activation
        self.baseline, self.steps, self.rule, self.batching = baseline, steps, rule, batching

    def settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "layer": layer_label(self.layer),
            "distribution": self.distribution,
            "reduce": self.reduce,
            "multiply_by_activation": bool(self.multiply_by_activation),
        }
        if self.distribution == "path":
            s.update(baseline=describe_baseline(self.baseline), steps=self.steps, rule=self.rule)
        return s

    def __repr__(self) -> str:
        return f"InternalInfluence({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"

    def _check_settings(self) -> tuple[str, nn.Module]:
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(f"unknown distribution of interest {self.distribution!r}; use one of {DISTRIBUTIONS}")
        check_position_reduce(self.reduce)
        if self.layer is None:
            raise ConfigError("InternalInfluence needs layer=: the dotted name (or module) of the slice")
        if self.distribution == "path":
            integration_points(self.steps, self.rule)
            as_baselines(self.baseline)
        return resolve_layer(self.model, self.layer)

    # -- public --------------------------------------------------------------------
    def compute(
        self,
        inputs: Tensor,
        target: TargetLike = None,
        *,
        labels: Tensor | None = None,
        of_class: int | None = None,
    ) -> InfluenceResult:
        """Influence of every neuron of the slice on ``target`` over the distribution.

        ``target`` is the quantity of interest: a class index, ``Class``,
        ``ClassDifference(c1, c2)`` (comparative), a callable, or None (each input's
        predicted class). ``labels`` (one per input) with ``of_class`` restrict the
        distribution to the inputs of that class; ``distribution="class"`` needs
        ``labels``, and ``of_class`` defaults to the target's class (``c1`` of a
        comparative target).
        """
        name, module = self._check_settings()
        x = check_inputs(self.model, inputs)
        n = x.shape[0]
        idx = torch.arange(n)
        if labels is not None:
            labels = check_labels(labels, n)
        if self.distribution == "class":
            if labels is None:
                raise InputError(
                    "distribution='class' needs labels=: one class index per input, so that the "
                    "instances of the class can be selected"
                )
            if of_class is None:
                of_class = class_of_target(target)
            if of_class is None:
                raise ConfigError(
                    "distribution='class' needs of_class= (the class whose instances make up the "
                    "distribution) when the target is not a single class"
                )
        if of_class is not None:
            if labels is None:
                raise InputError(f"of_class={of_class} needs labels=: one class index per input")
            idx = select_class(labels, int(of_class))
        t = as_target(target)
        if idx.numel() != n:
            if t.per_sample:  # one value per input given: check that there is one per input, then take
                t = t.resolve(self.model, None, n)
            t = t.take(idx)
            x = x[idx.to(x.device)]
        batching = as_batching(self.batching)
        try:
            return self._guarded(x, t, idx, of_class, batching, name, module)
        except ForwardFailed as e:
            raise InputError(f"{e} The inputs passed have shape {tuple(inputs.shape)}.") from e.__cause__

    # -- computation ------------------------------------------------------------------
    def _guarded(self, x, t, idx, of_class, batching, name, module) -> InfluenceResult:
        with model_guard(self.model, method="internal influence"):
            start = time.perf_counter()
            t, n_clean = resolve_target(self.model, x, t)
            if self.distribution == "path":
                maps, n_eval = self._path(x, t, batching, name, module)
            else:
                maps, n_eval = self._points(x, t, batching, name, module)
            samples = torch.arange(x.shape[0], device=x.device)
            scores = forward_scores(self.model, x, t, samples)
            n_eval += n_clean + x.shape[0]
            seconds = time.perf_counter() - start
        influence = maps.mean(dim=0)
        if bool((influence == 0).all()):
            warnings.warn(
                f"the influence of every element of layer {name!r} on {t.describe()} is zero over this "
                f"distribution: the quantity does not change with the slice here (dead units, a "
                f"saturated output, or a constant quantity)",
                ZeroAttributionWarning,
                stacklevel=3,
            )
        slice_shape = tuple(maps.shape[1:])
        kind = neuron_kind(slice_shape)
        settings = self.settings()
        settings["layer"] = name
        if of_class is not None:
            settings["of_class"] = int(of_class)
        return InfluenceResult(
            influence=influence,
            neuron_influence=neuron_values(influence.unsqueeze(0), self.reduce)[0],
            per_instance=neuron_values(maps, self.reduce),
            instances=idx.clone(),
            scores=scores,
            layer=name,
            target=t.describe(),
            distribution=self.distribution,
            reduce=self.reduce if kind == "channel" else None,
            multiply_by_activation=bool(self.multiply_by_activation),
            neuron=kind,
            settings=settings,
            n_evaluations=int(n_eval),
            seconds=seconds,
        )

    def _points(self, x, t, batching, name, module) -> tuple[Tensor, int]:
        """Per-instance gradient (times activation) at the slice, one row per instance."""
        grads, _, n_eval = layer_gradients(
            self.model, t, x, (name, module), batching=batching, times_activation=self.multiply_by_activation
        )
        return grads, n_eval

    def _path(self, x, t, batching, name, module) -> tuple[Tensor, int]:
        """Per-instance path integral of the slice gradient (times the activation change)."""
        specs = as_baselines(self.baseline)
        bases = torch.stack([b(x) for b in specs])  # (nb, B, ...)
        alphas_np, weights_np = integration_points(self.steps, self.rule)
        alphas = torch.as_tensor(alphas_np, dtype=x.dtype, device=x.device)
        weights = torch.as_tensor(weights_np, dtype=x.dtype, device=x.device)
        B, nb, S = x.shape[0], bases.shape[0], self.steps
        flat_base = bases.reshape((nb * B,) + tuple(x.shape[1:]))
        flat_diff = (x.unsqueeze(0) - bases).reshape_as(flat_base)
        xshape = (-1,) + (1,) * (x.dim() - 1)
        acc: list[Tensor | None] = [None]

        # row r -> pair p = baseline * B + sample, step k: r = p * S + k
        def rows(sl: slice):
            r = torch.arange(sl.start, sl.stop, device=x.device)
            p, k = r // S, r % S
            return flat_base[p] + alphas[k].reshape(xshape) * flat_diff[p], p % B

        def consume(chunk: ChunkResult) -> None:
            r = torch.arange(chunk.rows.start, chunk.rows.stop, device=x.device)
            p, k = r // S, r % S
            g = chunk.grad
            buf = acc[0]
            if buf is None:
                buf = acc[0] = torch.zeros((nb * B,) + tuple(g.shape[1:]), dtype=g.dtype, device=g.device)
            buf.index_add_(0, p, g * weights[k].reshape((-1,) + (1,) * (g.dim() - 1)))

        runner = GradientRunner(self.model, t, batching=batching, layer=(name, module))
        n_eval = runner.run(nb * B * S, rows, consume)
        grads = acc[0]
        assert grads is not None
        if self.multiply_by_activation:
            z_x = slice_activations(self.model, name, module, x, batching)
            z_b = slice_activations(self.model, name, module, flat_base, batching)
            grads = grads * (z_x.repeat((nb,) + (1,) * (z_x.dim() - 1)) - z_b)
            n_eval += B + nb * B
        maps = grads.reshape((nb, B) + tuple(grads.shape[1:])).mean(dim=0)
        return maps, n_eval
