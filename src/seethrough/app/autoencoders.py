"""Which autoencoder a generative command runs on: a bundled one, the user's own
autoencoder (``module:factory`` whose module has ``encode``/``decode``), or the user's
separate encoder and decoder factories, each with safetensors weights.

    --model peptide-wae
    --model mypkg.models:make_vae --weights vae.safetensors
    --encoder mypkg.models:make_encoder --encoder-weights enc.safetensors \\
        --decoder mypkg.models:make_decoder --decoder-weights dec.safetensors --latent-dim 16
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from torch import nn

from seethrough._core.errors import ConfigError
from seethrough.generative.protocol import Autoencoder, check_autoencoder

from .models import load_model

__all__ = ["AutoencoderSpec", "add_autoencoder_arguments", "autoencoder_spec"]


@dataclass(frozen=True)
class AutoencoderSpec:
    """An autoencoder named the way every generative command names one: ``name`` (bundled
    or ``module:factory``, with ``weights``), or ``encoder``/``decoder`` factories with their
    weights and ``latent_dim``."""

    name: str | None = None
    weights: str | None = None
    encoder: str | None = None
    decoder: str | None = None
    encoder_weights: str | None = None
    decoder_weights: str | None = None
    latent_dim: int | None = None

    def __post_init__(self) -> None:
        if self.name is None and self.decoder is None:
            raise ConfigError("name a model: --model (bundled or module:factory) or --decoder (with --encoder)")
        if self.name is not None and (self.encoder or self.decoder):
            raise ConfigError("give either --model or --encoder/--decoder, not both")

    @property
    def bundled(self) -> bool:
        from seethrough import zoo

        return self.name is not None and self.name in zoo.available()

    @property
    def info(self) -> Any:
        from seethrough import zoo

        return zoo.info(self.name) if self.bundled and self.name is not None else None

    @property
    def label(self) -> str:
        return self.name or f"{self.encoder} + {self.decoder}"

    def load(self) -> nn.Module:
        """The autoencoder, in eval mode; a clear error when what was named is not one."""
        if self.name is not None:
            from seethrough import zoo

            if self.bundled and zoo.info(self.name).kind != "autoencoder":
                raise ConfigError(
                    f"{self.name!r} is a bundled {zoo.info(self.name).kind}, not an autoencoder; choose one of "
                    f"{', '.join(zoo.available('autoencoder'))}"
                )
            model = load_model(self.name, self.weights)
            check_autoencoder(model, what=f"model {self.name!r}")
            return model
        assert self.decoder is not None
        decoder = load_model(self.decoder, self.decoder_weights)
        encoder = None if self.encoder is None else load_model(self.encoder, self.encoder_weights)
        return Autoencoder(encoder, decoder, latent_dim=self.latent_dim).eval()


def add_autoencoder_arguments(p: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """``--model``/``--weights``, or ``--encoder``/``--decoder`` with their weights and ``--latent-dim``."""
    from seethrough import zoo

    g = p.add_argument_group("autoencoder")
    g.add_argument(
        "--model",
        default=default,
        help=f"bundled autoencoder ({', '.join(zoo.available('autoencoder'))}) or package.module:factory of a module "
        "with encode(x) and decode(z)" + (f" (default: {default})" if default else ""),
    )
    g.add_argument("--weights", help="safetensors weights of a factory --model")
    g.add_argument("--encoder", help="package.module:factory of an encoder x -> z (or -> (mu, logvar))")
    g.add_argument("--decoder", help="package.module:factory of a decoder z -> output")
    g.add_argument("--encoder-weights", help="safetensors weights of --encoder")
    g.add_argument("--decoder-weights", help="safetensors weights of --decoder")
    g.add_argument("--latent-dim", type=int, help="latent size of --encoder/--decoder (if they do not say it)")


def autoencoder_spec(args: argparse.Namespace) -> AutoencoderSpec:
    name = args.model if not (args.encoder or args.decoder) else None
    return AutoencoderSpec(
        name=name,
        weights=args.weights,
        encoder=args.encoder,
        decoder=args.decoder,
        encoder_weights=args.encoder_weights,
        decoder_weights=args.decoder_weights,
        latent_dim=args.latent_dim,
    )
