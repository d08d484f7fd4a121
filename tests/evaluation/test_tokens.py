"""ERASER comprehensiveness and sufficiency on token ids, against a model whose evidence is known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError
from seethrough._core.targets import TokenAt
from seethrough.evaluation.tokens import comprehensiveness, sufficiency

V = 6


class BagLM(nn.Module):
    """Logits at position t: the sum of the embeddings of tokens 0..t (a causal bag of words).
    Token 1 pushes the target (token 5) up by 4, token 2 by 1, the others nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, V)
        with torch.no_grad():
            self.emb.weight.zero_()
            self.emb.weight[1, 5] = 4.0
            self.emb.weight[2, 5] = 1.0

    def forward(self, ids):
        return self.emb(ids).cumsum(dim=1)


def p5(ids):
    with torch.no_grad():
        return float(BagLM().eval()(ids)[0, -1].softmax(-1)[5])


IDS = torch.tensor([[0, 1, 3, 2, 4, 0, 3, 4, 0, 3]])
GOOD = torch.tensor([[0, 4, 0, 1, 0, 0, 0, 0, 0, 0]], dtype=torch.float)  # the truth: 1 then 2
BAD = -GOOD


def test_comprehensiveness_by_deletion_matches_a_direct_computation():
    model = BagLM().eval()
    r = comprehensiveness(model, IDS, GOOD, target=5)
    clean = p5(IDS)
    # bins 1, 5, 10 %: ceil -> 1 token (the 1); 20 %: 2 tokens (1 and 2); 50 %: 5 tokens
    no1 = p5(IDS[:, [0, 2, 3, 4, 5, 6, 7, 8, 9]])
    no12 = p5(IDS[:, [0, 2, 4, 5, 6, 7, 8, 9]])
    assert r.extras["counts"].tolist() == [[1, 1, 1, 2, 5]]
    diffs = r.curves["differences"][0].tolist()
    for got, want in zip(diffs, [clean - no1] * 3 + [clean - no12]):
        assert math.isclose(got, want, rel_tol=1e-6)
    assert r.higher_is_better and r.settings["mode"] == "deletion"
    assert math.isclose(float(r.values[0]), sum(diffs) / 5, rel_tol=1e-9)


def test_a_faithful_map_beats_its_reverse():
    model = BagLM().eval()
    good_c, bad_c = comprehensiveness(model, IDS, GOOD, target=5), comprehensiveness(model, IDS, BAD, target=5)
    good_s, bad_s = sufficiency(model, IDS, GOOD, target=5), sufficiency(model, IDS, BAD, target=5)
    assert good_c.mean > bad_c.mean + 0.1
    assert good_s.mean < bad_s.mean - 0.1
    assert not good_s.higher_is_better


def test_replacement_keeps_positions_and_keep_protects_tokens():
    model = BagLM().eval()
    r = comprehensiveness(model, IDS, GOOD, target=5, mode="replacement", replacement=0, bins=(10,))
    rep = IDS.clone()
    rep[0, 1] = 0
    assert math.isclose(float(r.values[0]), p5(IDS) - p5(rep), rel_tol=1e-6)
    keep = torch.zeros(10, dtype=torch.bool)
    keep[1] = True  # the best token may not be removed: the next one (2) goes first
    k = comprehensiveness(model, IDS, GOOD, target=5, mode="replacement", bins=(10,), keep=keep)
    rep = IDS.clone()
    rep[0, 3] = 0
    assert math.isclose(float(k.values[0]), p5(IDS) - p5(rep), rel_tol=1e-6)
    s = sufficiency(model, IDS, GOOD, target=5, mode="replacement", bins=(10,), keep=keep)
    only = torch.zeros_like(IDS)
    only[0, 1] = 1
    only[0, 3] = 2  # the protected token stays, with the top-1 of the others
    assert math.isclose(float(s.values[0]), p5(IDS) - p5(only), rel_tol=1e-6)


def test_target_forms_and_batches():
    model = BagLM().eval()
    ids = torch.cat([IDS, IDS.flip(1)])
    maps = torch.cat([GOOD, GOOD.flip(1)])
    a = comprehensiveness(model, ids, maps, target=TokenAt(-1, 5, output="softmax"))
    b = comprehensiveness(model, ids, maps, target=5)
    torch.testing.assert_close(a.values, b.values)
    assert a.values.shape == (2,)
    c = comprehensiveness(model, ids, maps)  # the predicted token: 5 here
    torch.testing.assert_close(c.values, b.values)


def test_refusals():
    model = BagLM().eval()
    with pytest.raises(InputError):
        comprehensiveness(model, IDS.float(), GOOD)
    with pytest.raises(InputError):
        comprehensiveness(model, IDS, GOOD[:, :5])
    with pytest.raises(ConfigError):
        comprehensiveness(model, IDS, GOOD, bins=(0,))
    with pytest.raises(ConfigError):
        sufficiency(model, IDS, GOOD, mode="mask")
