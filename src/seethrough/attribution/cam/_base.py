"""The class-activation-map family: one template, one overridable step.

``BaseCAM.attribute`` captures a layer's activations ``A`` (B, K, *spatial) and the
gradients ``G = dS/dA`` of the target score, asks the variant for channel weights
``w`` (B, K) in :meth:`channel_weights`, and forms ``map = relu(sum_k w_k A_k)``,
returned both at the layer's resolution (``extras["layer_map"]``) and upsampled to the
input's spatial size (the attributions, shape ``(B, 1, *input_spatial)``).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._core.batching import Batching
from ..._core.engine import ChunkResult, GradientRunner, find_layer
from ..._core.errors import ConfigError, LayerError
from ..._core.layers import LayerRef, layer_label
from ..._core.targets import Target
from .._base import Attribution, Computed, check_layer
from ..gradient import _joined

__all__ = ["BaseCAM", "upsample_map"]

_MODES = ("bilinear", "nearest", "bicubic", "area", "nearest-exact", "linear", "trilinear")


def upsample_map(layer_map: Tensor, size: tuple[int, ...], mode: str = "bilinear") -> Tensor:
    """Resize a ``(B, 1, *spatial)`` map to ``size`` (no corner alignment)."""
    if tuple(layer_map.shape[2:]) == tuple(size):
        return layer_map.clone()
    if len(size) == 1 and mode in ("bilinear", "bicubic"):
        mode = "linear"
    if len(size) == 3 and mode == "bilinear":
        mode = "trilinear"
    kwargs = {} if mode in ("nearest", "area", "nearest-exact") else {"align_corners": False}
    return F.interpolate(layer_map, size=tuple(size), mode=mode, **kwargs)


class BaseCAM(Attribution):
    """A class activation map on ``layer``; variants override :meth:`channel_weights`.

    Parameters
    ----------
    layer:
        Dotted ``named_modules()`` path or module whose output (B, K, *spatial) is used.
    relu:
        Keep only positive evidence (the papers' definition). ``False`` keeps the sign.
    interpolation:
        Mode used to upsample the layer map to the input size.
    """

    name = "cam"

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: LayerRef,
        relu: bool = True,
        interpolation: str = "bilinear",
        batching=None,
    ) -> None:
        super().__init__(model, batching=batching)
        self.layer = layer
        self.relu = relu
        self.interpolation = interpolation

    @property
    def signed(self) -> bool:  # type: ignore[override]
        return not self.relu

    def settings(self):
        return {"layer": layer_label(self.layer), "relu": self.relu, "interpolation": self.interpolation}

    def _check_settings(self) -> None:
        check_layer(self.model, self.layer, type(self).__name__)
        if self.interpolation not in _MODES:
            raise ConfigError(f"unknown interpolation {self.interpolation!r}; use one of {_MODES}")

    @abstractmethod
    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Weights ``(B, K)`` of the layer's channels."""

    def layer_map(self, x: Tensor, target: Target, batching: Batching) -> tuple[Tensor, Tensor, str, int]:
        """The map at layer resolution ``(B, 1, *spatial)``, scores and layer name."""
        name, module = find_layer(self.model, self.layer)
        runner = GradientRunner(self.model, target, batching=batching, layer=(name, module))
        maps: list[Tensor] = []
        scores: list[Tensor] = []
        samples = torch.arange(x.shape[0], device=x.device)

        def consume(chunk: ChunkResult) -> None:
            a, g = chunk.activation, chunk.grad
            if a is None or a.dim() < 3:
                raise LayerError(
                    f"{type(self).__name__} needs a layer with channels and spatial dimensions "
                    f"(B, K, H, W); layer {name!r} outputs shape "
                    f"{None if a is None else tuple(a.shape)}. Pick a convolutional layer."
                )
            w = self.channel_weights(a, g)
            m = (w.reshape(w.shape + (1,) * (a.dim() - 2)) * a).sum(dim=1, keepdim=True)
            maps.append(F.relu(m) if self.relu else m)
            scores.append(chunk.scores)

        n = runner.run(x.shape[0], lambda sl: (x[sl], samples[sl]), consume)
        return _joined(maps), _joined(scores), name, n

    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs) -> Computed:
        if kwargs:
            raise TypeError(f"{type(self).__name__}.attribute() got unexpected arguments {sorted(kwargs)}")
        lmap, scores, name, n = self.layer_map(x, target, batching)
        spatial = tuple(x.shape[2:])
        if len(spatial) == lmap.dim() - 2:
            up = upsample_map(lmap, spatial, self.interpolation)
        else:
            up = lmap
        return Computed(up, n, scores=scores, extras={"layer_map": lmap}, layer=name)


def spatial_dims(t: Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.dim()))
