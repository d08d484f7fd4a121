"""seethrough: explain PyTorch models.

Quick start::

    import seethrough as st
    model = st.zoo.load("shapes-cnn")
    x = st.data.make_shapes(4, seed=1).images
    expl = st.IntegratedGradients(model).attribute(x, target=None)  # predicted class
    expl.plot(0)
"""

from . import report as _report  # noqa: F401  (registers the views of Explanation)
from ._core.batching import Batching
from ._core.errors import (
    ConfigError,
    GradientError,
    InputError,
    LayerError,
    ModelStateWarning,
    SeethroughError,
    SeethroughWarning,
    TargetError,
    ZeroAttributionWarning,
)
from ._core.layers import layer_names, resolve_layer
from ._core.result import Explanation
from ._core.state import model_guard
from ._core.targets import (
    Channel,
    Class,
    ClassDifference,
    Classify,
    Custom,
    Neuron,
    Predicted,
    Region,
    SequenceLogProb,
    Target,
    TokenAt,
    TokenDifference,
)
from .attribution import (
    METHODS,
    RISE,
    Attribution,
    BaseCAM,
    Blur,
    Constant,
    CounterfactualGradCAM,
    Deconvolution,
    ExactShapley,
    FeatureAblation,
    FeaturePermutation,
    GaussianNoise,
    GradCAM,
    GradCAMPlusPlus,
    GuidedBackprop,
    GuidedGradCAM,
    IncrementalOcclusion,
    InputXGradient,
    IntegratedGradients,
    KernelSHAP,
    LayerGradientXActivation,
    Lime,
    MeaningfulPerturbation,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
    SmoothGrad,
    SmoothGradSquared,
    UniformNoise,
    VarGrad,
    bounding_boxes,
    build_method,
    get_method,
    grid_mask,
    superpixel_mask,
    threshold_map,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # results and configuration
    "Explanation",
    "Batching",
    # targets
    "Target",
    "Class",
    "ClassDifference",
    "Neuron",
    "Channel",
    "Custom",
    "Predicted",
    "TokenAt",
    "TokenDifference",
    "SequenceLogProb",
    "Region",
    "Classify",
    # layers and model state
    "layer_names",
    "resolve_layer",
    "model_guard",
    # methods
    "Attribution",
    "Saliency",
    "InputXGradient",
    "GuidedBackprop",
    "Deconvolution",
    "SmoothGrad",
    "SmoothGradSquared",
    "VarGrad",
    "IntegratedGradients",
    "BaseCAM",
    "GradCAM",
    "CounterfactualGradCAM",
    "GradCAMPlusPlus",
    "GuidedGradCAM",
    "LayerGradientXActivation",
    "Occlusion",
    "IncrementalOcclusion",
    "FeatureAblation",
    "FeaturePermutation",
    "RISE",
    "Lime",
    "KernelSHAP",
    "ShapleyValueSampling",
    "ExactShapley",
    "MeaningfulPerturbation",
    "grid_mask",
    "superpixel_mask",
    "Constant",
    "Blur",
    "UniformNoise",
    "GaussianNoise",
    "threshold_map",
    "bounding_boxes",
    "METHODS",
    "get_method",
    "build_method",
    # errors and warnings
    "SeethroughError",
    "InputError",
    "LayerError",
    "TargetError",
    "GradientError",
    "ConfigError",
    "SeethroughWarning",
    "ModelStateWarning",
    "ZeroAttributionWarning",
]


_SUBPACKAGES = (
    "zoo",
    "data",
    "report",
    "attribution",
    "cli",
    "evaluation",
    "featurevis",
    "atlas",
    "concepts",
    "influence",
    "generative",
    "language",
)


def __getattr__(name: str):
    # Subpackages with heavier imports load on first use: st.zoo, st.data, st.report, st.evaluation, ...
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'seethrough' has no attribute {name!r}")
