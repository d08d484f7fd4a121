"""A predicted target read from a single-pass method's own forward pass: the same result as
the explicit argmax class, without the extra clean forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seethrough as st
from seethrough._core.targets import Class, TokenAt
from seethrough.testing import TinyCNN, seeded

METHODS = [st.Saliency, st.InputXGradient, st.GuidedBackprop, st.Deconvolution]


def _calls(model):
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    return sizes, handle


@pytest.mark.parametrize("batching", [None, 1, 2])
@pytest.mark.parametrize("method", METHODS)
def test_predicted_equals_the_argmax_class_without_a_clean_pass(method, batching):
    model = seeded(TinyCNN).eval()
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred = model(x).argmax(1)
    given = method(model, batching=batching).attribute(x, pred)
    sizes, handle = _calls(model)
    try:
        got = method(model, batching=batching).attribute(x, None)
    finally:
        handle.remove()
    assert torch.equal(got.attributions, given.attributions)
    assert torch.equal(got.scores, given.scores)
    assert got.target == given.target == f"Class({pred.tolist()})"
    assert torch.equal(got.target_indices, pred)
    assert sum(sizes) == 5  # each sample runs once: no clean pass
    assert got.n_evaluations == sum(sizes)


def test_predicted_in_pass_on_one_output_and_on_a_sequence_output():
    one = nn.Sequential(nn.Flatten(), nn.Linear(12, 1)).eval()
    x = torch.randn(4, 3, 4, generator=torch.Generator().manual_seed(2))
    got = st.Saliency(one).attribute(x, None)
    ref = st.Saliency(one).attribute(x, Class(0))
    assert torch.equal(got.attributions, ref.attributions) and got.target == ref.target

    seq = nn.Linear(4, 7).eval()  # (B, T, D) -> (B, T, V)
    with torch.no_grad():
        tokens = seq(x)[:, -1].argmax(-1)
    got = st.Saliency(seq, batching=3).attribute(x, None)
    ref = st.Saliency(seq, batching=3).attribute(x, TokenAt(-1, tokens, output="logit"))
    assert torch.equal(got.attributions, ref.attributions)
    assert torch.equal(got.scores, ref.scores)
    assert got.target == ref.target


def test_a_model_with_an_inference_fast_path_keeps_the_clean_pass():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(24, 4)).eval()
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(3))
    sizes, handle = _calls(model)
    try:
        got = st.Saliency(model, batching=2).attribute(x, None)  # one chunk, no probe row
    finally:
        handle.remove()
    assert sizes == [2, 2]  # the clean pass (no grad), then the gradient pass
    assert got.n_evaluations == 4
