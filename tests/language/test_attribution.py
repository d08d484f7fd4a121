"""Token attribution on a tiny Llama: each method against a direct computation."""

from __future__ import annotations

import math

import pytest
import torch

from seethrough._core.errors import ConfigError, InputError
from seethrough.language.attribution import TokenAttribution, TokenAttributor, attribute_tokens, word_groups
from seethrough.language.model import NotOneToken
from seethrough.testing.language import tiny_bert, tiny_llama

PROMPT = "k3 = 7 k1 = 2 ; k1 ->"


@pytest.fixture(scope="module")
def tm():
    return tiny_llama(seed=0)


def _logp(tm, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return tm.model(input_ids=ids, use_cache=False).logits.log_softmax(-1)


def _grad_at_embedding(tm, ids, score_fn):
    emb = tm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
    out = tm.model(inputs_embeds=emb, use_cache=False).logits
    (g,) = torch.autograd.grad(score_fn(out), emb)
    return emb.detach()[0], g[0]


def test_saliency_and_input_x_gradient_equal_the_embedding_gradient(tm):
    ids = tm.encode(PROMPT)
    tok = int(_logp(tm, ids)[0, -1].argmax())
    x, g = _grad_at_embedding(tm, ids, lambda out: out[0, -1].log_softmax(-1)[tok])
    sal = TokenAttributor(tm, method="saliency").attribute(PROMPT)
    assert sal.target_ids == (tok,) and sal.target_kind == "next_token"
    torch.testing.assert_close(sal.scores, g.norm(dim=-1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(sal.raw, g.abs(), rtol=1e-5, atol=1e-7)
    ixg = TokenAttributor(tm, method="input_x_gradient").attribute(PROMPT, tok)
    torch.testing.assert_close(ixg.scores, (x * g).sum(-1), rtol=1e-4, atol=1e-7)
    assert ixg.aggregate == "sum" and sal.aggregate == "l2"
    assert len(sal.tokens) == ids.shape[1] and sal.ids.tolist() == ids[0].tolist()
    assert math.isclose(sal.target_score, float(_logp(tm, ids)[0, -1, tok]), rel_tol=1e-5)


def test_integrated_gradients_is_complete_and_reports_delta(tm):
    r = TokenAttributor(tm, method="integrated_gradients", steps=64).attribute(PROMPT, "2")
    assert r.delta is not None and r.baseline_score is not None
    gap = r.target_score - r.baseline_score
    assert abs(float(r.scores.sum()) - gap) < 1e-4 and abs(r.delta) < 1e-4
    assert r.settings["steps"] == 64 and r.settings["baseline"] == "unk"
    # the baseline is the unknown token at every position: its score is the model's on those ids
    unk = torch.full_like(tm.encode(PROMPT), tm.tokenizer.unk_token_id)
    assert math.isclose(r.baseline_score, float(_logp(tm, unk)[0, -1, tm.token_id("2")]), rel_tol=1e-4)


def test_continuation_target_attributes_its_sequence_log_probability(tm):
    ids = tm.encode(PROMPT)
    r = TokenAttributor(tm, method="input_x_gradient").attribute(PROMPT, "2 ; k3")
    cont = [tm.token_id(w) for w in ("2", ";", "k3")]
    assert r.target_kind == "continuation" and "sequence log-probability" in r.note
    assert r.target_ids == tuple(cont) and r.n_prompt == ids.shape[1]
    assert len(r.tokens) == ids.shape[1] + 2  # the prompt and the continuation but its last token
    full = torch.cat([ids, torch.tensor([cont])], dim=1)
    lp = _logp(tm, full)[0]
    P = ids.shape[1]
    want = sum(float(lp[P - 1 + j, t]) for j, t in enumerate(cont))
    assert math.isclose(r.target_score, want, rel_tol=1e-5)
    # the same through ids
    r2 = TokenAttributor(tm, method="input_x_gradient").attribute(ids, torch.tensor(cont))
    torch.testing.assert_close(r2.scores, r.scores)


def test_contrastive_target_is_the_log_probability_difference(tm):
    ids = tm.encode(PROMPT)
    a, b = tm.token_id("2"), tm.token_id("7")
    r = TokenAttributor(tm, method="saliency").attribute(PROMPT, "2", foil="7")
    lp = _logp(tm, ids)[0, -1]
    assert r.target_kind == "contrast" and r.foil_id == b and r.foil_token == "7"
    assert math.isclose(r.target_score, float(lp[a] - lp[b]), rel_tol=1e-5, abs_tol=1e-6)
    _, g = _grad_at_embedding(tm, ids, lambda out: out[0, -1, a] - out[0, -1, b])  # logit difference: same gradient
    torch.testing.assert_close(r.scores, g.norm(dim=-1), rtol=1e-4, atol=1e-6)
    with pytest.raises(NotOneToken):
        TokenAttributor(tm, method="saliency").attribute(PROMPT, "2", foil="7 ;")
    with pytest.raises(ConfigError):
        TokenAttributor(tm, method="saliency").attribute(PROMPT, "2", foil="2")


def test_occlusion_and_leave_one_out_are_score_drops(tm):
    ids = tm.encode(PROMPT)
    tok = tm.token_id("2")
    base = float(_logp(tm, ids)[0, -1, tok])
    occ = TokenAttributor(tm, method="occlusion").attribute(PROMPT, "2")
    loo = TokenAttributor(tm, method="leave_one_out").attribute(PROMPT, "2")
    unk = tm.tokenizer.unk_token_id
    for i in (0, 3, ids.shape[1] - 1):
        rep = ids.clone()
        rep[0, i] = unk
        assert math.isclose(float(occ.scores[i]), base - float(_logp(tm, rep)[0, -1, tok]), abs_tol=1e-5)
        deleted = torch.cat([ids[:, :i], ids[:, i + 1 :]], dim=1)
        assert math.isclose(float(loo.scores[i]), base - float(_logp(tm, deleted)[0, -1, tok]), abs_tol=1e-5)
    assert occ.raw is None and loo.delta is None


def test_leave_one_out_leaves_the_continuation_out(tm):
    r = TokenAttributor(tm, method="leave_one_out").attribute(PROMPT, "2 ;")
    assert torch.isnan(r.scores[r.n_prompt :]).all() and torch.isfinite(r.scores[: r.n_prompt]).all()


def test_kernel_shap_over_tokens_is_efficient_and_over_words_groups(tm):
    ks = TokenAttributor(tm, method="kernel_shap", n_samples=600).attribute(PROMPT, "2")
    base = ks.extras["base_value"]
    assert abs(float(ks.scores.sum()) - (ks.target_score - base)) < 1e-4
    ids = tm.encode(PROMPT)
    groups = word_groups(tm, ids)
    assert groups.tolist() == list(range(ids.shape[1]))  # one word one token here


def test_word_groups_follow_leading_spaces():
    class Tok:
        all_special_ids = [0]
        pieces = {0: "<s>", 1: "The", 2: " cap", 3: "ital", 4: " of", 5: " France"}

        def decode(self, ids, skip_special_tokens=False):
            return "".join(self.pieces[i] for i in ids)

    class Fake:
        tokenizer = Tok()

        def tokens(self, ids):
            return [Tok.pieces[i] for i in ids]

    assert word_groups(Fake(), torch.tensor([0, 1, 2, 3, 4, 5])).tolist() == [0, 1, 2, 2, 3, 4]


def test_result_saves_with_its_tokens_and_renders(tm, tmp_path):
    r = attribute_tokens(tm, PROMPT, "2", method="integrated_gradients", steps=16)
    back = TokenAttribution.load(r.save(tmp_path / "r.safetensors"))
    assert back.tokens == r.tokens and back.target_ids == r.target_ids
    torch.testing.assert_close(back.scores, r.scores)
    assert back.delta == r.delta and back.raw is not None
    html = r.to_html()
    assert "integrated_gradients" in html
    fig = r.plot()
    assert fig is not None
    assert "TokenAttribution" in repr(r) and r.top(2)[0][1] in r.tokens


def test_model_is_left_as_it_was(tm):
    model = tm.model
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    for method in ("saliency", "integrated_gradients", "occlusion", "leave_one_out"):
        TokenAttributor(tm, method=method, steps=8).attribute(PROMPT)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks


def test_bad_settings_and_inputs(tm):
    with pytest.raises(ConfigError, match="unknown token attribution method"):
        TokenAttributor(tm, method="gradcam").attribute(PROMPT)
    with pytest.raises(ConfigError, match="features"):
        TokenAttributor(tm, method="kernel_shap", features="chars").attribute(PROMPT)
    with pytest.raises(ConfigError, match="encoder"):
        TokenAttributor(tiny_bert(), method="saliency").attribute(PROMPT)
    with pytest.raises(InputError):
        TokenAttributor(tm, method="saliency").attribute("   ")
    with pytest.raises(InputError, match="one prompt"):
        TokenAttributor(tm, method="saliency").attribute(torch.ones(2, 3, dtype=torch.long))


def test_convergence_warning_names_the_gap_and_delta():
    from seethrough.language.attribution import ConvergenceWarning, warn_if_not_converged

    with pytest.warns(ConvergenceWarning, match="delta -3"):
        warn_if_not_converged(-3.0, 8.0, 20)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_not_converged(0.1, 8.0, 500)  # within 5 % of the gap: quiet
