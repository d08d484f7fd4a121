"""Which generator a ``gan`` command runs on, and the real data that go with it.

    --model scenes-gan                                     a bundled generator
    --model mypkg.models:make_generator --weights g.safetensors [--latent-dim 64] [--z-shape 64,1,1]

A user's generator is a factory called with no arguments, loaded strictly from its weights;
its latent size is read from its ``latent_dim`` attribute or given with ``--latent-dim``, and
``--z-shape`` says how one code is shaped inside it (``64,1,1`` for a DCGAN that starts with
a transposed convolution). The bundled generators know their real data (train and held-out
parts), their feature extractor for the sample-quality metrics and, for the scenes, their
segmenter and factor predictor.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from torch import Tensor, nn

from seethrough._core.errors import ConfigError
from seethrough.generative.protocol import Generator

from .data import HELD_OUT_SEED
from .models import load_model

__all__ = [
    "GeneratorSpec",
    "add_generator_arguments",
    "generator_spec",
    "RealData",
    "real_data",
    "feature_model",
    "GAN_DATA",
]

#: which real data each bundled generator was trained on
GAN_DATA = {"mnist-gan": "mnist", "mnist-gan-memorized": "mnist", "scenes-gan": "scenes"}

#: the bundled feature extractor (model, layer) for each kind of real data: the penultimate
#: layer of the bundled classifier of that data (no download)
FEATURES = {"mnist": ("mnist-cnn", "flatten"), "scenes": ("scenes-factors", "fc")}


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator named as every ``gan`` command names one."""

    name: str
    weights: str | None = None
    latent_dim: int | None = None
    z_shape: tuple[int, ...] | None = None

    @property
    def bundled(self) -> bool:
        from seethrough import zoo

        return self.name in zoo.available()

    @property
    def data(self) -> str | None:
        """The bundled data of a bundled generator, else None."""
        return GAN_DATA.get(self.name)

    def load(self) -> Generator:
        """The generator (a :class:`~seethrough.generative.Generator`), in eval mode."""
        from seethrough import zoo

        if self.bundled and zoo.info(self.name).kind != "generator":
            raise ConfigError(
                f"{self.name!r} is a bundled {zoo.info(self.name).kind}, not a generator; choose one of "
                f"{', '.join(zoo.available('generator'))} or give package.module:factory with --weights"
            )
        module = load_model(self.name, self.weights)
        return Generator(module, latent_dim=self.latent_dim, z_shape=self.z_shape).eval()


def _z_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"--z-shape must be positive integers separated by commas, got {text!r}")
    return shape


def add_generator_arguments(p: argparse.ArgumentParser, *, default: str = "scenes-gan") -> None:
    from seethrough import zoo

    g = p.add_argument_group("generator")
    g.add_argument(
        "--model",
        default=default,
        help=f"bundled generator ({', '.join(zoo.available('generator'))}) or package.module:factory "
        f"(default: {default})",
    )
    g.add_argument("--weights", help="safetensors weights of a factory --model")
    g.add_argument("--latent-dim", type=int, help="latent size, when the model has no latent_dim attribute")
    g.add_argument("--z-shape", type=_z_shape, help="shape of one code inside the model, e.g. 64,1,1 (DCGAN)")


def generator_spec(args: argparse.Namespace) -> GeneratorSpec:
    return GeneratorSpec(name=args.model, weights=args.weights, latent_dim=args.latent_dim, z_shape=args.z_shape)


@dataclass(frozen=True)
class RealData:
    """Real images of a bundled data set: the part a generator was trained on and a part it
    never saw, with labels (digit classes, or the scenes' factors)."""

    name: str
    train: Tensor
    heldout: Tensor
    train_labels: Tensor
    heldout_labels: Tensor


def real_data(name: str, *, n_train: int | None = None, n_heldout: int | None = None) -> RealData:
    """``"mnist"``: the 4,000 training and 1,000 held-out digits of ``mnist_split(seed=0)``;
    ``"scenes"``: ``n_train`` scenes of seed 0 (the GAN's training stream) and ``n_heldout``
    scenes of the held-out seed, with their factors."""
    if name == "mnist":
        from seethrough.data.mnist import mnist_split

        s = mnist_split(seed=0)
        tr, te = s.x_train, s.x_test
        ytr, yte = s.y_train, s.y_test
    elif name == "scenes":
        from seethrough.data.factors import make_factor_scenes

        a = make_factor_scenes(n_train or 2000, seed=0)
        b = make_factor_scenes(n_heldout or 2000, seed=HELD_OUT_SEED)
        tr, te, ytr, yte = a.images, b.images, a.factors, b.factors
    else:
        raise ConfigError(f"unknown real data {name!r}; choose mnist or scenes")
    tr, ytr = tr[:n_train], ytr[:n_train]
    te, yte = te[:n_heldout], yte[:n_heldout]
    return RealData(name=name, train=tr, heldout=te, train_labels=ytr, heldout_labels=yte)


def feature_model(data: str) -> tuple[nn.Module, str]:
    """The bundled feature extractor of ``data``: ``(model, layer)``: the penultimate layer of
    the bundled classifier of those data (``mnist-cnn``'s 128 pooled channels, ``flatten``;
    ``scenes-factors``' 256 hidden units, ``fc``)."""
    from seethrough import zoo

    if data not in FEATURES:
        raise ConfigError(f"no bundled feature extractor for {data!r}; choose one of {', '.join(FEATURES)}")
    name, layer = FEATURES[data]
    return zoo.load(name), layer
