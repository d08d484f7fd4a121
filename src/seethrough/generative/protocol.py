"""The autoencoder and generator protocols this family relies on, and the wrappers around them.

An autoencoder is any ``nn.Module`` with ``encode(x) -> z (B, Z)``, ``decode(z)`` and an
integer ``latent_dim``; a VAE adds ``encode_distribution(x) -> (mu, logvar)``. The bundled
models follow it; a user's separate encoder and decoder become one with :class:`Autoencoder`.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from .._core.errors import ConfigError, InputError

__all__ = ["Autoencoder", "DecoderModule", "check_autoencoder", "check_generator", "Generator", "as_generator"]


def check_autoencoder(model: Any, *, what: str = "model") -> None:
    """Raise a clear error unless ``model`` has the autoencoder protocol of this family:
    ``encode(x) -> z``, ``decode(z)`` and an integer ``latent_dim``."""
    missing = [m for m in ("encode", "decode") if not callable(getattr(model, m, None))]
    if missing:
        raise ConfigError(
            f"{what} {type(model).__name__} is not an autoencoder: it has no {' or '.join(missing)}() "
            f"method. Give a module with encode(x) -> z and decode(z), or pass encoder= and decoder= separately."
        )
    dim = getattr(model, "latent_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"{what} {type(model).__name__} has no positive integer attribute latent_dim (got {dim!r})")


class DecoderModule(nn.Module):
    """``forward(z) = head(model.decode(z))``: a decoder (and an optional head on its
    output) as one module, for methods that take a model. It owns no parameters of its own;
    a guarded run over it guards the autoencoder and the head."""

    def __init__(self, model: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        check_autoencoder(model)
        self.model = model
        self.head = head
        self.latent_dim = int(model.latent_dim)  # type: ignore[arg-type]
        self.training = model.training  # the wrapper is in the mode of what it wraps

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise InputError(
                f"latent codes must have shape (B, {self.latent_dim}), got {tuple(z.shape)}; "
                f"encode inputs first or sample z of size {self.latent_dim}"
            )
        out = self.model.decode(z)  # type: ignore[operator]
        return out if self.head is None else self.head(out)


class Autoencoder(nn.Module):
    """A separate ``encoder`` (``x -> z``) and ``decoder`` (``z -> output``) as one
    autoencoder. ``latent_dim`` is read from the decoder's or encoder's ``latent_dim``
    attribute when not given. The encoder may be None (a decoder-only generator: only
    ``decode`` works)."""

    def __init__(self, encoder: nn.Module | None, decoder: nn.Module, *, latent_dim: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        dim = latent_dim
        for part in (decoder, encoder):
            if dim is None and part is not None:
                dim = getattr(part, "latent_dim", None)
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(
                "the latent size of this encoder/decoder pair is unknown: give latent_dim= (the CLI's --latent-dim) "
                "or a latent_dim attribute on the decoder"
            )
        self.latent_dim = dim

    def encode(self, x: Tensor) -> Tensor:
        if self.encoder is None:
            raise ConfigError(
                "this autoencoder has no encoder (decoder-only): give one to encode inputs, or pass z directly"
            )
        z = self.encoder(x)
        if isinstance(z, (tuple, list)):  # (mu, logvar): the code is the posterior mean
            z = z[0]
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise InputError(f"the encoder returned shape {tuple(z.shape)}, not (B, {self.latent_dim})")
        return z

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def check_generator(model: Any, latent_dim: int | None = None, *, what: str = "generator") -> int:
    """The latent size of a generator ``z (N, Z) -> outputs``: ``latent_dim`` when given,
    else the model's integer ``latent_dim`` attribute; a clear error when neither is there."""
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{what} must be a torch.nn.Module mapping codes z (N, Z) to outputs, got {type(model).__name__}"
        )
    own = getattr(model, "latent_dim", None)
    if latent_dim is not None and isinstance(own, int) and not isinstance(own, bool) and own != latent_dim:
        raise ConfigError(
            f"latent_dim={latent_dim} was given but {what} {type(model).__name__} says latent_dim={own}; "
            f"drop the given size (--latent-dim) or give {own}"
        )
    dim = latent_dim if latent_dim is not None else own
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(
            f"the latent size of {what} {type(model).__name__} is unknown (latent_dim={dim!r}): give latent_dim= "
            f"(the CLI's --latent-dim) or set an integer latent_dim attribute on the model"
        )
    return int(dim)


class Generator(nn.Module):
    """A generator ``z -> outputs`` with the protocol this family relies on: ``latent_dim``,
    ``decode(z)`` (= ``forward``) and, when the wrapped module has one, ``n_latent_layers``.

    ``z_shape`` is the shape one code takes inside the module when it is not ``(Z,)``, e.g.
    ``(Z, 1, 1)`` for a DCGAN generator that starts with a transposed convolution; codes are
    always ``(N, Z)`` outside. A module with ``n_latent_layers = L`` also takes per-layer codes
    ``(N, L, Z)`` (one code for each of its ``L`` latent inputs, as BigGAN's hierarchical z or
    StyleGAN's w+), which is what layer-restricted edits need. The wrapper owns no parameters;
    guarding it guards the module.
    """

    def __init__(
        self, module: nn.Module, *, latent_dim: int | None = None, z_shape: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        self.latent_dim = check_generator(module, latent_dim)
        self.module = module
        self.z_shape = tuple(int(s) for s in z_shape) if z_shape is not None else None
        if self.z_shape is not None and math.prod(self.z_shape) != self.latent_dim:
            raise ConfigError(f"z_shape {self.z_shape} does not hold latent_dim={self.latent_dim} numbers")
        layers = getattr(module, "n_latent_layers", None)
        self.n_latent_layers: int | None = int(layers) if isinstance(layers, int) and layers > 0 else None
        self.training = module.training

    def forward(self, z: Tensor) -> Tensor:
        per_layer = self.n_latent_layers is not None and z.dim() == 3
        if per_layer and (z.shape[1] != self.n_latent_layers or z.shape[2] != self.latent_dim):
            raise InputError(
                f"per-layer codes must have shape (N, {self.n_latent_layers}, {self.latent_dim}), got {tuple(z.shape)}"
            )
        if not per_layer and (z.dim() != 2 or z.shape[1] != self.latent_dim):
            raise InputError(
                f"latent codes must have shape (N, {self.latent_dim}), got {tuple(z.shape)}; sample "
                f"z = torch.randn(n, {self.latent_dim})"
            )
        if self.z_shape is not None and not per_layer:
            z = z.reshape(z.shape[0], *self.z_shape)
        return self.module(z)

    def decode(self, z: Tensor) -> Tensor:
        return self(z)

    def encode(self, x: Tensor) -> Tensor:
        raise ConfigError(
            "a generator has no encoder; recover codes for images by optimisation "
            "(seethrough.generative.LatentRecovery) or pass z directly"
        )


def as_generator(model: nn.Module, latent_dim: int | None = None) -> Generator:
    """``model`` as a :class:`Generator` (returned as it is when it already is one)."""
    if isinstance(model, Generator) and latent_dim in (None, model.latent_dim):
        return model
    return Generator(model, latent_dim=latent_dim)
