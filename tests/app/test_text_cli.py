"""``seethrough text`` end to end, in-process: a user's model from a local directory (a tiny
random Llama and BERT saved with save_pretrained), the bundled kv-lm, and the error exits
(an encoder asked to explain a next token or a causal LM a similarity, a foil without a
target, an empty prompt, a directory that is missing or not a transformers model)."""

from __future__ import annotations

import json

import pytest

from seethrough.app.cli import main
from seethrough.testing.language import tiny_bert, tiny_llama

PROMPT = "k3 = 7 ; k1 = 2 ; k1 ->"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("llama")
    tm = tiny_llama(seed=3)
    tm.model.save_pretrained(d)
    tm.tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bert")
    tm = tiny_bert(seed=3)
    tm.model.save_pretrained(d)
    tm.tokenizer.save_pretrained(d)
    return d


@pytest.mark.parametrize("cmd", ["explain", "lens", "patch", "similarity", "evidence", "models"])
def test_text_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(["text", cmd, "--help"])
    assert e.value.code == 0
    assert "usage: seethrough text" in capsys.readouterr().out


def test_explain_a_local_model_with_generation(llama_dir, tmp_path, capsys):
    out = tmp_path / "e"
    args = ["text", "explain", "--model", str(llama_dir), "--prompt", PROMPT, "--generate", "2"]
    args += ["--methods", "saliency,integrated_gradients,atman,alti", "--steps", "8", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "explain.json").read_text())
    assert list(summary["methods"]) == ["saliency", "integrated_gradients", "atman", "alti"]
    assert summary["methods"]["saliency"]["tokens"][0] == "<bos>"
    assert len(summary["generation"]["saliency"]["matrix"]) == 2
    for f in (
        "explain.html",
        "tokens.png",
        "generation.png",
        "saliency.safetensors",
        "generation-saliency.safetensors",
    ):
        assert (out / f).is_file(), f
    html = (out / "explain.html").read_text()
    assert "Generation, step by step" in html and "k1" in html
    assert "wrote" in capsys.readouterr().out


def test_explain_contrastive_and_continuation(llama_dir, tmp_path):
    out = tmp_path / "c"
    base = ["text", "explain", "--model", str(llama_dir), "--prompt", PROMPT, "--methods", "saliency,atman"]
    assert main([*base, "--target", "2", "--foil", "7", "--out", str(out)]) == 0
    summary = json.loads((out / "explain.json").read_text())
    assert list(summary["methods"]) == ["saliency"]  # AtMan takes no foil: left out
    assert summary["methods"]["saliency"]["target_kind"] == "contrast"
    assert main([*base, "--target", "2 ; k3", "--out", str(out)]) == 0
    summary = json.loads((out / "explain.json").read_text())
    assert summary["methods"]["saliency"]["target_kind"] == "continuation"
    assert "sequence log-probability" in summary["methods"]["saliency"]["note"]


def test_lens_and_patch(llama_dir, tmp_path):
    out = tmp_path / "l"
    assert (
        main(["text", "lens", "--model", str(llama_dir), "--prompt", PROMPT, "--target", "2", "--out", str(out)]) == 0
    )
    lens = json.loads((out / "lens.json").read_text())
    assert lens["layers"][0] == "embed" and len(lens["probability"]) == 3
    assert (out / "lens.html").is_file() and (out / "lens.safetensors").is_file()
    args = ["text", "patch", "--model", str(llama_dir), "--prompt", PROMPT, "--target", "2", "--corrupt", "7"]
    assert main([*args, "--states", "resid,mlp", "--out", str(out)]) == 0
    patch = json.loads((out / "patch.json").read_text())
    assert set(patch["best"]) == {"resid", "mlp"} and patch["corrupted"] == [7]
    assert 0.0 <= patch["corrupted_prob"] <= 1.0


def test_similarity_of_a_local_encoder(bert_dir, tmp_path):
    out = tmp_path / "s"
    args = ["text", "similarity", "--model", str(bert_dir), "--a", "k1 = 2", "--b", "k1 = 3", "--steps", "8"]
    assert main([*args, "--out", str(out)]) == 0
    s = json.loads((out / "similarity.json").read_text())
    assert -1.0 <= s["similarity"] <= 1.0 and s["top_pairs"]
    assert (out / "similarity.html").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["similarity", "--a", "k1", "--b", "k2"], "need a sentence encoder"),
        (["explain", "--prompt", "   "], "the prompt is empty"),
        (["explain", "--prompt", PROMPT, "--foil", "7"], "needs both --target and --foil"),
        (["explain", "--prompt", PROMPT, "--methods", "saliencyy"], "did you mean saliency"),
        (["explain", "--prompt", PROMPT, "--target", "2", "--foil", "7 ;"], "not one"),
        (["patch", "--prompt", PROMPT, "--counterfactual", "k3 = 7"], "token"),
    ],
)
def test_bad_input_exits_2(llama_dir, tmp_path, capsys, args, message):
    cmd, rest = args[0], args[1:]
    assert main(["text", cmd, "--model", str(llama_dir), *rest, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_an_encoder_cannot_explain_a_next_token(bert_dir, tmp_path, capsys):
    assert main(["text", "explain", "--model", str(bert_dir), "--prompt", "k1 = 2", "--out", str(tmp_path)]) == 2
    assert "encoder" in capsys.readouterr().err


@pytest.mark.parametrize("make, message", [(lambda p: p / "missing", "no such"), (lambda p: p, "config.json")])
def test_a_model_directory_that_is_missing_or_not_a_model(tmp_path, capsys, make, message):
    (tmp_path / "notes.txt").write_text("not a model")
    assert main(["text", "lens", "--model", str(make(tmp_path)), "--prompt", PROMPT]) == 2
    assert message in capsys.readouterr().err.lower()


@pytest.mark.slow
def test_evidence_on_the_bundled_kv_lm(tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["text", "evidence", "--n", "6", "--methods", "saliency,atman", "--out", str(out)]) == 0
    rows = json.loads((out / "evidence.json").read_text())
    assert {(r["task"], r["method"]) for r in rows} == {
        (t, m) for t in ("kv", "copy") for m in ("saliency", "atman", "random")
    }
    assert all(0.0 <= r["top is evidence"] <= 1.0 for r in rows)
    assert "| kv | atman |" in capsys.readouterr().out


def test_evidence_refuses_a_model_with_another_tokenizer(tmp_path, capsys, monkeypatch):
    import seethrough.app.texts as texts
    from seethrough.language import TextModel
    from seethrough.testing.language import word_tokenizer

    tm = TextModel(tiny_llama().model, word_tokenizer(bos=False))  # no <bos>: positions differ from the tasks'
    monkeypatch.setattr(texts, "load_text_model", lambda *_a, **_k: tm)
    assert main(["text", "evidence", "--n", "2", "--methods", "saliency", "--out", str(tmp_path)]) == 2
    assert "one word per token" in capsys.readouterr().err


def test_models_lists_the_bundled_names(capsys):
    assert main(["text", "models"]) == 0
    out = capsys.readouterr().out
    assert "kv-lm" in out and "smollm2" in out and "minilm" in out
