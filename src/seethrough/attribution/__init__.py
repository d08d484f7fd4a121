"""Attribution methods: why did the model produce this output."""

from ._base import Attribution
from .baselines import Baseline, Blur, Constant, GaussianNoise, Given, UniformNoise, gaussian_blur
from .cam import BaseCAM, CounterfactualGradCAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM, upsample_map
from .gradient import Deconvolution, GradientAttribution, GuidedBackprop, InputXGradient, Saliency
from .incremental import IncrementalOcclusion
from .integrated import IntegratedGradients, integration_points
from .layer import LayerGradientXActivation
from .masks import default_feature_mask, feature_mask_from_spec, grid_mask, superpixel_mask
from .optimized_mask import MeaningfulPerturbation
from .perturbation import FeatureAblation, FeaturePermutation, Occlusion, PerturbationAttribution
from .registry import METHODS, MethodSpec, build_method, get_method, method_names
from .rise import RISE
from .segmentation import bounding_boxes, otsu_threshold, threshold_map
from .shapley import ExactShapley, KernelSHAP, ShapleyValueSampling
from .smoothgrad import SmoothGrad, SmoothGradSquared, VarGrad
from .surrogate import Lime

__all__ = [
    "Attribution",
    "GradientAttribution",
    "Saliency",
    "InputXGradient",
    "GuidedBackprop",
    "Deconvolution",
    "SmoothGrad",
    "SmoothGradSquared",
    "VarGrad",
    "IntegratedGradients",
    "integration_points",
    "BaseCAM",
    "GradCAM",
    "CounterfactualGradCAM",
    "GradCAMPlusPlus",
    "GuidedGradCAM",
    "upsample_map",
    "LayerGradientXActivation",
    "PerturbationAttribution",
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
    "default_feature_mask",
    "feature_mask_from_spec",
    "Baseline",
    "Constant",
    "Blur",
    "UniformNoise",
    "GaussianNoise",
    "Given",
    "gaussian_blur",
    "threshold_map",
    "otsu_threshold",
    "bounding_boxes",
    "METHODS",
    "MethodSpec",
    "get_method",
    "build_method",
    "method_names",
]
