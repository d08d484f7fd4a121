"""The contract's own checker must notice every kind of trace it is meant to catch."""

from __future__ import annotations

import pytest
import torch
from _model_state import assert_unchanged, snapshot
from torch import nn
from torch.overrides import TorchFunctionMode

from seethrough.testing import TinyResNet, seeded


class _Mode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _leave_mode(model, x):
    mode = _Mode()
    mode.__enter__()
    return lambda: mode.__exit__(None, None, None)


def _global_hook(model, x):
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)
    return handle.remove


MUTATIONS = {
    "forward_hook": lambda m, x: m.layer1.conv1.register_forward_hook(lambda *a: None).remove,
    "forward_pre_hook": lambda m, x: m.fc.register_forward_pre_hook(lambda *a: None).remove,
    "forward_hook_with_kwargs": lambda m, x: m.register_forward_hook(lambda *a: None, with_kwargs=True).remove,
    "full_backward_hook": lambda m, x: m.layer2.register_full_backward_hook(lambda *a: None).remove,
    "backward_pre_hook": lambda m, x: m.layer2.register_full_backward_pre_hook(lambda *a: None).remove,
    "global_forward_hook": _global_hook,
    "training_flag": lambda m, x: (m.layer1.bn1.train(), None)[1],
    "requires_grad": lambda m, x: m.fc.bias.requires_grad_(False),
    "param_value": lambda m, x: m.conv1.weight.data.mul_(1.0001),
    "buffer_value": lambda m, x: m.bn1.running_mean.add_(1e-6),
    "num_batches_tracked": lambda m, x: m.bn1.num_batches_tracked.add_(1),
    "param_grad": lambda m, x: setattr(m.fc.weight, "grad", torch.zeros_like(m.fc.weight)),
    "inputs_value": lambda m, x: x.view(-1)[0].add_(1.0),
    "inputs_requires_grad": lambda m, x: x.requires_grad_(True),
    "torch_function_mode": _leave_mode,
    "grad_mode": lambda m, x: (torch.set_grad_enabled(False), lambda: torch.set_grad_enabled(True))[1],
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_checker_detects(mutation):
    model = seeded(TinyResNet)
    x = torch.randn(2, 3, 16, 16)
    snap = snapshot(model, x)
    assert_unchanged(model, snap, x)
    undo = MUTATIONS[mutation](model, x)
    try:
        with pytest.raises(AssertionError):
            assert_unchanged(model, snap, x)
    finally:
        if callable(undo):
            undo()
