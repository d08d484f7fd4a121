"""Integer token ids (B, T) as inputs: attribution at the embedding layer's output."""

from __future__ import annotations

import pytest
import torch

import seethrough as st
from seethrough._core.substitution import layer_output, substitute_output
from seethrough.testing import TinyEncoder, TinyLM, seeded

captum_attr = pytest.importorskip("captum.attr")

pytestmark = [
    pytest.mark.filterwarnings("ignore::seethrough.ZeroAttributionWarning"),
]


@pytest.fixture
def lm():
    return seeded(TinyLM)


@pytest.fixture
def ids():
    return torch.randint(1, 16, (3, 7), generator=torch.Generator().manual_seed(0))


def embedding_grad(model, ids, score_fn):
    """Reference: the embedding output e and d sum(score_fn(model(ids) with e)) / de, by plain autograd."""
    e = model.embed(ids).detach().requires_grad_(True)
    with substitute_output(model.embed, e):
        (g,) = torch.autograd.grad(score_fn(model(ids)).sum(), e)
    return e.detach(), g


def last_token_logp(token):
    return lambda out: out.log_softmax(-1)[:, -1, token]


# -- gradient methods at the embedding ------------------------------------------------------------


def test_saliency_and_input_x_gradient_at_embedding(lm, ids):
    e, g = embedding_grad(lm, ids, last_token_logp(5))
    target = st.TokenAt(-1, 5)
    sal = st.Saliency(lm, abs=False, layer="embed").attribute(ids, target=target)
    assert sal.layer == "embed" and sal.attributions.shape == (3, 7, 16)
    torch.testing.assert_close(sal.attributions, g, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(st.Saliency(lm, layer=lm.embed).attribute(ids, target=target).attributions, g.abs())
    ixg = st.InputXGradient(lm, layer="embed").attribute(ids, target=target)
    torch.testing.assert_close(ixg.attributions, e * g, rtol=1e-5, atol=1e-7)
    lga = st.LayerGradientXActivation(lm, layer="embed").attribute(ids, target=target)
    torch.testing.assert_close(lga.attributions, ixg.attributions, rtol=1e-5, atol=1e-7)
    assert st.Saliency(lm, layer="embed").settings() == {"abs": True, "layer": "embed"}


def test_layer_gradient_x_activation_at_a_later_layer_takes_token_ids(lm, ids):
    expl = st.LayerGradientXActivation(lm, layer="blocks.0").attribute(ids, target=st.TokenAt(-1, 2))
    assert expl.attributions.shape == (3, 7, 16) and expl.layer == "blocks.0"


def test_guided_backprop_at_embedding_runs(lm, ids):
    expl = st.GuidedBackprop(lm, layer="embed").attribute(ids, target=st.TokenAt(-1, 5))
    assert expl.attributions.shape == (3, 7, 16)


def test_smoothgrad_at_embedding_without_noise_is_the_gradient(lm, ids):
    target = st.TokenAt(-1, 5)
    plain = st.InputXGradient(lm, layer="embed").attribute(ids, target=target).attributions
    sg = st.SmoothGrad(lm, method=st.InputXGradient(lm, layer="embed"), n_samples=3, noise_level=0.0)
    expl = sg.attribute(ids, target=target)
    assert expl.layer == "embed"
    torch.testing.assert_close(expl.attributions, plain, rtol=1e-5, atol=1e-7)
    noisy = st.SmoothGrad(lm, method=st.Saliency(lm, layer="embed"), n_samples=4).attribute(ids, target=target)
    assert noisy.attributions.shape == (3, 7, 16) and bool(torch.isfinite(noisy.attributions).all())


# -- integrated gradients at the embedding ------------------------------------------------------


@pytest.mark.parametrize("baseline", ["zeros", "pad_ids"])
def test_integrated_gradients_at_embedding_is_complete(lm, ids, baseline):
    base = torch.zeros_like(ids) if baseline == "pad_ids" else "zeros"
    target = st.TokenAt(-1, 5)
    expl = st.IntegratedGradients(lm, layer="embed", steps=64, baseline=base).attribute(ids, target=target)
    assert expl.layer == "embed" and expl.attributions.shape == (3, 7, 16)
    out = lm(ids).detach()
    torch.testing.assert_close(expl.scores, out.log_softmax(-1)[:, -1, 5])
    if baseline == "pad_ids":
        expected_base = lm(torch.zeros_like(ids)).detach().log_softmax(-1)[:, -1, 5]
    else:
        with substitute_output(lm.embed, torch.zeros(3, 7, 16)):
            expected_base = lm(ids).detach().log_softmax(-1)[:, -1, 5]
    torch.testing.assert_close(expl.extras["baseline_scores"], expected_base)
    gap = expl.scores - expected_base
    assert float(gap.abs().max()) > 0.1  # a real gap, so completeness is not trivially met
    # completeness: the attributions sum to F(x) - F(baseline)
    torch.testing.assert_close(expl.attributions.sum(dim=(1, 2)), gap, rtol=0, atol=1e-4)
    assert float(expl.extras["delta"].abs().max()) < 1e-4


def test_integrated_gradients_at_embedding_equals_captum_layer_ig(lm, ids):
    """Captum's LayerIntegratedGradients on the same tiny LM, baseline token ids 0 (a "pad"
    token), the same Gauss-Legendre rule and steps: equal within 1e-5 (float32)."""
    base = torch.zeros_like(ids)
    ours = st.IntegratedGradients(lm, layer="embed", steps=32, baseline=base)
    got = ours.attribute(ids, target=st.TokenAt(-1, 5)).attributions
    lig = captum_attr.LayerIntegratedGradients(lambda x: lm(x).log_softmax(-1)[:, -1], lm.embed)
    expected = lig.attribute(ids, baselines=base, target=5, n_steps=32, method="gausslegendre")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_integrated_gradients_on_encoder_equals_captum_with_class_targets():
    model = seeded(TinyEncoder)
    ids = torch.randint(0, 16, (4, 5), generator=torch.Generator().manual_seed(3))
    target = [0, 2, 1, 2]
    got = st.IntegratedGradients(model, layer="embed", steps=20, baseline=torch.tensor(0)).attribute(ids, target=target)
    lig = captum_attr.LayerIntegratedGradients(model, model.embed)
    expected = lig.attribute(ids, baselines=torch.zeros_like(ids), target=target, n_steps=20, method="gausslegendre")
    torch.testing.assert_close(got.attributions, expected, rtol=1e-4, atol=1e-5)
    assert got.target_indices.tolist() == target


def test_integrated_gradients_at_embedding_does_not_depend_on_batching(lm, ids):
    target = st.SequenceLogProb(ids[:, 4:])
    one = st.IntegratedGradients(lm, layer="embed", steps=8).attribute(ids, target=target)
    chunked = st.IntegratedGradients(lm, layer="embed", steps=8, batching=5).attribute(ids, target=target)
    torch.testing.assert_close(chunked.attributions, one.attributions, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked.extras["delta"], one.extras["delta"], rtol=0, atol=1e-5)


def test_layer_output_reads_the_embedding(lm, ids):
    torch.testing.assert_close(layer_output(lm, ids, lm.embed), lm.embed(ids).detach())


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [st.Saliency, st.IntegratedGradients, st.Occlusion, st.FeatureAblation])
def test_input_methods_on_token_ids_say_to_pass_layer(lm, ids, method):
    with pytest.raises(st.InputError, match=r"torch.int64.*floating.*layer=.*embed"):
        method(lm).attribute(ids, target=st.TokenAt(-1, 0))


