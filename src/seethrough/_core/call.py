"""Calling a model: the one place a family's forward pass goes through.

:func:`call_model` runs the model and returns its output as one tensor (the first element
of a tuple, ``.logits`` of a Hugging Face output); a forward pass that raises on the inputs
becomes :class:`ForwardFailed`, an :class:`~seethrough.InputError` that names their shape.
"""

from __future__ import annotations

from torch import Tensor, nn

from .errors import GradientError, InputError, LayerError
from .hooks import StopForward

__all__ = ["ForwardFailed", "call_model"]


class ForwardFailed(InputError):
    """The model's forward pass raised on the inputs (``attribute`` adds their shape)."""


def call_model(model: nn.Module, x: Tensor) -> Tensor:
    """Run ``model`` on ``x``; its output as one tensor (the first of a tuple, ``.logits`` of a
    Hugging Face output). A forward pass that raises becomes :class:`ForwardFailed`."""
    try:
        out = model(x)
    except (StopForward, GradientError, LayerError):
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        raise ForwardFailed(
            f"the model's forward pass failed on inputs with per-sample shape "
            f"{tuple(x.shape[1:])} and dtype {x.dtype}: {e}. Check that the inputs have the shape the model expects "
            f"(batch first) and the preprocessing it was trained with."
        ) from e
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits") and not isinstance(out, Tensor):
        out = out.logits
    if not isinstance(out, Tensor):
        raise InputError(
            f"the model returned {type(out).__name__}; seethrough needs a tensor output "
            f"(or a tuple whose first element is one). Wrap the model to return a tensor."
        )
    return out
