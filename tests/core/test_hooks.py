"""Scoped hooks: ReLU backward rules and activation capture, removed on every exit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seethrough._core.hooks import StopForward, capture_activation, relu_backward_override

# inputs of both signs against upstream gradients of both signs: every case of the rules
X = torch.tensor([-2.0, -0.5, 0.5, 2.0, -1.0, 1.0, 3.0, -3.0])
G = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0, 2.0, -0.5, -0.5])
EXPECTED = {
    "guided": G * (X > 0) * (G > 0),  # forward mask and positive gradient
    "deconv": G * (G > 0),  # positive gradient, whatever the input
    None: G * (X > 0),  # the plain ReLU rule
}
assert not torch.equal(EXPECTED["guided"], EXPECTED["deconv"])
assert not torch.equal(EXPECTED["guided"], EXPECTED[None])

CALLS = {
    "F.relu": lambda t: F.relu(t),
    "F.relu(inplace)": lambda t: F.relu(t * 1, inplace=True),
    "torch.relu": lambda t: torch.relu(t),
    "Tensor.relu": lambda t: t.relu(),
    "F.relu_": lambda t: F.relu_(t * 1),
    "torch.relu_": lambda t: torch.relu_(t * 1),
    "Tensor.relu_": lambda t: (t * 1).relu_(),
    "nn.ReLU": lambda t: nn.ReLU()(t),
    "nn.ReLU(inplace)": lambda t: nn.ReLU(inplace=True)(t * 1),
}


def _grad(call, rule):
    x = X.clone().requires_grad_(True)
    if rule is None:
        y = call(x)
    else:
        with relu_backward_override(rule):
            y = call(x)
    torch.testing.assert_close(y, X.clamp(min=0), rtol=0, atol=0)  # forward unchanged
    (g,) = torch.autograd.grad(y, x, G)
    return g


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("rule", ["guided", "deconv", None])
def test_relu_rules_match_the_analytic_rule(rule, call):
    torch.testing.assert_close(_grad(CALLS[call], rule), EXPECTED[rule], rtol=0, atol=0)


def test_backward_after_the_block_keeps_the_rule():
    x = X.clone().requires_grad_(True)
    with relu_backward_override("guided"):
        y = F.relu(x)
    (g,) = torch.autograd.grad(y, x, G)  # graph recorded inside, backward outside
    torch.testing.assert_close(g, EXPECTED["guided"], rtol=0, atol=0)


def test_inplace_relu_modifies_its_argument():
    with relu_backward_override("deconv"):
        t = X.clone()
        out = t.relu_()
    assert out.data_ptr() == t.data_ptr()
    torch.testing.assert_close(t, X.clamp(min=0), rtol=0, atol=0)


def test_relu_in_a_chain_of_layers():
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(4, 6), nn.Linear(6, 1)
    x = torch.randn(3, 4, requires_grad=True)
    with relu_backward_override("guided"):
        h = lin1(x)
        y = lin2(F.relu(h)).sum()
    (g,) = torch.autograd.grad(y, x)
    up = lin2.weight.detach().expand(3, 6)  # gradient arriving at the ReLU output
    expected = (up * (h.detach() > 0) * (up > 0)) @ lin1.weight.detach()
    torch.testing.assert_close(g, expected, rtol=1e-6, atol=1e-6)


def test_override_is_scoped():
    assert torch._C._len_torch_function_stack() == 0
    with relu_backward_override("guided"):
        assert torch._C._len_torch_function_stack() == 1
    assert torch._C._len_torch_function_stack() == 0
    torch.testing.assert_close(_grad(CALLS["F.relu"], None), EXPECTED[None], rtol=0, atol=0)


def test_override_removed_on_exception():
    with pytest.raises(KeyError):
        with relu_backward_override("deconv"):
            raise KeyError("inside")
    assert torch._C._len_torch_function_stack() == 0


def test_non_relu_functions_pass_through():
    x = X.clone().requires_grad_(True)
    with relu_backward_override("guided"):
        y = torch.sigmoid(x * 2).sum()
    (g,) = torch.autograd.grad(y, x)
    s = torch.sigmoid(X * 2)
    torch.testing.assert_close(g, 2 * s * (1 - s))


def test_unknown_rule():
    with pytest.raises(ValueError, match="'guided' or 'deconv'"):
        with relu_backward_override("lrp"):
            pass
    assert torch._C._len_torch_function_stack() == 0


# -- capture_activation -------------------------------------------------------------------


def _hooks(module):
    return len(module._forward_hooks) + len(module._forward_pre_hooks)


def test_capture_activation_records_and_removes_hook():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    store: dict = {}
    with capture_activation(model[1], store, key="mid"):
        assert len(model[1]._forward_hooks) == 1
        out = model(x)
    assert _hooks(model[1]) == 0
    torch.testing.assert_close(store["mid"], F.relu(model[0](x)))
    torch.testing.assert_close(out, model(x))


def test_capture_activation_removes_hook_on_exception():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    store: dict = {}
    with pytest.raises(RuntimeError, match="boom"):
        with capture_activation(model[0], store):
            model(torch.randn(2, 3))
            raise RuntimeError("boom")
    assert _hooks(model[0]) == 0
    assert store["act"].shape == (2, 4)


def test_capture_activation_stop_ends_forward_and_removes_hook():
    reached = []
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[1].register_forward_pre_hook(lambda *a: reached.append(True))
    store: dict = {}
    with pytest.raises(StopForward):
        with capture_activation(model[0], store, stop=True):
            model(torch.randn(2, 3))
    assert not reached
    assert store["act"].shape == (2, 4)
    assert _hooks(model[0]) == 0


def test_capture_activation_of_tuple_output_keeps_first():
    class Pair(nn.Module):
        def forward(self, x):
            return x * 2, x * 3

    m = Pair()
    store: dict = {}
    with capture_activation(m, store):
        m(torch.ones(1, 2))
    torch.testing.assert_close(store["act"], torch.full((1, 2), 2.0))
    assert _hooks(m) == 0
