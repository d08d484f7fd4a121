"""What TCAV and dissection share: layer activations in chunks, layer gradients per class,
and input checks. Every function here expects to run inside ``model_guard``."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.engine import ChunkResult, GradientRunner, call_model
from .._core.errors import LayerError
from .._core.forward import forward_row_bytes
from .._core.hooks import StopForward
from .._core.layers import layer_names
from .._core.targets import Class
from .._core.validation import check_inputs

__all__ = [
    "capture_layers",
    "iter_activations",
    "layer_activations",
    "class_gradients",
    "check_images",
    "layer_hint",
]


@contextmanager
def capture_layers(modules: dict[str, nn.Module], store: dict[str, Tensor]) -> Iterator[dict[str, Tensor]]:
    """Record each named module's output into ``store[name]`` during forward passes; once
    every module has run, the forward pass is cut short (:class:`StopForward`)."""

    def make(name: str):
        def hook(_mod, _inp, out):
            if isinstance(out, (tuple, list)):
                out = out[0]
            if not isinstance(out, Tensor):
                raise LayerError(f"layer {name!r} returns {type(out).__name__}, not a tensor")
            # a clone: an in-place operation later in the network cannot change it
            store[name] = out.detach().clone()
            if len(store) == len(modules):
                raise StopForward

        return hook

    with ExitStack() as stack:
        for name, module in modules.items():
            handle = module.register_forward_hook(make(name))
            stack.callback(handle.remove)
        yield store


def _chunk_rows(model: nn.Module, x: Tensor, batching: Batching, extra_row_bytes: int = 0) -> int:
    if batching.batch_size is not None:
        return batching.batch_size
    peak = max(forward_row_bytes(model, x[:1]), int(extra_row_bytes))
    return batching.forward_rows_per_chunk(peak, x.device)


def iter_activations(
    model: nn.Module,
    layers: dict[str, nn.Module],
    x: Tensor,
    batching: Batching,
    *,
    extra_row_bytes: int = 0,
) -> Iterator[tuple[slice, dict[str, Tensor]]]:
    """``(rows, {layer: activation})`` chunk after chunk, without gradients.

    ``extra_row_bytes`` is what the caller keeps per row on top (e.g. an upsampled map),
    which automatic chunk sizing takes into account.
    """
    size = _chunk_rows(model, x, batching, extra_row_bytes)
    for sl in Batching.chunks(x.shape[0], size):
        store: dict[str, Tensor] = {}
        with torch.no_grad(), capture_layers(layers, store):
            try:
                call_model(model, x[sl].clone())
            except StopForward:
                pass
        missing = [n for n in layers if n not in store]
        if missing:
            raise LayerError(
                f"layer {missing[0]!r} did not run during the forward pass; pick a layer on "
                f"the path from the input to the output"
            )
        yield sl, store


def layer_activations(model: nn.Module, layer: tuple[str, nn.Module], x: Tensor, batching: Batching) -> Tensor:
    """The layer's output on every row of ``x``, ``(N, *layer_shape)``, on the CPU."""
    name, module = layer
    parts = [acts[name].cpu() for _, acts in iter_activations(model, {name: module}, x, batching)]
    return torch.cat(parts)


def class_gradients(
    model: nn.Module,
    layer: tuple[str, nn.Module],
    x: Tensor,
    cls: int,
    batching: Batching,
) -> Tensor:
    """Gradient of the logit of class ``cls`` with respect to the layer's output, one row
    per input: ``(N, *layer_shape)`` on the CPU (through the shared gradient runner)."""
    runner = GradientRunner(model, Class(int(cls)), batching=batching, layer=layer)
    parts: list[Tensor] = []
    samples = torch.arange(x.shape[0], device=x.device)

    def consume(chunk: ChunkResult) -> None:
        parts.append(chunk.grad.cpu())

    runner.run(x.shape[0], lambda sl: (x[sl], samples[sl]), consume)
    return torch.cat(parts)


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
