"""Read the user's inputs: image files (with a stated preprocessing) or tensor files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import InputError

__all__ = ["load_images", "load_tensor"]


def load_images(
    paths: Sequence[str | Path],
    *,
    size: int | tuple[int, int] | None = None,
    channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Images as a float tensor ``(N, channels, H, W)``.

    Preprocessing, in this order: convert to RGB (``channels=3``) or grayscale (``1``),
    resize to ``size`` (bilinear; an int makes a square), scale to ``[0, 1]``, then
    ``(x - mean) / std`` per channel when given.
    """
    from PIL import Image

    if not paths:
        raise InputError("no image files given")
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels}")
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise InputError(f"image file {str(p)!r} does not exist")
        try:
            img: Image.Image = Image.open(p)
            img = img.convert("RGB" if channels == 3 else "L")
        except OSError as e:
            raise InputError(f"cannot read {str(p)!r} as an image: {e}") from e
        if size is not None:
            wh = (size, size) if isinstance(size, int) else (size[1], size[0])
            img = img.resize(wh, Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        out.append(torch.from_numpy(arr.copy()))
    shapes = {tuple(t.shape) for t in out}
    if len(shapes) > 1:
        raise InputError(f"images have different sizes {sorted(shapes)}; give --size to resize them")
    x = torch.stack(out)
    for name, v in (("mean", mean), ("std", std)):
        if v is not None and len(v) not in (1, channels):
            raise InputError(f"{name} needs 1 or {channels} values, got {len(v)}")
    if mean is not None:
        x = x - torch.tensor(mean, dtype=x.dtype).reshape(1, -1, 1, 1)
    if std is not None:
        s = torch.tensor(std, dtype=x.dtype)
        if bool((s <= 0).any()):
            raise InputError("std values must be positive")
        x = x / s.reshape(1, -1, 1, 1)
    return x


def load_tensor(path: str | Path, key: str | None = None) -> torch.Tensor:
    """A tensor from ``.npy``, ``.safetensors`` (``key`` or its only tensor) or a torch
    file holding a tensor (read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"tensor file {str(path)!r} does not exist")
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False)).float()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        d = load_file(str(path))
        if key is None:
            if len(d) != 1:
                raise InputError(f"{str(path)!r} holds {sorted(d)}; name one with --tensor-key")
            key = next(iter(d))
        if key not in d:
            raise InputError(f"{str(path)!r} has no tensor {key!r}; it has {sorted(d)}")
        return d[key].float()
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, torch.Tensor):
        raise InputError(f"{str(path)!r} does not hold a tensor (got {type(obj).__name__})")
    return obj.float()
