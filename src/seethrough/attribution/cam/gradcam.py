"""Grad-CAM and its variants: each defines only the channel weights."""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import BaseCAM, spatial_dims

__all__ = ["GradCAM", "CounterfactualGradCAM", "GradCAMPlusPlus"]


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al., 2017): channels weighted by their mean gradient."""

    name = "gradcam"

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradients.mean(dim=spatial_dims(gradients))


class CounterfactualGradCAM(BaseCAM):
    """Counterfactual Grad-CAM (Selvaraju et al., 2017, section 5.2): weights from the
    negated gradients, highlighting regions whose removal would raise the target."""

    name = "counterfactual_gradcam"

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return (-gradients).mean(dim=spatial_dims(gradients))


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhyay et al., 2018).

    Weights ``w_k = sum_ij a_kij relu(g_kij)`` with
    ``a_kij = g^2 / (2 g^2 + sum_ab A_kab g^3)``, the closed form the paper derives for
    an exponential of the score, evaluated with the score's first-order gradients.
    Positions where the denominator vanishes get ``a = 0``.
    """

    name = "gradcam_pp"

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        dims = spatial_dims(gradients)
        g2 = gradients.pow(2)
        g3 = g2 * gradients
        sum_a = activations.sum(dim=dims, keepdim=True)
        denom = 2 * g2 + sum_a * g3
        alpha = torch.where(
            denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(denom)
        )
        return (alpha * gradients.clamp(min=0)).sum(dim=dims)
