"""One batching mechanism for every method: rows are evaluated in chunks.

A method that needs many forward/backward passes (integrated-gradients steps, SmoothGrad
noise samples, perturbations) describes them as ``n_rows`` rows made on demand, and
:class:`Batching` decides how many rows go through the model at once: an explicit
``batch_size``, or automatic sizing from the bytes that one row keeps alive for the
backward pass, measured once on a probe row, under a memory budget.

On a CPU the best chunk is not the largest: past a few hundred MiB of activations per
chunk, cache misses cost more than the per-call overhead saves, so the automatic size
aims at a working set (``cpu_working_set``) well inside the memory budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .errors import ConfigError

__all__ = ["Batching", "as_batching", "saved_bytes"]

_MiB = 1 << 20


@dataclass(frozen=True)
class Batching:
    """How rows are grouped into model calls.

    Parameters
    ----------
    batch_size:
        Rows per model call. ``None`` sizes chunks automatically.
    memory_budget:
        Upper bound in bytes on what one chunk keeps alive for its backward pass
        (automatic sizing only). ``None``: 2 GiB on CPU, half the free memory on CUDA.
    cpu_working_set:
        Automatic sizing on CPU aims at this many bytes per chunk, the sweet spot for
        cache behaviour measured by ``bench/bench_gradient.py``.
    max_rows:
        Upper bound on automatic chunks.
    forward_working_set, max_forward_rows:
        The same for forward-only (perturbation) chunks, sized from the largest
        activation of one row rather than from what backward keeps alive.
    """

    batch_size: int | None = None
    memory_budget: int | None = None
    cpu_working_set: int = 96 * _MiB
    max_rows: int = 512
    forward_working_set: int = 128 * _MiB
    max_forward_rows: int = 4096

    def __post_init__(self) -> None:
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"batch_size must be a positive int or None, got {self.batch_size!r}")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ConfigError(f"memory_budget must be a positive number of bytes, got {self.memory_budget!r}")

    def budget_for(self, device: torch.device) -> int:
        if self.memory_budget is not None:
            return int(self.memory_budget)
        if device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(device)
            return int(free // 2)
        return 2048 * _MiB

    def rows_per_chunk(self, row_bytes: int, device: torch.device) -> int:
        """Rows per model call for rows that each keep ``row_bytes`` alive."""
        if self.batch_size is not None:
            return self.batch_size
        row_bytes = max(int(row_bytes), 1)
        limit = self.budget_for(device)
        if device.type == "cpu":
            limit = min(limit, self.cpu_working_set)
        return int(max(1, min(self.max_rows, limit // row_bytes)))

    def forward_rows_per_chunk(self, peak_bytes: int, device: torch.device) -> int:
        """Rows per no-grad model call when one row's largest activation is ``peak_bytes``.

        A forward pass without gradients keeps only a layer or two alive at a time, so
        chunks are sized from the largest activation (``forward_working_set`` per chunk on
        CPU), never above the memory budget (counting three live activations per row).
        """
        if self.batch_size is not None:
            return self.batch_size
        peak_bytes = max(int(peak_bytes), 1)
        limit = self.budget_for(device) // 3
        if device.type == "cpu":
            limit = min(limit, self.forward_working_set)
        return int(max(1, min(self.max_forward_rows, limit // peak_bytes)))

    @staticmethod
    def chunks(n_rows: int, size: int) -> Iterator[slice]:
        """Slices of ``range(n_rows)`` of at most ``size`` rows, sized evenly."""
        if n_rows <= 0:
            return
        n_chunks = math.ceil(n_rows / size)
        base, extra = divmod(n_rows, n_chunks)
        start = 0
        for i in range(n_chunks):
            stop = start + base + (1 if i < extra else 0)
            yield slice(start, stop)
            start = stop


def as_batching(batching: Batching | int | None) -> Batching:
    if batching is None:
        return Batching()
    if isinstance(batching, Batching):
        return batching
    if isinstance(batching, int) and not isinstance(batching, bool):
        return Batching(batch_size=batching)
    raise ConfigError(f"batching must be a Batching, an int batch size or None, got {type(batching).__name__}")


class saved_bytes:
    """Context manager counting the bytes autograd saves for backward.

    Storages are counted once; storages whose data pointer is in ``skip`` (the model's
    parameters and buffers, which do not grow with the batch) are not counted.
    """

    def __init__(self, skip: set[int] | None = None) -> None:
        self.total = 0
        self._skip = skip or set()
        self._seen: set[tuple[int, int]] = set()
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
        except (RuntimeError, NotImplementedError):
            key = (id(t), t.numel() * t.element_size())
        if key[0] in self._skip:
            return t
        if key not in self._seen:
            self._seen.add(key)
            self.total += key[1]
        return t

    def __enter__(self) -> saved_bytes:
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)
