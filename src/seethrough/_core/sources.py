"""Image data sets read by position: what the dataset-examples pass streams over.

A source has a length and returns the images at any positions (``get``), so a pass can
read it batch by batch from any point (resuming) and the atlas can fetch the few images
it shows without holding the data set. Each source describes itself (``describe``) for
the atlas index and gives a ``fingerprint`` that changes when its content does, so a
resumed pass never mixes two data sets.

* :class:`TensorSource`: images already in memory, ``(N, C, H, W)`` (or any ``(N, ...)``).
* :class:`FolderSource`: the image files of a folder (sorted by name), read per batch.
* :class:`DatasetSource`: a map-style dataset (``len`` and ``ds[i]`` giving a tensor or
  a tuple whose first element is one), e.g. a ``torch.utils.data.Dataset``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import InputError

__all__ = [
    "ImageSource",
    "TensorSource",
    "FolderSource",
    "DatasetSource",
    "as_source",
    "IMAGE_SUFFIXES",
]

#: File name endings read as images by :class:`FolderSource` (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _index_list(idx: slice | Sequence[int] | Tensor, n: int) -> list[int]:
    if isinstance(idx, slice):
        return list(range(n))[idx]
    if isinstance(idx, Tensor):
        idx = idx.reshape(-1).tolist()
    out = [int(i) for i in idx]
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise InputError(f"example index {bad[0]} is out of range for a data set of {n} images")
    return out


class ImageSource:
    """Base class: ``len(source)`` images, ``source.get(indices)`` -> ``(B, ...)`` float."""

    #: Short name for the atlas pages.
    name: str = "images"
    #: Per-channel mean and std the images were normalised with (to undo for display).
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def get(self, idx: slice | Sequence[int] | Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def fingerprint(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "n": len(self)}

    def for_display(self, x: Tensor) -> Tensor:
        """Undo the normalisation (when known): images as the eye should see them."""
        if self.mean is None and self.std is None:
            return x
        c = x.shape[-3] if x.dim() >= 3 else 1
        std = torch.tensor(self.std or (1.0,), dtype=x.dtype).reshape(-1, 1, 1).expand(c, 1, 1)
        mean = torch.tensor(self.mean or (0.0,), dtype=x.dtype).reshape(-1, 1, 1).expand(c, 1, 1)
        return x * std + mean


class TensorSource(ImageSource):
    """Images held in a tensor ``(N, ...)`` (float; converted with ``.float()``)."""

    def __init__(self, images: Tensor, *, name: str = "tensor", mean=None, std=None) -> None:
        if not isinstance(images, Tensor):
            raise InputError(
                f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}; "
                f"convert with torch.as_tensor(...)"
            )
        if images.dim() < 2:
            raise InputError(
                f"images need a leading data-set dimension and at least one more, got shape {tuple(images.shape)}"
            )
        if not images.dtype.is_floating_point:
            images = images.float()
        self.images = images.detach()
        self.name = name
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self._fp: str | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def get(self, idx):
        if isinstance(idx, slice):
            return self.images[idx]
        return self.images[torch.as_tensor(_index_list(idx, len(self)), dtype=torch.long)]

    def fingerprint(self) -> str:
        if self._fp is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((tuple(self.images.shape), str(self.images.dtype))).encode())
            arr = self.images.cpu().contiguous().numpy()
            h.update(arr.reshape(-1).view(np.uint8).data)
            self._fp = h.hexdigest()
        return self._fp

    def describe(self):
        return {"name": self.name, "n": len(self), "shape": list(self.images.shape[1:])}


class FolderSource(ImageSource):
    """The image files directly inside ``folder`` (sorted by name), read when asked for.

    Preprocessing as :func:`seethrough._core.files.load_images`: RGB (``channels=3``) or
    grayscale (``1``), resized to ``size``, scaled to [0, 1], then ``(x - mean) / std``.
    """

    def __init__(
        self, folder: str | Path, *, size=None, channels: int = 3, mean=None, std=None, limit: int | None = None
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"image folder {str(folder)!r} does not exist")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if limit is not None:
            files = files[: int(limit)]
        self.folder = folder
        self.files = files
        self.size = size
        self.channels = int(channels)
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self.name = folder.name or str(folder)

    def __len__(self) -> int:
        return len(self.files)

    def get(self, idx):
        from .files import load_images

        rows = _index_list(idx, len(self))
        if not rows:
            c = self.channels
            return torch.empty((0, c, 0, 0))
        return load_images(
            [self.files[i] for i in rows], size=self.size, channels=self.channels, mean=self.mean, std=self.std
        )

    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.size, self.channels, self.mean, self.std)).encode())
        for p in self.files:
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def describe(self):
        return {
            "name": self.name,
            "n": len(self),
            "folder": str(self.folder),
            "size": self.size,
            "channels": self.channels,
        }


class DatasetSource(ImageSource):
    """A map-style dataset: ``len(ds)`` and ``ds[i]`` -> a tensor, or a tuple/list whose
    first element is one (e.g. ``(image, label)``)."""

    def __init__(self, dataset: Any, *, name: str | None = None) -> None:
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise InputError(
                f"cannot read {type(dataset).__name__} as a data set: give a tensor (N, C, H, W), "
                f"a map-style dataset (len and [i]) or an ImageSource"
            )
        self.dataset = dataset
        self.name = name or type(dataset).__name__

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, idx):
        rows = _index_list(idx, len(self))
        items = []
        for i in rows:
            item = self.dataset[i]
            if isinstance(item, (tuple, list)):
                item = item[0]
            if not isinstance(item, Tensor):
                item = torch.as_tensor(np.asarray(item))
            items.append(item.float())
        if not items:
            return torch.empty((0,))
        return torch.stack(items)

    def fingerprint(self) -> str:
        # Hashing every item would read the whole data set; the length and, when small,
        # the first and last items stand in for it.
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{type(self.dataset).__qualname__}:{len(self)}".encode())
        if len(self):
            for t in (self.get([0]), self.get([len(self) - 1])):
                h.update(memoryview(t.contiguous().numpy().reshape(-1).view(np.uint8)))
        return h.hexdigest()


def as_source(data: Any) -> ImageSource:
    """An :class:`ImageSource` from a source, a tensor or a map-style dataset."""
    if isinstance(data, ImageSource):
        return data
    if isinstance(data, Tensor):
        return TensorSource(data)
    if isinstance(data, np.ndarray):
        return TensorSource(torch.from_numpy(np.asarray(data, dtype=np.float32)), name="array")
    if isinstance(data, (str, Path)):
        raise InputError(
            f"got the path {str(data)!r} as data; open it with seethrough.app.open_source(...) "
            f"(a folder of images, a tensor file, 'shapes' or 'mnist')"
        )
    return DatasetSource(data)
