"""Snapshot everything an explanation could leave behind on a model, and compare.

Used by the model-state contract and the bad-input tests: ``snap = snapshot(model, x)``
before a call, ``assert_unchanged(model, snap, x)`` after it (successful or not).
"""

from __future__ import annotations

import torch
import torch.nn.modules.module as torch_module
from torch import nn

# Light method settings for the contract tests, so the many combinations stay fast; every method
# keeps its code path.
FAST = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"n_samples": 3},
    "smoothgrad_sq": {"n_samples": 3},
    "vargrad": {"n_samples": 3},
    "rise": {"n_masks": 6, "grid": 4},
    "lime": {"n_samples": 12},
    "kernel_shap": {"n_samples": 12},
    "shapley_sampling": {"n_permutations": 2},
    "meaningful_perturbation": {"steps": 3},
}

HOOK_ATTRS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)

GLOBAL_HOOKS = tuple(
    name for name in dir(torch_module) if name.startswith("_global_") and isinstance(getattr(torch_module, name), dict)
)
assert {"_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"} <= set(GLOBAL_HOOKS)


def _clone(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.is_meta or b.is_meta:  # no values to compare on the meta device
        return a.is_meta == b.is_meta and a.shape == b.shape and a.dtype == b.dtype
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    # bitwise, so that NaN equals NaN and -0.0 differs from 0.0
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def snapshot(model: nn.Module, inputs: object = None) -> dict:
    snap = {
        "modules": {name: m for name, m in model.named_modules()},
        "training": {name: m.training for name, m in model.named_modules()},
        "hooks": {
            name: {attr: dict(getattr(m, attr)) for attr in HOOK_ATTRS if hasattr(m, attr)}
            for name, m in model.named_modules()
        },
        "global_hooks": {name: dict(getattr(torch_module, name)) for name in GLOBAL_HOOKS},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "grad": {name: p.grad for name, p in model.named_parameters()},
        "state": {k: _clone(v) for k, v in model.state_dict(keep_vars=True).items()},
        "params": {name: p for name, p in model.named_parameters()},
        "torch_function_stack": torch._C._len_torch_function_stack(),
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
    }
    if isinstance(inputs, torch.Tensor):
        snap["inputs"] = (_clone(inputs), inputs.requires_grad, inputs.grad)
    return snap


def assert_unchanged(model: nn.Module, snap: dict, inputs: object = None) -> None:
    modules = dict(model.named_modules())
    assert modules.keys() == snap["modules"].keys(), "modules were added or removed"
    for name, m in modules.items():
        assert m is snap["modules"][name], f"module {name!r} was replaced"
        assert m.training == snap["training"][name], f"module {name!r}: training flag changed"
        for attr, before in snap["hooks"][name].items():
            assert dict(getattr(m, attr)) == before, f"module {name!r}: {attr} changed (hook left behind?)"
    for name, before in snap["global_hooks"].items():
        assert dict(getattr(torch_module, name)) == before, f"global module hooks {name} changed"
    params = dict(model.named_parameters())
    assert params.keys() == snap["params"].keys()
    for name, p in params.items():
        assert p is snap["params"][name], f"parameter {name!r} was replaced"
        assert p.requires_grad == snap["requires_grad"][name], f"parameter {name!r}: requires_grad changed"
        assert p.grad is snap["grad"][name], f"parameter {name!r}: .grad changed"
    state = model.state_dict(keep_vars=True)
    assert state.keys() == snap["state"].keys()
    for k, v in state.items():
        assert _same(v.detach(), snap["state"][k]), f"parameter/buffer {k!r} changed"
    assert torch._C._len_torch_function_stack() == snap["torch_function_stack"], "a TorchFunctionMode is left active"
    assert torch.is_grad_enabled() == snap["grad_enabled"], "grad mode changed"
    assert torch.is_inference_mode_enabled() == snap["inference_mode"], "inference mode changed"
    if "inputs" in snap:
        value, requires_grad, grad = snap["inputs"]
        assert isinstance(inputs, torch.Tensor)
        assert inputs.requires_grad == requires_grad, "inputs.requires_grad changed"
        assert inputs.grad is grad, "inputs.grad changed"
        assert _same(inputs.detach(), value), "the inputs tensor was modified"


def freeze_some(model: nn.Module) -> None:
    """Mixed requires_grad: every other parameter frozen."""
    for i, p in enumerate(model.parameters()):
        p.requires_grad_(i % 2 == 0)
