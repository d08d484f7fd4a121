"""AtMan: batched suppression equals one forward per token; factor, conceptual suppression, targets."""

from __future__ import annotations

import pytest
import torch

from seethrough._core.errors import ConfigError
from seethrough.language._attention import attention_scope
from seethrough.language.atman import AtManExplanation, atman
from seethrough.testing.language import answered, kv_lm_or_skip, tiny_bert, tiny_llama

PROMPT = "k1 = 2 k3 = 4 k1 = 6 ; k3 ->"


@pytest.fixture(scope="module")
def tm():
    tm = tiny_llama(seed=2, layers=2)
    with torch.no_grad():
        for p in tm.model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return tm


def _loop(tm, ids, tid, factor=0.9, groups=None):
    """One full forward per suppressed token, with the model's own logits."""
    T = ids.shape[1]
    with torch.no_grad():
        base = torch.log_softmax(tm.logits(ids)[0, -1].float(), -1)[tid]
        out = []
        for j in range(T):
            scale = torch.ones(1, T)
            scale[0, groups[j] if groups is not None else j] = 1 - factor
            with attention_scope(tm, record=False, key_scale=scale):
                lp = torch.log_softmax(tm.logits(ids)[0, -1].float(), -1)[tid]
            out.append(base - lp)
    return torch.stack(out)


@pytest.mark.parametrize("batching", [None, 1, 4, 64])
def test_atman_batched_equals_loop(tm, batching):
    ids = tm.encode(PROMPT)
    r = atman(tm, PROMPT, batching=batching)
    with torch.no_grad():
        tid = int(tm.logits(ids)[0, -1].argmax())
    assert r.target_ids == (tid,)
    ref = _loop(tm, ids, tid)
    torch.testing.assert_close(r.scores, ref, atol=2e-5, rtol=1e-4)
    assert float(ref.abs().max()) > 1e-3  # suppression does change the prediction
    if isinstance(batching, int):
        assert r.batch_size == batching


def test_atman_factor_zero_changes_nothing(tm):
    r = atman(tm, PROMPT, factor=0.0, batching=5)
    assert float(r.scores.abs().max()) < 1e-5


def test_atman_conceptual_suppresses_repeated_tokens_together(tm):
    ids = tm.encode(PROMPT)
    toks = tm.tokens(ids)
    k1 = [i for i, t in enumerate(toks) if t == "k1"]
    assert len(k1) == 2
    r = atman(tm, PROMPT, conceptual=0.7, batching=3)
    # identical tokens have cosine similarity 1: suppressing either suppresses both
    assert float(r.scores[k1[0]]) == pytest.approx(float(r.scores[k1[1]]), abs=1e-6)
    plain = atman(tm, PROMPT)
    assert abs(float(plain.scores[k1[0]] - plain.scores[k1[1]])) > 1e-4
    # the same as a loop that suppresses the whole group of similar embeddings
    w = tm.model.model.embed_tokens.weight.detach()
    e = torch.nn.functional.normalize(w[ids[0]], dim=-1)
    sim = (e @ e.T) > 0.7
    groups = [torch.nonzero(sim[j] | (torch.arange(len(e)) == j)).reshape(-1) for j in range(len(e))]
    ref = _loop(tm, ids, r.target_ids[0], groups=groups)
    torch.testing.assert_close(r.scores, ref, atol=2e-5, rtol=1e-4)


def test_atman_given_and_multi_token_targets(tm):
    ids = tm.encode(PROMPT)
    tid = tm.token_id("4")
    r = atman(tm, PROMPT, target="4", batching=2)
    torch.testing.assert_close(r.scores, _loop(tm, ids, tid), atol=2e-5, rtol=1e-4)
    # a continuation: the summed log-probability of its tokens, only the prompt suppressed
    r2 = atman(tm, PROMPT, target="4 ;", batching=4)
    assert r2.target_ids == (tm.token_id("4"), tm.token_id(";"))
    full = torch.cat([ids, torch.tensor([[tm.token_id("4")]])], 1)
    T = ids.shape[1]
    with torch.no_grad():
        lp = torch.log_softmax(tm.logits(full)[0].float(), -1)
        base = lp[T - 1, r2.target_ids[0]] + lp[T, r2.target_ids[1]]
        scale = torch.ones(1, T + 1)
        scale[0, 3] = 0.1
        with attention_scope(tm, record=False, key_scale=scale):
            lp = torch.log_softmax(tm.logits(full)[0].float(), -1)
        sup = lp[T - 1, r2.target_ids[0]] + lp[T, r2.target_ids[1]]
    assert r2.base_logprob == pytest.approx(float(base), abs=1e-5)
    assert float(r2.scores[3]) == pytest.approx(float(base - sup), abs=2e-5)
    assert len(r2.scores) == T


def test_atman_errors(tm):
    with pytest.raises(ConfigError, match="factor"):
        atman(tm, PROMPT, factor=1.5)
    with pytest.raises(ConfigError, match="encoder"):
        atman(tiny_bert(), "k1 = 2")


def test_atman_saves_and_draws(tm, tmp_path):
    r = atman(tm, PROMPT)
    back = AtManExplanation.load(r.save(tmp_path / "a.safetensors"))
    assert back.tokens == r.tokens and torch.equal(back.scores, r.scores) and back.target_ids == r.target_ids
    assert "AtMan" in r.to_html()
    r.plot()
    assert r.top(2)[0][2] == pytest.approx(float(r.scores.max()))


def _span(task, i):
    """The evidence positions of prompt ``i``: the support, and for key-value prompts also the
    pair's closing ``;``. kv-lm gathers each pair into that separator in its first block
    (restoring that one layer-0 state recovers the answer at p ~ 1), so its explanations
    point there: by the key and value alone AtMan's top hits 13% and tracing's 0% (measured
    on 30 prompts, seed 11, with the kv-lm of 18:26), with the separator 90% and 100%."""
    sup = set(task.support[i])
    return sup | {task.support[i][1] + 1} if task.name == "kv" else sup


def _top_hits(tm, task, explain):
    """The fraction of the answered prompts whose top-scored earlier position (the last
    token, the query itself, left out) is an evidence position (:func:`_span`); skips a task
    the model does not solve (its explanations could not point at evidence it does not use)."""
    done = answered(tm, task)
    if len(done) < 0.9 * len(task):
        pytest.skip(f"{tm.name} answers {len(done)} of {len(task)} {task.name} prompts: too few to score evidence")
    hits = 0
    for i in done:
        scores = explain(task.prompts[i], task.answers[i])
        hits += int(int(scores[:-1].argmax()) in _span(task, i))
    return hits / len(done)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kv", "copy"])
def test_atman_finds_the_evidence_on_kv_lm(name):
    from seethrough.data.text import make_text_task

    tm = kv_lm_or_skip()
    rate = _top_hits(tm, make_text_task(name, 30, seed=11), lambda p, a: atman(tm, p, a).scores)
    assert rate > 0.7, rate
