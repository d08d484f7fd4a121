"""Per-step generation attribution: one batched call equals one call per step."""

from __future__ import annotations

import pytest
import torch

from seethrough._core.errors import ConfigError
from seethrough.language.attribution import TokenAttributor
from seethrough.language.generation import GenerationAttribution, attribute_generation
from seethrough.testing.language import tiny_bert, tiny_llama

PROMPT = "k3 = 7 k1 = 2 ; k1 ->"


@pytest.fixture(scope="module")
def tm():
    return tiny_llama(seed=1)


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_each_row_equals_the_attribution_of_that_step(tm, method):
    n = 4
    r = attribute_generation(tm, PROMPT, n, method=method, steps=16)
    ids = tm.encode(PROMPT)
    P = ids.shape[1]
    full = tm.generate(ids, n)
    assert r.ids.tolist() == full[0].tolist() and r.n_prompt == P
    assert r.matrix.shape == (n, P + n - 1) and len(r.generated) == n
    for j in range(n):
        prefix = full[:, : P + j]
        one = TokenAttributor(tm, method=method, steps=16).attribute(prefix, int(full[0, P + j]))
        torch.testing.assert_close(r.matrix[j, : P + j], one.scores, rtol=1e-4, atol=1e-6)
        assert torch.isnan(r.matrix[j, P + j :]).all()  # above the causal diagonal
        assert abs(float(r.probabilities[j].log()) - one.target_score) < 1e-5
        if method == "integrated_gradients":
            assert r.delta is not None and abs(float(r.delta[j]) - one.delta) < 1e-4
    assert (r.delta is not None) == (method == "integrated_gradients")


def test_teacher_forced_continuation_and_views(tm, tmp_path):
    g = torch.tensor([tm.token_id(w) for w in ("2", ";", "k1")])
    r = attribute_generation(tm, PROMPT, method="input_x_gradient", generated=g, keep_raw=True)
    assert r.generated == ("2", ";", "k1") and r.settings["teacher_forced"]
    assert r.raw is not None and r.raw.shape[:2] == r.matrix.shape
    back = GenerationAttribution.load(r.save(tmp_path / "g.safetensors"))
    assert back.tokens == r.tokens
    torch.testing.assert_close(back.matrix, r.matrix, equal_nan=True)
    assert "generated token" in r.to_html() or "<table" in r.to_html()
    assert r.plot() is not None and "GenerationAttribution" in repr(r)


def test_refusals(tm):
    with pytest.raises(ConfigError):
        attribute_generation(tm, PROMPT, 3, method="occlusion")
    with pytest.raises(ConfigError):
        attribute_generation(tm, PROMPT, 0)
    with pytest.raises(ConfigError, match="encoder"):
        attribute_generation(tiny_bert(), PROMPT, 2)
