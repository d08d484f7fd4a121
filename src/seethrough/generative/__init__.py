"""Generative models: the latent spaces of autoencoders and GANs, their directions and samplers,
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
* GANs: latent directions by :class:`SeFa` (closed form), :class:`GANSpace` (PCA of a layer,
  with layer-restricted edits :func:`layer_edit`) and :class:`SupervisedDirection`
  (InterFaceGAN); sample quality (:class:`SampleQuality`: FID, KID, precision/recall,
  density/coverage, IS with bootstrap intervals on any :class:`FeatureExtractor`); latent
  recovery and the memorisation test (:class:`LatentRecovery`, :func:`memorization_test`).
  A generator is any module ``z -> outputs`` with ``latent_dim`` (:class:`Generator` wraps one).
  GAN dissection lives with network dissection in :mod:`seethrough.concepts`.
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
from .gan import GANSpace, SeFa, SupervisedDirection, latent_layers, layer_edit, layer_traverse
from .latent import Latent, LatentWalk, lerp, slerp
from .metrics import (
    SAMPLE_QUALITY_METRICS,
    FeatureExtractor,
    MetricValue,
    SampleQuality,
    SampleQualityResult,
    density_coverage,
    fid,
    frechet_distance,
    inception_score,
    kid,
    plot_sample_quality,
    precision_recall,
    sample_quality_html,
)
from .probes import LatentClassifier, LatentRegressor
from .protocol import Autoencoder, DecoderModule, Generator, as_generator, check_autoencoder, check_generator
from .recovery import LatentRecovery, Recovery, RecoveryTest, memorization_test
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
    "Generator",
    "as_generator",
    "check_generator",
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
    # GAN directions
    "SeFa",
    "GANSpace",
    "SupervisedDirection",
    "latent_layers",
    "layer_edit",
    "layer_traverse",
    # sample quality
    "FeatureExtractor",
    "SampleQuality",
    "SampleQualityResult",
    "MetricValue",
    "SAMPLE_QUALITY_METRICS",
    "frechet_distance",
    "fid",
    "kid",
    "precision_recall",
    "density_coverage",
    "inception_score",
    "plot_sample_quality",
    "sample_quality_html",
    # latent recovery
    "LatentRecovery",
    "Recovery",
    "RecoveryTest",
    "memorization_test",
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
