"""model_guard restores buffers of every kind it copies in bulk, and hook dictionaries."""

from __future__ import annotations

import torch
from torch import nn

from seethrough._core.state import model_guard


class _Buffers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("f", torch.randn(3, 4))
        self.register_buffer("t", torch.randn(4, 3).t())  # non-contiguous
        self.register_buffer("i", torch.tensor(7))
        self.register_buffer("b", torch.tensor([True, False]))
        self.register_buffer("h", torch.randn(5, dtype=torch.float64))
        self.register_buffer("none", None)
        self.child = nn.Linear(2, 2)
        self.child.register_buffer("shared", self.f)  # the same tensor under two names


def test_buffers_written_or_replaced_inside_the_guard_are_restored() -> None:
    m = _Buffers()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    originals = dict(m.named_buffers(remove_duplicate=False))
    with model_guard(m):
        m.f.add_(1.0)
        m.t.mul_(-2.0)
        m.i.fill_(0)
        m.b.logical_not_()
        m.h.zero_()
        m.child._buffers["shared"] = torch.zeros(3, 4)
        m._buffers["none"] = torch.ones(1)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in m.named_buffers(remove_duplicate=False):
        assert v is originals[k], k
    assert m.none is None and m.child.shared is m.f


def test_hooks_added_inside_the_guard_are_removed_and_earlier_ones_kept() -> None:
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    keep = m[0].register_forward_hook(lambda *a: None)
    with model_guard(m):
        m[0].register_forward_hook(lambda *a: None)
        m[1].register_forward_pre_hook(lambda *a: None)
        m.register_full_backward_hook(lambda *a: None)
    assert list(m[0]._forward_hooks) == [keep.id]
    assert not m[1]._forward_pre_hooks and not m._backward_hooks
    keep.remove()
