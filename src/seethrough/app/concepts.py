"""Concept data for the concepts family, by name: what the library takes as tensors.

:class:`~seethrough.concepts.TCAV` takes each concept's example images and the random
images as tensors. Here they are made from what a user names:

* a generated concept name (:data:`seethrough.data.concepts.CONCEPTS`, e.g. ``"stripes"``):
  :func:`~seethrough.data.concepts.concept_images`, as many as the protocol needs
  (:meth:`TCAV.examples_needed <seethrough.concepts.TCAV.examples_needed>`), seeded with
  the TCAV's seed;
* a folder of images or a tensor file (read with
  :func:`~seethrough.data.concepts.load_concept_images` at the inputs' size), or a tensor;
* random images: generated (:func:`~seethrough.data.concepts.random_images`, as many as
  the protocol needs) unless given the same ways.

:func:`run_tcav` and :func:`run_null_check` do this and call the library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from seethrough._core.errors import InputError
from seethrough._core.layers import resolve_layer
from seethrough.concepts import TCAV, NullCheckResult, TCAVResult, tcav_null_check

__all__ = [
    "ConceptSource",
    "ConceptScenesFiles",
    "concept_examples",
    "random_examples",
    "run_tcav",
    "run_null_check",
    "load_concept_scenes",
]

#: Where a concept's (or the random) examples come from: a tensor, a folder of images or a
#: tensor file; None (in a dict of concepts) generates the concept of that name.
ConceptSource = Tensor | str | Path
Concepts = str | Sequence[str] | Mapping[str, ConceptSource | None]


def _shape(like: Tensor) -> tuple[int, int, int]:
    if not isinstance(like, Tensor) or like.dim() != 4:
        raise InputError(f"inputs must be images (N, C, H, W), got {getattr(like, 'shape', type(like).__name__)}")
    _, c, h, w = like.shape
    return int(c), int(h), int(w)


def _can_generate(like: Tensor, what: str, hint: str) -> None:
    c, h, w = _shape(like)
    if h != w or c not in (1, 3) or h < 24:
        raise InputError(
            f"{what} are generated as square RGB or grayscale images of at least 24 pixels, but the inputs "
            f"are {tuple(like.shape[1:])}; {hint}"
        )


def _load(src: ConceptSource, like: Tensor) -> Tensor:
    from seethrough.data.concepts import load_concept_images

    c, h, w = _shape(like)
    return load_concept_images(src, size=(h, w), channels=c if c in (1, 3) else 3)


def concept_examples(tcav: TCAV, concepts: Concepts, like: Tensor) -> dict[str, Tensor]:
    """``{name: images}`` for ``concepts``: generated names (``["stripes", "red"]``) or a
    dict name -> tensor, folder of images or tensor file (None generates that name), at
    the size and channels of the inputs ``like``."""
    from seethrough.data.concepts import CONCEPTS, concept_images

    if isinstance(concepts, str):
        concepts = [concepts]
    if isinstance(concepts, Mapping):
        items = list(concepts.items())
    elif isinstance(concepts, Sequence):
        items = [(c, None) for c in concepts]
    else:
        raise InputError(
            "concepts must be a list of generated concept names or a dict name -> examples "
            "(a tensor, a folder of images or a tensor file)"
        )
    if not items:
        raise InputError("no concepts given; name at least one (e.g. ['stripes', 'dots'])")
    c, h, _ = _shape(like)
    out: dict[str, Tensor] = {}
    for name, src in items:
        name = str(name)
        if name in out:
            raise InputError(f"concept {name!r} is given twice")
        if src is not None:
            out[name] = _load(src, like)
            continue
        if name not in CONCEPTS:
            raise InputError(
                f"{name!r} is not a generated concept ({', '.join(CONCEPTS)}); give its "
                f"examples as a dict entry {{{name!r}: folder_or_tensor}}"
            )
        _can_generate(like, "generated concepts", "give the concept's examples yourself")
        out[name] = concept_images(name, tcav.examples_needed(), seed=tcav.seed, size=h, channels=c)
    return out


def random_examples(tcav: TCAV, random: ConceptSource | None, like: Tensor, needed: int) -> Tensor:
    """The random images: ``random`` read at the inputs' size, or ``needed`` generated ones."""
    from seethrough.data.concepts import random_images

    if random is not None:
        return _load(random, like)
    c, h, _ = _shape(like)
    _can_generate(like, "random images", f"pass random=... (a tensor or a folder of at least {needed} images)")
    return random_images(needed, seed=tcav.seed, size=h, channels=c)


def run_tcav(
    tcav: TCAV, inputs: Tensor, concepts: Concepts, *, random: ConceptSource | None = None, **test_args: Any
) -> TCAVResult:
    """:meth:`TCAV.test <seethrough.concepts.TCAV.test>` with concepts and random images
    named as in :func:`concept_examples` and :func:`random_examples` (``test_args``:
    ``labels``, ``classes``, ``class_names``)."""
    resolve_layer(tcav.model, tcav.layer)  # a wrong layer fails before any data are made
    examples = concept_examples(tcav, concepts, inputs)
    pool = random_examples(tcav, random, inputs, tcav.random_needed(examples))
    return tcav.test(inputs, examples, random=pool, **test_args)


def run_null_check(
    tcav: TCAV, inputs: Tensor, *, random: ConceptSource | None = None, **check_args: Any
) -> NullCheckResult:
    """:func:`~seethrough.concepts.tcav_null_check` with the random pool named as in
    :func:`random_examples` (``check_args``: ``labels``, ``classes``, ``trials``)."""
    resolve_layer(tcav.model, tcav.layer)
    pool = random_examples(tcav, random, inputs, tcav.null_pool_needed())
    return tcav_null_check(tcav, inputs, random=pool, **check_args)


@dataclass(frozen=True)
class ConceptScenesFiles:
    """A user's scenes with a pixel mask per concept (what :meth:`Dissection.dissect` reads)."""

    images: Tensor
    masks: Mapping[str, Tensor]
    concepts: tuple[str, ...]


def load_concept_scenes(
    scenes: str, masks: str, *, size: int | None = None, channels: int = 3, mean=None, std=None
) -> ConceptScenesFiles:
    """Scenes from ``scenes`` (a folder of images, or a tensor file ``(N, C, H, W)``) and
    their concept masks from ``masks``: a ``.safetensors`` file holding one boolean
    ``(N, H, W)`` tensor per concept, named by the concept."""
    from safetensors import safe_open

    from seethrough.app.data import DataSpec

    images = DataSpec(scenes, size=size, channels=channels, mean=mean, std=std).load().images
    if not str(masks).endswith(".safetensors"):
        raise InputError(
            f"concept masks {masks!r} must be a .safetensors file with one (N, H, W) boolean tensor per concept, "
            f"named by the concept (safetensors.torch.save_file({{'stripes': m1, 'red': m2}}, path))"
        )
    try:
        with safe_open(str(masks), framework="pt") as f:
            named = {k: f.get_tensor(k).bool() for k in f.keys()}
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(f"cannot read concept masks {masks!r}: {e}") from e
    if not named:
        raise InputError(f"{masks!r} holds no concept masks")
    return ConceptScenesFiles(images, named, tuple(named))
