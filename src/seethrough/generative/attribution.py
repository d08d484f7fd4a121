"""Attribution through a decoder: which latent dimensions drive a region of the generated
image, a decoded token, or a classifier's score of the generated sample.

The decoder is wrapped as a module ``z -> decode(z)`` (optionally followed by a ``head``,
e.g. a classifier of the generated images), and explained with the attribution family's
own methods, so the latent attributions carry the same completeness delta, batching and
model-state guarantees as every other attribution:

>>> la = LatentAttribution(vae, method="integrated_gradients", steps=64)
>>> e = la.attribute(z, target=Region(mask))          # (B, Z) attributions
>>> e.delta                                           # sum(attr) - (F(z) - F(0))
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .._core.errors import ConfigError
from .._core.result import Explanation
from .._core.targets import TargetLike
from ..attribution import InputXGradient, IntegratedGradients, Saliency
from .protocol import DecoderModule

__all__ = ["LatentAttribution", "LATENT_METHODS"]


#: the attribution methods that explain a decoder over its latent code
LATENT_METHODS: dict[str, type] = {
    "saliency": Saliency,
    "input_x_gradient": InputXGradient,
    "integrated_gradients": IntegratedGradients,
}


class LatentAttribution:
    """Attribute a target of the decoded output to the latent dimensions.

    Args:
        model: an autoencoder (``encode``/``decode``/``latent_dim``), or any generator
            with ``decode`` and ``latent_dim``.
        head: optional module applied to the decoded output (e.g. a classifier of the
            generated images, so the target is a class score of the generated sample).
        method: one of :data:`LATENT_METHODS`.
        **settings: passed to the method (e.g. ``steps=``, ``baseline=`` for IG; the
            baseline is a latent code, ``"zeros"`` being the prior's mean).
    """

    def __init__(
        self, model: nn.Module, *, head: nn.Module | None = None, method: str = "integrated_gradients", **settings: Any
    ) -> None:
        self.model = model
        self.head = head
        self.method = method
        self.settings = settings

    def attribute(self, z: Tensor, target: TargetLike = None) -> Explanation:
        """Attributions ``(B, Z)`` of ``target`` on ``decode(z)`` (or on ``head(decode(z))``);
        ``Explanation.delta`` is the completeness error where the method has one (IG)."""
        if self.method not in LATENT_METHODS:
            import difflib

            close = difflib.get_close_matches(str(self.method), list(LATENT_METHODS), n=2)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown latent attribution method {self.method!r}.{hint} Choose from {', '.join(LATENT_METHODS)}"
            )
        wrapped = DecoderModule(self.model, self.head)
        return LATENT_METHODS[self.method](wrapped, **self.settings).attribute(z, target=target)
