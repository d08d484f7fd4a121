"""The one registry of attribution methods, read by the CLI, the demo and the reports."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._core.errors import ConfigError
from ._base import Attribution
from .cam.gradcam import CounterfactualGradCAM, GradCAM, GradCAMPlusPlus
from .cam.guided import GuidedGradCAM
from .gradient import Deconvolution, GuidedBackprop, InputXGradient, Saliency
from .incremental import IncrementalOcclusion
from .integrated import IntegratedGradients
from .layer import LayerGradientXActivation
from .optimized_mask import MeaningfulPerturbation
from .perturbation import FeatureAblation, FeaturePermutation, Occlusion
from .rise import RISE
from .shapley import KernelSHAP, ShapleyValueSampling
from .smoothgrad import SmoothGrad, SmoothGradSquared, VarGrad
from .surrogate import Lime

__all__ = ["MethodSpec", "METHODS", "get_method", "build_method", "method_names"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    cls: type[Attribution]
    family: str
    needs_layer: bool
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    #: Whether the result has the input's shape (else a layer-resolution map).
    input_shaped: bool = True
    #: Whether ``attribute`` takes a ``feature_mask`` (the default mask is used if none).
    takes_feature_mask: bool = False
    #: What the method needs: "any" input, "image" inputs (B, C, H, W), or "conv": image
    #: inputs and a model whose first layers are local (convolutions, pooling, ...).
    needs: str = "any"


_SPECS = [
    MethodSpec("saliency", Saliency, "gradient", False, "absolute input gradient"),
    MethodSpec("input_x_gradient", InputXGradient, "gradient", False, "input times gradient"),
    MethodSpec("smoothgrad", SmoothGrad, "gradient", False, "saliency averaged over noisy copies"),
    MethodSpec("smoothgrad_sq", SmoothGradSquared, "gradient", False, "mean squared saliency over noisy copies"),
    MethodSpec("vargrad", VarGrad, "gradient", False, "variance of saliency over noisy copies"),
    MethodSpec("guided_backprop", GuidedBackprop, "gradient", False, "positive gradients through positive ReLUs"),
    MethodSpec("deconvolution", Deconvolution, "gradient", False, "positive gradients through every ReLU"),
    MethodSpec(
        "integrated_gradients", IntegratedGradients, "gradient", False, "path integral of gradients from a baseline"
    ),
    MethodSpec("gradcam", GradCAM, "cam", True, "activations weighted by mean gradients at a conv layer"),
    MethodSpec(
        "counterfactual_gradcam", CounterfactualGradCAM, "cam", True, "Grad-CAM of negative gradients: evidence against"
    ),
    MethodSpec("gradcam_pp", GradCAMPlusPlus, "cam", True, "Grad-CAM++ weights from positive gradients"),
    MethodSpec("guided_gradcam", GuidedGradCAM, "cam", True, "guided backprop times upsampled Grad-CAM"),
    MethodSpec(
        "layer_gradient_x_activation",
        LayerGradientXActivation,
        "layer",
        True,
        "activation times gradient at a hidden layer",
        input_shaped=False,
    ),
    MethodSpec("occlusion", Occlusion, "perturbation", False, "score drop when a sliding window is occluded"),
    MethodSpec(
        "incremental_occlusion",
        IncrementalOcclusion,
        "perturbation",
        False,
        "occlusion with early conv layers recomputed only inside each window's cone",
        needs="conv",
    ),
    MethodSpec(
        "feature_ablation",
        FeatureAblation,
        "perturbation",
        False,
        "score drop when a feature is set to the baseline",
        takes_feature_mask=True,
    ),
    MethodSpec(
        "feature_permutation",
        FeaturePermutation,
        "perturbation",
        False,
        "score drop when a feature is shuffled across the batch",
        takes_feature_mask=True,
    ),
    MethodSpec(
        "rise",
        RISE,
        "perturbation",
        False,
        "score-weighted average of random smooth masks",
        {"n_masks": 2000},
        needs="image",
    ),
    MethodSpec(
        "lime",
        Lime,
        "surrogate",
        False,
        "weights of a local linear surrogate on feature coalitions",
        {"n_samples": 500},
        takes_feature_mask=True,
    ),
    MethodSpec(
        "kernel_shap",
        KernelSHAP,
        "surrogate",
        False,
        "Shapley values by weighted regression on coalitions",
        {"n_samples": 500},
        takes_feature_mask=True,
    ),
    MethodSpec(
        "shapley_sampling",
        ShapleyValueSampling,
        "surrogate",
        False,
        "Shapley values by permutation sampling, with standard errors",
        {"n_permutations": 8},
        takes_feature_mask=True,
    ),
    MethodSpec(
        "meaningful_perturbation",
        MeaningfulPerturbation,
        "perturbation",
        False,
        "smallest smooth mask whose deletion drops the score (optimised)",
        {"steps": 150},
        needs="image",
    ),
]

METHODS: dict[str, MethodSpec] = {s.name: s for s in _SPECS}


def method_names(*, family: str | None = None) -> list[str]:
    return [n for n, s in METHODS.items() if family is None or s.family == family]


def get_method(name: str) -> MethodSpec:
    key = name.strip().lower().replace("-", "_")
    if key in METHODS:
        return METHODS[key]
    close = difflib.get_close_matches(key, list(METHODS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ConfigError(f"unknown method {name!r}.{hint} Available: {', '.join(METHODS)}")


def build_method(name: str, model: nn.Module, *, layer=None, **settings: Any) -> Attribution:
    """Instantiate a registered method; ``layer`` is passed only to methods that need one."""
    spec = get_method(name)
    kwargs = {**spec.defaults, **settings}
    if spec.needs_layer:
        if layer is None:
            raise ConfigError(f"method {spec.name!r} needs a layer (e.g. --layer features.6)")
        kwargs["layer"] = layer
    return spec.cls(model, **kwargs)
