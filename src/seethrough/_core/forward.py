"""Forward-only evaluation of many perturbed rows, for perturbation methods.

Rows are made on demand per chunk and scored without gradients. With automatic batching
the chunk size is tuned on the real rows: the first chunks try a few sizes up to the
memory estimate (each a quarter of the next), the fastest (rows per second) is kept for the rest and cached for this
model and input shape. No row is evaluated twice, so tuning costs nothing but the time
the slower candidates take.
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .batching import Batching
from .engine import call_model, forward_scores
from .layers import resolve_layer
from .targets import Target

__all__ = ["ForwardRunner", "forward_row_bytes"]

MakeRows = Callable[[slice], tuple[Tensor, Tensor]]

_BEST: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def forward_row_bytes(
    model: nn.Module | Sequence[nn.Module], x_row: Tensor, *, call: Callable[[Tensor], Any] | None = None
) -> int:
    """Bytes of the largest tensor (input, output or a leaf module's output) in one row's
    no-grad forward pass: what sets the working set of a forward chunk. ``call`` runs the
    row instead of ``model(x_row)`` (e.g. an autoencoder's ``decode``); ``model`` may then
    be several modules, all of whose leaves are measured."""
    modules = [model] if isinstance(model, nn.Module) else list(model)
    total = [x_row.numel() * x_row.element_size()]

    def hook(_m, _i, out):
        if isinstance(out, Tensor):
            total[0] = max(total[0], out.numel() * out.element_size())

    leaves = [m for mod in modules for m in mod.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            out = call(x_row.clone()) if call is not None else call_model(modules[0], x_row.clone())
    finally:
        for h in handles:
            h.remove()
    if isinstance(out, Tensor):
        total[0] = max(total[0], out.numel() * out.element_size())
    return max(total[0], 1)


class ForwardRunner:
    """Scores rows of (perturbed) inputs in chunks; ``consume(rows, scores)`` per chunk."""

    def __init__(self, model: nn.Module, target: Target, *, batching: Batching, progress: bool | None = None) -> None:
        self.progress = progress
        self.model = model
        self.target = target
        self.batching = batching
        self.target_module = None if target.layer is None else resolve_layer(model, target.layer)[1]
        self.n_evaluations = 0

    def score(self, x: Tensor, samples: Tensor) -> Tensor:
        s = forward_scores(self.model, x, self.target, samples, module=self.target_module)
        self.n_evaluations += x.shape[0]
        return s

    def _candidates(self, x_row: Tensor, n_rows: int) -> tuple[tuple, list[int]]:
        key = (tuple(x_row.shape[1:]), x_row.dtype, str(x_row.device))
        cache = _BEST.setdefault(self.model, {})
        if key in cache:
            return key, [cache[key]]
        peak = forward_row_bytes(self.model, x_row)
        est = self.batching.forward_rows_per_chunk(peak, x_row.device)
        cap = max(1, min(self.batching.max_forward_rows, self.batching.budget_for(x_row.device) // 3 // peak))
        # A wide geometric ladder: which chunk is fastest depends on the machine (cache
        # sizes, threads, load) more than on the estimate, so the tuner decides.
        low = min(8, est)
        cands = sorted({max(low, est // 16), max(low, est // 4), min(est, cap)})
        return key, [c for c in cands if c <= max(n_rows, 1)] or [max(1, min(est, n_rows))]

    def run(self, n_rows: int, make_rows: MakeRows, consume: Callable[[slice, Tensor], None]) -> int:
        if n_rows <= 0:
            return 0
        show = self.progress if self.progress is not None else (n_rows >= 2000 and sys.stderr.isatty())
        with tqdm(total=n_rows, disable=not show, desc="perturbations", leave=False) as bar:

            def eat(sl: slice, scores: Tensor) -> None:
                consume(sl, scores)
                bar.update(sl.stop - sl.start)

            return self._run(n_rows, make_rows, eat)

    def _run(self, n_rows: int, make_rows: MakeRows, consume: Callable[[slice, Tensor], None]) -> int:
        start = 0
        if self.batching.batch_size is not None:
            sizes, key = [self.batching.batch_size], None
        else:
            x0, _ = make_rows(slice(0, 1))
            key, sizes = self._candidates(x0, n_rows)
        best_size, best_rate = sizes[-1], -1.0
        if len(sizes) > 1:
            # try each candidate on real rows, keep the fastest
            for size in sizes:
                if start >= n_rows:
                    break
                sl = slice(start, min(start + size, n_rows))
                t0 = time.perf_counter()
                x, samples = make_rows(sl)
                consume(sl, self.score(x, samples))
                rate = (sl.stop - sl.start) / max(time.perf_counter() - t0, 1e-9)
                if sl.stop - sl.start == size and rate > best_rate:
                    best_size, best_rate = size, rate
                start = sl.stop
            if key is not None and best_rate > 0:
                _BEST[self.model][key] = best_size
        for sl in Batching.chunks(n_rows - start, sizes[0] if len(sizes) == 1 else best_size):
            sl = slice(sl.start + start, sl.stop + start)
            x, samples = make_rows(sl)
            consume(sl, self.score(x, samples))
        return self.n_evaluations
