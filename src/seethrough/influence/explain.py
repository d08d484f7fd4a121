"""Interpreting influential neurons: what in the input drives them, and class-level and
comparative explanations built from them.

* :class:`NeuronVisualization`: an input attribution (saliency, integrated gradients, or
  any gradient method of the registry) of a neuron's activation, with the existing
  attribution methods and a :class:`~seethrough.Channel` (conv slice: the channel's mean
  over positions) or :class:`~seethrough.Neuron` (flat slice) target.
* :class:`ClassInfluence`: for a class ``c1`` (and optionally a contrast class ``c2``),
  the influential neurons over the instances of ``c1``, and side by side on those
  instances: plain integrated gradients on the input for ``c1`` (and ``c1 - c2``) and the
  influence-directed explanations, the input attribution of the top neurons' activation
  for ``c1`` and for ``c1 - c2``. The class-level explanation of each is the mean of its
  attributions over the class's instances.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.errors import ConfigError, InputError, TargetError
from .._core.layers import LayerRef, layer_label, resolve_layer
from .._core.result import Explanation, Result
from .._core.state import model_guard
from .._core.targets import Channel, Class, ClassDifference, Neuron, Target
from .._core.validation import check_inputs
from ..attribution.registry import build_method, get_method
from ._common import check_labels, select_class, slice_activations
from .internal import InfluenceResult, InternalInfluence

__all__ = [
    "NeuronVisualization",
    "NeuronMaps",
    "ClassInfluence",
    "ClassComparison",
    "TopNeurons",
]


class TopNeurons(Target):
    """The weighted sum of some neurons' activations of a layer.

    A channel's activation is its mean over positions (as :class:`~seethrough.Channel`);
    a unit of a flat layer is its value. ``weights`` default to 1.
    """

    def __init__(self, layer: LayerRef, neurons: Sequence[int], weights: Sequence[float] | None = None) -> None:
        self.layer = layer
        self.layer_name = layer if isinstance(layer, str) else None
        self.neurons = [int(j) for j in neurons]
        if not self.neurons:
            raise TargetError("TopNeurons needs at least one neuron index")
        self.weights = [1.0] * len(self.neurons) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.neurons):
            raise TargetError(f"got {len(self.weights)} weights for {len(self.neurons)} neurons")

    def resolve(self, model, output, n_samples):
        self.layer_name, _ = resolve_layer(model, self.layer)
        return self

    def score(self, output, samples, activation=None):
        if activation is None:
            raise TargetError("TopNeurons needs the layer activation")
        a = (
            activation
            if activation.dim() <= 2
            else activation.reshape(activation.shape[0], activation.shape[1], -1).mean(dim=2)
        )
        if a.dim() == 1:
            a = a.unsqueeze(1)
        n = a.shape[1]
        bad = [j for j in self.neurons if not -n <= j < n]
        if bad:
            raise TargetError(f"neuron {bad[0]} is out of range for layer {self.layer_name!r} with {n} neurons")
        w = torch.tensor(self.weights, dtype=a.dtype, device=a.device)
        return (a[:, self.neurons] * w).sum(dim=1)

    def describe(self):
        ws = ", ".join(f"{w:.3g}" for w in self.weights)
        return f"TopNeurons({self.layer_name!r}, {self.neurons}, weights=[{ws}])"


def _neuron_target(layer: str, slice_shape: tuple[int, ...], j: int) -> Target:
    if len(slice_shape) >= 2:
        return Channel(layer, j, reduce="mean")
    return Neuron(layer, (j,) if len(slice_shape) == 1 else ())


def _check_method(method: str) -> str:
    spec = get_method(method)
    if spec.family != "gradient" or spec.needs_layer or not spec.input_shaped:
        raise ConfigError(
            f"method {spec.name!r} cannot visualise a neuron here; use a gradient method on the input "
            f"such as 'saliency' or 'integrated_gradients'"
        )
    return spec.name


def _method_settings(method: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings given for ``method``, with integrated gradients' default here: ``steps=32``."""
    s = dict(settings or {})
    if method == "integrated_gradients":
        s.setdefault("steps", 32)
    return s


