"""The token-method registry: every entry runs on a tiny Llama and gives one score per prompt
token; the method objects equal the functions they wrap; the image methods it names exist;
a foil is refused where it means nothing; an unknown name suggests the closest."""

from __future__ import annotations

import pytest
import torch

from seethrough._core.errors import ConfigError
from seethrough.attribution.registry import METHODS
from seethrough.language.atman import atman
from seethrough.language.attention import alti, attention_rollout
from seethrough.language.registry import (
    ALTI,
    TEXT_METHODS,
    AtMan,
    AttentionRollout,
    explain_tokens,
    get_text_method,
    token_scores,
)
from seethrough.testing.language import tiny_llama

PROMPT = "k3 = 7 ; k1 = 2 ; k1 ->"
LIGHT = {"integrated_gradients": {"steps": 8}, "kernel_shap": {"n_samples": 32}}


@pytest.fixture(scope="module")
def tm():
    return tiny_llama(seed=1)


@pytest.mark.parametrize("name", list(TEXT_METHODS))
def test_every_method_scores_every_prompt_token(tm, name):
    r = explain_tokens(tm, PROMPT, "2", method=name, **LIGHT.get(name, {}))
    s = token_scores(r)
    assert s.shape == (len(tm.encode(PROMPT)[0]),)
    assert torch.isfinite(s).all() and s.abs().sum() > 0


def test_a_continuation_scores_only_the_prompt(tm):
    r = explain_tokens(tm, PROMPT, "2 ; k3", method="saliency")
    assert r.target_kind == "continuation"
    assert token_scores(r).shape == (len(tm.encode(PROMPT)[0]),)
    assert len(r.tokens) > token_scores(r).shape[0]


def test_the_method_objects_equal_the_functions(tm):
    a = AtMan(tm, factor=0.5).attribute(PROMPT, "2").scores
    assert torch.equal(a, atman(tm, PROMPT, "2", factor=0.5).scores)
    r = AttentionRollout(tm, residual=0.3).attribute(PROMPT).rolled
    assert torch.equal(r, attention_rollout(tm, PROMPT, residual=0.3).rolled)
    assert torch.equal(ALTI(tm).attribute(PROMPT).rolled, alti(tm, PROMPT).rolled)


def test_the_image_methods_named_exist():
    named = [s.image_method for s in TEXT_METHODS.values() if s.image_method]
    assert named and all(n in METHODS for n in named)


def test_a_foil_is_refused_by_a_method_without_contrast(tm):
    with pytest.raises(ConfigError, match="does not take a foil"):
        explain_tokens(tm, PROMPT, "2", method="atman", foil="7")


def test_an_unknown_method_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean atman"):
        get_text_method("atmann")
