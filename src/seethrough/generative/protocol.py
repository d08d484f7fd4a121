"""The autoencoder protocol this family relies on, and the wrappers around it.

An autoencoder is any ``nn.Module`` with ``encode(x) -> z (B, Z)``, ``decode(z)`` and an
integer ``latent_dim``; a VAE adds ``encode_distribution(x) -> (mu, logvar)``. The bundled
models follow it; a user's separate encoder and decoder become one with :class:`Autoencoder`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .._core.errors import ConfigError, InputError

__all__ = ["Autoencoder", "DecoderModule", "check_autoencoder"]


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
