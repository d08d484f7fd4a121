"""Parity with the peers on SmolLM2: saliency, input x gradient and integrated gradients equal
Captum's ``LLMGradientAttribution`` and Inseq's for the same prompt, target and steps.

Tolerance: the largest difference over the tokens (and hidden units, for the raw values at the
embedding) relative to the largest |value|, below 1e-3. Measured on this machine (float32, CPU,
SmolLM2-135M, 32 integration steps): input x gradient vs Captum 4.0e-5, IG vs Captum 2.2e-4;
vs Inseq: saliency 1.1e-4 (raw) / 4.8e-5 (per token), input x gradient 1.3e-4 / 4.0e-5, IG
4.4e-4 / 2.2e-4; the per-step generation matrix (saliency, teacher-forced) vs Inseq 7.8e-7.
The differences are float32 summation order: the peers compute the logits of every position,
seethrough only those a target reads (transformers' ``logits_to_keep``), and the unembedding's
matrix product is blocked differently; with all positions' logits the values agreed to 1.4e-7.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seethrough.language.attribution import TokenAttributor
from seethrough.language.generation import attribute_generation
from seethrough.language.model import TextModel
from seethrough.testing.language import inseq_or_skip

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
TARGET = " Paris"
STEPS = 32
#: relative to the largest |value| over the tokens
RTOL = 1e-3


@pytest.fixture(scope="module")
def smol() -> TextModel:
    try:
        import seethrough.app.texts  # noqa: F401  (the loader smollm2_or_skip uses)
        from seethrough.testing.language import smollm2_or_skip

        return smollm2_or_skip()
    except ImportError:
        cache = Path("/tmp/smol_cache")
        if not (cache / "config.json").exists():
            pytest.skip("SmolLM2 is not available")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(str(cache)).eval()
        return TextModel(model, AutoTokenizer.from_pretrained(str(cache)), name="smollm2")


def close(got: torch.Tensor, want: torch.Tensor, rtol: float = RTOL) -> float:
    got, want = got.double().reshape(-1), want.double().reshape(-1)
    err = float((got - want).abs().max() / want.abs().max())
    assert err < rtol, f"relative error {err:.2e} (values {got.tolist()} vs {want.tolist()})"
    return err


def _captum(smol: TextModel, method: str):
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    emb = smol.model.get_input_embeddings()
    base = LayerIntegratedGradients(smol.model, emb) if method == "ig" else LayerGradientXActivation(smol.model, emb)
    llm = LLMGradientAttribution(base, smol.tokenizer)
    inp = TextTokenInput(PROMPT, smol.tokenizer, baselines=smol.tokenizer.unk_token_id)
    kw = {"n_steps": STEPS, "return_convergence_delta": False} if method == "ig" else {}
    return llm.attribute(inp, target=TARGET, **kw)


def test_input_x_gradient_equals_captum(smol):
    ours = TokenAttributor(smol, method="input_x_gradient").attribute(PROMPT, TARGET)
    theirs = _captum(smol, "ixg")
    close(ours.scores, theirs.token_attr[0])


def test_integrated_gradients_equals_captum(smol):
    ours = TokenAttributor(smol, method="integrated_gradients", steps=STEPS).attribute(PROMPT, TARGET)
    theirs = _captum(smol, "ig")
    close(ours.scores, theirs.token_attr[0])


def _inseq(smol: TextModel, method: str, **kw):
    inseq = inseq_or_skip()
    model = inseq.load_model(smol.model, method, tokenizer=smol.tokenizer)
    out = model.attribute(
        PROMPT,
        PROMPT + TARGET,
        attributed_fn="probability",
        attributed_fn_args={"logprob": True},
        show_progress=False,
        **kw,
    )
    return out.sequence_attributions[0]


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_equals_inseq(smol, method):
    kw = {"n_steps": STEPS} if method == "integrated_gradients" else {}
    seq = _inseq(smol, method, **kw)
    raw = seq.target_attributions[:-1, 0].float()  # (T, D) for the one generated token
    ours = TokenAttributor(smol, method=method, steps=STEPS).attribute(PROMPT, TARGET)
    assert ours.raw is not None
    close(ours.raw, raw)
    per = raw.norm(dim=-1) if method == "saliency" else raw.sum(dim=-1)
    close(ours.scores, per)
    if method == "integrated_gradients" and seq.step_scores and "deltas" in seq.step_scores:
        assert abs(float(seq.step_scores["deltas"][0]) - ours.delta) < 1e-3


def test_generation_matrix_equals_inseq_per_step(smol):
    # a teacher-forced continuation, so that both explain the same tokens (a greedy generation
    # ending in "\n\n" would be re-tokenized differently from text)
    cont = " Paris, and the capital of"
    g = smol.continuation_ids(cont)
    n = int(g.numel())
    ours = attribute_generation(smol, PROMPT, method="saliency", generated=g)
    inseq = inseq_or_skip()
    model = inseq.load_model(smol.model, "saliency", tokenizer=smol.tokenizer)
    seq = model.attribute(
        PROMPT, PROMPT + cont, attributed_fn="probability", attributed_fn_args={"logprob": True}, show_progress=False
    ).sequence_attributions[0]
    assert [t.id for t in seq.target][-n:] == g.tolist()
    T = ours.matrix.shape[1]
    theirs = seq.target_attributions[:T, :n].float().norm(dim=-1).T  # (n, T); NaN above the diagonal
    mask = ~torch.isnan(ours.matrix)
    assert torch.equal(mask, ~torch.isnan(theirs))
    close(ours.matrix[mask], theirs[mask])
    probs = (
        torch.tensor([float(p) for p in seq.step_scores["probability"]]) if "probability" in seq.step_scores else None
    )
    if probs is not None:
        torch.testing.assert_close(ours.probabilities, probs, rtol=1e-4, atol=1e-6)
