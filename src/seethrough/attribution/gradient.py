"""Plain gradient methods: saliency, input x gradient, guided backprop, deconvolution."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.engine import ChunkResult, GradientRunner
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
    """

    relu_rule: str | None = None

    def row_attribution(self, chunk: ChunkResult) -> Tensor:
        return chunk.grad

    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs) -> Computed:
        if kwargs:
            raise TypeError(f"{type(self).__name__}.attribute() got unexpected arguments {sorted(kwargs)}")
        runner = GradientRunner(self.model, target, batching=batching, relu_rule=self.relu_rule)
        attributions = torch.empty_like(x)
        scores = torch.empty(x.shape[0], device=x.device)
        samples = torch.arange(x.shape[0], device=x.device)

        def rows(sl: slice):
            return x[sl], samples[sl]

        def consume(chunk: ChunkResult) -> None:
            attributions[chunk.rows] = self.row_attribution(chunk)
            scores[chunk.rows] = chunk.scores

        n = runner.run(x.shape[0], rows, consume)
        return Computed(attributions, n, scores=scores)


class Saliency(GradientAttribution):
    """Gradient of the target with respect to the input (Simonyan et al., 2014).

    ``abs=True`` (the paper's and Captum's default) returns the gradient's magnitude.
    """

    name = "saliency"

    def __init__(self, model: nn.Module, *, abs: bool = True, batching=None) -> None:
        super().__init__(model, batching=batching)
        self.abs = abs

    @property
    def signed(self) -> bool:  # type: ignore[override]
        return not self.abs

    def row_attribution(self, chunk: ChunkResult) -> Tensor:
        return chunk.grad.abs() if self.abs else chunk.grad

    def settings(self):
        return {"abs": self.abs}


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
