"""Feature masks: integer maps that group input elements into interpretable features.

A feature mask has the input's per-sample shape (or broadcasts to it), or carries a batch
dimension for one mask per sample; element values are feature ids ``0..n_features-1``.
Every mask-based method (feature ablation, LIME, KernelSHAP, Shapley sampling) takes one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, InputError

__all__ = [
    "grid_mask",
    "superpixel_mask",
    "as_feature_mask",
    "n_features",
    "default_feature_mask",
    "feature_mask_from_spec",
]


def grid_mask(shape: tuple[int, ...], cell: int | tuple[int, int], *, channels: int | None = None) -> Tensor:
    """Regular grid of ``cell``-sized patches over the last two dims of ``shape`` (H, W)
    or (C, H, W); all channels of a patch share its id."""
    if len(shape) not in (2, 3):
        raise InputError(f"grid_mask needs (H, W) or (C, H, W), got {shape}")
    ch, cw = (cell, cell) if isinstance(cell, int) else cell
    if ch < 1 or cw < 1:
        raise ConfigError(f"cell sizes must be positive, got {cell}")
    H, W = shape[-2:]
    rows = torch.arange(H) // ch
    cols = torch.arange(W) // cw
    n_cols = int(cols.max()) + 1
    m = rows[:, None] * n_cols + cols[None, :]
    if len(shape) == 3:
        m = m.unsqueeze(0).expand(shape[0], H, W).clone()
    return m.long()


def superpixel_mask(image: Tensor, method: str = "slic", **kwargs) -> Tensor:
    """Superpixels of one image ``(C, H, W)`` in [0, 1] from scikit-image: ``"slic"``
    (default ``n_segments=50, compactness=10``), ``"quickshift"`` or ``"felzenszwalb"``.
    Returns ``(C, H, W)`` ids shared by all channels."""
    try:
        from skimage import segmentation
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("superpixel masks need scikit-image: pip install scikit-image") from e
    if image.dim() != 3:
        raise InputError(f"superpixel_mask takes one image (C, H, W), got shape {tuple(image.shape)}")
    img = image.detach().cpu().double().numpy().transpose(1, 2, 0)
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    gray = img.shape[2] == 1
    if method == "slic":
        kw = {"n_segments": 50, "compactness": 10.0, "start_label": 0, **kwargs}
        seg = segmentation.slic(img[..., 0] if gray else img, channel_axis=None if gray else -1, **kw)
    elif method == "quickshift":
        rgb = np.repeat(img, 3, axis=2) if gray else img
        seg = segmentation.quickshift(rgb, **{"kernel_size": 3, "max_dist": 6, "ratio": 0.5, **kwargs})
    elif method == "felzenszwalb":
        seg = segmentation.felzenszwalb(
            img[..., 0] if gray else img, **{"scale": 50, "sigma": 0.5, "min_size": 20, **kwargs}
        )
    else:
        raise ConfigError(f"unknown superpixel method {method!r}; use 'slic', 'quickshift' or 'felzenszwalb'")
    _, seg = np.unique(seg, return_inverse=True)
    seg = torch.from_numpy(seg.reshape(img.shape[:2])).long()
    return seg.unsqueeze(0).expand(image.shape[0], -1, -1).clone()


def as_feature_mask(mask: Tensor, x: Tensor) -> tuple[Tensor, int]:
    """Validate ``mask`` against inputs ``x``; return it as ``(B, *sample_shape)`` long ids
    renumbered ``0..n-1`` (per batch, jointly) and the number of features."""
    if not isinstance(mask, Tensor):
        mask = torch.as_tensor(np.asarray(mask))
    if mask.dtype.is_floating_point or mask.dtype == torch.bool:
        raise InputError(f"a feature mask holds integer feature ids, got dtype {mask.dtype}")
    sample = tuple(x.shape[1:])
    if mask.dim() == len(sample) + 1 and mask.shape[0] in (1, x.shape[0]):
        per = mask
    else:
        per = mask.unsqueeze(0)
    try:
        per = torch.broadcast_to(per, (per.shape[0],) + sample)
    except RuntimeError:
        raise InputError(
            f"feature mask of shape {tuple(mask.shape)} does not match inputs of shape "
            f"{tuple(x.shape)}; give one id per input element (shape {sample}, or broadcastable "
            f"to it, e.g. (1, H, W) to share ids across channels), optionally with a batch dimension"
        ) from None
    if per.numel() and int(per.min()) < 0:
        raise InputError("feature ids must be non-negative")
    ids, inv = torch.unique(per, return_inverse=True)
    per = inv.reshape(per.shape).to(x.device)
    per = per.expand((x.shape[0],) + sample) if per.shape[0] == 1 else per
    return per.long(), int(ids.numel())


def n_features(mask: Tensor) -> int:
    return int(torch.unique(mask).numel())


def default_feature_mask(x: Tensor) -> Tensor:
    """The mask mask-based methods use when none is given: an 8x8 grid of patches for
    images ``(B, C, H, W)`` (64 features), one feature per element otherwise."""
    if x.dim() == 4 and min(x.shape[2:]) >= 8:
        cell = (-(-x.shape[2] // 8), -(-x.shape[3] // 8))
        return grid_mask(tuple(x.shape[1:]), cell)
    return torch.arange(int(np.prod(x.shape[1:]))).reshape(x.shape[1:])


def feature_mask_from_spec(spec: str | None, x: Tensor) -> Tensor | None:
    """A feature mask from a short spec, for the command line: ``"grid:N"`` (N x N-pixel
    cells), ``"slic[:n_segments]"``, ``"quickshift"``, ``"felzenszwalb"`` (one mask per
    image), ``"elements"`` (every element its own feature) or None (the default mask)."""
    if spec is None or spec == "default":
        return None
    name, _, arg = spec.partition(":")
    if name == "grid":
        if not arg.isdigit() or int(arg) < 1:
            raise ConfigError(f"grid masks are written grid:N with N the cell size in pixels, got {spec!r}")
        if x.dim() != 4:
            raise InputError(f"grid masks need image inputs (B, C, H, W), got shape {tuple(x.shape)}")
        return grid_mask(tuple(x.shape[1:]), int(arg))
    if name == "elements":
        return torch.arange(int(np.prod(x.shape[1:]))).reshape(x.shape[1:])
    if name in ("slic", "quickshift", "felzenszwalb"):
        if x.dim() != 4:
            raise InputError(f"superpixel masks need image inputs (B, C, H, W), got shape {tuple(x.shape)}")
        kw = {"n_segments": int(arg)} if (name == "slic" and arg) else {}
        return torch.stack([superpixel_mask(img, name, **kw) for img in x])
    raise ConfigError(f"unknown feature mask {spec!r}; use grid:N, slic[:N], quickshift, felzenszwalb or elements")