def _slice_shape(model: nn.Module, name: str, module: nn.Module, x: Tensor) -> tuple[int, ...]:
    with model_guard(model, method="neuron visualisation"):
        z = slice_activations(model, name, module, x[:1], Batching(batch_size=1))
    return tuple(z.shape[1:])


@dataclass(frozen=True, eq=False)
class NeuronMaps(Result):
    """Input attributions of neurons' activations.

    ``maps[j]`` is the :class:`~seethrough.Explanation` of neuron ``j`` on ``inputs``;
    ``neurons`` lists them in order; ``influence[i]`` is the influence of ``neurons[i]``
    when the neurons came from an :class:`InfluenceResult`, else NaN. ``plot(ax=...,
    n_show=4)``: a row per input, the input then one map per neuron
    (:func:`seethrough.influence.plot_neuron_maps`); ``to_html()``, ``save``/``load``.
    """

    neurons: Tensor
    influence: Tensor
    inputs: Tensor
    layer: str
    method: str
    neuron: str
    maps: Mapping[int, Explanation]
    settings: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __repr__(self) -> str:
        return f"NeuronMaps(layer={self.layer!r}, neurons={self.neurons.tolist()}, method={self.method!r}, {len(self.inputs)} inputs)"


class NeuronVisualization:
    """What in the input drives a neuron of ``layer``: ``method`` (a gradient method of the
    registry, default integrated gradients) applied to the neuron's activation.

    A channel of a conv slice is explained through its mean over positions
    (``Channel(layer, j)``), a unit of a flat slice through its value
    (``Neuron(layer, j)``). ``method_settings`` go to the method (integrated gradients'
    default here: ``steps=32``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: LayerRef,
        method: str = "integrated_gradients",
        method_settings: Mapping[str, Any] | None = None,
        batching: Batching | int | None = None,
    ) -> None:
        self.model, self.layer, self.batching = model, layer, batching
        self.method, self.method_settings = method, method_settings

    def settings(self) -> dict[str, Any]:
        s = _method_settings(self.method, self.method_settings)
        return {"layer": layer_label(self.layer), "method": self.method, "method_settings": _jsonable(s)}

    def visualize(self, inputs: Tensor, neurons: Sequence[int] | Tensor | InfluenceResult, *, k: int = 3) -> NeuronMaps:
        """Maps of ``neurons`` (indices) on ``inputs``. Given an :class:`InfluenceResult`,
        its top ``k`` neurons of positive influence then its top ``k`` of negative
        influence (those with influence 0 are left out), with their influence."""
        name, module = resolve_layer(self.model, self.layer)
        method = _check_method(self.method)
        x = check_inputs(self.model, inputs)
        start = time.perf_counter()
        influence_values = None
        if isinstance(neurons, InfluenceResult):
            if neurons.layer != name:
                raise ConfigError(
                    f"the influence was computed at layer {neurons.layer!r} but the visualisation is for "
                    f"layer {name!r}; use the same layer"
                )
            res = neurons
            v = res.neuron_influence
            idx = [j for j in res.top_positive(k).tolist() if v[j] > 0]
            idx += [j for j in res.top_negative(k).tolist() if v[j] < 0]
            influence_values = res.neuron_influence[idx]
        else:
            idx = [int(j) for j in (neurons.tolist() if isinstance(neurons, Tensor) else neurons)]
        if not idx:
            raise ConfigError("no neurons to visualise")
        shape = _slice_shape(self.model, name, module, x)
        n = shape[0] if shape else 1
        bad = [j for j in idx if not 0 <= j < n]
        if bad:
            raise ConfigError(f"neuron {bad[0]} is out of range for layer {name!r} with {n} neurons (0..{n - 1})")
        settings = _method_settings(self.method, self.method_settings)
        attr = build_method(method, self.model, batching=self.batching, **settings)
        maps: dict[int, Explanation] = {}
        with warnings.catch_warnings():
            # a neuron that is inactive on an input has an all-zero map: expected here
            warnings.filterwarnings("ignore", message=r".*identically zero.*")
            for j in idx:
                maps[j] = attr.attribute(x, _neuron_target(name, shape, j))
        full = {**self.settings(), "layer": name}
        nan = torch.full((len(idx),), float("nan"))
        return NeuronMaps(
            neurons=torch.tensor(idx),
            maps=maps,
            inputs=x,
            layer=name,
            method=method,
            influence=influence_values.clone() if influence_values is not None else nan,
            neuron="channel" if len(shape) >= 2 else "unit",
            settings=full,
            seconds=time.perf_counter() - start,
        )


@dataclass(frozen=True, eq=False)
class ClassComparison(Result):
    """Class-level and comparative influence-directed explanations of class ``cls``.

    ``plot(ax=..., n_show=4)``: a row per explanation, a column per shown instance plus the
    class mean (:func:`seethrough.influence.plot_comparison`); ``to_html(n_show=4)``: the
    maps side by side and the top neurons; ``save``/``load``.

    Attributes
    ----------
    influence, comparative:
        Internal influence over the instances of ``cls`` for ``Class(cls)`` and for
        ``ClassDifference(cls, vs)`` (None without ``vs``).
    neurons, comparative_neurons:
        The top neurons (largest positive influence) of each.
    maps:
        Name -> :class:`~seethrough.Explanation` on the explained instances: plain
        integrated gradients for ``cls`` (and ``cls - vs``), and the influence-directed
        maps (the input attribution of the top neurons' activation, weighted by their
        influence) for ``cls`` (and ``cls - vs``).
    class_maps:
        Name -> the mean of those attributions over the explained instances (the
        class-level explanation), shaped like one input.
    inputs, instances:
        The explained instances (the first ``max_instances`` of the class in the data) and
        their indices in the data.
    """

    cls: int
    vs: int | None
    class_names: tuple[str, ...] | None
    influence: InfluenceResult
    comparative: InfluenceResult | None
    neurons: Tensor
    comparative_neurons: Tensor | None
    maps: Mapping[str, Explanation]
    class_maps: Mapping[str, Tensor]
    inputs: Tensor
    instances: Tensor
    settings: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def name_of(self, c: int | None) -> str:
        """The name of class ``c`` (its index when no names were given; "" for None)."""
        return "" if c is None else _name(c, self.class_names)

    def __repr__(self) -> str:
        vs = f" vs {self.name_of(self.vs)}" if self.vs is not None else ""
        return f"ClassComparison({self.name_of(self.cls)}{vs}, layer={self.influence.layer!r}, {len(self.instances)} instances)"


class ClassInfluence:
    """Influence-directed explanations of a class, alone and against a contrast class.

    Parameters
    ----------
    layer:
        The slice.
    top:
        Number of neurons (largest positive influence) that make the influence-directed
        map: the input attribution of ``sum_j w_j a_j``, ``a_j`` a top neuron's activation
        (channel mean) and ``w_j`` its influence divided by the sum of the top influences.
    distribution:
        Distribution of interest over the class's instances: ``"class"`` (the instances
        themselves, default) or ``"path"`` (the paths from the baseline to them).
    reduce:
        Channel reduction over positions, ``"max"`` (default) or ``"mean"``.
    method, method_settings:
        The gradient method that attributes the top neurons' activation to the input
        (default integrated gradients, ``steps=32``); the plain input attribution
        alongside is always integrated gradients with the same settings.
    max_instances:
        The maps are computed for the first ``max_instances`` instances of the class; the
        class-level maps are their mean. The influence uses every instance of the class.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: LayerRef,
        top: int = 1,
        distribution: str = "class",
        reduce: str = "max",
        method: str = "integrated_gradients",
        method_settings: Mapping[str, Any] | None = None,
        max_instances: int = 32,
        batching: Batching | int | None = None,
    ) -> None:
        self.model, self.layer, self.top, self.distribution = model, layer, top, distribution
        self.reduce, self.method, self.method_settings = reduce, method, method_settings
        self.max_instances, self.batching = max_instances, batching

    def settings(self) -> dict[str, Any]:
        s = _method_settings(self.method, self.method_settings)
        return {
            "layer": layer_label(self.layer),
            "top": self.top,
            "distribution": self.distribution,
            "reduce": self.reduce,
            "method": self.method,
            "method_settings": _jsonable(s),
            "max_instances": self.max_instances,
        }

    def _check_settings(self) -> None:
        if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 1:
            raise ConfigError(f"top must be a positive int (neurons in the explanation), got {self.top!r}")
        if self.distribution not in ("class", "path"):
            raise ConfigError(
                f"ClassInfluence takes distribution 'class' or 'path' (over the class's instances), got "
                f"{self.distribution!r}; for one point use InternalInfluence(distribution='point')"
            )
        if isinstance(self.max_instances, bool) or not isinstance(self.max_instances, int) or self.max_instances < 1:
            raise ConfigError(f"max_instances must be a positive int, got {self.max_instances!r}")
        _check_method(self.method)

    def explain(
        self,
        inputs: Tensor,
        labels: Tensor,
        cls: int,
        vs: int | None = None,
        *,
        class_names: Sequence[str] | None = None,
    ) -> ClassComparison:
        """Explain class ``cls`` (and ``cls`` rather than ``vs``) on the data ``inputs``
        with their ``labels``."""
        self._check_settings()
        name, _ = resolve_layer(self.model, self.layer)
        x = check_inputs(self.model, inputs)
        y = check_labels(labels, x.shape[0])
        cls = _class_index(cls, "cls")
        if vs is not None:
            vs = _class_index(vs, "vs")
            if vs == cls:
                raise ConfigError(
                    f"vs must differ from the explained class {cls}: a comparative quantity c1 - c1 is zero"
                )
        start = time.perf_counter()
        idx = select_class(y, cls)
        shown = idx[: self.max_instances]
        xs = x[shown.to(x.device)]
        infl = InternalInfluence(
            self.model,
            layer=name,
            distribution="class" if self.distribution == "class" else "path",
            reduce=self.reduce,
            batching=self.batching,
        )
        res = infl.compute(x, Class(cls), labels=y, of_class=cls)
        neurons = res.top_positive(self.top)
        comp = comp_neurons = None
        if vs is not None:
            comp = infl.compute(x, ClassDifference(cls, vs), labels=y, of_class=cls)
            comp_neurons = comp.top_positive(self.top)

        settings = _method_settings(self.method, self.method_settings)
        ig_settings = settings if self.method == "integrated_gradients" else {"steps": 32}
        ig = build_method("integrated_gradients", self.model, batching=self.batching, **ig_settings)
        method = build_method(_check_method(self.method), self.model, batching=self.batching, **settings)
        cname = _name(cls, class_names)
        maps: dict[str, Explanation] = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*identically zero.*")
            maps[f"integrated gradients: {cname}"] = ig.attribute(xs, Class(cls))
            if vs is not None:
                maps[f"integrated gradients: {cname} - {_name(vs, class_names)}"] = ig.attribute(
                    xs, ClassDifference(cls, vs)
                )
            maps[f"influence-directed: {cname}"] = method.attribute(xs, _weighted(name, res, neurons))
            if vs is not None and comp is not None and comp_neurons is not None:
                maps[f"influence-directed: {cname} - {_name(vs, class_names)}"] = method.attribute(
                    xs, _weighted(name, comp, comp_neurons)
                )
        class_maps = {key: e.attributions.mean(dim=0) for key, e in maps.items()}
        names = tuple(str(c) for c in class_names) if class_names is not None else None
        return ClassComparison(
            cls=cls,
            vs=vs,
            class_names=names,
            influence=res,
            comparative=comp,
            neurons=neurons,
            comparative_neurons=comp_neurons,
            maps=maps,
            class_maps=class_maps,
            inputs=xs,
            instances=shown.clone(),
            settings={**self.settings(), "layer": name},
            seconds=time.perf_counter() - start,
        )


def _weighted(layer: str, res: InfluenceResult, neurons: Tensor) -> Target:
    w = res.neuron_influence[neurons].double()
    total = float(w.abs().sum())
    weights = (w / total).tolist() if total > 0 else [1.0 / len(neurons)] * len(neurons)
    return TopNeurons(layer, neurons.tolist(), weights)


def _class_index(c: object, what: str) -> int:
    if isinstance(c, np.integer):
        return int(c)
    if isinstance(c, bool) or not isinstance(c, int):
        raise InputError(f"{what} must be a class index (int), got {c!r}")
    return int(c)


def _name(c: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= c < len(class_names):
        return str(class_names[c])
    return str(c)


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out[k] = v if isinstance(v, (int, float, str, bool, type(None), list, tuple)) else repr(v)
    return out