@pytest.mark.parametrize(
    "bad,words",
    [
        (torch.full((2, 3), 16), ("token id 16", "'embed'", "16 entries", "0..15")),
        (torch.full((2, 3), -1), ("must be >= 0", "-1")),
        (torch.zeros(2, 3, 1, dtype=torch.long), ("(B, T)", "(2, 3, 1)")),
        (torch.zeros(3, dtype=torch.long), ("(B, T)", "ids.unsqueeze(0)")),
        (torch.zeros(0, 3, dtype=torch.long), ("(B, T)", "at least one sample")),
    ],
)
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "layer_gradient_x_activation"])
def test_bad_token_ids(lm, bad, words, method):
    m = {
        "saliency": st.Saliency,
        "integrated_gradients": st.IntegratedGradients,
        "layer_gradient_x_activation": st.LayerGradientXActivation,
    }[method](lm, layer="embed")
    with pytest.raises(st.InputError) as info:
        m.attribute(bad, target=st.TokenAt(-1, 0))
    for w in words:
        assert w in str(info.value)


def test_bool_inputs_are_refused_even_with_a_layer(lm):
    with pytest.raises(st.InputError, match="floating"):
        st.Saliency(lm, layer="embed").attribute(torch.zeros(2, 3, dtype=torch.bool), target=st.TokenAt(-1, 0))


def test_baseline_token_ids_out_of_range(lm, ids):
    ig = st.IntegratedGradients(lm, layer="embed", steps=4, baseline=torch.full_like(ids, 99))
    with pytest.raises(st.InputError, match="baseline token ids|token id 99"):
        ig.attribute(ids, target=st.TokenAt(-1, 0))


def test_unknown_layer_lists_close_names(lm, ids):
    with pytest.raises(st.LayerError, match="embed"):
        st.Saliency(lm, layer="embedd").attribute(ids, target=st.TokenAt(-1, 0))


def test_too_long_sequence_is_a_forward_error(lm):
    long = torch.zeros(1, 40, dtype=torch.long)
    with pytest.raises(st.InputError, match="forward pass failed"):
        st.Saliency(lm, layer="embed").attribute(long, target=st.TokenAt(-1, 0))
