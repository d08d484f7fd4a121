"""Tests of the bundled language model kv-lm: its directory loads with plain transformers,
it answers fresh held-out prompts of both tasks, its card's numbers are reproduced, and its
attention finds the evidence that the ground truth names."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from seethrough._core.errors import ConfigError
from seethrough.data.text import VOCAB, copy_task, kv_retrieval
from seethrough.zoo import ModelInfo
from seethrough.zoo import language as zoo_language
from seethrough.zoo.train_lm import answer_accuracy, build_tokenizer, encode_task, train_lm_zoo

trained = pytest.mark.skipif(
    not (zoo_language.WEIGHTS_DIR / "kv-lm" / "config.json").is_file(),
    reason="kv-lm not trained (scripts/train_lm.py)",
)


@pytest.fixture(scope="module")
def kv_lm():
    import transformers

    d = zoo_language.model_dir("kv-lm")
    model = transformers.AutoModelForCausalLM.from_pretrained(d, local_files_only=True).eval()
    tok = transformers.AutoTokenizer.from_pretrained(d, local_files_only=True)
    return model, tok


def test_names_and_errors(tmp_path):
    assert zoo_language.available() == ["kv-lm"] and zoo_language.KIND == "language-model"
    with pytest.raises(ConfigError, match="Did you mean 'kv-lm'"):
        zoo_language.model_dir("kv-lmm")
    with pytest.raises(FileNotFoundError, match="scripts/train_lm.py"):
        zoo_language.model_dir("kv-lm", weights_dir=tmp_path)
    i = zoo_language.info("kv-lm", weights_dir=tmp_path)  # before training: a card without metrics
    assert i.kind == "language-model" and i.metrics == {}


def test_tokenizer_one_word_one_token():
    tok = build_tokenizer()
    enc = tok("k3 = 7 ; k1 = 2 ; k1 ->")["input_ids"]
    assert enc == [VOCAB.index(w) for w in "<bos> k3 = 7 ; k1 = 2 ; k1 ->".split()]
    assert tok("c 7 ; a 2 ; a")["input_ids"] == [VOCAB.index(w) for w in "<bos> c 7 ; a 2 ; a".split()]
    task = copy_task(20, seed=9)
    ids, last, answers = encode_task(task)
    for i, p in enumerate(task.prompts):
        row = tok(p)["input_ids"]
        assert ids[i, : len(row)].tolist() == row and last[i] == len(row) - 1
        assert answers[i] == VOCAB.index(task.answers[i])


@trained
def test_card_and_info():
    card = zoo_language.card("kv-lm")
    m = card["metrics"]
    assert card["kind"] == "language-model" and card["architecture"] == "LlamaForCausalLM"
    assert m["test_accuracy_kv"] >= 0.98 and m["test_accuracy_copy"] >= 0.98
    i = zoo_language.info("kv-lm")
    assert isinstance(i, ModelInfo) and i.kind == "language-model" and i.input_shape == (64,)
    assert i.metrics == m
    d = zoo_language.model_dir("kv-lm")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "card.json"} <= {
        p.name for p in d.iterdir()
    }


@trained
def test_fresh_held_out_accuracy(kv_lm):
    model, tok = kv_lm
    for task in (kv_retrieval(400, seed=424242), copy_task(400, seed=434343)):
        correct = 0
        with torch.no_grad():
            for prompt, answer, _ in task:
                ids = tok(prompt, return_tensors="pt")["input_ids"]
                correct += tok.decode([int(model(input_ids=ids).logits[0, -1].argmax())]) == answer
        assert correct / len(task) >= 0.95, task.name


@trained
def test_card_numbers_reproduced(kv_lm):
    model, _ = kv_lm
    m = zoo_language.card("kv-lm")["metrics"]
    kv = kv_retrieval(m["n_test"], seed=m["test_seed_kv"])
    cp = copy_task(m["n_test"], seed=m["test_seed_copy"])
    assert answer_accuracy(model, kv) == pytest.approx(m["test_accuracy_kv"], abs=1e-9)
    assert answer_accuracy(model, cp) == pytest.approx(m["test_accuracy_copy"], abs=1e-9)


@trained
def test_last_layer_attention_route(kv_lm):
    """Where the last block looks from the last position (measured on the shipped weights):
    on copy prompts two heads put ~0.99 of their weight on the evidence itself; on key-value
    prompts every head looks at the ``;`` right after the queried value, a position that the
    first block filled with that value (its previous token) and the key (two back). Raw
    last-layer attention therefore points next to the evidence on kv, not at it."""
    model, _ = kv_lm
    model.config._attn_implementation = "eager"
    try:
        for task, shift in ((kv_retrieval(200, seed=77), 1), (copy_task(200, seed=78), 0)):
            ids, last, _ = encode_task(task)
            with torch.no_grad():
                att = model(input_ids=ids, output_attentions=True).attentions[-1]  # (N, H, T, T)
            top = att[torch.arange(len(ids)), :, last].argmax(-1)  # (N, H)
            ev = torch.tensor(task.evidence) + shift
            hit = (top == ev[:, None]).any(-1).float().mean().item()
            assert hit >= 0.9, (task.name, hit)
    finally:
        model.config._attn_implementation = "sdpa"


@trained
def test_the_evidence_is_causal(kv_lm):
    """Replacing the evidence token by a symbol absent from the prompt makes the model answer
    that symbol: the answer is read from the evidence position and nowhere else."""
    model, _ = kv_lm
    for task, pool in (
        (kv_retrieval(200, seed=91), "0123456789"),
        (copy_task(200, seed=92), "abcdefghijklmnopqrstuvwxyz"),
    ):
        ids, last, _ = encode_task(task)
        swapped = ids.clone()
        new = []
        for i in range(len(task)):
            words = set(task.words(i))
            sym = next(c for c in pool if c not in words)
            swapped[i, task.evidence[i]] = VOCAB.index(sym)
            new.append(VOCAB.index(sym))
        with torch.no_grad():
            pred = model(input_ids=swapped).logits[torch.arange(len(ids)), last].argmax(-1)
        follows = (pred == torch.tensor(new)).float().mean().item()
        assert follows >= 0.9, (task.name, follows)


def test_quick_training_writes_a_loadable_dir(tmp_path):
    import transformers

    res = train_lm_zoo(["kv-lm"], out_dir=tmp_path, quick=True, progress=False, log=None)
    d = tmp_path / "kv-lm"
    assert res["kv-lm"]["steps_run"] <= 20 and (d / "card.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kv-lm"]  # written atomically, nothing left beside
    model = transformers.AutoModelForCausalLM.from_pretrained(d, local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 2
    assert zoo_language.info("kv-lm", weights_dir=tmp_path).metrics["quick"] is True
    with pytest.raises(KeyError, match="no training recipe"):
        train_lm_zoo(["gpt"], out_dir=tmp_path, quick=True, progress=False, log=None)
