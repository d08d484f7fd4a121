"""Attention maps, rollout and ALTI: against transformers' eager attention, a direct numpy
rollout and hand-computed one-layer ALTI for a pre-norm (Llama) and a post-norm (BERT) block."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seethrough.language.attention import AttentionMaps, TokenMixing, alti, attention_maps, attention_rollout
from seethrough.testing.language import tiny_bert, tiny_llama

PROMPT = "k1 = 2 k3 = 4 ; k1 ->"


def _sharpen(tm, by=6.0):
    with torch.no_grad():
        for p in tm.model.parameters():
            if p.dim() == 2:
                p.mul_(by)
    return tm


@pytest.fixture(scope="module")
def llama():
    return _sharpen(tiny_llama(seed=3, layers=3))


@pytest.fixture(scope="module")
def bert():
    return _sharpen(tiny_bert(seed=3, layers=2), 3.0)


def _eager(tm, ids):
    old = tm.model.config._attn_implementation
    tm.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = tm.model(ids, output_attentions=True)
    finally:
        tm.model.set_attn_implementation(old)
    return torch.stack([a[0] for a in out.attentions]).float()


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_maps_equal_eager_attentions(which, request):
    tm = request.getfixturevalue(which)
    ids = tm.encode(PROMPT if which == "llama" else "k1 = 2 k3 = 4")
    m = attention_maps(tm, ids)
    torch.testing.assert_close(m.probs, _eager(tm, ids), atol=1e-6, rtol=1e-5)
    assert m.probs.shape == (tm.n_layers, tm.n_heads, ids.shape[1], ids.shape[1])
    assert len(m.tokens) == ids.shape[1]
    if which == "llama":
        assert float(torch.triu(m.probs, diagonal=1).abs().max()) == 0.0  # causal


def _np_rollout(A):
    """Abnar & Zuidema with numpy: mean heads, 0.5 A + 0.5 I, renormalise, multiply."""
    A = A.astype(np.float64).mean(1)
    R = np.eye(A.shape[-1])
    for a in A:
        a = 0.5 * a + 0.5 * np.eye(a.shape[0])
        a = a / a.sum(-1, keepdims=True)
        R = a @ R
    return R


@pytest.mark.parametrize("which", ["llama", "bert"])
def test_rollout_equals_numpy(which, request):
    tm = request.getfixturevalue(which)
    ids = tm.encode(PROMPT if which == "llama" else "k1 = 2 k3 = 4")
    r = attention_rollout(tm, ids)
    ref = _np_rollout(_eager(tm, ids).numpy())
    np.testing.assert_allclose(r.matrix.numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(r.matrix.sum(-1).numpy(), 1.0, atol=1e-6)
    assert r.position == (ids.shape[1] - 1 if which == "llama" else 0)
    np.testing.assert_allclose(r.scores.numpy(), ref[r.position], atol=1e-6)
    if which == "llama":
        assert float(torch.triu(r.matrix, diagonal=1).abs().max()) == 0.0


def test_alti_rows_sum_to_one_and_respect_the_mask(llama, bert):
    for tm, p in ((llama, PROMPT), (bert, "k1 = 2 k3 = 4")):
        a = alti(tm, p)
        assert a.per_layer.shape == (tm.n_layers, len(a.tokens), len(a.tokens))
        np.testing.assert_allclose(a.per_layer.sum(-1).numpy(), 1.0, atol=1e-5)
        np.testing.assert_allclose(a.matrix.sum(-1).numpy(), 1.0, atol=1e-5)
        assert float(a.per_layer.min()) >= 0.0
    a = alti(llama, PROMPT)
    assert float(torch.triu(a.per_layer, diagonal=1).abs().max()) == 0.0
    # the rollout of the per-layer matrices
    R = a.per_layer[0].double()
    for C in a.per_layer[1:]:
        R = C.double() @ R
    np.testing.assert_allclose(a.matrix.numpy(), R.numpy(), atol=1e-5)


def _contrib(y, terms):
    """c_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1), normalised, by loops."""
    T = y.shape[0]
    C = np.zeros((T, T))
    for i in range(T):
        for j in range(T):
            C[i, j] = max(0.0, np.abs(y[i]).sum() - np.abs(y[i] - terms[i, j]).sum())
        C[i] /= C[i].sum()
    return C


def test_alti_one_llama_layer_by_hand():
    tm = _sharpen(tiny_llama(seed=4, layers=1))
    ids = tm.encode(PROMPT)
    blk = tm.model.model.layers[0]
    A = _eager(tm, ids)[0].double().numpy()  # (H, T, T)
    with torch.no_grad():
        x = tm.model.model.embed_tokens(ids)[0].double()
        w = blk.input_layernorm.weight.double()
        nx = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + blk.input_layernorm.variance_epsilon) * w).numpy()
    x = x.numpy()
    Wv = blk.self_attn.v_proj.weight.detach().double().numpy()  # (Hkv*d, D)
    Wo = blk.self_attn.o_proj.weight.detach().double().numpy()  # (D, H*d)
    H, T = A.shape[0], A.shape[1]
    d = Wo.shape[1] // H
    Hkv = Wv.shape[0] // d
    terms = np.zeros((T, T, x.shape[1]))
    for h in range(H):
        g = h // (H // Hkv)  # grouped-query: the key/value head of query head h
        v = nx @ Wv[g * d : (g + 1) * d].T  # (T, d)
        vo = v @ Wo[:, h * d : (h + 1) * d].T  # (T, D)
        terms += A[h][:, :, None] * vo[None]
    for i in range(T):
        terms[i, i] += x[i]
    y = terms.sum(1)
    a = alti(tm, ids)
    np.testing.assert_allclose(a.per_layer[0].numpy(), _contrib(y, terms), atol=1e-5)


def test_alti_one_bert_layer_by_hand():
    tm = _sharpen(tiny_bert(seed=4, layers=1), 3.0)
    ids = tm.encode("k1 = 2 k3 = 4")
    att = tm.model.encoder.layer[0].attention
    A = _eager(tm, ids)[0].double().numpy()
    with torch.no_grad():
        x = tm.model.embeddings(input_ids=ids)[0].double().numpy()
    Wv, bv = att.self.value.weight.detach().double().numpy(), att.self.value.bias.detach().double().numpy()
    Wo, bo = att.output.dense.weight.detach().double().numpy(), att.output.dense.bias.detach().double().numpy()
    ln = att.output.LayerNorm
    gamma, beta = ln.weight.detach().double().numpy(), ln.bias.detach().double().numpy()
    H, T = A.shape[0], A.shape[1]
    d = Wo.shape[1] // H
    z = np.zeros((T, T, x.shape[1]))
    for h in range(H):
        v = x @ Wv[h * d : (h + 1) * d].T + bv[h * d : (h + 1) * d]
        z += A[h][:, :, None] * (v @ Wo[:, h * d : (h + 1) * d].T)[None]
    for i in range(T):
        z[i, i] += x[i]
    zi = z.sum(1) + bo
    s = np.sqrt(zi.var(-1) + ln.eps)
    terms = gamma * (z - z.mean(-1, keepdims=True)) / s[:, None, None]
    y = gamma * (zi - zi.mean(-1, keepdims=True)) / s[:, None] + beta
    with torch.no_grad():
        y_model = att(tm.model.embeddings(input_ids=ids))[0][0].double().numpy()
    np.testing.assert_allclose(y, y_model, atol=1e-5)  # the decomposition rebuilds the block
    a = alti(tm, ids)
    np.testing.assert_allclose(a.per_layer[0].numpy(), _contrib(y, terms), atol=1e-5)


def test_results_save_and_draw(llama, tmp_path):
    m = attention_maps(llama, PROMPT)
    back = AttentionMaps.load(m.save(tmp_path / "m.safetensors"))
    assert back.tokens == m.tokens and torch.equal(back.probs, m.probs)
    assert back.layer(0, 1).shape == (len(m.tokens),) * 2
    m.plot(layer=0, head=1)
    assert "attention, layer" in m.to_html()
    for r in (attention_rollout(llama, PROMPT), alti(llama, PROMPT)):
        b = TokenMixing.load(r.save(tmp_path / f"{r.method}.safetensors"))
        assert b.method == r.method and torch.equal(b.rolled, r.rolled) and b.tokens == r.tokens
        r.plot()
        assert r.method in r.to_html() or "ALTI" in r.to_html()
