"""Layer attributions: attribute the target to a hidden layer's activations."""

from __future__ import annotations

from torch import Tensor, nn

from .._core.batching import Batching
from .._core.engine import find_layer, layer_gradients
from .._core.layers import LayerRef, layer_label
from .._core.targets import Target
from ._base import Attribution, Computed, check_layer

__all__ = ["LayerGradientXActivation"]


class LayerGradientXActivation(Attribution):
    """Activation times gradient at ``layer``'s output, elementwise.

    ``multiply_by_activation=False`` returns the plain layer gradient. The attributions
    have the layer's output shape ``(B, *layer_shape)``. Integer token ids ``(B, T)`` are
    accepted as inputs (at the embedding layer this is input x gradient of the embedding).
    """

    name = "layer_gradient_x_activation"

    def __init__(
        self, model: nn.Module, *, layer: LayerRef, multiply_by_activation: bool = True, batching=None
    ) -> None:
        super().__init__(model, batching=batching)
        self.layer = layer
        self.multiply_by_activation = multiply_by_activation

    def settings(self):
        return {"layer": layer_label(self.layer), "multiply_by_activation": self.multiply_by_activation}

    def _check_settings(self) -> None:
        check_layer(self.model, self.layer, type(self).__name__)

    def _token_layer(self):
        # Token ids are fine: the gradient is taken at the layer's output.
        return self.layer

    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs) -> Computed:
        if kwargs:
            raise TypeError(f"LayerGradientXActivation.attribute() got unexpected arguments {sorted(kwargs)}")
        name, module = find_layer(self.model, self.layer)
        grads, scores, n = layer_gradients(
            self.model, target, x, (name, module), batching=batching, times_activation=self.multiply_by_activation
        )
        return Computed(grads, n, scores=scores, layer=name)
