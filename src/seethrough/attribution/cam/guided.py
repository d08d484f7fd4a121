"""Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map."""

from __future__ import annotations

from torch import Tensor, nn

from ..._core.batching import Batching
from ..._core.errors import ConfigError
from ..._core.layers import LayerRef, layer_label
from ..._core.targets import Target
from .._base import Attribution, Computed, check_layer
from ..gradient import GuidedBackprop
from ._base import _MODES, upsample_map
from .gradcam import GradCAM

__all__ = ["GuidedGradCAM"]


class GuidedGradCAM(Attribution):
    """Guided Grad-CAM (Selvaraju et al., 2017): the elementwise product of guided
    backpropagation and the Grad-CAM map of ``layer`` upsampled to the input."""

    name = "guided_gradcam"

    def __init__(self, model: nn.Module, *, layer: LayerRef, interpolation: str = "bilinear", batching=None) -> None:
        super().__init__(model, batching=batching)
        self.layer = layer
        self.interpolation = interpolation

    def settings(self):
        return {"layer": layer_label(self.layer), "interpolation": self.interpolation}

    def _check_settings(self) -> None:
        check_layer(self.model, self.layer, type(self).__name__)
        if self.interpolation not in _MODES:
            raise ConfigError(f"unknown interpolation {self.interpolation!r}; use one of {_MODES}")

    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs) -> Computed:
        cam = GradCAM(self.model, layer=self.layer, batching=self.batching)
        lmap, scores, name, n_cam = cam.layer_map(x, target, batching)
        guided = GuidedBackprop(self.model, batching=self.batching)._attribute(x, target, batching)
        up = upsample_map(lmap, tuple(x.shape[2:]), self.interpolation)
        return Computed(
            guided.attributions * up,
            n_cam + guided.n_evaluations,
            scores=scores,
            extras={"layer_map": lmap},
            layer=name,
        )
