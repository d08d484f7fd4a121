"""Can this explanation be trusted? Sanity checks, faithfulness, robustness, localization and
complexity metrics, and the trust report.

Every metric is a :class:`Metric` (prepare, score, result) called with one signature,
``metric(model, inputs, maps, *, target=None, batching=None, seed=0, **settings) ->
MetricResult``, where ``maps`` is an attribution method, an :class:`~seethrough.Explanation`
or a tensor of precomputed maps (localization metrics also take ``masks=``). :func:`metrics`
lists them with their family and direction; :func:`trust_report` runs them all for a list of
methods. The results' plots and HTML views are in :mod:`seethrough.evaluation.views`.
"""

from ._common import MetricResult, check_masks, pixel_maps, resolve_maps
from .complexity import effective_complexity, entropy_complexity, sparseness
from .faithfulness import (
    deletion,
    faithfulness_correlation,
    infidelity,
    insertion,
    noisy_linear_imputation,
    region_perturbation,
    road,
)
from .localization import mask_iou, pointing_game, relevance_mass_accuracy, relevance_rank_accuracy
from .metric import Metric
from .randomization import (
    ModelRandomizationCheck,
    SanityResult,
    data_randomization_check,
    model_randomization,
    randomization_layers,
)
from .registry import METRIC_FAMILIES, MetricSpec, get_metric, metric_names, metrics
from .robustness import avg_sensitivity, max_sensitivity
from .similarity import compare_maps, hog_similarity, similarity_names, spearman, spearman_abs, ssim
from .tokens import ERASER_BINS, Comprehensiveness, Sufficiency, TokenFaithfulness, comprehensiveness, sufficiency
from .trust import TrustReport, trust_report
from .views import plot_randomization_curves, plot_randomization_examples  # also registers the views

__all__ = [
    # the metric base, results and map handling
    "Metric",
    "MetricResult",
    "resolve_maps",
    "pixel_maps",
    "check_masks",
    # registry
    "MetricSpec",
    "METRIC_FAMILIES",
    "metrics",
    "metric_names",
    "get_metric",
    # randomization (sanity checks)
    "ModelRandomizationCheck",
    "SanityResult",
    "data_randomization_check",
    "model_randomization",
    "randomization_layers",
    "plot_randomization_curves",
    "plot_randomization_examples",
    # similarity of maps
    "compare_maps",
    "similarity_names",
    "spearman",
    "spearman_abs",
    "ssim",
    "hog_similarity",
    # faithfulness
    "deletion",
    "insertion",
    "region_perturbation",
    "road",
    "noisy_linear_imputation",
    "infidelity",
    "faithfulness_correlation",
    # faithfulness of token attributions (ERASER)
    "comprehensiveness",
    "sufficiency",
    "Comprehensiveness",
    "Sufficiency",
    "TokenFaithfulness",
    "ERASER_BINS",
    # robustness
    "max_sensitivity",
    "avg_sensitivity",
    # localization
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "mask_iou",
    # complexity
    "sparseness",
    "entropy_complexity",
    "effective_complexity",
    # the trust report
    "TrustReport",
    "trust_report",
]
