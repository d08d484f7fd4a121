"""How similar are two explanations? The measures of the sanity checks (Adebayo et al. 2018).

Every measure compares two batches of maps sample by sample and returns one value per
sample, ``(N,)`` float64, where 1 means "the same map" and lower values mean "less alike".
Maps are given per position, ``(N, H, W)`` (or ``(N, D)`` for the rank measures); a map
with channels is first reduced by the caller (:func:`seethrough.evaluation.pixel_maps`
sums them, keeping the sign).

Measures (the names accepted by :func:`compare_maps`):

``"spearman"``
    Spearman rank correlation of the signed maps: the Pearson correlation of their ranks,
    tied values receiving the mean of the ranks they span (as ``scipy.stats.spearmanr``).
``"spearman_abs"``
    The same on the absolute values of the maps (what Adebayo et al. call "with absolute
    value": the sign of a gradient map often flips under randomization while its magnitude
    pattern survives, or the reverse).
``"ssim"``
    Structural similarity (Wang et al. 2004, Gaussian window: sigma 1.5, radius 5, i.e.
    11 x 11; K1 = 0.01, K2 = 0.03) of the maps after :func:`normalize_maps`: absolute value,
    then min-max rescaling of each map to ``[0, 1]`` (data range 1). The mean is taken over
    the positions whose whole window lies inside the map, as scikit-image does, so maps
    need at least 11 x 11 positions.
``"hog"``
    Pearson correlation of the histograms of oriented gradients (Dalal and Triggs 2005) of
    the normalised maps: 9 unsigned orientation bins, cells of 8 x 8 positions, blocks of
    2 x 2 cells with L2-Hys normalisation (clipped at 0.2), Dalal and Triggs's layout (equal to
    ``skimage.feature.hog(m, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
    block_norm="L2-Hys")``). Implemented here in numpy, so no scikit-image is needed; maps
    need at least 16 x 16 positions.

Convention for degenerate maps: a correlation with a constant map (all positions equal,
e.g. a Grad-CAM map that the ReLU zeroed) is 0, not NaN: a map without structure shares no
structure with another one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, InputError

__all__ = [
    "SIMILARITIES",
    "compare_maps",
    "similarity_names",
    "rankdata",
    "pearson",
    "spearman",
    "spearman_abs",
    "normalize_maps",
    "ssim",
    "hog_features",
    "hog_similarity",
]

#: SSIM settings (Wang et al. 2004; scikit-image's ``gaussian_weights=True`` defaults).
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pair(a: object, b: object, what: str) -> tuple[Tensor, Tensor]:
    ta = torch.as_tensor(a).detach()
    tb = torch.as_tensor(b).detach()
    if ta.shape != tb.shape:
        raise InputError(
            f"{what}: the two batches of maps differ in shape, {tuple(ta.shape)} vs {tuple(tb.shape)}; "
            f"compare maps of the same inputs"
        )
    if ta.dim() < 2:
        raise InputError(f"{what}: maps need a batch axis, got shape {tuple(ta.shape)}; use maps[None] for one map")
    if ta.shape[0] == 0:
        raise InputError(f"{what}: no maps to compare (empty batch)")
    return ta.to(torch.float64).cpu(), tb.to(torch.float64).cpu()


def rankdata(x: Tensor) -> Tensor:
    """Ranks (1 .. D) of each row of ``x`` ``(N, D)``, ties given their mean rank (float64)."""
    x = torch.as_tensor(x).to(torch.float64)
    n, d = x.shape
    values, order = torch.sort(x, dim=1, stable=True)
    # group id of each sorted position: a new group starts where the value changes
    starts = torch.ones(n, d, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    group = torch.cumsum(starts.to(torch.int64), dim=1) - 1
    pos = torch.arange(1, d + 1, dtype=torch.float64).expand(n, d)
    total = torch.zeros(n, d, dtype=torch.float64).scatter_add_(1, group, pos)
    count = torch.zeros(n, d, dtype=torch.float64).scatter_add_(1, group, torch.ones(n, d, dtype=torch.float64))
    mean_rank = (total / count.clamp(min=1)).gather(1, group)
    ranks = torch.empty_like(mean_rank)
    ranks.scatter_(1, order, mean_rank)
    return ranks


def pearson(a: object, b: object) -> Tensor:
    """Pearson correlation of each pair of rows (maps flattened), ``(N,)`` float64.

    0 where either map is constant (see the module docstring)."""
    ta, tb = _pair(a, b, "pearson")
    ta, tb = ta.reshape(ta.shape[0], -1), tb.reshape(tb.shape[0], -1)
    ca = ta - ta.mean(dim=1, keepdim=True)
    cb = tb - tb.mean(dim=1, keepdim=True)
    na, nb = ca.norm(dim=1), cb.norm(dim=1)
    # constant rows: their centred values are exact zeros, or rounding noise far below the scale
    scale_a = ta.abs().amax(dim=1).clamp(min=1e-300)
    scale_b = tb.abs().amax(dim=1).clamp(min=1e-300)
    flat = (na <= 1e-12 * scale_a * ta.shape[1] ** 0.5) | (nb <= 1e-12 * scale_b * tb.shape[1] ** 0.5)
    r = (ca * cb).sum(dim=1) / (na * nb).clamp(min=1e-300)
    r = r.clamp(-1.0, 1.0)
    return torch.where(flat, torch.zeros_like(r), r)


def spearman(a: object, b: object) -> Tensor:
    """Spearman rank correlation of each pair of maps (signed values), ``(N,)``."""
    ta, tb = _pair(a, b, "spearman")
    return pearson(rankdata(ta.reshape(ta.shape[0], -1)), rankdata(tb.reshape(tb.shape[0], -1)))


def spearman_abs(a: object, b: object) -> Tensor:
    """Spearman rank correlation of the absolute values of each pair of maps, ``(N,)``."""
    ta, tb = _pair(a, b, "spearman_abs")
    return spearman(ta.abs(), tb.abs())


def normalize_maps(maps: object) -> Tensor:
    """``|maps|`` rescaled per map to ``[0, 1]`` (min-max; a constant map becomes zeros)."""
    m = torch.as_tensor(maps).detach().to(torch.float64).abs()
    flat = m.reshape(m.shape[0], -1)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp(min=1e-300), torch.zeros_like(flat))
    return out.reshape(m.shape)


def _spatial_2d(t: Tensor, what: str, min_size: int) -> None:
    if t.dim() != 3:
        raise InputError(
            f"{what} compares 2-D maps (N, H, W), got shape {tuple(t.shape)}; for other maps use "
            f"similarity='spearman' or 'spearman_abs'"
        )
    if t.shape[1] < min_size or t.shape[2] < min_size:
        raise InputError(
            f"{what} needs maps of at least {min_size} x {min_size} positions, got "
            f"{t.shape[1]} x {t.shape[2]}; use the rank measures ('spearman', 'spearman_abs') for small maps"
        )


def _gaussian_kernel(sigma: float, truncate: float) -> Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def ssim(
    a: object,
    b: object,
    *,
    normalize: bool = True,
    data_range: float = 1.0,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> Tensor:
    """Mean structural similarity of each pair of 2-D maps ``(N, H, W)``, ``(N,)`` float64.

    With ``normalize=True`` (default) both maps go through :func:`normalize_maps` first and
    ``data_range`` is 1. Local statistics use a Gaussian window (``sigma``, radius
    ``int(3.5 * sigma + 0.5)``) and population (co)variances; the mean runs over the
    positions whose window lies inside the map. Equals
    ``skimage.metrics.structural_similarity(x, y, data_range=1, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` on the normalised maps.
    """
    ta, tb = _pair(a, b, "ssim")
    k = _gaussian_kernel(sigma, SSIM_TRUNCATE)
    _spatial_2d(ta, "ssim", k.numel())
    if normalize:
        ta, tb = normalize_maps(ta), normalize_maps(tb)
        data_range = 1.0
    if data_range <= 0:
        raise ConfigError(f"ssim data_range must be positive, got {data_range}")
    x = torch.stack([ta, tb, ta * ta, tb * tb, ta * tb], dim=1)  # (N, 5, H, W)
    n = x.shape[0]
    flat = x.reshape(n * 5, 1, *x.shape[2:])
    flat = torch.nn.functional.conv2d(flat, k.reshape(1, 1, 1, -1))
    flat = torch.nn.functional.conv2d(flat, k.reshape(1, 1, -1, 1))
    mx, my, mxx, myy, mxy = flat.reshape(n, 5, *flat.shape[2:]).unbind(dim=1)
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(n, -1).mean(dim=1)


def hog_features(
    image: object,
    *,
    orientations: int = 9,
    pixels_per_cell: tuple[int, int] = (8, 8),
    cells_per_block: tuple[int, int] = (2, 2),
    eps: float = 1e-5,
) -> np.ndarray:
    """Histogram-of-oriented-gradients descriptor of one 2-D map (float64 vector).

    Central-difference gradients (zero on the border rows/columns), unsigned orientations
    in ``[0, 180)`` degrees split into ``orientations`` equal bins, each cell's histogram the
    mean gradient magnitude per bin over its positions (positions beyond the last whole
    cell are ignored), then blocks of ``cells_per_block`` cells, sliding by one cell,
    normalised with L2-Hys (L2, clip at 0.2, L2 again; ``eps`` as in scikit-image). The
    vector is ordered (block row, block column, cell row, cell column, orientation), like
    ``skimage.feature.hog(..., feature_vector=True)``.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise InputError(f"hog_features takes one 2-D map, got shape {img.shape}")
    if orientations < 1:
        raise ConfigError(f"orientations must be at least 1, got {orientations}")
    cr, cc = (int(v) for v in pixels_per_cell)
    br, bc = (int(v) for v in cells_per_block)
    if min(cr, cc, br, bc) < 1:
        raise ConfigError("pixels_per_cell and cells_per_block must be positive")
    h, w = img.shape
    n_cr, n_cc = h // cr, w // cc
    n_br, n_bc = n_cr - br + 1, n_cc - bc + 1
    if n_br < 1 or n_bc < 1:
        raise InputError(
            f"a {h} x {w} map is too small for HOG with {cr}x{cc}-position cells and {br}x{bc}-cell "
            f"blocks (needs at least {br * cr} x {bc * cc}); use the rank measures for small maps"
        )
    g_row = np.zeros_like(img)
    g_col = np.zeros_like(img)
    g_row[1:-1, :] = img[2:, :] - img[:-2, :]
    g_col[:, 1:-1] = img[:, 2:] - img[:, :-2]
    mag = np.hypot(g_col, g_row)[: n_cr * cr, : n_cc * cc]
    ori = (np.rad2deg(np.arctan2(g_row, g_col)) % 180)[: n_cr * cr, : n_cc * cc]
    edges = (180.0 / orientations) * np.arange(orientations + 1)
    bins = np.searchsorted(edges[:-1], ori, side="right") - 1
    # a bin holds orientations in [edges[i], edges[i + 1]); rounding can leave a few past the last edge
    keep = ori < edges[-1]
    rows = np.arange(n_cr * cr)[:, None] // cr
    cols = np.arange(n_cc * cc)[None, :] // cc
    index = (rows * n_cc + cols) * orientations + bins
    counts = np.bincount(index[keep], weights=mag[keep], minlength=n_cr * n_cc * orientations)
    hist = counts.reshape(n_cr, n_cc, orientations) / (cr * cc)
    blocks = np.lib.stride_tricks.sliding_window_view(hist, (br, bc), axis=(0, 1))  # (n_br, n_bc, o, br, bc)
    blocks = np.moveaxis(blocks, 2, -1)  # (n_br, n_bc, br, bc, o)
    norm = np.sqrt((blocks**2).sum(axis=(2, 3, 4), keepdims=True) + eps**2)
    out = np.minimum(blocks / norm, 0.2)
    out = out / np.sqrt((out**2).sum(axis=(2, 3, 4), keepdims=True) + eps**2)
    return np.ascontiguousarray(out).ravel()


def hog_similarity(a: object, b: object, *, normalize: bool = True, **hog_settings) -> Tensor:
    """Pearson correlation of the HOG descriptors of each pair of 2-D maps, ``(N,)``.

    With ``normalize=True`` (default) the maps go through :func:`normalize_maps` first.
    ``hog_settings`` go to :func:`hog_features`."""
    ta, tb = _pair(a, b, "hog")
    _spatial_2d(ta, "hog", 2)
    if normalize:
        ta, tb = normalize_maps(ta), normalize_maps(tb)
    fa = np.stack([hog_features(m, **hog_settings) for m in ta.numpy()])
    fb = np.stack([hog_features(m, **hog_settings) for m in tb.numpy()])
    return pearson(torch.from_numpy(fa), torch.from_numpy(fb))


#: Similarity measures by name: ``fn(maps_a, maps_b) -> (N,)``.
SIMILARITIES: dict[str, Callable[[object, object], Tensor]] = {
    "spearman_abs": spearman_abs,
    "spearman": spearman,
    "ssim": ssim,
    "hog": hog_similarity,
}


def similarity_names() -> list[str]:
    return list(SIMILARITIES)


def _check_names(names) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ConfigError(f"give at least one similarity measure, from {', '.join(SIMILARITIES)}")
    for n in names:
        if n not in SIMILARITIES:
            import difflib

            close = difflib.get_close_matches(str(n), list(SIMILARITIES), n=2, cutoff=0.4)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"unknown similarity measure {n!r}.{hint} Available: {', '.join(SIMILARITIES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"similarity measures are listed twice: {names}")
    return names


def compare_maps(name: str, a: object, b: object) -> Tensor:
    """The measure ``name`` (one of :data:`SIMILARITIES`) for each pair of maps, ``(N,)``."""
    (name,) = _check_names((name,))
    return SIMILARITIES[name](a, b)
