"""Peptide autoencoders: a GRU encoder to a latent code and a GRU decoder back to residues.

:class:`PeptideAutoencoder` follows the autoencoder protocol of :mod:`seethrough.generative`:

* ``tokens(sequences) -> LongTensor (B, max_len + 1)``: residues, then ``EOS``, then ``PAD``;
* ``encode(tokens) -> (B, latent_dim)``: the code (a VAE's posterior mean);
* ``encode_distribution(tokens) -> (mu, logvar)`` (a WAE's logvar is zeros: its encoder is
  deterministic);
* ``decode(z) -> (B, max_len + 1, V)`` per-position logits, computed autoregressively from ``z``
  alone by greedy decoding (each step is fed the argmax of the previous one), so ``decode(z)`` is a
  pure, differentiable function of ``z`` (its logits; the argmax path is piecewise constant);
* ``forward(tokens) = decode(encode(tokens))``;
* ``sequences(z | logits | tokens) -> list[str]``: greedy decoding cut at the first ``EOS``.

The vocabulary is ``PAD, BOS, EOS`` followed by the 20 standard amino acids (:data:`VOCAB`).
The decoder starts from a hidden state computed from ``z`` and also receives ``z`` at every step.
There is no dropout inside the model (word dropout is applied by the trainer,
:mod:`seethrough.zoo.train_peptides`), so train and eval mode compute the same function.

``bundled("peptide-wae")`` / ``bundled("peptide-vae")`` build the untrained architecture of the
shipped models (:data:`BUNDLED`); :func:`seethrough.zoo.load` adds the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._core.errors import ConfigError, InputError
from ..data.peptides import AMINO_ACIDS, MAX_LEN

__all__ = ["PeptideAutoencoder", "VOCAB", "PAD", "BOS", "EOS", "BUNDLED", "bundled", "encode_tokens"]

PAD, BOS, EOS = 0, 1, 2
#: Token strings by id: ``<pad>``, ``<bos>``, ``<eos>``, then the amino acids.
VOCAB: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", *AMINO_ACIDS)
_FIRST_AA = 3

#: Hyper-parameters of the shipped models (``bundled(name)`` builds these).
BUNDLED: dict[str, dict[str, Any]] = {
    "peptide-wae": {"kind": "wae", "latent_dim": 32, "embed_dim": 64, "hidden_dim": 256, "max_len": MAX_LEN},
    "peptide-vae": {"kind": "vae", "latent_dim": 32, "embed_dim": 64, "hidden_dim": 256, "max_len": MAX_LEN},
}


def _describe(s: object) -> str:
    r = repr(s)
    return r if len(r) <= 50 else r[:47] + "..."


def encode_tokens(sequences: Sequence[str], *, alphabet: str = AMINO_ACIDS, max_len: int = MAX_LEN) -> torch.Tensor:
    """Token ids ``(B, max_len + 1)``: residue ids, one ``EOS``, then ``PAD``.

    Raises:
        InputError: not a sequence of strings, an empty list or sequence, a letter outside
            ``alphabet`` (the message names the letter, its position and the sequence), or a
            sequence longer than ``max_len``.
    """
    if isinstance(sequences, str):
        sequences = [sequences]
    if not isinstance(sequences, Sequence) or len(sequences) == 0:
        raise InputError(f"expected a non-empty list of peptide sequences (strings), got {_describe(sequences)}")
    index = {a: _FIRST_AA + i for i, a in enumerate(alphabet)}
    out = torch.full((len(sequences), max_len + 1), PAD, dtype=torch.long)
    for i, s in enumerate(sequences):
        if not isinstance(s, str):
            raise InputError(f"sequence {i} is a {type(s).__name__} ({_describe(s)}), not a string of one-letter codes")
        if not s:
            raise InputError(f"sequence {i} is empty; every peptide needs at least one residue")
        if len(s) > max_len:
            raise InputError(
                f"sequence {i} ({_describe(s)}) has {len(s)} residues, more than max_len={max_len}; "
                f"shorten it or use a model made for longer peptides"
            )
        for j, c in enumerate(s):
            if c not in index:
                hint = " (lower case? use upper-case one-letter codes)" if c.upper() in index else ""
                raise InputError(
                    f"sequence {i} ({_describe(s)}) has the letter {c!r} at position {j} (0-based), which is not "
                    f"one of the {len(alphabet)} amino acids {alphabet}{hint}"
                )
            out[i, j] = index[c]
        out[i, len(s)] = EOS
    return out


class PeptideAutoencoder(nn.Module):
    """GRU peptide autoencoder, trained as a Wasserstein autoencoder (``kind="wae"``, MMD
    penalty) or a variational autoencoder (``kind="vae"``, KL term).

    Args:
        kind: ``"wae"`` (deterministic encoder) or ``"vae"`` (Gaussian posterior).
        latent_dim: size of the code.
        embed_dim: size of the token embedding (shared by encoder and decoder).
        hidden_dim: GRU width (the encoder is bidirectional with ``hidden_dim // 2`` per direction).
        max_len: longest peptide; token tensors have ``max_len + 1`` positions (room for ``EOS``).
    """

    def __init__(
        self,
        kind: str = "wae",
        latent_dim: int = 32,
        *,
        embed_dim: int = 64,
        hidden_dim: int = 256,
        max_len: int = MAX_LEN,
    ) -> None:
        super().__init__()
        if kind not in ("wae", "vae"):
            raise ConfigError(f"kind must be 'wae' or 'vae', got {kind!r}")
        for name, v in (("latent_dim", latent_dim), ("embed_dim", embed_dim), ("max_len", max_len)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        if isinstance(hidden_dim, bool) or not isinstance(hidden_dim, int) or hidden_dim < 2 or hidden_dim % 2:
            raise ConfigError(f"hidden_dim must be an even int >= 2, got {hidden_dim!r}")
        self.kind = kind
        self.latent_dim = latent_dim
        self.max_len = max_len
        self.alphabet = AMINO_ACIDS
        self.vocab = VOCAB
        self.seq_len = max_len + 1
        v = len(VOCAB)
        self.embed = nn.Embedding(v, embed_dim, padding_idx=PAD)
        self.encoder = nn.GRU(embed_dim, hidden_dim // 2, batch_first=True, bidirectional=True)
        self.to_mu = nn.Linear(hidden_dim, latent_dim)
        self.to_logvar = nn.Linear(hidden_dim, latent_dim) if kind == "vae" else None
        self.to_hidden = nn.Linear(latent_dim, hidden_dim)
        self.decoder = nn.GRU(embed_dim + latent_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, v)

    # ------------------------------------------------------------------ tokens
    def tokens(self, sequences: Sequence[str]) -> torch.Tensor:
        """Token ids ``(B, max_len + 1)`` on the model's device (see :func:`encode_tokens`)."""
        return encode_tokens(sequences, alphabet=self.alphabet, max_len=self.max_len).to(self.out.weight.device)

    def sequences(self, z_or_logits: torch.Tensor) -> list[str]:
        """Strings from codes ``(B, Z)`` (decoded greedily), logits ``(B, L, V)`` or token ids ``(B, L)``;
        each is cut at its first ``EOS`` (``PAD`` and ``BOS`` are skipped)."""
        x = z_or_logits
        if not isinstance(x, torch.Tensor):
            raise InputError(f"expected a tensor of codes, logits or token ids, got {type(x).__name__}")
        if x.ndim == 2 and x.is_floating_point():
            if x.shape[1] != self.latent_dim:
                raise InputError(f"codes must have {self.latent_dim} columns, got shape {tuple(x.shape)}")
            with torch.no_grad():
                x = self.decode(x)
        if x.ndim == 3:
            if x.shape[-1] != len(self.vocab):
                raise InputError(f"logits must have {len(self.vocab)} entries in the last axis, got {tuple(x.shape)}")
            ids = x.argmax(-1)
        elif x.ndim == 2 and not x.is_floating_point():
            ids = x
        else:
            raise InputError(f"expected codes (B, Z), logits (B, L, V) or token ids (B, L); got shape {tuple(x.shape)}")
        out = []
        for row in ids.tolist():
            letters = []
            for t in row:
                if t == EOS:
                    break
                if t >= _FIRST_AA:
                    letters.append(self.vocab[t])
            out.append("".join(letters))
        return out

    # ------------------------------------------------------------------ encoder
    def _check_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"expected token ids (B, L) of dtype long (use model.tokens(sequences)), got {shape}")
        if x.shape[1] > self.seq_len:
            raise InputError(f"token tensors have at most {self.seq_len} positions, got {x.shape[1]}")
        return x

    def _encode_hidden(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_tokens(x)
        lengths = (x != PAD).sum(1).clamp(min=1).cpu()  # residues + EOS
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(x), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.encoder(packed)  # (2, B, H/2)
        return torch.cat([h[0], h[1]], dim=1)

    def encode_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of the code; a WAE's ``logvar`` is zeros (deterministic code)."""
        h = self._encode_hidden(x)
        mu = self.to_mu(h)
        if self.to_logvar is None:
            return mu, torch.zeros_like(mu)
        return mu, self.to_logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code ``(B, latent_dim)`` of token ids ``x`` (a VAE's posterior mean)."""
        return self.encode_distribution(x)[0]

    # ------------------------------------------------------------------ decoder
    def _check_z(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"expected codes of shape (B, {self.latent_dim}), got {shape}")
        return z.to(self.out.weight.dtype)

    def decode_teacher(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, L, V)`` with the decoder fed ``inputs`` (token ids, ``BOS`` first):
        teacher forcing, used in training."""
        z = self._check_z(z)
        h0 = torch.tanh(self.to_hidden(z)).unsqueeze(0)
        emb = self.embed(inputs)
        step_in = torch.cat([emb, z.unsqueeze(1).expand(-1, emb.shape[1], -1)], dim=2)
        y, _ = self.decoder(step_in, h0)
        return self.out(y)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-position logits ``(B, max_len + 1, V)`` decoded greedily from ``z`` alone."""
        z = self._check_z(z)
        h = torch.tanh(self.to_hidden(z)).unsqueeze(0)
        prev = torch.full((z.shape[0], 1), BOS, dtype=torch.long, device=z.device)
        zs = z.unsqueeze(1)
        logits = []
        for _ in range(self.seq_len):
            y, h = self.decoder(torch.cat([self.embed(prev), zs], dim=2), h)
            step = self.out(y)  # (B, 1, V)
            logits.append(step)
            prev = step.argmax(-1)
        return torch.cat(logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))``: logits ``(B, max_len + 1, V)``."""
        return self.decode(self.encode(x))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, latent_dim={self.latent_dim}, max_len={self.max_len}"


def bundled(name: str) -> PeptideAutoencoder:
    """The untrained architecture of a shipped peptide model (``"peptide-wae"`` or ``"peptide-vae"``)."""
    if name not in BUNDLED:
        raise ConfigError(f"unknown peptide model {name!r}; choose from {', '.join(sorted(BUNDLED))}")
    cfg = dict(BUNDLED[name])
    return PeptideAutoencoder(cfg.pop("kind"), cfg.pop("latent_dim"), **cfg)
