"""Snapshot and restore everything an explanation could change on a model.

``model_guard`` is the only way seethrough touches a user's model. Inside it the model
is in eval mode with parameters frozen (no weight gradients are built, which also saves
memory); on exit, successful or not, every module's train/eval flag, every parameter's
``requires_grad``, every buffer's value and every hook dictionary are put back exactly.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

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


class ModelSnapshot:
    """What ``model_guard`` restores: modes, ``requires_grad`` flags, buffers and hooks."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = list(model.modules())
        self.training = [m.training for m in self.modules]
        self.params = list(model.parameters())
        self.requires_grad = [p.requires_grad for p in self.params]
        self.param_versions = [p._version for p in self.params]
        # (module, name, buffer, its version counter, a copy): a buffer written in place
        # bumps its version, so restore() compares and copies back only those.
        self.buffers: list[tuple[nn.Module, str, torch.Tensor | None, int, torch.Tensor | None]] = []
        for m in self.modules:
            for name, buf in m._buffers.items():
                copy = None if buf is None else buf.detach().clone()
                self.buffers.append((m, name, buf, -1 if buf is None else buf._version, copy))
        self.hooks = [
            {attr: set(getattr(m, attr, {}).keys()) for attr in _HOOK_DICTS} for m in self.modules
        ]

    def restore(self) -> None:
        with torch.no_grad():
            for m, name, buf, version, copy in self.buffers:
                if m._buffers.get(name) is not buf:
                    m._buffers[name] = buf
                if buf is not None and copy is not None and buf._version != version and not torch.equal(buf, copy):
                    buf.copy_(copy)
        for p, flag in zip(self.params, self.requires_grad):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for m, flag in zip(self.modules, self.training):
            if m.training != flag:
                m.__dict__["training"] = flag
        for m, keys in zip(self.modules, self.hooks):
            for attr, before in keys.items():
                d = getattr(m, attr, None)
                if d is None:
                    continue
                for k in [k for k in d.keys() if k not in before]:
                    del d[k]

    def parameters_changed(self) -> bool:
        return any(p._version != v for p, v in zip(self.params, self.param_versions))


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
            p.requires_grad_(False)
        yield model
    finally:
        snap.restore()
