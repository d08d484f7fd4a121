"""Class activation maps: Grad-CAM, counterfactual Grad-CAM, Grad-CAM++, Guided Grad-CAM."""

from ._base import BaseCAM, upsample_map
from .gradcam import CounterfactualGradCAM, GradCAM, GradCAMPlusPlus
from .guided import GuidedGradCAM

__all__ = ["BaseCAM", "GradCAM", "CounterfactualGradCAM", "GradCAMPlusPlus", "GuidedGradCAM", "upsample_map"]
