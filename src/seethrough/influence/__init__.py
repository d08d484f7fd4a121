"""Influence-directed explanations (Leino, Sen, Datta, Fredrikson and Li, ITC 2018).

An explanation is parameterised by a quantity of interest (a target: ``Class``,
``ClassDifference``, a callable), a distribution of interest (a point, the instances of a
class, or the path from a baseline) and a slice (a layer). :class:`InternalInfluence`
measures every neuron's influence; :class:`NeuronVisualization` shows what drives a
neuron; :class:`ClassInfluence` builds class-level and comparative explanations;
:class:`EssenceExperiment` tests whether a few influential neurons carry a class.
"""

from ._report import influence_section
from .essence import EssenceExperiment, EssenceResult, balanced_accuracy_threshold, class_vs_rest
from .explain import ClassComparison, ClassInfluence, NeuronMaps, NeuronVisualization, TopNeurons
from .internal import DISTRIBUTIONS, InfluenceResult, InternalInfluence
from .plot import plot_comparison, plot_essence, plot_influence, plot_neuron_maps

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
    "plot_comparison",
    "plot_essence",
    "influence_section",
]
