"""Concept-based explanations: concept activation vectors and TCAV, network dissection.

* :class:`TCAV` tests whether a concept (generated, or a folder of your images) matters
  for a class at one layer, with a significance test whose false-positive rate
  :func:`tcav_null_check` measures; :class:`CAV` is the underlying scikit-learn-style
  estimator.
* :class:`Dissection` labels the units of convolution layers with the concepts whose
  pixel masks their strongest activations overlap (IoU), on
  :func:`seethrough.data.concepts.concept_scenes` or your own masks.

The data live in :mod:`seethrough.data.concepts`.
"""

from ._report import plot_dissection, plot_tcav
from .cav import CAV, MIN_EXAMPLES
from .dissection import QUANTILE_METHOD, Dissection, DissectionResult, LayerDissection
from .tcav import TCAV, NullCheckResult, TCAVResult, tcav_null_check

__all__ = [
    "CAV",
    "MIN_EXAMPLES",
    "TCAV",
    "TCAVResult",
    "NullCheckResult",
    "tcav_null_check",
    "Dissection",
    "DissectionResult",
    "LayerDissection",
    "QUANTILE_METHOD",
    "plot_tcav",
    "plot_dissection",
]
