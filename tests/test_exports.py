"""The public API is frozen here: adding or removing a public name must update this file."""

from __future__ import annotations

import importlib

import pytest

import seethrough
import seethrough.attribution

SEETHROUGH_ALL = [
    "Attribution",
    "BaseCAM",
    "Batching",
    "Blur",
    "Channel",
    "Class",
    "ClassDifference",
    "Classify",
    "ConfigError",
    "Constant",
    "CounterfactualGradCAM",
    "Custom",
    "Deconvolution",
    "ExactShapley",
    "Explanation",
    "FeatureAblation",
    "FeaturePermutation",
    "GaussianNoise",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientError",
    "GuidedBackprop",
    "GuidedGradCAM",
    "IncrementalOcclusion",
    "InputError",
    "InputXGradient",
    "IntegratedGradients",
    "KernelSHAP",
    "LayerError",
    "LayerGradientXActivation",
    "Lime",
    "METHODS",
    "MeaningfulPerturbation",
    "ModelStateWarning",
    "Neuron",
    "Occlusion",
    "Predicted",
    "RISE",
    "Region",
    "Saliency",
    "SeethroughError",
    "SeethroughWarning",
    "SequenceLogProb",
    "ShapleyValueSampling",
    "SmoothGrad",
    "SmoothGradSquared",
    "Target",
    "TargetError",
    "TokenAt",
    "UniformNoise",
    "VarGrad",
    "ZeroAttributionWarning",
    "__version__",
    "bounding_boxes",
    "build_method",
    "get_method",
    "grid_mask",
    "layer_names",
    "model_guard",
    "resolve_layer",
    "superpixel_mask",
    "threshold_map",
]

ATTRIBUTION_ALL = [
    "Attribution",
    "BaseCAM",
    "Baseline",
    "Blur",
    "Constant",
    "CounterfactualGradCAM",
    "Deconvolution",
    "ExactShapley",
    "FeatureAblation",
    "FeaturePermutation",
    "GaussianNoise",
    "Given",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientAttribution",
    "GuidedBackprop",
    "GuidedGradCAM",
    "IncrementalOcclusion",
    "InputXGradient",
    "IntegratedGradients",
    "KernelSHAP",
    "LayerGradientXActivation",
    "Lime",
    "METHODS",
    "MeaningfulPerturbation",
    "MethodSpec",
    "Occlusion",
    "PerturbationAttribution",
    "RISE",
    "Saliency",
    "ShapleyValueSampling",
    "SmoothGrad",
    "SmoothGradSquared",
    "UniformNoise",
    "VarGrad",
    "bounding_boxes",
    "build_method",
    "default_feature_mask",
    "feature_mask_from_spec",
    "gaussian_blur",
    "get_method",
    "grid_mask",
    "integration_points",
    "method_names",
    "otsu_threshold",
    "superpixel_mask",
    "threshold_map",
    "upsample_map",
]


