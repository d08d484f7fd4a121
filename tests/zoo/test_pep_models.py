"""Tests of the peptide autoencoders (seethrough.zoo.peptides, seethrough.zoo.train_peptides)."""

from __future__ import annotations

import json

import pytest
import torch

from seethrough import zoo
from seethrough._core.errors import ConfigError, InputError
from seethrough.data.peptides import load_peptides
from seethrough.zoo.peptides import BUNDLED, EOS, PAD, VOCAB, PeptideAutoencoder, bundled
from seethrough.zoo.train_peptides import evaluate_peptide_autoencoder, imq_mmd, train_peptide_autoencoder

pytest.importorskip("modlamp")

#: held-out per-token reconstruction accuracy the shipped WAE must beat (greedy decoding; its card
#: says 0.461 on all 480 test sequences, 0.463 on the first 120; an untrained model gets ~0.05)
WAE_TOKEN_BAR = 0.40


def _load(name: str) -> PeptideAutoencoder:
    from safetensors.torch import load_file

    path = zoo.WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        pytest.skip(f"{name} weights not trained (scripts/train_peptides.py)")
    model = bundled(name)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def test_tokens_sequences_round_trip():
    model = bundled("peptide-wae")
    seqs = ["GLWSKIKEVGKEAAKAAAKAAGKAALGAVSEAV", "K", "ACDEFGHIKLMNPQRSTVWY" * 2]
    tok = model.tokens(seqs)
    assert tok.dtype == torch.long and tok.shape == (3, model.max_len + 1)
    assert tok[1, 1] == EOS and (tok[1, 2:] == PAD).all() and tok[2, 40] == EOS
    assert model.sequences(tok) == seqs
    onehot = torch.nn.functional.one_hot(tok, len(VOCAB)).float()  # logits path
    assert model.sequences(onehot) == seqs
    assert model.alphabet == "ACDEFGHIKLMNPQRSTVWY" and model.latent_dim == 32 and model.max_len == 40


@pytest.mark.parametrize(
    ("seqs", "match"),
    [
        (["KKKK", "GLXW"], r"sequence 1 \('GLXW'\) has the letter 'X' at position 2"),
        (["kkk"], "upper-case"),
        (["KK", ""], "sequence 1 is empty"),
        (["K" * 41], "41 residues, more than max_len=40"),
        ([], "non-empty list"),
        ([3], "not a string"),
    ],
)
def test_tokens_errors(seqs, match):
    with pytest.raises(InputError, match=match):
        bundled("peptide-wae").tokens(seqs)


def test_protocol_shapes_and_purity():
    torch.manual_seed(0)
    for name in BUNDLED:
        model = bundled(name).eval()
        tok = model.tokens(["KKLLKK", "GIGAVLKVLTTGLPALISWIKRKRQQ"])
        mu, logvar = model.encode_distribution(tok)
        assert mu.shape == logvar.shape == (2, 32)
        assert (logvar == 0).all() == (model.kind == "wae")
        assert torch.equal(model.encode(tok), mu)
        z = torch.randn(3, 32, requires_grad=True)
        logits = model.decode(z)
        assert logits.shape == (3, 41, len(VOCAB))
        assert torch.equal(logits, model.decode(z.detach()))  # a pure function of z
        logits.sum().backward()
        assert z.grad is not None and z.grad.abs().sum() > 0
        assert torch.equal(model(tok), model.decode(mu))
        assert len(model.sequences(z.detach())) == 3
    with pytest.raises(InputError, match=r"\(B, 32\)"):
        model.decode(torch.zeros(2, 5))
    with pytest.raises(InputError, match="tokens"):
        model.encode(torch.zeros(2, 41))


def test_bad_configs():
    with pytest.raises(ConfigError, match="unknown peptide model"):
        bundled("peptide-gan")
    with pytest.raises(ConfigError, match="'wae' or 'vae'"):
        PeptideAutoencoder("gan")
    with pytest.raises(ConfigError, match="hidden_dim"):
        PeptideAutoencoder("wae", hidden_dim=3)
    with pytest.raises(ConfigError, match="unknown training settings"):
        train_peptide_autoencoder("wae", quick=True, progress=False, lr_typo=1.0)


def test_imq_mmd_separates():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g)
    assert abs(float(imq_mmd(a, b))) < 0.05
    assert float(imq_mmd(a + 2.0, b)) > 5 * abs(float(imq_mmd(a, b)))


def test_quick_training_is_deterministic():
    m1, met1 = train_peptide_autoencoder("wae", quick=True, progress=False, seed=3)
    m2, _ = train_peptide_autoencoder("wae", quick=True, progress=False, seed=3)
    m3, _ = train_peptide_autoencoder("wae", quick=True, progress=False, seed=4)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)
    assert met1["n_train"] == 64 and met1["epochs"] == 1 and not m1.training
    for key in ("test_token_accuracy", "test_exact_match", "prior_validity", "prior_uniqueness", "train_seconds"):
        assert key in met1
    json.dumps(met1)  # the card is JSON


def test_shipped_wae_reconstructs_held_out():
    model = _load("peptide-wae")
    test = load_peptides().subset("test")[:120]
    m = evaluate_peptide_autoencoder(model, test, n_prior=200)
    assert m["test_token_accuracy"] > WAE_TOKEN_BAR
    assert m["prior_validity"] > 0.5
    # the code carries the sequence: decoding another sequence's code reconstructs far less
    tok = model.tokens(test)
    with torch.no_grad():
        wrong = model.decode(model.encode(tok).roll(1, dims=0)).argmax(-1)
    mask = tok != PAD
    assert float(((wrong == tok) & mask).sum() / mask.sum()) < m["test_token_accuracy"] - 0.15
    card = json.loads((zoo.WEIGHTS_DIR / "peptide-wae.json").read_text())["metrics"]
    assert card["test_token_accuracy"] > WAE_TOKEN_BAR and card["n_test"] == 480


def test_shipped_vae_uses_its_code():
    model = _load("peptide-vae")
    card = json.loads((zoo.WEIGHTS_DIR / "peptide-vae.json").read_text())["metrics"]
    assert card["active_units"] >= 4 and card["test_kl"] > 1.0
    tok = model.tokens(load_peptides().subset("test")[:50])
    z = model.encode(tok)
    assert z.std(0).max() > 0.1  # not collapsed to the prior
