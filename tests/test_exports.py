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
    "ConfigError",
    "Constant",
    "CounterfactualGradCAM",
    "Custom",
    "Deconvolution",
    "Explanation",
    "GaussianNoise",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientError",
    "GuidedBackprop",
    "GuidedGradCAM",
    "InputError",
    "InputXGradient",
    "IntegratedGradients",
    "LayerError",
    "LayerGradientXActivation",
    "METHODS",
    "ModelStateWarning",
    "Neuron",
    "Predicted",
    "Saliency",
    "SeethroughError",
    "SeethroughWarning",
    "SmoothGrad",
    "SmoothGradSquared",
    "Target",
    "TargetError",
    "UniformNoise",
    "VarGrad",
    "ZeroAttributionWarning",
    "__version__",
    "bounding_boxes",
    "build_method",
    "get_method",
    "layer_names",
    "model_guard",
    "resolve_layer",
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
    "GaussianNoise",
    "Given",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientAttribution",
    "GuidedBackprop",
    "GuidedGradCAM",
    "InputXGradient",
    "IntegratedGradients",
    "LayerGradientXActivation",
    "METHODS",
    "MethodSpec",
    "Saliency",
    "SmoothGrad",
    "SmoothGradSquared",
    "UniformNoise",
    "VarGrad",
    "bounding_boxes",
    "build_method",
    "gaussian_blur",
    "get_method",
    "integration_points",
    "method_names",
    "otsu_threshold",
    "threshold_map",
    "upsample_map",
]


@pytest.mark.parametrize(
    "module,frozen",
    [(seethrough, SEETHROUGH_ALL), (seethrough.attribution, ATTRIBUTION_ALL)],
    ids=["seethrough", "seethrough.attribution"],
)
def test_all_is_frozen(module, frozen):
    assert frozen == sorted(frozen), "keep the frozen list sorted"
    assert len(module.__all__) == len(set(module.__all__)), "duplicate names in __all__"
    added = sorted(set(module.__all__) - set(frozen))
    removed = sorted(set(frozen) - set(module.__all__))
    assert not added and not removed, f"public API changed: added {added}, removed {removed}"


@pytest.mark.parametrize("module", ["seethrough", "seethrough.attribution"])
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