# Subpackages that are not re-exported at the top level (``seethrough.<name>``).
SUBPACKAGE_ALL = {
    "seethrough.concepts": [
        "CAV",
        "ConceptMasks",
        "Dissection",
        "DissectionResult",
        "LayerDissection",
        "MIN_EXAMPLES",
        "NullCheckResult",
        "QUANTILE_METHOD",
        "TCAV",
        "TCAVResult",
        "add_dissection",
        "add_tcav",
        "plot_dissection",
        "plot_tcav",
        "tcav_null_check",
    ],
    "seethrough.concepts.views": [
        "add_dissection",
        "add_tcav",
        "dissection_html",
        "plot_dissection",
        "plot_tcav",
        "tcav_html",
        "unit_examples",
    ],
    "seethrough.data.concepts": [
        "COLORS",
        "CONCEPTS",
        "CONCEPT_KINDS",
        "ConceptScenes",
        "SHAPES",
        "TEXTURES",
        "concept_dataset",
        "concept_images",
        "concept_scenes",
        "load_concept_images",
        "random_images",
    ],
    "seethrough.evaluation": [
        "METRIC_FAMILIES",
        "Metric",
        "MetricResult",
        "MetricSpec",
        "ModelRandomizationCheck",
        "SanityResult",
        "TrustReport",
        "avg_sensitivity",
        "check_masks",
        "compare_maps",
        "data_randomization_check",
        "deletion",
        "effective_complexity",
        "entropy_complexity",
        "faithfulness_correlation",
        "get_metric",
        "hog_similarity",
        "infidelity",
        "insertion",
        "mask_iou",
        "max_sensitivity",
        "metric_names",
        "metrics",
        "model_randomization",
        "noisy_linear_imputation",
        "pixel_maps",
        "plot_randomization_curves",
        "plot_randomization_examples",
        "pointing_game",
        "randomization_layers",
        "region_perturbation",
        "relevance_mass_accuracy",
        "relevance_rank_accuracy",
        "resolve_maps",
        "road",
        "similarity_names",
        "sparseness",
        "spearman",
        "spearman_abs",
        "ssim",
        "trust_report",
    ],
    "seethrough.featurevis": [
        "BlurPenalty",
        "ChannelObjective",
        "ClassLogit",
        "ColorDecorrelation",
        "Compose",
        "DeepDream",
        "Direction",
        "Diversity",
        "FeatureVisualization",
        "FeatureVisualizer",
        "ImageParam",
        "InputSpace",
        "Jitter",
        "L1",
        "L2",
        "NeuronObjective",
        "Objective",
        "Pad",
        "RandomRotate",
        "RandomScale",
        "StepRandom",
        "TargetObjective",
        "TotalVariation",
        "Transform",
        "channel",
        "class_logit",
        "deep_dream",
        "direction",
        "diversity",
        "from_target",
        "neuron",
        "render",
        "standard_transforms",
        "visualize_channels",
    ],
    "seethrough.atlas": [
        "Atlas",
        "AtlasBuild",
        "DatasetExamples",
        "DatasetSource",
        "FolderSource",
        "ImageSource",
        "ReceptiveField",
        "TensorSource",
        "UnitExamples",
        "as_source",
        "model_fingerprint",
        "select_layers",
    ],
    "seethrough.influence": [
        "ClassComparison",
        "ClassInfluence",
        "DISTRIBUTIONS",
        "EssenceExperiment",
        "EssenceResult",
        "InfluenceResult",
        "InternalInfluence",
        "NeuronMaps",
        "NeuronVisualization",
        "TopNeurons",
        "balanced_accuracy_threshold",
        "class_vs_rest",
        "plot_comparison",
        "plot_essence",
        "plot_influence",
        "plot_neuron_maps",
        "select_class",
    ],
}


@pytest.mark.parametrize(
    "module,frozen",
    [(seethrough, SEETHROUGH_ALL), (seethrough.attribution, ATTRIBUTION_ALL)]
    + [(importlib.import_module(name), names) for name, names in SUBPACKAGE_ALL.items()],
    ids=["seethrough", "seethrough.attribution", *SUBPACKAGE_ALL],
)
def test_all_is_frozen(module, frozen):
    assert frozen == sorted(frozen), "keep the frozen list sorted"
    assert len(module.__all__) == len(set(module.__all__)), "duplicate names in __all__"
    added = sorted(set(module.__all__) - set(frozen))
    removed = sorted(set(frozen) - set(module.__all__))
    assert not added and not removed, f"public API changed: added {added}, removed {removed}"


@pytest.mark.parametrize("module", ["seethrough", "seethrough.attribution", *SUBPACKAGE_ALL])
def test_every_exported_name_resolves(module):
    mod = importlib.import_module(module)
    namespace: dict = {}
    exec(f"from {module} import *", namespace)  # noqa: S102
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is exported but does not exist"
        assert getattr(mod, name) is not None
        assert namespace[name] is getattr(mod, name)


def test_top_level_names_are_the_attribution_objects():
    for name in set(SEETHROUGH_ALL) & set(ATTRIBUTION_ALL):
        assert getattr(seethrough, name) is getattr(seethrough.attribution, name), name


def test_version():
    assert isinstance(seethrough.__version__, str) and seethrough.__version__.count(".") >= 1


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        seethrough.nope  # noqa: B018
