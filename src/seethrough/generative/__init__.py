"""Generative models: the latent spaces of autoencoders, their directions and samplers,
attribution through a decoder, creative decoding and activation subset scanning.

* :class:`Latent`: encode, decode (guarded, batched), interpolate (linear, spherical) and
  traverse; results are :class:`LatentWalk` with an :class:`AttributeTable`.
* Directions in the latent space (scikit-learn style, ``vector_``): :class:`ProbeDirection`,
  :class:`PCADirections`, :class:`ClassifierDirection`, :class:`GradientDirection`; scored
  against known factors with :func:`factor_response`, :func:`mig` and :func:`dci`.
* Latent attribute probes (:class:`LatentClassifier`, :class:`LatentRegressor`) and
  attribute-conditioned sampling in the CLaSS manner (:class:`GaussianMixturePrior`,
  :class:`Condition`, :class:`ConditionalSampler`, :class:`SampleSet`), with
  :func:`validity`, :func:`uniqueness` and :func:`novelty`.
* :class:`LatentAttribution`: which latent dimensions drive a region of the decoded output
  or a score of it, with the attribution family's methods.
* :class:`CreativeDecoder`: decode with low-active units set high; :class:`SubsetScanner`:
  empirical p-values of activations and the Berk-Jones fast subset scan.
* :mod:`seethrough.generative.peptides`: peptide sequences, modlamp descriptors and a
  sequence-level classifier.

An autoencoder is any module with ``encode(x)``, ``decode(z)`` and ``latent_dim``
(:mod:`seethrough.generative.protocol`).
"""

from . import views  # noqa: F401  (registers the plot/to_html views)
from ._scanviews import creative_html, planted_html, plot_creative, plot_planted, plot_scan, scan_html
from .attribution import LATENT_METHODS, LatentAttribution
from .creative import CreativeDecoder, CreativeSamples, set_units
from .directions import ClassifierDirection, Direction, GradientDirection, PCADirections, ProbeDirection, as_direction
from .disentangle import DCIResult, FactorResponse, MIGResult, dci, factor_response, mig
from .latent import Latent, LatentWalk, lerp, slerp
from .probes import LatentClassifier, LatentRegressor
from .protocol import Autoencoder, DecoderModule, check_autoencoder
from .sampler import (
    Condition,
    ConditionalSampler,
    GaussianMixturePrior,
    NormalPrior,
    SampleSet,
    levenshtein,
    novelty,
    uniqueness,
    validity,
)
from .scanning import (
    PlantedCheck,
    ScanResult,
    SubsetScanner,
    alpha_grid,
    berk_jones,
    detection_auc,
    empirical_pvalues,
    planted_check,
    subset_scan,
)
from .table import AttributeTable

__all__ = [
    # latent spaces
    "Latent",
    "LatentWalk",
    "AttributeTable",
    "lerp",
    "slerp",
    "Autoencoder",
    "DecoderModule",
    "check_autoencoder",
    # directions and factors
    "Direction",
    "ProbeDirection",
    "PCADirections",
    "ClassifierDirection",
    "GradientDirection",
    "as_direction",
    "FactorResponse",
    "factor_response",
    "MIGResult",
    "mig",
    "DCIResult",
    "dci",
    # probes and sampling
    "LatentClassifier",
    "LatentRegressor",
    "GaussianMixturePrior",
    "NormalPrior",
    "Condition",
    "ConditionalSampler",
    "SampleSet",
    "validity",
    "uniqueness",
    "novelty",
    "levenshtein",
    # attribution through the decoder
    "LatentAttribution",
    "LATENT_METHODS",
    # creative decoding and subset scanning
    "CreativeDecoder",
    "CreativeSamples",
    "set_units",
    "SubsetScanner",
    "ScanResult",
    "empirical_pvalues",
    "berk_jones",
    "alpha_grid",
    "subset_scan",
    "detection_auc",
    "planted_check",
    "PlantedCheck",
    "plot_scan",
    "scan_html",
    "plot_planted",
    "planted_html",
    "plot_creative",
    "creative_html",
]
