"""Base class of every attribution method: validate, then compute.

``attribute`` validates the inputs and the target, guards the model (eval mode, frozen
parameters, everything restored on exit), times the call, and wraps what the private
``_attribute`` computes into an :class:`~seethrough.Explanation`.
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching
from .._core.call import ForwardFailed
from .._core.engine import forward_scores
from .._core.errors import InputError, ZeroAttributionWarning
from .._core.result import Explanation
from .._core.state import model_guard
from .._core.targets import Class, Predicted, PredictedInPass, Target, TargetLike, as_target, resolve_target
from .._core.validation import check_inputs

__all__ = ["Attribution", "Computed", "check_layer"]


@dataclass
class Computed:
    """What ``_attribute`` returns; the base class turns it into an Explanation."""

    attributions: Tensor
    n_evaluations: int
    scores: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    layer: str | None = None


class Attribution(ABC):
    """An attribution method. Subclasses set ``name`` and implement ``_attribute``."""

    #: Registry name of the method.
    name: ClassVar[str] = "attribution"
    #: Whether attributions can be negative (decides the colormap when displayed).
    signed: ClassVar[bool] = True
    #: Whether the method needs gradients of the model.
    uses_gradients: ClassVar[bool] = True

    def __init__(self, model: nn.Module, *, batching: Batching | int | None = None) -> None:
        self.model = model
        self.batching = batching

    # -- public --------------------------------------------------------------------
    def attribute(self, inputs: Tensor, target: TargetLike = None, **kwargs: Any) -> Explanation:
        """Explain ``target`` for a batch of ``inputs`` (batch dimension first).

        ``target`` is an int, one index per sample, a :class:`~seethrough.Target`
        (``ClassDifference``, ``Neuron``, ``Channel``, ...), a callable on the output,
        or None for the predicted class. Integer token ids ``(B, T)`` are accepted by a
        method that attributes at a layer's output (``layer=``, e.g. the embedding).
        """
        x = check_inputs(self.model, inputs, token_layer=self._token_layer())
        t = as_target(target)
        batching = as_batching(self.batching)
        self._check_settings()
        try:
            return self._guarded(x, t, batching, **kwargs)
        except ForwardFailed as e:
            raise InputError(
                f"{e} The inputs passed have shape {tuple(x.shape)}; a single sample needs a "
                f"leading batch dimension (x.unsqueeze(0))."
            ) from e.__cause__

    def _guarded(self, x: Tensor, t: Target, batching: Batching, **kwargs: Any) -> Explanation:
        with model_guard(self.model, method=self.name):
            start = time.perf_counter()
            if type(t) is Predicted and x.shape[0] and self._predicts_in_pass():
                # the method's own forward pass is the clean pass: no extra one to predict
                in_pass = PredictedInPass(t, x.shape[0])
                out = self._attribute(x, in_pass, batching, **kwargs)
                t, n_clean = in_pass.resolved(), 0
            else:
                t, n_clean = resolve_target(self.model, x, t)
                out = self._attribute(x, t, batching, **kwargs)
            seconds = time.perf_counter() - start
        self._warn_if_zero(out.attributions)
        return Explanation(
            attributions=out.attributions,
            method=self.name,
            settings=self.settings(),
            target=t.describe(),
            target_indices=_target_indices(t, x.shape[0]),
            inputs=x,
            scores=out.scores,
            layer=out.layer,
            extras=out.extras,
            n_evaluations=out.n_evaluations + n_clean,
            seconds=seconds,
            signed=self.signed,
        )

    def settings(self) -> dict[str, Any]:
        """The method's settings, JSON-serialisable (shown in reports, saved with results)."""
        return {}

    # -- for subclasses ------------------------------------------------------------
    def _token_layer(self) -> Any:
        """The layer at whose output the method attributes integer inputs (token ids), or
        None when it needs floating inputs (the default)."""
        return None

    def _predicts_in_pass(self) -> bool:
        """Whether ``_attribute`` runs the model once on each clean input (rows = the samples,
        unchanged) and scores the target on that output, so that a predicted target can be
        read from that pass (:class:`~seethrough._core.targets.PredictedInPass`) instead of
        an extra clean forward pass. False by default."""
        return False

    def _check_settings(self) -> None:  # noqa: B027 (an optional step: most methods need no check)
        """Raise ConfigError on settings that cannot work (called before any compute)."""

    @abstractmethod
    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs: Any) -> Computed:
        """Compute attributions for validated inputs and a resolved target."""

    def _clean_scores(self, x: Tensor, target: Target) -> Tensor:
        samples = torch.arange(x.shape[0], device=x.device)
        return forward_scores(self.model, x, target, samples)

    def _warn_if_zero(self, attributions: Tensor) -> None:
        flat = attributions.reshape(attributions.shape[0], -1)
        if flat.shape[1] and flat.dtype.is_floating_point:
            # the largest magnitude per sample, in the common no-warning case (abs + amax: ~10x
            # faster on CPU than the inf-norm kernel); a NaN propagates and compares False,
            # which leaves it to the exact check below
            peak = flat.abs().amax(dim=1)
            if float(peak if flat.shape[0] == 1 else peak.min()) > 0:
                return
        zero = (flat == 0).all(dim=1)
        if bool(zero.any()):
            idx = zero.nonzero().flatten().tolist()
            warnings.warn(
                f"{self.name}: the attribution of sample(s) {idx[:10]} is identically zero. "
                f"The target may not depend on the inputs there (saturated or dead units, a "
                f"constant branch), or a ReLU-based map (Grad-CAM) found no positive evidence.",
                ZeroAttributionWarning,
                stacklevel=3,
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def check_layer(model: nn.Module, layer, method: str) -> None:
    """Refuse a missing layer, and resolve (so an unknown name lists close names)."""
    from .._core.engine import find_layer
    from .._core.errors import ConfigError

    if layer is None:
        raise ConfigError(f"{method} needs layer=: the dotted name (or module) of a layer of the model")
    find_layer(model, layer)


def _target_indices(t: Target, n: int) -> Tensor | None:
    if isinstance(t, Class):
        idx = t.index
        return idx.reshape(1).expand(n).clone() if idx.numel() == 1 else idx.clone()
    return None
