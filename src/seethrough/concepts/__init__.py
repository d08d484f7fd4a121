"""Concept-based explanations: concept activation vectors and TCAV, network dissection.

* :class:`TCAV` tests whether a concept (example images you give) matters for a class at
  one layer, with a significance test whose false-positive rate :func:`tcav_null_check`
  measures; :class:`CAV` is the underlying scikit-learn-style estimator.
* :class:`Dissection` labels the units of convolution layers with the concepts whose
  pixel masks their strongest activations overlap (IoU), on scenes with concept masks
  (:class:`ConceptMasks`).
* :class:`GANDissection` does the same for the units of a generator layer against a
  segmentation of the generated images (one implementation of thresholds and IoU), and
  :class:`UnitIntervention` tests it causally: ablate or insert units and measure the change
  of the concept in the output, against random units of the same count (Bau et al. 2019).

A pure library: data come in as tensors (and scenes as any object with ``images``,
``masks`` and ``concepts``). Generated concept data live in :mod:`seethrough.data.concepts`;
the app layer (:mod:`seethrough.app.concepts`) turns generated names, folders and tensor
files into those tensors. Plots and HTML: :mod:`seethrough.concepts.views` (also
``result.plot()`` and ``result.to_html()``).
"""

from .cav import CAV, MIN_EXAMPLES
from .dissection import (
    IQR_METHOD,
    QUANTILE_METHOD,
    THRESHOLD_RULES,
    ConceptMasks,
    Dissection,
    DissectionResult,
    LayerDissection,
)
from .gan import (
    ACECurve,
    GANDissection,
    GANDissectionResult,
    InterventionEffect,
    UnitIntervention,
    causal_effect,
    conv_layers,
)
from .tcav import TCAV, NullCheckResult, TCAVResult, tcav_null_check
from .views import add_dissection, add_tcav, plot_dissection, plot_tcav

__all__ = [
    "CAV",
    "MIN_EXAMPLES",
    "TCAV",
    "TCAVResult",
    "NullCheckResult",
    "tcav_null_check",
    "ConceptMasks",
    "Dissection",
    "DissectionResult",
    "LayerDissection",
    "QUANTILE_METHOD",
    "IQR_METHOD",
    "THRESHOLD_RULES",
    "GANDissection",
    "GANDissectionResult",
    "UnitIntervention",
    "InterventionEffect",
    "ACECurve",
    "causal_effect",
    "conv_layers",
    "plot_tcav",
    "plot_dissection",
    "add_tcav",
    "add_dissection",
]
