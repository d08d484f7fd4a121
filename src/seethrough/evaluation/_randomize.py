"""Which layers a randomization check re-initialises, in which order, and how.

Layers: every module with its own parameters that runs in the forward pass, in forward
execution order (recorded with :func:`seethrough._core.capture.capture` on one sample), or
the layers and blocks named by ``layers=``. Re-initialisation: the layer's own
``reset_parameters()`` under :func:`seethrough._core.seeds.seeded` (the caller's RNG state
is restored), else a Gaussian draw with the spread of the layer's weight. See
:mod:`seethrough.evaluation.randomization` for the rules.
"""

from __future__ import annotations

import copy
import difflib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._core.call import call_model
from .._core.capture import capture
from .._core.errors import ConfigError, LayerError
from .._core.layers import LayerRef, resolve_layer
from .._core.seeds import generator, mix_seed, seeded
from .._core.state import model_guard
from .._core.validation import check_inputs

__all__ = ["randomization_layers"]


def _own_params(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters(recurse=False) if p is not None]


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _how(module: nn.Module) -> str | None:
    """ "reset" (its own reset_parameters), "gaussian" (the fallback) or None (cannot)."""
    if callable(getattr(module, "reset_parameters", None)):
        return "reset"
    w = getattr(module, "weight", None)
    if isinstance(w, Tensor) and w.numel() > 1 and w.is_floating_point() and float(w.detach().std()) > 0:
        return "gaussian"
    return None


def _layer_seed(seed: int, name: str) -> int:
    """Seed of one layer's re-initialisation: the check's seed mixed with the layer's name."""
    return mix_seed(seed, zlib.crc32(name.encode("utf-8")))


def _randomize_module(module: nn.Module, name: str, how: str, seed: int) -> None:
    s = _layer_seed(seed, name)
    params = _own_params(module)
    device = params[0][1].device if params else torch.device("cpu")
    with torch.no_grad():
        if how == "reset":
            reset = getattr(module, "reset_parameters", None)
            assert callable(reset)  # _how checked it
            with seeded(s, device):
                reset()
        else:
            w = module.weight
            assert isinstance(w, Tensor)  # _how checked it
            std = float(w.detach().float().std())
            g = generator(s, device=device)
            for _, p in params:
                p.copy_(torch.randn(p.shape, generator=g, device=device, dtype=p.dtype) * std)


@dataclass(frozen=True)
class _Unit:
    """One randomization stage: a layer (or block) and the modules it re-initialises."""

    name: str
    members: tuple[tuple[str, str], ...]  # (module name, how)
    order: int


def _execution_order(model: nn.Module, x_row: Tensor) -> list[str]:
    """Names of the modules with own parameters, in the order their forward passes end."""
    modules = {name: m for name, m in model.named_modules() if _own_params(m)}
    with capture(modules, reuse="first", clone=False, any_output=True, transform=lambda *_: None) as ran:
        with torch.no_grad():
            call_model(model, x_row)
    return list(ran)  # insertion order: the order in which each module first finished


