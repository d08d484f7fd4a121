"""Turn any attribution map into a binary segmentation and a bounding box."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, InputError

__all__ = ["threshold_map", "otsu_threshold", "bounding_boxes"]


def _as_maps(maps) -> Tensor:
    from .._core.result import Explanation

    if isinstance(maps, Explanation):
        maps = maps.attributions
    if not isinstance(maps, Tensor):
        maps = torch.as_tensor(np.asarray(maps))
    if maps.dim() == 4:
        maps = maps.sum(dim=1)
    if maps.dim() == 2:
        maps = maps.unsqueeze(0)
    if maps.dim() != 3:
        raise InputError(f"expected maps of shape (B, H, W), (B, C, H, W) or (H, W); got {tuple(maps.shape)}")
    if not bool(torch.isfinite(maps).all()):
        raise InputError("the maps contain NaN or infinite values; cannot threshold them")
    return maps.detach().float()


def otsu_threshold(values: Tensor, bins: int = 256) -> float:
    """Otsu's threshold: the cut maximising the between-class variance of a histogram."""
    v = values.detach().flatten().double().cpu()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist = torch.histc(v, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = torch.cumsum(hist, 0)
    w1 = w0[-1] - w0
    m0 = torch.cumsum(hist * centers, 0)
    mean0 = m0 / w0.clamp(min=1e-12)
    mean1 = (m0[-1] - m0) / w1.clamp(min=1e-12)
    between = w0 * w1 * (mean0 - mean1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1
    return float(centers[int(torch.argmax(between))])


def threshold_map(maps, *, method: str = "otsu", value: float | None = None, absolute: bool = False) -> Tensor:
    """Binary masks ``(B, H, W)`` of where each map is high.

    ``method="fixed"`` keeps values above ``value``; ``"percentile"`` keeps values above
    the map's ``value``-th percentile (e.g. 90 keeps the top 10%); ``"otsu"`` uses Otsu's
    threshold per map. Channels are summed first; ``absolute=True`` thresholds ``|map|``.
    """
    m = _as_maps(maps)
    if absolute:
        m = m.abs()
    out = torch.zeros_like(m, dtype=torch.bool)
    for i in range(m.shape[0]):
        if method == "fixed":
            if value is None:
                raise ConfigError("method='fixed' needs value=, the threshold")
            t = float(value)
        elif method == "percentile":
            if value is None or not 0 <= value <= 100:
                raise ConfigError("method='percentile' needs value= between 0 and 100")
            t = float(torch.quantile(m[i].flatten(), value / 100.0))
        elif method == "otsu":
            t = otsu_threshold(m[i])
        else:
            raise ConfigError(f"unknown threshold method {method!r}; use 'fixed', 'percentile' or 'otsu'")
        out[i] = m[i] > t
    return out


def bounding_boxes(masks: Tensor, *, largest_component: bool = False) -> Tensor:
    """Boxes ``(B, 4)`` as ``(x_min, y_min, x_max, y_max)``, inclusive pixel indices, of
    each mask's pixels (or of its largest 8-connected component); ``-1`` rows for
    empty masks."""
    if masks.dim() == 4:
        masks = masks.any(dim=1)
    if masks.dim() == 2:
        masks = masks.unsqueeze(0)
    if masks.dim() != 3:
        raise InputError(f"expected masks of shape (B, H, W); got {tuple(masks.shape)}")
    boxes = torch.full((masks.shape[0], 4), -1, dtype=torch.long)
    for i, m in enumerate(masks.bool().cpu().numpy()):
        if largest_component and m.any():
            from scipy import ndimage

            labels, n = ndimage.label(m, structure=np.ones((3, 3)))
            sizes = ndimage.sum(m, labels, index=range(1, n + 1))
            m = labels == (int(np.argmax(sizes)) + 1)
        ys, xs = np.nonzero(m)
        if xs.size:
            boxes[i] = torch.tensor([xs.min(), ys.min(), xs.max(), ys.max()])
    return boxes
