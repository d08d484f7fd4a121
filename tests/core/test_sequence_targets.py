"""Targets on sequence outputs (B, T, V): TokenAt, SequenceLogProb, Predicted as the next token."""

from __future__ import annotations

import math

import pytest
import torch

import seethrough as st
from seethrough._core.targets import Predicted, SequenceLogProb, TokenAt, as_target
from seethrough.testing import TinyLM, seeded

LN5 = math.log(5.0)


def peaked(tokens_by_position: list[list[int]], vocab: int = 4) -> torch.Tensor:
    """Logits (B, T, V) where, at each position, one token has logit ln 5 and the others 0:
    that token has probability 5 / (V + 4) and every other 1 / (V + 4)."""
    B, T = len(tokens_by_position), len(tokens_by_position[0])
    out = torch.zeros(B, T, vocab, dtype=torch.float64)
    for b, row in enumerate(tokens_by_position):
        for t, tok in enumerate(row):
            out[b, t, tok] = LN5
    return out


ROWS = torch.arange(2)
OUT = peaked([[0, 1, 2], [3, 3, 1]])  # (2, 3, 4); probabilities 5/8 (the peak) and 1/8
HI, LO = math.log(5 / 8), math.log(1 / 8)


# -- TokenAt --------------------------------------------------------------------------------


def test_token_at_log_softmax_exact():
    got = TokenAt(-1, 2).score(OUT, ROWS)
    torch.testing.assert_close(got, torch.tensor([HI, LO], dtype=torch.float64))
    got = TokenAt(0, [0, 3]).score(OUT, ROWS)
    torch.testing.assert_close(got, torch.tensor([HI, HI], dtype=torch.float64))


@pytest.mark.parametrize("output,hi,lo", [("softmax", 5 / 8, 1 / 8), ("logit", LN5, 0.0)])
def test_token_at_other_outputs(output, hi, lo):
    got = TokenAt(1, [1, 0], output=output).score(OUT, ROWS)
    torch.testing.assert_close(got, torch.tensor([hi, lo], dtype=torch.float64))


def test_token_at_per_sample_positions_and_rows_follow_samples():
    t = TokenAt([2, 0], [2, 3])
    samples = torch.tensor([1, 0, 1])  # rows of expanded inputs: sample 1, 0, 1
    out = OUT[samples]
    torch.testing.assert_close(t.score(out, samples), torch.tensor([HI, HI, HI], dtype=torch.float64))
    sub = t.take([1])
    assert sub.position.tolist() == [0] and sub.token.tolist() == [3]
    assert t.per_sample and not TokenAt(-1, 2).per_sample


@pytest.mark.parametrize(
    "target,words",
    [
        (TokenAt(3, 0), ("position 3", "length 3", "-3..2")),
        (TokenAt(-4, 0), ("position -4",)),
        (TokenAt(0, 4), ("token 4", "vocabulary of 4", "0..3")),
        (TokenAt(0, -1), ("token -1",)),
    ],
)
def test_token_at_out_of_range(target, words):
    with pytest.raises(st.TargetError) as info:
        target.score(OUT, ROWS)
    for w in words:
        assert w in str(info.value)


def test_token_at_needs_a_sequence_output():
    with pytest.raises(st.TargetError, match=r"sequence output \(B, T, V\).*shape \(2, 4\)"):
        TokenAt(-1, 0).score(torch.zeros(2, 4), ROWS)


def test_token_at_bad_arguments():
    with pytest.raises(st.TargetError, match="integer"):
        TokenAt(0.5, 1)
    with pytest.raises(st.TargetError, match="output must be one of"):
        TokenAt(0, 1, output="prob")
    with pytest.raises(st.TargetError, match="3 tokens for 2 samples"):
        TokenAt(-1, [1, 2, 3]).resolve(None, None, 2)


# -- SequenceLogProb --------------------------------------------------------------------------


def test_sequence_log_prob_default_start_is_the_end_of_the_input():
    # T = 3, L = 2: tokens at positions 1, 2 are predicted by the outputs at 0, 1.
    got = SequenceLogProb([0, 1]).score(OUT, ROWS)
    torch.testing.assert_close(got, torch.tensor([HI + HI, LO + LO], dtype=torch.float64))


def test_sequence_log_prob_start_past_the_input_and_negative_start():
    # start = T - L + 1 = 2: predicted at positions 1 and 2 (the last token is not in the input)
    got = SequenceLogProb([1, 2], start=2).score(OUT, ROWS)
    torch.testing.assert_close(got, torch.tensor([HI + HI, LO + LO], dtype=torch.float64))
    got = SequenceLogProb([1], start=-1).score(OUT, ROWS)  # start 2: predicted at position 1
    torch.testing.assert_close(got, torch.tensor([HI, LO], dtype=torch.float64))


