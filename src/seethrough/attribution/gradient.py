"""Plain gradient methods: saliency, input x gradient, guided backprop, deconvolution."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.engine import ChunkResult, GradientRunner
from .._core.layers import LayerRef, layer_label
from .._core.substitution import layer_space
from .._core.targets import Target
from ._base import Attribution, Computed

__all__ = [
    "GradientAttribution",
    "Saliency",
    "InputXGradient",
    "GuidedBackprop",
    "Deconvolution",
]


class GradientAttribution(Attribution):
    """A method whose attribution of one row depends only on that row's input gradient.

    Subclasses override :meth:`row_attribution` (and ``relu_rule`` for modified
    backward passes); :class:`~seethrough.SmoothGrad` reuses both to batch noisy copies.

    ``layer=`` (a module or its dotted name, usually the embedding) attributes at that
    layer's output instead of the input: the "input" is the layer's output, which is how
    integer token ids ``(B, T)`` are explained. The attributions then have the layer's
    output shape, e.g. ``(B, T, D)``; ``.sum(-1)`` gives one value per token.
    """

    relu_rule: str | None = None

    def __init__(self, model: nn.Module, *, layer: LayerRef | None = None, batching=None) -> None:
        super().__init__(model, batching=batching)
        self.layer = layer

    def _token_layer(self):
        return self.layer

    def settings(self):
        return {} if self.layer is None else {"layer": layer_label(self.layer)}

    def row_attribution(self, chunk: ChunkResult) -> Tensor:
        return chunk.grad

    def _predicts_in_pass(self) -> bool:
        # at the input, every row is a sample's clean input, run once (a subclass with other
        # rows overrides _attribute, and then does not predict in the pass). Modules with an
        # inference-only fast path (taken without autograd, other kernels) keep the clean pass,
        # so that the predicted class is the one a no-grad forward pass gives, to the bit.
        if self.layer is not None or type(self)._attribute is not GradientAttribution._attribute:
            return False
        return not any(isinstance(m, _NO_GRAD_FAST_PATHS) for m in self.model.modules())

    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs) -> Computed:
        if kwargs:
            raise TypeError(f"{type(self).__name__}.attribute() got unexpected arguments {sorted(kwargs)}")
        values, layer, feed = layer_space(self.model, x, self.layer)
        runner = GradientRunner(self.model, target, batching=batching, relu_rule=self.relu_rule, layer=layer, feed=feed)
        parts: list[Tensor] = []
        scores: list[Tensor] = []
        samples = torch.arange(x.shape[0], device=x.device)

        def rows(sl: slice):
            return values[sl], samples[sl]

        def consume(chunk: ChunkResult) -> None:  # chunks come in row order
            parts.append(self.row_attribution(chunk))
            scores.append(chunk.scores)

        n = runner.run(x.shape[0], rows, consume)
        return Computed(_joined(parts), n, scores=_joined(scores), layer=None if layer is None else layer[0])


class Saliency(GradientAttribution):
    """Gradient of the target with respect to the input (Simonyan et al., 2014).

    ``abs=True`` (the paper's and Captum's default) returns the gradient's magnitude.
    """

    name = "saliency"

    def __init__(self, model: nn.Module, *, abs: bool = True, layer: LayerRef | None = None, batching=None) -> None:
        super().__init__(model, layer=layer, batching=batching)
        self.abs = abs

    @property
    def signed(self) -> bool:  # type: ignore[override]
        return not self.abs

    def row_attribution(self, chunk: ChunkResult) -> Tensor:
        return chunk.grad.abs() if self.abs else chunk.grad

    def settings(self):
        return {"abs": self.abs, **super().settings()}


class InputXGradient(GradientAttribution):
    """Input times gradient, elementwise (Shrikumar et al., 2016)."""

    name = "input_x_gradient"

    def row_attribution(self, chunk: ChunkResult) -> Tensor:
        return chunk.inputs * chunk.grad


class GuidedBackprop(GradientAttribution):
    """Guided backpropagation (Springenberg et al., 2015).

    Every ReLU passes back only positive gradients, and only where its input was
    positive. ReLU modules (in-place or not, reused or not) and functional
    ``F.relu``/``torch.relu`` calls are all overridden.
    """

    name = "guided_backprop"
    relu_rule = "guided"


class Deconvolution(GradientAttribution):
    """Deconvolution (Zeiler and Fergus, 2014): ReLUs pass back positive gradients,
    whatever their forward input."""

    name = "deconvolution"
    relu_rule = "deconv"


#: modules whose forward takes another code path without autograd (PyTorch's fast paths)
_NO_GRAD_FAST_PATHS = (nn.MultiheadAttention, nn.TransformerEncoderLayer)


def _joined(parts: list[Tensor]) -> Tensor:
    """The chunks' tensors as one: the only one as is (a job in one chunk copies nothing)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)
