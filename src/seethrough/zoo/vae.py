"""Image autoencoders and the factor predictor of the zoo (plain PyTorch).

* :class:`ConvVAE`: a convolutional (beta-)VAE for ``(C, S, S)`` images in ``[0, 1]``
  implementing the autoencoder protocol of :mod:`seethrough.generative`:
  ``encode`` (posterior mean), ``encode_distribution`` (mean, log-variance), ``decode``
  (images in ``[0, 1]``), ``forward = decode(encode(x))``, attributes ``latent_dim`` and
  ``image_shape``.
* :class:`FactorPredictor`: a CNN that reads the known factors of a
  :mod:`seethrough.data.factors` scene off the image (``predict`` gives them in the units
  of ``FactorScenes.factors``), to score latent directions against the truth.
* :func:`bundled`: the untrained architectures of ``mnist-vae``, ``scenes-vae`` and
  ``scenes-factors`` with the exact shipped hyper-parameters.

Decoder layers of :class:`ConvVAE` by dotted name (``named_modules()``), for creative
decoding and subset scanning:

=====================  ===========================================================
``decoder.fc``         Linear + ReLU, ``latent_dim -> hidden`` (256 units)
``decoder.fc2``        Linear + ReLU, ``hidden -> 128 x s x s`` (2,048 units)
``decoder.conv1``      ConvTranspose + ReLU, 64 channels at ``S / 4``
``decoder.conv2``      ConvTranspose + ReLU, 32 channels at ``S / 2``
``decoder.conv3``      ConvTranspose, ``C`` channels at ``S``: the logits
``decoder.out``        Sigmoid: the decoded images
=====================  ===========================================================

(``s`` is the size after three stride-2 steps: 4 for 28 and 32 pixels.) Each ``fc`` and
``conv`` block is an ``nn.Sequential`` whose output is post-ReLU, so its units are
non-negative; ``decoder.fc.0`` is the bare linear layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._core.errors import ConfigError, InputError

__all__ = ["ConvVAE", "FactorPredictor", "bundled", "BUNDLED", "FACTOR_OUTPUTS"]

_ENC_CHANNELS = (32, 64, 128)


def _sizes(size: int) -> list[int]:
    out = [size]
    for _ in _ENC_CHANNELS:
        out.append((out[-1] + 1) // 2)  # conv k3 s2 p1
    return out


def _check_images(x: torch.Tensor, shape: tuple[int, int, int], who: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(
            f"{who} takes a float tensor of shape (B, {', '.join(map(str, shape))}), got {type(x).__name__}"
        )
    if x.dim() == 3 and tuple(x.shape) == shape:
        raise InputError(
            f"{who} takes a batch of shape (B, {', '.join(map(str, shape))}); got one image {tuple(x.shape)}: "
            "add the batch dimension with x[None]"
        )
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise InputError(
            f"{who} takes images of shape (B, {', '.join(map(str, shape))}) in [0, 1], got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise InputError(f"{who} takes float images in [0, 1], got dtype {x.dtype}")
    return x


class _Encoder(nn.Module):
    def __init__(self, channels: int, size: int, hidden: int) -> None:
        super().__init__()
        s = _sizes(size)[-1]
        c0, c1, c2 = _ENC_CHANNELS
        self.conv1 = nn.Sequential(nn.Conv2d(channels, c0, 3, stride=2, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(c0, c1, 3, stride=2, padding=1), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU())
        self.flatten = nn.Flatten()
        self.fc = nn.Sequential(nn.Linear(c2 * s * s, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.conv3(self.conv2(self.conv1(x)))))


class _Decoder(nn.Module):
    def __init__(self, channels: int, size: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        sizes = _sizes(size)  # e.g. [32, 16, 8, 4] or [28, 14, 7, 4]
        c0, c1, c2 = _ENC_CHANNELS
        s = sizes[-1]

        def up(cin: int, cout: int, s_in: int, s_out: int) -> nn.ConvTranspose2d:
            # (s_in - 1) * 2 - 2 + 3 + output_padding = s_out
            return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=s_out - (2 * s_in - 1))

        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(hidden, c2 * s * s), nn.ReLU())
        self.unflatten = nn.Unflatten(1, (c2, s, s))
        self.conv1 = nn.Sequential(up(c2, c1, sizes[3], sizes[2]), nn.ReLU())
        self.conv2 = nn.Sequential(up(c1, c0, sizes[2], sizes[1]), nn.ReLU())
        self.conv3 = up(c0, channels, sizes[1], sizes[0])
        self.out = nn.Sigmoid()

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        h = self.unflatten(self.fc2(self.fc(z)))
        return self.conv3(self.conv2(self.conv1(h)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.logits(z))


class ConvVAE(nn.Module):
    """Convolutional VAE for ``(channels, size, size)`` images in ``[0, 1]``.

    Encoder: three stride-2 3x3 convolutions (32, 64, 128 channels) with ReLU, a
    ``hidden``-unit ReLU layer, and linear heads ``fc_mu`` / ``fc_logvar`` for the
    diagonal Gaussian posterior. Decoder: the mirror image (see the module docstring
    for its layer names) ending in a sigmoid. ``beta`` is the weight of the KL term the
    model was trained with (stored for reference; :meth:`loss` uses it).

    Args:
        channels: image channels (1 or 3).
        size: image side in pixels (at least 8).
        latent_dim: size of the latent code ``z``.
        hidden: units of the fully connected layers next to the code.
        beta: KL weight (1 = plain VAE, > 1 = beta-VAE).
        seed: seed of the initial weights (private RNG; the global one is untouched).
    """

    def __init__(
        self,
        channels: int,
        size: int,
        latent_dim: int,
        *,
        hidden: int = 256,
        beta: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, v, lo in (("channels", channels, 1), ("size", size, 8), ("latent_dim", latent_dim, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{name} must be an int >= {lo}, got {v!r}")
        self.latent_dim = int(latent_dim)
        self.image_shape = (int(channels), int(size), int(size))
        self.beta = float(beta)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = _Encoder(channels, size, hidden)
            self.fc_mu = nn.Linear(hidden, latent_dim)
            self.fc_logvar = nn.Linear(hidden, latent_dim)
            self.decoder = _Decoder(channels, size, latent_dim, hidden)

    def _check_z(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"decode takes latent codes of shape (B, {self.latent_dim}), got {got}")
        return z

    def encode_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each ``(B, latent_dim)``."""
        h = self.encoder(_check_images(x, self.image_shape, "ConvVAE.encode"))
        return self.fc_mu(h), self.fc_logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``(B, latent_dim)`` (the deterministic code)."""
        return self.encode_distribution(x)[0]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs ``(B, C, S, S)`` of codes ``z``."""
        return self.decoder.logits(self._check_z(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, S, S)`` in ``[0, 1]`` of codes ``z`` ``(B, latent_dim)``."""
        return self.decoder(self._check_z(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))``: the reconstruction from the posterior mean."""
        return self.decode(self.encode(x))

    def loss(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None, beta: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, bce, kl)`` per-image means: summed pixel BCE of a reparameterised
        sample's decoding, KL to the standard normal, ``loss = bce + beta * kl``."""
        mu, logvar = self.encode_distribution(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = self.decoder.logits(z)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1).mean()
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(1).mean()
        return bce + (self.beta if beta is None else beta) * kl, bce, kl


#: Output columns of :meth:`FactorPredictor.predict` (those of ``FactorScenes.factors``).
FACTOR_OUTPUTS: tuple[str, ...] = ("shape", "color", "scale", "x", "y", "rotation")


class FactorPredictor(nn.Module):
    """CNN that reads the generative factors off a :mod:`seethrough.data.factors` scene.

    ``forward(x)`` returns one ``(B, n_shapes + n_colors + 5)`` tensor: shape logits,
    colour logits, standardised scale / x / y (``(v - mean) / std`` with the stored
    ``reg_mean`` / ``reg_std`` buffers), and ``(cos, sin)`` of ``k x rotation`` where ``k`` is
    the shape's symmetry order (so rotation is learned modulo the symmetry).
    :meth:`predict` turns that into ``(B, 6)`` rows in the units of
    ``FactorScenes.factors``: category indices, fractions of the image side, and rotation in
    degrees in ``[0, 360 / k)`` for the *predicted* shape's order ``k``.
    """

    symmetry: torch.Tensor
    reg_mean: torch.Tensor
    reg_std: torch.Tensor

    def __init__(
        self,
        *,
        channels: int = 3,
        size: int = 32,
        n_shapes: int = 4,
        n_colors: int = 5,
        symmetry: Sequence[int] = (4, 2, 3, 1),
        reg_mean: Sequence[float] = (0.17, 0.5, 0.5),
        reg_std: Sequence[float] = (0.0289, 0.1443, 0.1443),
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if len(symmetry) != n_shapes:
            raise ConfigError(f"symmetry needs one order per shape ({n_shapes}), got {tuple(symmetry)}")
        self.image_shape = (int(channels), int(size), int(size))
        self.n_shapes, self.n_colors = int(n_shapes), int(n_colors)
        self.register_buffer("symmetry", torch.tensor(list(symmetry), dtype=torch.float32))
        self.register_buffer("reg_mean", torch.tensor(list(reg_mean), dtype=torch.float32))
        self.register_buffer("reg_std", torch.tensor(list(reg_std), dtype=torch.float32))
        s = _sizes(size)[-1]
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.features = nn.Sequential(
                nn.Conv2d(channels, 16, 3, padding=1),  # 0 at S
                nn.ReLU(),  # 1
                nn.Conv2d(16, 32, 3, stride=2, padding=1),  # 2 -> S/2
                nn.ReLU(),  # 3
                nn.Conv2d(32, 64, 3, stride=2, padding=1),  # 4 -> S/4
                nn.ReLU(),  # 5
                nn.Conv2d(64, 128, 3, stride=2, padding=1),  # 6 -> S/8
                nn.ReLU(),  # 7
            )
            self.flatten = nn.Flatten()
            self.fc = nn.Sequential(nn.Linear(128 * s * s, 256), nn.ReLU())
            self.head = nn.Linear(256, n_shapes + n_colors + 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_images(x, self.image_shape, "FactorPredictor")
        return self.head(self.fc(self.flatten(self.features(x))))

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward`` output -> (shape logits, colour logits, standardised scale/x/y, (cos, sin))."""
        a, b = self.n_shapes, self.n_shapes + self.n_colors
        return out[:, :a], out[:, a:b], out[:, b : b + 3], out[:, b + 3 : b + 5]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Factors ``(B, 6)`` of ``images`` ``(B, C, S, S)``, columns :data:`FACTOR_OUTPUTS`."""
        shape_logits, color_logits, reg, rot = self.split(self(images))
        shape = shape_logits.argmax(1)
        order = self.symmetry[shape]
        ang = torch.rad2deg(torch.atan2(rot[:, 1], rot[:, 0]))  # k * rotation in (-180, 180]
        rotation = torch.remainder(ang, 360.0) / order
        vals = reg * self.reg_std + self.reg_mean
        return torch.cat(
            [shape[:, None].float(), color_logits.argmax(1)[:, None].float(), vals, rotation[:, None]], dim=1
        )


#: Shipped hyper-parameters of the bundled models (see :func:`bundled`).
BUNDLED: dict[str, dict[str, Any]] = {
    "mnist-vae": {"architecture": "ConvVAE", "channels": 1, "size": 28, "latent_dim": 16, "beta": 1.0},
    "scenes-vae": {"architecture": "ConvVAE", "channels": 3, "size": 32, "latent_dim": 10, "beta": 0.5},
    "scenes-factors": {"architecture": "FactorPredictor", "channels": 3, "size": 32},
}


def bundled(name: str) -> nn.Module:
    """The untrained architecture of a bundled model (``mnist-vae``: ``(1, 28, 28)``, latent
    16, beta 1; ``scenes-vae``: ``(3, 32, 32)``, latent 10, beta 0.5; ``scenes-factors``)."""
    if name not in BUNDLED:
        raise ConfigError(f"unknown bundled model {name!r}; choose from {', '.join(BUNDLED)}")
    cfg = BUNDLED[name]
    if cfg["architecture"] == "FactorPredictor":
        from ..data.factors import COLOR_NAMES, FACTOR_RANGES, SHAPE_NAMES, SYMMETRY_ORDER

        mean = tuple(0.5 * (FACTOR_RANGES[k][0] + FACTOR_RANGES[k][1]) for k in ("scale", "x", "y"))
        std = tuple((FACTOR_RANGES[k][1] - FACTOR_RANGES[k][0]) / math.sqrt(12.0) for k in ("scale", "x", "y"))
        return FactorPredictor(
            channels=int(cfg["channels"]),
            size=int(cfg["size"]),
            n_shapes=len(SHAPE_NAMES),
            n_colors=len(COLOR_NAMES),
            symmetry=SYMMETRY_ORDER,
            reg_mean=mean,
            reg_std=std,
        )
    return ConvVAE(
        int(cfg["channels"]),
        int(cfg["size"]),
        int(cfg["latent_dim"]),
        beta=float(cfg["beta"]),
    )