def test_sequence_log_prob_per_sample_and_mean():
    t = SequenceLogProb([[0, 1], [3, 3]], reduce="mean")
    torch.testing.assert_close(t.score(OUT, ROWS), torch.tensor([HI, HI], dtype=torch.float64))
    samples = torch.tensor([1, 1, 0])
    torch.testing.assert_close(t.score(OUT[samples], samples), torch.tensor([HI, HI, HI], dtype=torch.float64))
    assert t.per_sample and t.take([1]).tokens.tolist() == [[3, 3]]


@pytest.mark.parametrize(
    "target,words",
    [
        (SequenceLogProb([0, 1, 2]), ("3 tokens", "default start", "positions -1..1")),
        (SequenceLogProb([0], start=0), ("start=0", "position t predicts token t + 1")),
        (SequenceLogProb([0, 1], start=3), ("start=3", "positions 2..3", "0..2")),
        (SequenceLogProb([0, 9]), ("token 9", "vocabulary of 4")),
    ],
)
def test_sequence_log_prob_errors(target, words):
    with pytest.raises(st.TargetError) as info:
        target.score(OUT, ROWS)
    for w in words:
        assert w in str(info.value)


def test_sequence_log_prob_bad_arguments():
    with pytest.raises(st.TargetError, match="integer token ids"):
        SequenceLogProb([0.5])
    with pytest.raises(st.TargetError, match="L >= 1"):
        SequenceLogProb(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(st.ConfigError, match="reduce"):
        SequenceLogProb([1], reduce="max")
    with pytest.raises(st.TargetError, match="3 samples for 2"):
        SequenceLogProb([[1], [2], [3]]).resolve(None, None, 2)


# -- Predicted on sequences, and on a real (tiny) LM ---------------------------------------------


def test_predicted_on_sequence_output_is_next_token_at_last_position():
    out = OUT.clone()
    t = Predicted().resolve(None, out, 2)
    assert isinstance(t, TokenAt)
    assert t.position.tolist() == -1 and t.token.tolist() == [2, 1] and t.output == "logit"
    torch.testing.assert_close(t.score(out, ROWS), torch.tensor([LN5, LN5], dtype=torch.float64))
    assert as_target(None).resolve(None, out, 2).describe() == "TokenAt(-1, [2, 1], output='logit')"


@pytest.fixture
def lm():
    return seeded(TinyLM)


@pytest.fixture
def ids():
    return torch.randint(0, 16, (3, 6), generator=torch.Generator().manual_seed(1))


def test_scores_on_tiny_lm_match_a_direct_computation(lm, ids):
    out = lm(ids).detach()
    logp = out.log_softmax(-1)
    expl = st.Saliency(lm, layer="embed").attribute(ids, target=TokenAt(-1, 7))
    torch.testing.assert_close(expl.scores, logp[:, -1, 7])
    cont = ids[:, 3:]
    expected = sum(logp[:, 2 + j].gather(1, cont[:, j : j + 1]).squeeze(1) for j in range(3))
    expl = st.Saliency(lm, layer="embed").attribute(ids, target=SequenceLogProb(cont))
    torch.testing.assert_close(expl.scores, expected)
    expl = st.Saliency(lm, layer="embed").attribute(ids, target=None)
    assert expl.target == f"TokenAt(-1, {out[:, -1].argmax(-1).tolist()}, output='logit')"
    torch.testing.assert_close(expl.scores, out[:, -1].max(-1).values)


# -- TokenDifference ------------------------------------------------------------------------


def test_token_difference_is_the_log_probability_difference():
    from seethrough._core.targets import TokenDifference

    t = TokenDifference(-1, 2, 1)  # sample 0: 2 is the peak at the last position; sample 1: 1 is
    got = t.score(OUT, ROWS)
    torch.testing.assert_close(got, torch.tensor([HI - LO, LO - HI], dtype=torch.float64))
    logit = TokenDifference(-1, 2, 1, output="logit").score(OUT, ROWS)
    torch.testing.assert_close(logit, got)  # the normaliser cancels
    per = TokenDifference([2, 0], [2, 3], [1, 0])
    assert per.per_sample and not t.per_sample
    sub = per.take([1])
    assert sub.position.tolist() == [0] and sub.a.token.tolist() == [3] and sub.b.token.tolist() == [0]
    assert "TokenDifference" in per.describe()