def _plan(
    original: nn.Module,
    work: nn.Module,
    x_row: Tensor,
    layers: Sequence[LayerRef] | None,
    include_batchnorm: bool,
) -> tuple[list[_Unit], list[tuple[str, str]]]:
    """Stages in forward execution order, and the (layer, reason) pairs that were skipped."""
    ran = _execution_order(work, x_row)
    rank = {n: i for i, n in enumerate(ran)}
    modules = dict(work.named_modules())
    skipped: list[tuple[str, str]] = []
    units: list[_Unit] = []
    if layers is None:
        for name, m in work.named_modules():
            if not _own_params(m):
                continue
            if name not in rank:
                skipped.append((name, "does not run in the forward pass"))
            elif _is_batchnorm(m) and not include_batchnorm:
                skipped.append((name, "BatchNorm (include_batchnorm=False)"))
            elif _how(m) is None:
                skipped.append((name, f"{type(m).__name__} has no reset_parameters() and no weight to draw from"))
            else:
                units.append(_Unit(name, ((name, _how(m)),), rank[name]))  # type: ignore[arg-type]
        if not units:
            raise ConfigError(
                f"no layer of {type(original).__name__} can be randomized (skipped: "
                f"{'; '.join(f'{n}: {r}' for n, r in skipped[:5]) or 'the model has no parameters'})"
            )
    else:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        if len(layers) == 0:
            raise ConfigError("layers is empty; give layer names, or None for every layer")
        candidates = [n for n, m in work.named_modules() if _own_params(m) and n in rank]
        claimed: dict[str, str] = {}
        for ref in layers:
            name, _ = resolve_layer(original, ref)  # names as in the user's model (suggests on a miss)
            if name == "":
                raise LayerError("layers names the whole model; give its layers (or None for all of them)")
            block = modules[name]
            members: list[tuple[str, str]] = []
            for sub, m in block.named_modules(prefix=name):
                if not _own_params(m):
                    continue
                if _is_batchnorm(m) and not include_batchnorm and sub != name:
                    skipped.append((sub, "BatchNorm (include_batchnorm=False)"))
                    continue
                how = _how(m)
                if how is None and sub != name:  # inside a named block: skipped, as when iterating
                    skipped.append((sub, f"{type(m).__name__} has no reset_parameters() and no weight to draw from"))
                    continue
                if how is None:
                    raise LayerError(
                        f"cannot randomize layer {sub!r}: {type(m).__name__} has no reset_parameters() and no "
                        f"'weight' whose spread could be used; give the module a reset_parameters() method or "
                        f"leave it out of layers="
                    )
                if sub not in rank:
                    skipped.append((sub, "does not run in the forward pass"))
                    continue
                members.append((sub, how))
            if not members:
                hint = ", ".join(repr(c) for c in difflib.get_close_matches(name, candidates, n=4, cutoff=0.3)) or (
                    ", ".join(repr(c) for c in candidates[:4])
                )
                raise LayerError(
                    f"layer {name!r} ({type(block).__name__}) has no parameters that run in the forward pass, so "
                    f"there is nothing to randomize; choose a layer with parameters, e.g. {hint}"
                )
            for sub, _ in members:
                if sub in claimed:
                    raise ConfigError(
                        f"layers {claimed[sub]!r} and {name!r} overlap (both contain {sub!r}); list each layer once"
                    )
                claimed[sub] = name
            units.append(_Unit(name, tuple(members), min(rank[s] for s, _ in members)))
    units.sort(key=lambda u: u.order)
    return units, skipped


def randomization_layers(
    model: nn.Module,
    inputs: Tensor,
    *,
    layers: Sequence[LayerRef] | None = None,
    include_batchnorm: bool = True,
) -> tuple[list[str], list[tuple[str, str]]]:
    """The layers a randomization check would re-initialise, in forward execution order,
    and the ``(layer, reason)`` pairs it would skip. Runs one sample of ``inputs`` through a
    copy of ``model``."""
    x = check_inputs(model, inputs)
    work = _copy_model(model)
    units, skipped = _plan(model, work, x[:1].clone(), layers, include_batchnorm)
    return [u.name for u in units], skipped


def _copy_model(model: nn.Module) -> nn.Module:
    with model_guard(model, method="randomization check"):
        try:
            work = copy.deepcopy(model)
        except Exception as e:  # noqa: BLE001 - any failure of deepcopy means the same thing here
            raise ConfigError(
                f"cannot copy {type(model).__name__} with copy.deepcopy ({type(e).__name__}: {e}); the "
                f"randomization checks work on a copy so that your model is never modified. Make the "
                f"model deep-copyable (e.g. no open files or locks as attributes)"
            ) from e
    for p in work.parameters():
        p.grad = None
    return work.eval()
