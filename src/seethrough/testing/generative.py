"""Tiny autoencoders implementing the protocol of :mod:`seethrough.generative` (``encode``,
``encode_distribution``, ``decode``, ``forward = decode(encode(x))``, ``latent_dim``), for tests.

* :class:`TinyVAE`: images ``(B, 1, 8, 8)`` in [0, 1] <-> codes ``(B, 4)``; a BatchNorm in the
  encoder (so eval mode matters) and named ``encoder`` / ``decoder`` submodules.
* :class:`TinyGAN`: a generator ``z (B, Z) -> (B, 1, 8, 8)`` with two latent inputs (per-layer codes).
* :class:`TinySeqAE`: token ids ``(B, L)`` over a small alphabet <-> codes; ``decode`` gives
  per-position logits ``(B, L, V)``; ``tokens(sequences)`` and ``sequences(z_or_logits)``
  (greedy: argmax per position, cut at the first end token, id 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["TinyVAE", "TinySeqAE", "TinyGAN", "tiny_encoder", "tiny_decoder"]


class TinyVAE(nn.Module):
    """A small fully connected VAE on ``(B, 1, 8, 8)`` images (untrained, seeded weights)."""

    def __init__(self, latent_dim: int = 4, *, hidden: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_shape = (1, 8, 8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
            self.mu = nn.Linear(hidden, self.latent_dim)
            self.logvar = nn.Linear(hidden, self.latent_dim)
            self.decoder = nn.Sequential(
                nn.Linear(self.latent_dim, hidden),
                nn.ReLU(),
                nn.Linear(hidden, 64),
                nn.Sigmoid(),
                nn.Unflatten(1, self.image_shape),
            )
            bn = self.encoder[2]
            assert isinstance(bn, nn.BatchNorm1d) and bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
        self.eval()

    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def encode(self, x: Tensor) -> Tensor:
        return self.encode_distribution(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


class TinySeqAE(nn.Module):
    """A small deterministic sequence autoencoder: ids ``(B, L)`` (0 = end/padding, letters
    1..len(alphabet)) -> codes ``(B, Z)`` -> logits ``(B, L, V)`` with ``V = len(alphabet) + 1``."""

    def __init__(self, alphabet: str = "ACDEFG", *, max_len: int = 6, latent_dim: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.alphabet = str(alphabet)
        self.max_len = int(max_len)
        self.latent_dim = int(latent_dim)
        self.vocab_size = len(self.alphabet) + 1
        self._index = {c: i + 1 for i, c in enumerate(self.alphabet)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Embedding(self.vocab_size, 8)
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(8 * self.max_len, 32), nn.Tanh())
            self.to_z = nn.Linear(32, self.latent_dim)
            self.decoder = nn.Sequential(
                nn.Linear(self.latent_dim, 32), nn.Tanh(), nn.Linear(32, self.max_len * self.vocab_size)
            )
        self.eval()

    def tokens(self, sequences: Sequence[str]) -> Tensor:
        """Ids ``(B, max_len)``, padded with 0; raises ValueError for a letter outside the
        alphabet or a sequence longer than ``max_len``."""
        if isinstance(sequences, str):
            sequences = [sequences]
        out = torch.zeros(len(sequences), self.max_len, dtype=torch.long)
        for i, s in enumerate(sequences):
            if len(s) > self.max_len:
                raise ValueError(f"sequence {i} has {len(s)} letters; at most {self.max_len}")
            for j, c in enumerate(s):
                if c not in self._index:
                    raise ValueError(f"sequence {i} has {c!r} at position {j}; the alphabet is {self.alphabet!r}")
                out[i, j] = self._index[c]
        return out

    def sequences(self, z_or_logits: Tensor) -> list[str]:
        """Greedy decoding of codes ``(B, Z)`` or logits ``(B, L, V)``: argmax per position, cut at
        the first end token."""
        t = z_or_logits
        if t.dim() == 2:
            with torch.no_grad():
                t = self.decode(t)
        ids = t.argmax(dim=-1).tolist()
        out = []
        for row in ids:
            letters = []
            for k in row:
                if k == 0:
                    break
                letters.append(self.alphabet[k - 1])
            out.append("".join(letters))
        return out

    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = self.to_z(self.encoder(self.embed(x)))
        return mu, torch.zeros_like(mu)

    def encode(self, x: Tensor) -> Tensor:
        return self.encode_distribution(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z).view(z.shape[0], self.max_len, self.vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def tiny_encoder() -> nn.Module:
    """A separate encoder ``(B, 1, 8, 8) -> (B, 4)`` (for the CLI's ``--encoder`` factories)."""
    vae = TinyVAE(seed=5)
    return nn.Sequential(vae.encoder, vae.mu)


def tiny_decoder() -> nn.Module:
    """A separate decoder ``(B, 4) -> (B, 1, 8, 8)`` (for the CLI's ``--decoder`` factories)."""
    return TinyVAE(seed=6).decoder


class _Block(nn.Module):
    """``conv`` (ConvTranspose2d, 2 -> 4 pixels), ``bn``, ``relu``: run by :class:`TinyGAN`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, 4, 2, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()


class TinyGAN(nn.Module):
    """A small DCGAN-style generator ``z (B, Z) -> images (B, 1, 8, 8)`` in [0, 1] (untrained,
    seeded weights), with the layout of the bundled GANs: a first ``Linear`` that takes z
    (``fc``), a BatchNorm (so eval mode matters), transposed convolutions (``block1.conv``,
    ``to_image``) and two latent inputs (``n_latent_layers = 2``): per-layer codes
    ``(B, 2, Z)`` feed ``fc`` with ``z[:, 0]`` and a FiLM modulation of ``block1`` with
    ``z[:, 1]``; plain codes ``(B, Z)`` feed both."""

    n_latent_layers = 2

    def __init__(self, latent_dim: int = 4, *, channels: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_shape = (1, 8, 8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.fc = nn.Linear(self.latent_dim, channels * 2 * 2)
            self.block1 = _Block(channels)
            self.film1 = nn.Linear(self.latent_dim, 2 * channels)
            self.to_image = nn.ConvTranspose2d(channels, 1, 4, 2, 1)  # 4 -> 8
            bn = self.block1.bn
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
        self.channels = channels
        self.eval()

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 3:
            z0, z1 = z[:, 0], z[:, 1]
        else:
            z0 = z1 = z
        h = torch.relu(self.fc(z0)).reshape(z0.shape[0], self.channels, 2, 2)
        h = self.block1.conv(h)
        gamma, beta = self.film1(z1).chunk(2, dim=1)
        h = self.block1.relu(self.block1.bn(h) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
        return torch.sigmoid(self.to_image(h))
