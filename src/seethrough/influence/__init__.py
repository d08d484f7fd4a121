"""Influence-directed explanations (Leino, Sen, Datta, Fredrikson and Li, ITC 2018).

An explanation is parameterised by a quantity of interest (a target: ``Class``,
``ClassDifference``, a callable), a distribution of interest (a point, the instances of a
class, or the path from a baseline) and a slice (a layer). :class:`InternalInfluence`
measures every neuron's influence; :class:`NeuronVisualization` shows what drives a
neuron; :class:`ClassInfluence` builds class-level and comparative explanations;
:class:`EssenceExperiment` tests whether a few influential neurons carry a class.

A pure library: data come in as tensors. The results are
:class:`~seethrough._core.result.Result` objects (frozen, ``save``/``load``); their
``plot()`` and ``to_html()`` are the views of :mod:`seethrough.influence.views`. The demo
section lives in :mod:`seethrough.app.demo.influence`.
"""

from ._common import select_class
from .essence import EssenceExperiment, EssenceResult, balanced_accuracy_threshold, class_vs_rest
from .explain import ClassComparison, ClassInfluence, NeuronMaps, NeuronVisualization, TopNeurons
from .internal import DISTRIBUTIONS, InfluenceResult, InternalInfluence
from .views import plot_comparison, plot_essence, plot_influence, plot_neuron_maps

__all__ = [
    "InternalInfluence",
    "InfluenceResult",
    "DISTRIBUTIONS",
    "NeuronVisualization",
    "NeuronMaps",
    "TopNeurons",
    "ClassInfluence",
    "ClassComparison",
    "EssenceExperiment",
    "EssenceResult",
    "class_vs_rest",
    "balanced_accuracy_threshold",
    "plot_influence",
    "plot_neuron_maps",
    "select_class",
    "plot_comparison",
    "plot_essence",
]
