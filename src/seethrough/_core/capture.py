"""Activations of several layers at once, and streamed over a data set.

The one place where seethrough records what layers compute. Every family uses it:
concepts (CAV activations, dissection maps), influence (slice activations), the atlas
(dataset examples), feature visualization (objective activations with gradients), the
evaluation family (layer order), and, later, generative and language models.

* :func:`capture` is a scoped hook on several modules: each module's output of a forward
  pass lands in a dict under the module's dotted name. With ``stop=True`` the pass ends
  as soon as every module has run (the rest of the network is not computed).
* :func:`run_capture` runs the model once under :func:`capture` and checks that every
  layer ran.
* :func:`stream_activations` goes over a batch, or over a data set given as an iterable
  of batches, in chunks sized by :class:`~seethrough.Batching` (so the memory held at
  once is bounded by the chunk, whatever the data set's size), and yields each chunk's
  activations, optionally reduced inside the hook so that only the reduced values are
  ever kept.
* :func:`collect_activations` concatenates a stream, on the CPU by default.

Every function here expects to run inside :func:`~seethrough.model_guard` (the model is
in eval mode and left as it was); hooks exist only inside the ``with`` blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .batching import Batching, as_batching
from .call import call_model
from .errors import InputError, LayerError
from .hooks import StopForward
from .layers import LayerRef, resolve_layer

__all__ = [
    "Layers",
    "resolve_layers",
    "capture",
    "run_capture",
    "forward_chunk_rows",
    "stream_activations",
    "collect_activations",
]

#: Layers to capture: one layer, a sequence of them, or an already resolved name -> module map.
Layers = LayerRef | Sequence[LayerRef] | Mapping[str, nn.Module]

#: ``transform(name, module, output) -> value`` applied inside the hook (e.g. a reduction over
#: positions), so that only its value is kept.
Transform = Callable[[str, nn.Module, Tensor], Any]


def resolve_layers(model: nn.Module, layers: Layers) -> dict[str, nn.Module]:
    """``{dotted_name: module}`` for one layer, several, or an already resolved mapping,
    in the order given; duplicates are kept once."""
    if isinstance(layers, Mapping):
        items: Iterable[LayerRef] = list(layers.values())
    elif isinstance(layers, (str, nn.Module)):
        items = [layers]
    else:
        items = list(layers)
    out: dict[str, nn.Module] = {}
    for ref in items:
        name, module = resolve_layer(model, ref)
        out.setdefault(name, module)
    if not out:
        raise LayerError("no layers given; name at least one layer (see seethrough.layer_names(model))")
    return out


@contextmanager
def capture(
    modules: Mapping[str, nn.Module],
    store: dict[str, Any] | None = None,
    *,
    stop: bool = False,
    detach: bool = True,
    clone: bool = True,
    reuse: str = "error",
    transform: Transform | None = None,
    any_output: bool = False,
) -> Iterator[dict[str, Any]]:
    """Record each named module's output into ``store[name]`` during forward passes.

    Parameters
    ----------
    stop:
        End the forward pass (:class:`~seethrough._core.hooks.StopForward`, caught by
        :func:`run_capture`) as soon as every module has run.
    detach:
        Keep detached values (no graph). ``False`` keeps the graph, for objectives that
        are differentiated (feature visualization).
    clone:
        Copy each output, so that an in-place operation later in the network cannot
        change it. The last module of a stopped pass is never copied (nothing runs after).
    reuse:
        A module that runs more than once per pass: ``"error"`` (its output is ambiguous),
        ``"first"`` (keep the first output) or ``"last"``.
    transform:
        ``transform(name, module, output)`` applied in the hook; its value is stored.
    any_output:
        Accept outputs that are not tensors (stored as they are), e.g. to record which
        modules ran and in which order (the store's insertion order).
    """
    if reuse not in ("error", "first", "last"):
        raise ValueError(f"reuse must be 'error', 'first' or 'last', got {reuse!r}")
    store = {} if store is None else store
    n = len(modules)

    def make(name: str, module: nn.Module):
        def hook(_mod, _inp, out):
            if isinstance(out, (tuple, list)) and out and not any_output:
                out = out[0]
            if not isinstance(out, Tensor) and not any_output:
                raise LayerError(f"layer {name!r} returns {type(out).__name__}, not a tensor; pick another layer")
            if name in store:
                if reuse == "error":
                    raise LayerError(
                        f"layer {name!r} runs more than once per forward pass (a reused module), so its "
                        f"activation is ambiguous; pick a module that runs once"
                    )
                if reuse == "first":
                    return
            last = stop and (len(store) + (name not in store)) == n
            value = out.detach() if detach and isinstance(out, Tensor) else out
            if clone and not last and isinstance(value, Tensor):
                value = value.clone()
            store[name] = value if transform is None else transform(name, module, value)
            if last:
                raise StopForward

        return hook

    with ExitStack() as stack:
        for name, module in modules.items():
            handle = module.register_forward_hook(make(name, module))
            stack.callback(handle.remove)
        yield store


def run_capture(
    model: nn.Module,
    x: Tensor,
    modules: Mapping[str, nn.Module],
    *,
    stop: bool = True,
    what: str = "captured",
    **capture_settings: Any,
) -> tuple[dict[str, Any], Tensor | None]:
    """One forward pass of ``model`` on a copy of ``x`` with ``modules`` captured.

    Returns ``(store, output)``; the output is None when the pass was stopped early. A
    layer that did not run raises :class:`LayerError` (``what`` completes its message)."""
    store: dict[str, Any] = {}
    out: Tensor | None = None
    with capture(modules, store, stop=stop, **capture_settings):
        try:
            out = call_model(model, x.clone())
        except StopForward:
            out = None
    missing = [name for name in modules if name not in store]
    if missing:
        raise LayerError(
            f"layer {missing[0]!r} did not run during the forward pass, so it cannot be {what}; "
            f"pick a layer on the path from the input to the output (see seethrough.layer_names(model))"
        )
    return store, out


def forward_chunk_rows(model: nn.Module, x: Tensor, batching: Batching, *, extra_row_bytes: int = 0) -> int:
    """Rows per no-grad forward chunk for inputs like ``x``: the explicit batch size, or
    the automatic size from one row's largest activation (plus ``extra_row_bytes`` that
    the caller keeps per row)."""
    if batching.batch_size is not None:
        return batching.batch_size
    from .forward import forward_row_bytes

    peak = max(forward_row_bytes(model, x[:1]), int(extra_row_bytes))
    return batching.forward_rows_per_chunk(peak, x.device)


def _batches(data: Tensor | Iterable[Any]) -> Iterator[Tensor]:
    if isinstance(data, Tensor):
        yield data
        return
    for i, batch in enumerate(data):
        if isinstance(batch, (tuple, list)):  # (inputs, labels, ...) as a DataLoader gives
            batch = batch[0]
        if not isinstance(batch, Tensor):
            raise InputError(
                f"batch {i} of the data is a {type(batch).__name__}; a data set is streamed as an iterable "
                f"of tensors (or of (inputs, ...) tuples, as a DataLoader yields)"
            )
        yield batch


def stream_activations(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    data: Tensor | Iterable[Any],
    *,
    batching: Batching | int | None = None,
    extra_row_bytes: int = 0,
    transform: Transform | None = None,
    stop: bool = True,
    reuse: str = "error",
    clone: bool = True,
) -> Iterator[tuple[slice, dict[str, Any]]]:
    """``(rows, {layer: activation})`` chunk after chunk, without gradients.

    ``data`` is one batch or an iterable of batches (a DataLoader, a generator of shards):
    only one chunk's activations are alive at a time. ``rows`` counts over the whole
    stream. ``transform`` (see :func:`capture`) reduces each activation inside the hook;
    ``clone=False`` skips copying the output first (safe when the transform's value does
    not share memory with it, e.g. a reduction).
    """
    b = as_batching(batching)
    start = 0
    size: int | None = None
    for batch in _batches(data):
        if batch.shape[0] == 0:
            continue
        if size is None:
            size = forward_chunk_rows(model, batch, b, extra_row_bytes=extra_row_bytes)
        for sl in Batching.chunks(batch.shape[0], size):
            with torch.no_grad():
                store, _ = run_capture(
                    model, batch[sl], layers, stop=stop, transform=transform, reuse=reuse, clone=clone
                )
            yield slice(start + sl.start, start + sl.stop), store
        start += batch.shape[0]


def collect_activations(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    data: Tensor | Iterable[Any],
    *,
    batching: Batching | int | None = None,
    device: torch.device | str | None = "cpu",
    **stream_settings: Any,
) -> dict[str, Tensor]:
    """Every layer's activation on every row of ``data``, ``{name: (N, *shape)}``, moved
    to ``device`` (the CPU by default; None keeps them where they are)."""
    parts: dict[str, list[Tensor]] = {name: [] for name in layers}
    for _, store in stream_activations(model, layers, data, batching=batching, **stream_settings):
        for name in layers:
            v = store[name]
            parts[name].append(v if device is None else v.to(device))
    return {name: torch.cat(p) if p else torch.empty(0) for name, p in parts.items()}
