"""Logit lens: equal to a direct read-out of ``output_hidden_states``; targets; errors; saving."""

from __future__ import annotations

import pytest
import torch

from seethrough._core.errors import ConfigError, InputError
from seethrough.language.lens import LogitLens, logit_lens
from seethrough.language.model import NotOneToken
from seethrough.testing.language import tiny_bert, tiny_llama

PROMPT = "k1 = 2 k3 = 4 k5 = 6 ; k3 ->"


@pytest.fixture(scope="module")
def tm():
    tm = tiny_llama(seed=1, layers=3)
    with torch.no_grad():  # larger weights than the initialiser's: predictions that differ by layer
        for p in tm.model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return tm


def _direct(tm, ids):
    """Probabilities (L + 1, T, V) from output_hidden_states, read out by hand: the last
    hidden state is already through the final norm, the others are not."""
    with torch.no_grad():
        out = tm.model(ids, output_hidden_states=True)
        hs = out.hidden_states
        norm, head = tm.model.model.norm, tm.model.lm_head
        rows = [head(norm(h[0])) for h in hs[:-1]] + [head(hs[-1][0])]
    return torch.softmax(torch.stack(rows).float(), -1), out.logits[0]


def test_lens_equals_output_hidden_states(tm):
    ids = tm.encode(PROMPT)
    r = logit_lens(tm, PROMPT)
    P, logits = _direct(tm, ids)
    assert r.layers == ("embed", "0", "1", "2")
    assert r.target == int(logits[-1].argmax())
    torch.testing.assert_close(r.target_probs, P[:, :, r.target], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(r.top_probs, P.max(-1).values, atol=1e-6, rtol=1e-5)
    assert torch.equal(r.top_ids, P.argmax(-1))
    # the last layer is the model's own output, exactly
    torch.testing.assert_close(r.target_probs[-1], torch.softmax(logits.float(), -1)[:, r.target], atol=1e-7, rtol=0)
    ranks = (P > P[:, :, r.target : r.target + 1]).sum(-1)
    assert torch.equal(r.target_ranks, ranks)
    assert int(r.rank[-1]) == 0
    assert r.top_tokens[-1][-1] == r.target_token
    # the layers really differ (the check above could not pass by a constant read-out)
    assert not torch.allclose(r.target_probs[0], r.target_probs[-1], atol=1e-3)


def test_lens_target_and_position(tm):
    r = logit_lens(tm, PROMPT, target="4", position=3)
    ids = tm.encode(PROMPT)
    P, _ = _direct(tm, ids)
    tid = tm.token_id("4")
    assert r.target == tid and r.position == 3
    torch.testing.assert_close(r.prob, P[:, 3, tid], atol=1e-6, rtol=1e-5)
    with pytest.raises(NotOneToken):
        logit_lens(tm, PROMPT, target="4 5")
    with pytest.raises(InputError):
        logit_lens(tm, PROMPT, position=99)


def test_lens_refuses_an_encoder():
    with pytest.raises(ConfigError, match="encoder"):
        logit_lens(tiny_bert(), "k1 = 2")


def test_lens_saves_with_tokens_and_draws(tm, tmp_path):
    r = logit_lens(tm, PROMPT)
    back = LogitLens.load(r.save(tmp_path / "lens.safetensors"))
    assert back.tokens == r.tokens and back.top_tokens == r.top_tokens
    assert torch.equal(back.target_probs, r.target_probs) and torch.equal(back.ids, r.ids)
    html = r.to_html()
    assert "logit lens" in html and "top-1" in html
    r.plot()
    r.plot(what="top")
