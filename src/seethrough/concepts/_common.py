"""What TCAV and dissection share beyond the core services: layer gradients per class,
and input checks. Activations come from :mod:`seethrough._core.capture`. Every function
here expects to run inside ``model_guard``."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.engine import layer_gradients
from .._core.layers import layer_names
from .._core.targets import Class
from .._core.validation import check_inputs

__all__ = ["class_gradients", "check_images", "layer_hint"]


def class_gradients(
    model: nn.Module,
    layer: tuple[str, nn.Module],
    x: Tensor,
    cls: int,
    batching: Batching,
) -> Tensor:
    """Gradient of the logit of class ``cls`` with respect to the layer's output, one row
    per input: ``(N, *layer_shape)`` on the CPU (through the shared gradient runner)."""
    return layer_gradients(model, Class(int(cls)), x, layer, batching=batching, device="cpu")[0]


def check_images(model: nn.Module, x: object, what: str) -> Tensor:
    """A floating tensor batch on the model's device, without NaN/inf (numpy arrays and
    integer images are converted)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, Tensor) and not x.dtype.is_floating_point and x.dtype != torch.bool:
        x = x.float()
    return check_inputs(model, x, name=what)


def layer_hint(model: nn.Module) -> str:
    """The model's convolution layers (else its first layers), for error messages."""
    convs = [n for n, m in model.named_modules() if n and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    names = convs or layer_names(model)
    shown = ", ".join(repr(n) for n in names[:8])
    return shown + (", ..." if len(names) > 8 else "")
