"""Snapshot and restore everything an explanation could change on a model.

``model_guard`` is the only way seethrough touches a user's model. Inside it the model
is in eval mode with parameters frozen (no weight gradients are built, which also saves
memory); on exit, successful or not, every module's train/eval flag, every parameter's
``requires_grad``, every buffer's value and every hook dictionary are put back exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .errors import ModelStateWarning

__all__ = ["model_guard", "ModelSnapshot"]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)

_NO_HOOKS = (None,) * len(_HOOK_DICTS)


def _all_modules(model: nn.Module) -> list[nn.Module]:
    """Every module of ``model`` once (``model.modules()``'s set, breadth first), without
    the generator machinery of ``named_modules``."""
    out = [model]
    seen = {id(model)}
    i = 0
    while i < len(out):
        for child in out[i]._modules.values():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                out.append(child)
        i += 1
    return out


class ModelSnapshot:
    """What ``model_guard`` restores: modes, ``requires_grad`` flags, buffers and hooks.

    Taken once per explanation, so it is built in one pass over the modules: the buffers
    are copied with one flat copy per dtype and device (a buffer written in place bumps its
    version counter, and only those are compared and copied back), and only non-empty hook
    dictionaries keep a set of their keys.
    """

    def __init__(self, model: nn.Module) -> None:
        # one breadth-first pass over the modules (``_all_modules``' order) that also collects
        # parameters, buffers and hooks: this runs once per explanation, so every step counts
        self.modules = modules = [model]
        seen_modules = {id(model)}
        self.params: list[nn.Parameter] = []
        #: (module, buffer name, buffer, its version counter) for every buffer slot
        self.buffers: list[tuple[nn.Module, str, torch.Tensor | None, int]] = []
        #: per module, None when all its hook dictionaries are empty, else the key set of
        #: each of them in ``_HOOK_DICTS`` order (None for an empty or missing one)
        self.hooks: list[tuple[set | None, ...] | None] = []
        seen: set[int] = set()
        unique: dict[int, torch.Tensor] = {}
        params, buffers, hook_keys = self.params, self.buffers, self.hooks
        i = 0
        while i < len(modules):
            m = modules[i]
            i += 1
            d = m.__dict__
            children = d.get("_modules")
            if children:
                for child in children.values():
                    if child is not None and id(child) not in seen_modules:
                        seen_modules.add(id(child))
                        modules.append(child)
            slots = d.get("_parameters")
            if slots:
                for p in slots.values():
                    if p is not None and id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
            slots = d.get("_buffers")
            if slots:
                for name, buf in slots.items():
                    buffers.append((m, name, buf, -1 if buf is None else buf._version))
                    if buf is not None:
                        unique.setdefault(id(buf), buf)
            if any(map(d.get, _HOOK_DICTS)):
                hook_keys.append(tuple(set(h) if h else None for h in map(d.get, _HOOK_DICTS)))
            else:
                hook_keys.append(None)
        self.training = [m.training for m in modules]
        self.requires_grad = [p.requires_grad for p in self.params]
        self.param_versions = [p._version for p in self.params]
        self._copies = _BufferCopies(list(unique.values()))

    def restore(self) -> None:
        with torch.no_grad():
            for m, name, buf, version in self.buffers:
                slots = m._buffers
                if slots.get(name) is not buf:
                    slots[name] = buf
                if buf is not None and buf._version != version:
                    copy = self._copies.of(buf)
                    if copy is not None and not torch.equal(buf, copy):
                        buf.copy_(copy)
        for p, flag in zip(self.params, self.requires_grad):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for m, flag in zip(self.modules, self.training):
            if m.training != flag:
                m.__dict__["training"] = flag
        for m, before in zip(self.modules, self.hooks):
            d = m.__dict__
            if not any(map(d.get, _HOOK_DICTS)):
                continue
            for h, keys in zip(map(d.get, _HOOK_DICTS), before or _NO_HOOKS):
                if not h:
                    continue
                if keys is None:
                    h.clear()
                elif len(h) != len(keys) or any(k not in keys for k in h):
                    for k in [k for k in h if k not in keys]:
                        del h[k]

    def parameters_changed(self) -> bool:
        return any(p._version != v for p, v in zip(self.params, self.param_versions))


class _BufferCopies:
    """Copies of buffers taken at once: plain dense tensors in one flat copy per (dtype,
    device), which costs one call instead of one clone per buffer; anything else (meta,
    sparse, tensor subclasses) cloned on its own."""

    def __init__(self, buffers: list[torch.Tensor]) -> None:
        #: (the buffers of one dtype and device, in order; their flat copy)
        self._groups: list[tuple[list[torch.Tensor], torch.Tensor]] = []
        self._single: dict[int, torch.Tensor] = {}
        groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        strided = torch.strided
        with torch.no_grad():
            for b in buffers:
                if type(b) is torch.Tensor and b.layout == strided and not b.is_meta:
                    groups.setdefault((b.dtype, b.device), []).append(b)
                else:
                    self._single[id(b)] = b.detach().clone()
            for group in groups.values():
                flat = torch._C._nn.flatten_dense_tensors(group) if len(group) > 1 else group[0].flatten().clone()
                self._groups.append((group, flat))

    def of(self, buf: torch.Tensor) -> torch.Tensor | None:
        """The copy of ``buf`` (its shape, contiguous), or None if it was not copied. Only
        asked for a buffer written during the call (rare), so its place in the flat copy is
        looked up here rather than recorded for every buffer up front."""
        if id(buf) in self._single:
            return self._single[id(buf)]
        for group, flat in self._groups:
            offset = 0
            for b in group:
                if b is buf:
                    return flat.narrow(0, offset, buf.numel()).view(buf.shape)
                offset += b.numel()
        return None


@contextmanager
def model_guard(model: nn.Module, *, method: str = "explanation") -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with frozen parameters, and restore it on exit.

    A model handed over in train mode is explained in eval mode (dropout off, BatchNorm
    on its running statistics, which a train-mode forward would silently rewrite) and a
    :class:`ModelStateWarning` says so.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"seethrough explains torch.nn.Module models, not {type(model).__name__}")
    snap = ModelSnapshot(model)
    if any(snap.training):
        warnings.warn(
            f"{type(model).__name__} is in train mode; the {method} is computed in eval mode "
            f"(dropout off, BatchNorm on running statistics) and the mode is restored "
            f"afterwards. Call model.eval() first to silence this warning.",
            ModelStateWarning,
            stacklevel=4,
        )
    try:
        for m in snap.modules:  # model.eval(), without Module.__setattr__ per module
            m.__dict__["training"] = False
        for p in snap.params:
            if p.requires_grad:
                p.requires_grad_(False)
        yield model
    finally:
        snap.restore()
