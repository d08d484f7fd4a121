"""The gradient runner every gradient method uses.

Rows (the inputs actually fed to the model, e.g. interpolation points or noisy copies)
are made on demand per chunk, so a method with many steps never materialises all of
them; each chunk's gradients are handed to a ``consume`` callback that accumulates what
the method needs, so neither are all gradients kept.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .batching import Batching, saved_bytes
from .call import call_model
from .errors import GradientError, LayerError
from .hooks import StopForward, capture_activation, relu_backward_override
from .substitution import substitute_output
from .targets import Target

__all__ = [
    "GradientRunner",
    "ChunkResult",
    "find_layer",
    "forward_scores",
    "layer_gradients",
]

MakeRows = Callable[[slice], tuple[Tensor, Tensor]]


@dataclass
class ChunkResult:
    rows: slice
    inputs: Tensor  # the chunk's rows (detached)
    samples: Tensor  # original sample index of each row
    scores: Tensor  # target score of each row (detached)
    grad: Tensor  # gradient w.r.t. the inputs, or w.r.t. the layer activation
    activation: Tensor | None  # the layer activation (detached) when attributing to a layer


_ROW_BYTES: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()
_LAYER_NAMES: weakref.WeakKeyDictionary[nn.Module, dict[int, str]] = weakref.WeakKeyDictionary()


def _walk(model: nn.Module, name: str) -> nn.Module | None:
    """The submodule at dotted path ``name`` (following ``_modules``), or None."""
    module: nn.Module | None = model
    for part in name.split("."):
        module = module._modules.get(part) if module is not None else None
        if module is None:
            return None
    return module


def find_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """:func:`~seethrough._core.layers.resolve_layer` without a ``named_modules()`` scan per
    call: a dotted name is followed down the module tree, and the name of a module given as
    an object is remembered per model (and checked by following it). Anything the fast path
    does not find goes to ``resolve_layer``, which gives the same answer or the error."""
    if isinstance(layer, str):
        module = _walk(model, layer) if layer else None
        if module is not None:
            return layer, module
    elif isinstance(layer, nn.Module):
        names = _LAYER_NAMES.get(model)
        name = None if names is None else names.get(id(layer))
        if name is not None and _walk(model, name) is layer:
            return name, layer
    from .layers import resolve_layer

    name, module = resolve_layer(model, layer)
    if isinstance(layer, nn.Module) and name:
        _LAYER_NAMES.setdefault(model, {})[id(layer)] = name
    return name, module


def forward_scores(
    model: nn.Module,
    x: Tensor,
    target: Target,
    samples: Tensor,
    *,
    module: nn.Module | None = None,
    substitute: tuple[nn.Module, Tensor] | None = None,
) -> Tensor:
    """Scores of ``target`` on ``x`` without gradients. For a target on a layer, the
    forward pass stops at that layer (``module``: the layer, if already resolved); the
    target is scored after the capture hook is gone. ``substitute=(layer, values)``
    replaces that layer's output by ``values`` (attribution at a layer's output)."""
    store: dict = {}
    if target.layer is not None and module is None:
        from .layers import resolve_layer

        module = resolve_layer(model, target.layer)[1]
    with torch.no_grad():
        with ExitStack() as stack:
            if substitute is not None:
                stack.enter_context(substitute_output(substitute[0], substitute[1]))
            if module is not None:
                stack.enter_context(capture_activation(module, store, stop=True))
            try:
                out = call_model(model, x.clone())
            except StopForward:
                out = None
        return target.score(out, samples, store.get("act")).detach()


class GradientRunner:
    """Runs forward + backward over rows in chunks and hands each chunk to ``consume``.

    ``layer`` (a resolved ``(name, module)``) makes the gradient and the activation be
    those of that layer's output instead of the input. With ``feed`` as well, rows are
    values of that layer's output: the model runs on ``feed[samples]`` (e.g. token ids)
    and the layer's output is replaced by the row, the leaf the gradient is taken with
    respect to (attribution at a layer's output, see :mod:`~seethrough._core.substitution`).
    ``relu_rule`` ("guided" or "deconv") overrides ReLU backward passes.
    """

    def __init__(
        self,
        model: nn.Module,
        target: Target,
        *,
        batching: Batching,
        layer: tuple[str, nn.Module] | None = None,
        relu_rule: str | None = None,
        feed: Tensor | None = None,
    ) -> None:
        if feed is not None and layer is None:
            raise ValueError("GradientRunner(feed=...) substitutes a layer's output: it needs layer=")
        self.model = model
        self.target = target
        self.batching = batching
        self.layer = layer
        self.relu_rule = relu_rule
        self.feed = feed
        self.target_module: nn.Module | None = None
        if target.layer is not None:
            from .layers import resolve_layer

            self.target_module = resolve_layer(model, target.layer)[1]
        self.n_evaluations = 0

    # -- one chunk ------------------------------------------------------------------
    def _chunk(self, x: Tensor, samples: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        store: dict = {}
        # The gradient is taken with respect to a leaf; the model gets a copy, so a
        # forward pass that writes into its input never touches the caller's tensor.
        substituted = self.feed is not None
        leaf = x.detach().requires_grad_(self.layer is None or substituted)
        with torch.enable_grad():
            # Hooks and the ReLU override live only for the forward pass: the target is
            # scored outside them, so a target that runs the model again is unaffected.
            with ExitStack() as stack:
                stop_at_target = self.target_module is not None and (
                    self.layer is None or self.layer[1] is not self.target_module
                )
                if substituted:
                    assert self.layer is not None  # __init__ refuses feed= without layer=
                    stack.enter_context(substitute_output(self.layer[1], leaf, store))
                elif self.layer is not None:
                    stack.enter_context(_capture_for_grad(self.layer[1], store))
                if self.target_module is not None:
                    stack.enter_context(
                        capture_activation(self.target_module, store, stop=stop_at_target, key="target")
                    )
                if self.relu_rule is not None:
                    stack.enter_context(relu_backward_override(self.relu_rule))
                model_input = self.feed[samples.to(self.feed.device)] if self.feed is not None else leaf
                try:
                    out = call_model(self.model, model_input.clone())
                except StopForward:
                    out = None
            if self.target_module is not None and "target" not in store:
                raise GradientError(f"target layer {self.target.layer!r} did not run during the forward pass")
            if self.layer is not None and "layer" not in store:
                raise LayerError(
                    f"layer {self.layer[0]!r} did not run during the forward pass, so it "
                    f"cannot be attributed to; pick a layer on the path to the output"
                )
            scores = self.target.score(out, samples, store.get("target"))
            wrt = leaf if self.layer is None else store["layer"]
            if not scores.requires_grad:
                if self.layer is not None:
                    raise GradientError(
                        f"layer {self.layer[0]!r} is not on the path to the target "
                        f"{self.target.describe()}: the target does not depend on its output. "
                        f"Pick a layer whose output the target uses."
                    )
                raise GradientError(
                    f"the target {self.target.describe()} does not depend on the inputs "
                    f"through autograd (is there torch.no_grad(), .detach() or a numpy round "
                    f"trip inside forward?); gradient methods cannot explain it. Use a "
                    f"perturbation method, or remove the no-grad section."
                )
            (grad,) = torch.autograd.grad(scores.sum(), wrt, allow_unused=True)
        if grad is None:
            where = "the inputs are" if self.layer is None else f"layer {self.layer[0]!r} is"
            raise GradientError(
                f"{where} not on the path to the target {self.target.describe()}: the "
                f"gradient is undefined (not zero). Pick a layer whose output the target uses."
            )
        act = store["layer"].detach() if self.layer is not None else None
        return scores.detach(), grad.detach(), act

    # -- chunk sizing ---------------------------------------------------------------
    def _row_bytes(self, x_row: Tensor, samples: Tensor) -> int:
        key = (
            tuple(x_row.shape[1:]),
            x_row.dtype,
            str(x_row.device),
            None if self.layer is None else self.layer[0],
            self.relu_rule,
            None if self.target_module is None else id(self.target_module),
            None if self.feed is None else (tuple(self.feed.shape[1:]), self.feed.dtype),
        )
        cache = _ROW_BYTES.setdefault(self.model, {})
        if key in cache:
            return cache[key]
        skip = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        skip |= {b.untyped_storage().data_ptr() for b in self.model.buffers()}
        counter = saved_bytes(skip)
        with counter:
            self._chunk(x_row, samples)
        self.n_evaluations += 1
        total = counter.total + 2 * x_row.numel() * x_row.element_size()
        cache[key] = max(total, 1)
        return cache[key]

    # -- all rows ---------------------------------------------------------------------
    def run(self, n_rows: int, make_rows: MakeRows, consume: Callable[[ChunkResult], None]) -> int:
        if n_rows <= 0:
            return 0
        if self.batching.batch_size is not None:
            size = self.batching.batch_size
        elif n_rows == 1:
            size = 1  # one row is one chunk whatever it keeps alive: no probe pass to size it
        else:
            x0, s0 = make_rows(slice(0, 1))
            row_bytes = self._row_bytes(x0, s0)
            size = self.batching.rows_per_chunk(row_bytes, x0.device)
            # A small job is not split: within 4x of the target chunk and inside the memory
            # budget, one call costs less than several (ResNet-18 at 224x224, batch 8:
            # one chunk of 8 instead of 3+3+2, measured by bench/bench_gradient.py).
            if n_rows <= 4 * size and n_rows * row_bytes <= self.batching.budget_for(x0.device):
                size = n_rows
        for sl in Batching.chunks(n_rows, size):
            x, samples = make_rows(sl)
            scores, grad, act = self._chunk(x, samples)
            self.n_evaluations += x.shape[0]
            consume(ChunkResult(sl, x.detach(), samples, scores, grad, act))
        return self.n_evaluations


class _capture_for_grad:
    """Capture a layer's output as a leaf to differentiate with respect to.

    The output is detached and made to require grad (the graph before the layer is not
    needed, which saves memory); downstream gets a copy so that in-place operations after
    the layer (e.g. ``nn.ReLU(inplace=True)``) cannot overwrite the captured tensor. A
    module that runs more than once per forward pass is ambiguous and refused.
    """

    def __init__(self, module: nn.Module, store: dict) -> None:
        self.module = module
        self.store = store
        self.handle = None

    def __enter__(self):
        def hook(_mod, _inp, out):
            if isinstance(out, (tuple, list)):
                raise LayerError(
                    f"layer {type(_mod).__name__} returns a {type(out).__name__}; attribute to "
                    f"a layer that returns a single tensor"
                )
            if "layer" in self.store:
                raise LayerError(
                    f"the layer module ({type(_mod).__name__}) runs more than once per forward "
                    f"pass (a reused module), so its output is ambiguous; attribute to a module "
                    f"that runs once, e.g. the layer before it"
                )
            leaf = out.detach().requires_grad_(True)
            self.store["layer"] = leaf
            return leaf.clone()

        self.handle = self.module.register_forward_hook(hook)
        return self.store

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.remove()
        return False


def layer_gradients(
    model: nn.Module,
    target: Target,
    x: Tensor,
    layer: tuple[str, nn.Module],
    *,
    batching: Batching,
    times_activation: bool = False,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, int]:
    """The gradient of ``target`` with respect to ``layer``'s output (times that output with
    ``times_activation``), one row per input of ``x``, through :class:`GradientRunner`.

    Returns ``(gradients (N, *layer_shape), scores (N,), model rows evaluated)``; the
    tensors are moved to ``device`` when given. Runs inside the caller's ``model_guard``."""
    runner = GradientRunner(model, target, batching=batching, layer=layer)
    samples = torch.arange(x.shape[0], device=x.device)
    grads: list[Tensor] = []
    scores: list[Tensor] = []

    def consume(chunk: ChunkResult) -> None:
        g = chunk.grad
        if times_activation:
            assert chunk.activation is not None  # the runner attributes to a layer
            g = g * chunk.activation
        grads.append(g if device is None else g.to(device))
        scores.append(chunk.scores if device is None else chunk.scores.to(device))

    n = runner.run(x.shape[0], lambda sl: (x[sl], samples[sl]), consume)

    def joined(parts: list[Tensor]) -> Tensor:  # a job in one chunk copies nothing
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    return joined(grads), joined(scores), n
