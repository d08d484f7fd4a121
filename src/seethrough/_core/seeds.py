"""Seeds and random generators, in one place.

Every random draw in seethrough comes from an explicit ``torch.Generator`` made here from
the caller's seed and a few integers naming the stream (a mask index, a step, a sample),
so that draws are reproducible, independent of chunking and of the global RNG, and never
change the caller's RNG state. :func:`seeded` is for the one case that must use the
global generators (``reset_parameters()`` of a layer) and puts them back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["mix_seed", "generator", "seeded", "check_seed"]

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A 63-bit seed from a sequence of integers (splitmix64 over the sequence).

    ``mix_seed(seed, i)`` and ``mix_seed(seed, j)`` give unrelated streams for ``i != j``;
    the CPU generator reads only part of a seed, so values are hashed, not packed."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & _MASK64)) & _MASK64
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        x = (z ^ (z >> 31)) & _MASK64
    return x & ((1 << 63) - 1)


def generator(seed: int, *stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded from ``seed`` and the stream integers (``seed``
    alone when there are none, so that ``generator(s)`` draws as ``manual_seed(s)``)."""
    g = torch.Generator(device=device)
    g.manual_seed(mix_seed(seed, *stream) if stream else int(seed))
    return g


def check_seed(seed: object, what: str = "seed") -> int:
    from .errors import ConfigError

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{what} must be an int, got {seed!r}")
    return int(seed)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed the global generators that ``reset_parameters()`` draws from for a layer on
    ``device`` (the CPU's and, for an accelerator, that device's) and restore them on exit.

    Not ``torch.manual_seed``: it seeds every accelerator, and for CUDA not yet initialised
    it queues the seed for later, so the caller's RNG state on other devices would change."""
    device = torch.device(device)
    if device.type in ("cpu", "meta"):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    mod = torch.get_device_module(device.type)
    idx = device.index if device.index is not None else 0
    with torch.random.fork_rng(devices=[idx], device_type=device.type):
        torch.default_generator.manual_seed(seed)
        select = getattr(mod, "device", None)
        with select(idx) if callable(select) else contextlib.nullcontext():
            mod.manual_seed(seed)  # the current device's generator only
        yield
