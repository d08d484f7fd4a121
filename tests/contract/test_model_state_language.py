"""Contract for the language family: every operation that runs a language model (each method
of the token registry, contrastive and continuation targets, the generation step by step,
AtMan, attention maps, rollout, ALTI, the logit lens, causal tracing, sentence similarity,
ERASER on token ids) leaves no hook, the train/eval and ``requires_grad`` flags, parameters,
buffers, ``.grad`` and the model's attention implementation as they were, on success and on
deliberate failures (an empty prompt, a foil of several tokens, an unknown method, a bad
factor, a counterfactual of another length, an encoder asked to generate).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _model_state import assert_unchanged, freeze_some, snapshot

import seethrough as st
from seethrough.evaluation.tokens import comprehensiveness, sufficiency
from seethrough.language import EmptyPrompt, EncoderCannotGenerate, NotOneToken
from seethrough.language._attention import attention_scope
from seethrough.language.atman import atman
from seethrough.language.attention import alti, attention_maps, attention_rollout
from seethrough.language.generation import attribute_generation
from seethrough.language.lens import logit_lens
from seethrough.language.patching import causal_trace
from seethrough.language.registry import TEXT_METHODS, explain_tokens
from seethrough.language.similarity import SimilarityExplanation
from seethrough.testing.language import tiny_bert, tiny_llama

PROMPT = "k3 = 7 ; k1 = 2 ; k1 ->"
LIGHT = {"integrated_gradients": {"steps": 4}, "kernel_shap": {"n_samples": 16}}


def _method(name):
    return lambda tm: explain_tokens(tm, PROMPT, "2", method=name, **LIGHT.get(name, {}))


def _eraser(metric):
    def run(tm):
        ids = tm.encode(PROMPT)
        maps = torch.arange(ids.shape[1], dtype=torch.float32)[None]
        return metric(tm.model, ids, maps, target=tm.token_id("2"))

    return run


def _bad_key_scale(tm):
    """An error raised inside the attention function, while the model runs with it."""
    with attention_scope(tm, key_scale=torch.ones(1, 2)):
        tm.logits(tm.encode(PROMPT))


#: operation -> (function of the TextModel, expected exception or None)
CAUSAL = {
    **{f"method_{n}": (_method(n), None) for n in TEXT_METHODS},
    "contrastive": (lambda tm: explain_tokens(tm, PROMPT, "2", method="saliency", foil="7"), None),
    "continuation": (lambda tm: explain_tokens(tm, PROMPT, "2 ; k3", method="input_x_gradient"), None),
    "generation": (lambda tm: attribute_generation(tm, PROMPT, 3, method="saliency"), None),
    "generation_ig": (lambda tm: attribute_generation(tm, PROMPT, 2, method="integrated_gradients", steps=4), None),
    "atman_conceptual": (lambda tm: atman(tm, PROMPT, "2", conceptual=0.7), None),
    "attention_maps": (lambda tm: attention_maps(tm, PROMPT), None),
    "rollout": (lambda tm: attention_rollout(tm, PROMPT), None),
    "alti": (lambda tm: alti(tm, PROMPT), None),
    "lens": (lambda tm: logit_lens(tm, PROMPT, target="2"), None),
    "patch_noise": (lambda tm: causal_trace(tm, PROMPT, "2", corrupt=[3], samples=2), None),
    "patch_counterfactual": (lambda tm: causal_trace(tm, PROMPT, "2", counterfactual="k3 = 7 ; k1 = 5 ; k1 ->"), None),
    "comprehensiveness": (_eraser(comprehensiveness), None),
    "sufficiency": (_eraser(sufficiency), None),
    "generate": (lambda tm: tm.generate(PROMPT, 3), None),
    # failures
    "empty_prompt": (lambda tm: explain_tokens(tm, "  ", method="saliency"), EmptyPrompt),
    "foil_of_two_tokens": (lambda tm: explain_tokens(tm, PROMPT, "2", method="saliency", foil="7 ;"), NotOneToken),
    "unknown_method": (lambda tm: explain_tokens(tm, PROMPT, method="saliencyy"), st.ConfigError),
    "atman_bad_factor": (lambda tm: atman(tm, PROMPT, "2", factor=2.0), st.ConfigError),
    "patch_counterfactual_length": (
        lambda tm: causal_trace(tm, PROMPT, "2", counterfactual="k3 = 7 ; k1 ->"),
        st.SeethroughError,
    ),
    "lens_bad_position": (lambda tm: logit_lens(tm, PROMPT, position=99), st.InputError),
    "error_inside_attention": (_bad_key_scale, st.ConfigError),
}

ENCODER = {
    "similarity": (lambda tm: SimilarityExplanation(tm, steps=4).attribute("k1 = 2", "k1 = 3"), None),
    "encoder_alti": (lambda tm: alti(tm, "k1 = 2 ; k3"), None),
    "encoder_rollout": (lambda tm: attention_rollout(tm, "k1 = 2 ; k3"), None),
    "encoder_generate": (lambda tm: tm.generate("k1 = 2", 2), EncoderCannotGenerate),
    "similarity_empty": (lambda tm: SimilarityExplanation(tm, steps=4).attribute("", "k1"), st.InputError),
}


def _run(tm, mode, grads, fn, expected):
    tm.model.train(mode == "train")
    if grads == "mixed":
        freeze_some(tm.model)
    snap = snapshot(tm.model)
    attn = tm.model.config._attn_implementation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # train-mode warnings are tested elsewhere
        if expected is None:
            fn(tm)
        else:
            with pytest.raises(expected):
                fn(tm)
    assert_unchanged(tm.model, snap)
    assert tm.model.config._attn_implementation == attn


@pytest.mark.parametrize("grads", ["all", "mixed"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("operation", list(CAUSAL))
def test_language_operation_leaves_the_model_as_it_was(operation, mode, grads):
    _run(tiny_llama(), mode, grads, *CAUSAL[operation])


@pytest.mark.parametrize("grads", ["all", "mixed"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("operation", list(ENCODER))
def test_encoder_operation_leaves_the_model_as_it_was(operation, mode, grads):
    _run(tiny_bert(), mode, grads, *ENCODER[operation])
