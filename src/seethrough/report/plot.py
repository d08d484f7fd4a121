"""Plotting of explanations.

Every function here works on :class:`matplotlib.figure.Figure` objects directly and never
touches pyplot's global state, so it is safe in scripts, tests (Agg) and notebooks alike.
Functions that draw take ``ax=None`` (a new figure is made) and return the figure drawn on.

The fast path for reports, :func:`array_to_png`, uses Pillow and a colormap lookup only:
no figure is made, so hundreds of small images cost milliseconds.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, InputError
from .._core.reduce import REDUCTIONS, to_heatmap

__all__ = [
    "REDUCTIONS",
    "to_heatmap",
    "image_for_display",
    "color_limits",
    "default_cmap",
    "plot_explanation",
    "plot_grid",
    "plot_mask",
    "mask_overlay",
    "heatmap_overlay",
    "figure_to_png",
    "png_data_uri",
    "array_to_png",
]


SIGNED_CMAP = "RdBu_r"
UNSIGNED_CMAP = "inferno"


# ---------------------------------------------------------------------------------------
# array helpers
# ---------------------------------------------------------------------------------------
def _as_numpy(x: Any, name: str = "array") -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bool:
            return x.numpy()
        if not x.dtype.is_floating_point or x.dtype in (torch.bfloat16, torch.float16):
            x = x.float() if x.dtype != torch.uint8 else x
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise InputError(f"cannot convert {name} of type {type(x).__name__} to an array") from e


def image_for_display(x: Any) -> np.ndarray:
    """One input as a float array in ``[0, 1]`` ready for ``imshow``.

    Accepts ``(C, H, W)`` (``C`` = 1 or 3; any other ``C`` is averaged to gray),
    ``(H, W, 3|4)`` arrays, ``(H, W)`` and flat ``(D,)`` inputs (returned as a ``(1, D)``
    strip). Integer images (``uint8``) are divided by 255. Values outside ``[0, 1]``
    (normalised images) are rescaled min-max over the image; non-finite values become 0.

    Returns ``(H, W, 3)`` for colour images and ``(H, W)`` for grayscale ones.
    """
    arr = _as_numpy(x, "image")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float64) / 255.0
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None, :]
    elif arr.ndim == 3:
        if arr.shape[0] in (1, 3) or (arr.shape[-1] not in (3, 4) and arr.shape[0] <= 16):
            arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
        c = arr.shape[-1]
        if c == 1:
            arr = arr[..., 0]
        elif c == 4:
            arr = arr[..., :3]
        elif c != 3:
            arr = arr.mean(axis=-1)
    elif arr.ndim != 2:
        raise InputError(
            f"cannot display an input of shape {tuple(arr.shape)}: expected (C, H, W), (H, W, 3), (H, W) or (D,)"
        )
    arr = np.where(np.isfinite(arr), arr, 0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.clip(arr, 0.0, 1.0)


def color_limits(heat: Any, signed: bool, percentile: float = 99.5) -> tuple[float, float]:
    """Colour limits for a map: ``(-v, v)`` with ``v`` the ``percentile`` of ``|heat|``
    when ``signed``, else ``(0, v)`` with ``v`` the percentile of the map.

    The limits are never empty: a map that is zero everywhere gets ``v = 1``.
    """
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    h = _as_numpy(heat, "heatmap").astype(np.float64).ravel()
    h = h[np.isfinite(h)]
    if h.size == 0:
        return (-1.0, 1.0) if signed else (0.0, 1.0)
    mag = np.abs(h) if signed else np.clip(h, 0.0, None)
    v = float(np.percentile(mag, percentile))
    if not v > 0.0:
        v = float(mag.max())
    if not v > 0.0:
        v = 1.0
    return (-v, v) if signed else (0.0, v)


def default_cmap(signed: bool) -> str:
    """The colormap used for signed (diverging) or non-negative (sequential) maps."""
    return SIGNED_CMAP if signed else UNSIGNED_CMAP


def _get_cmap(cmap: Any):
    import matplotlib

    if cmap is None:
        cmap = "gray"
    if isinstance(cmap, str):
        try:
            return matplotlib.colormaps[cmap]
        except KeyError as e:
            raise ConfigError(f"unknown matplotlib colormap {cmap!r}") from e
    return cmap


def _resize_nearest(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes to ``(h, w)``."""
    H, W = arr.shape[:2]
    if (H, W) == (h, w):
        return arr
    rows = np.minimum((np.arange(h) * H) // h, H - 1)
    cols = np.minimum((np.arange(w) * W) // w, W - 1)
    return arr[rows][:, cols]


def _upscale_factors(h: int, w: int, min_size: int) -> tuple[int, int]:
    """Integer factors that bring the long side to ``min_size`` and keep the short side
    visible (at least ``min_size // 4``) for thin strips."""
    if min_size <= 0:
        return 1, 1
    s = max(1, math.ceil(min_size / max(h, w)))
    sy = sx = s
    thin = max(1, min_size // 4)
    if h * sy < thin:
        sy = math.ceil(thin / h)
    if w * sx < thin:
        sx = math.ceil(thin / w)
    return sy, sx


def _is_signed_map(expl, reduce: str) -> bool:
    return bool(getattr(expl, "signed", True)) and reduce == "sum"


def _mask_2d(mask: Any) -> np.ndarray:
    m = _as_numpy(mask, "mask")
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    elif m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise InputError(f"a mask must be (H, W) or (1, H, W), got shape {tuple(m.shape)}")
    if m.dtype == np.bool_:
        return m
    m = m.astype(np.float64)
    m = np.where(np.isfinite(m), m, 0.0)
    top = float(m.max()) if m.size else 1.0
    return m > 0.5 * (top if top > 1.0 else 1.0)


def _color_rgb(color: Any) -> np.ndarray:
    from matplotlib.colors import to_rgb

    try:
        return np.asarray(to_rgb(color), dtype=np.float64)
    except ValueError as e:
        raise ConfigError(f"not a matplotlib colour: {color!r}") from e


# ---------------------------------------------------------------------------------------
# image composition without matplotlib figures (fast; for HTML)
# ---------------------------------------------------------------------------------------
def _to_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img


def _colorize(heat: np.ndarray, cmap: Any, vmin: float, vmax: float) -> np.ndarray:
    cm = _get_cmap(cmap)
    if not vmax > vmin:
        vmax = vmin + 1.0
    normed = (heat.astype(np.float64) - vmin) / (vmax - vmin)
    normed = np.ma.masked_invalid(np.clip(normed, 0.0, 1.0))
    return np.asarray(cm(normed))  # (H, W, 4) float


def heatmap_overlay(
    image: Any,
    heat: Any,
    *,
    cmap: Any = None,
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 0.6,
    signed: bool = True,
    percentile: float = 99.5,
) -> np.ndarray:
    """Blend a colour-mapped heatmap over an image, as an ``(H, W, 3)`` array in [0, 1].

    The heatmap is resized (nearest) to the image when their sizes differ.
    """
    img = _to_rgb(image_for_display(image))
    h = _as_numpy(heat, "heatmap").astype(np.float64)
    if h.ndim != 2:
        raise InputError(f"heatmap must be (H, W), got shape {tuple(h.shape)}")
    if vmin is None or vmax is None:
        lo, hi = color_limits(h, signed, percentile)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    rgba = _colorize(_resize_nearest(h, *img.shape[:2]), cmap or default_cmap(signed), vmin, vmax)
    return np.clip((1.0 - alpha) * img + alpha * rgba[..., :3], 0.0, 1.0)


def mask_overlay(
    image: Any,
    mask: Any,
    *,
    color: Any = "lime",
    alpha: float = 0.35,
    outline: bool = True,
    min_size: int = 128,
    dim_outside: float = 0.0,
) -> np.ndarray:
    """An ``(H', W', 3)`` array of ``image`` with ``mask`` filled in ``color`` (``alpha``)
    and outlined; ``dim_outside`` darkens everything outside the mask by that fraction. Both are first upscaled (nearest) so the long side is at least
    ``min_size`` pixels, which keeps the outline thin; ``image`` may be None (black)."""
    m = _mask_2d(mask)
    img: np.ndarray
    if image is None:
        img = np.zeros(m.shape + (3,))
    else:
        img = _to_rgb(image_for_display(image))
    H, W = img.shape[:2]
    sy, sx = _upscale_factors(max(H, m.shape[0]), max(W, m.shape[1]), min_size)
    H2, W2 = max(H, m.shape[0]) * sy, max(W, m.shape[1]) * sx
    img = _resize_nearest(img, H2, W2)
    m = _resize_nearest(m, H2, W2)
    rgb = _color_rgb(color)
    out = img.copy()
    out[m] = (1.0 - alpha) * out[m] + alpha * rgb
    if dim_outside:
        out[~m] = (1.0 - dim_outside) * out[~m]
    if outline and m.any():
        inner = m.copy()
        inner[1:, :] &= m[:-1, :]
        inner[:-1, :] &= m[1:, :]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        edge = m & ~inner
        out[edge] = rgb
    return np.clip(out, 0.0, 1.0)


def array_to_png(
    arr: Any,
    cmap: Any = None,
    vmin: float | None = None,
    vmax: float | None = None,
    *,
    min_size: int = 128,
) -> bytes:
    """Encode an array as PNG bytes without making a matplotlib figure.

    ``(H, W)`` arrays are colour-mapped with ``cmap`` (gray when None) between ``vmin``
    and ``vmax`` (the array's min and max when None); ``(H, W, 3|4)`` float arrays in
    [0, 1] or ``uint8`` arrays are written as RGB(A); ``(C, H, W)`` images and flat
    ``(D,)`` vectors go through :func:`image_for_display` first. The image is upscaled
    with nearest-neighbour so the long side is at least ``min_size`` pixels (thin strips
    are also made at least ``min_size // 4`` tall).
    """
    from PIL import Image

    a = _as_numpy(arr, "array")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim == 3 and a.shape[-1] not in (3, 4):
        a = image_for_display(a)
    if a.ndim == 2:
        a = a.astype(np.float64)
        finite = a[np.isfinite(a)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        vmin = lo if vmin is None else float(vmin)
        vmax = hi if vmax is None else float(vmax)
        rgba = _colorize(a, cmap, vmin, vmax)
        data = (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)
        mode = "RGB"
    elif a.ndim == 3:
        if a.dtype == np.uint8:
            data = a
        else:
            f = np.where(np.isfinite(a), a.astype(np.float64), 0.0)
            data = (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        mode = "RGB" if a.shape[-1] == 3 else "RGBA"
    else:
        raise InputError(f"cannot encode an array of shape {tuple(a.shape)} as PNG")
    h, w = data.shape[:2]
    if h == 0 or w == 0:
        raise InputError(f"cannot encode an empty array of shape {tuple(a.shape)} as PNG")
    sy, sx = _upscale_factors(h, w, min_size)
    if sy > 1 or sx > 1:
        data = np.repeat(np.repeat(data, sy, axis=0), sx, axis=1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(data), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def figure_to_png(fig: Any, dpi: int = 100) -> bytes:
    """Render a matplotlib figure (or the figure of an Axes) to PNG bytes (Agg)."""
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure) and hasattr(fig, "figure"):
        fig = fig.figure
    if not isinstance(fig, Figure):
        raise InputError(f"expected a matplotlib Figure, got {type(fig).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def png_data_uri(png_bytes: bytes) -> str:
    """``data:image/png;base64,...`` URI of PNG bytes, for embedding in HTML."""
    if not isinstance(png_bytes, (bytes, bytearray, memoryview)):
        raise InputError(f"png_data_uri expects bytes, got {type(png_bytes).__name__}")
    return "data:image/png;base64," + base64.b64encode(bytes(png_bytes)).decode("ascii")


# ---------------------------------------------------------------------------------------
# matplotlib plots
# ---------------------------------------------------------------------------------------
def _new_axes(ax, figsize=(4.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _show_image(ax, img: np.ndarray) -> None:
    if img.ndim == 2:
        ax.imshow(
            img,
            cmap="gray",
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
            aspect="auto" if img.shape[0] == 1 else "equal",
        )
    else:
        ax.imshow(img, interpolation="nearest")


def _default_title(expl, index: int) -> str:
    title = str(expl.method)
    if getattr(expl, "layer", None):
        title += f" @ {expl.layer}"
    ti = getattr(expl, "target_indices", None)
    if ti is not None and ti.numel() > index:
        title += f" · class {int(ti.reshape(-1)[index])}"
    elif expl.target:
        title += f" · {expl.target}"
    return title


def _draw_heat(ax, heat: np.ndarray, *, cmap, vmin, vmax, alpha=1.0, extent=None):
    """Draw one (H, W) map; (1, D) maps become an auto-aspect strip."""
    kw: dict[str, Any] = {"cmap": cmap, "vmin": vmin, "vmax": vmax, "interpolation": "nearest"}
    if extent is not None:
        kw["extent"] = extent
    if heat.shape[0] == 1:
        kw["aspect"] = "auto"
    return ax.imshow(heat, alpha=alpha, **kw)


def plot_explanation(
    expl,
    index: int = 0,
    *,
    ax=None,
    reduce: str = "sum",
    overlay: bool = True,
    alpha: float = 0.6,
    cmap: Any = None,
    title: str | None = None,
    percentile: float = 99.5,
    colorbar: bool = True,
):
    """Draw the heatmap of sample ``index`` of an :class:`~seethrough.Explanation`.

    Signed maps (``expl.signed`` and ``reduce="sum"``) use a diverging colormap with
    limits symmetric around 0 at the ``percentile`` of ``|map|``; other maps use a
    sequential colormap from 0. With ``overlay`` and stored inputs the map is drawn with
    ``alpha`` over the input (stretched to it when the sizes differ). Flat ``(B, D)``
    attributions are drawn as a colour strip. Returns the figure (``ax.figure`` if given).
    """
    heats = to_heatmap(expl.attributions, reduce=reduce)
    n = heats.shape[0]
    if not -n <= index < n:
        raise InputError(f"index {index} is out of range for an explanation of {n} samples")
    index = index % n
    heat = heats[index].numpy().astype(np.float64)
    signed = _is_signed_map(expl, reduce)
    vmin, vmax = color_limits(heat, signed, percentile)
    cmap = cmap or default_cmap(signed)

    fig, ax = _new_axes(ax, figsize=(4.0, 4.0) if heat.shape[0] > 1 else (6.0, 1.8))
    inputs = getattr(expl, "inputs", None)
    if overlay and inputs is not None and heat.shape[0] > 1 and len(inputs) > index:
        img = image_for_display(inputs[index])
        _show_image(ax, img)
        H, W = img.shape[:2]
        im = _draw_heat(ax, heat, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
    else:
        im = _draw_heat(ax, heat, cmap=cmap, vmin=vmin, vmax=vmax)
    if heat.shape[0] == 1:
        ax.set_yticks([])
        ax.set_xlabel("feature")
    else:
        ax.set_axis_off()
    ax.set_title(_default_title(expl, index) if title is None else str(title), fontsize=10)
    if colorbar:
        from matplotlib.cm import ScalarMappable

        # an opaque stand-in, so an overlay's alpha does not wash out the colour bar
        fig.colorbar(ScalarMappable(norm=im.norm, cmap=im.cmap), ax=ax, fraction=0.046, pad=0.04)
    return fig


def plot_mask(
    image: Any,
    mask: Any,
    *,
    ax=None,
    color: Any = "lime",
    alpha: float = 0.3,
    outline: bool = True,
    title: str | None = None,
):
    """Draw ``image`` with ``mask`` (``(H, W)``, boolean or in [0, 1]) as a translucent
    fill in ``color`` and, when ``outline``, its contour. ``image`` may be None."""
    fig, ax = _new_axes(ax)
    m = _mask_2d(mask)
    if image is not None:
        img = image_for_display(image)
        _show_image(ax, img)
        H, W = img.shape[:2]
    else:
        H, W = m.shape
        ax.imshow(np.zeros((H, W)), cmap="gray", vmin=0.0, vmax=1.0)
    extent = (-0.5, W - 0.5, H - 0.5, -0.5)
    rgb = _color_rgb(color)
    fill = np.zeros(m.shape + (4,))
    fill[m, :3] = rgb
    fill[m, 3] = alpha
    ax.imshow(fill, extent=extent, interpolation="nearest")
    if outline and m.any() and not m.all():
        mh, mw = m.shape
        xs = (np.arange(mw) + 0.5) * W / mw - 0.5
        ys = (np.arange(mh) + 0.5) * H / mh - 0.5
        ax.contour(xs, ys, m.astype(float), levels=[0.5], colors=[tuple(rgb)], linewidths=1.5)
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(str(title), fontsize=10)
    return fig


def _named_explanations(explanations) -> list[tuple[str, Any]]:
    from .._core.result import Explanation

    if isinstance(explanations, Explanation):
        return [(explanations.method, explanations)]
    if isinstance(explanations, Mapping):
        items = [(str(k), v) for k, v in explanations.items()]
    elif isinstance(explanations, Iterable):
        items = [(getattr(e, "method", f"method {i}"), e) for i, e in enumerate(explanations)]
    else:
        raise InputError(
            f"explanations must be an Explanation, a list of them or a dict name -> Explanation, "
            f"got {type(explanations).__name__}"
        )
    for name, e in items:
        if not hasattr(e, "attributions"):
            raise InputError(f"{name!r} is not an Explanation (got {type(e).__name__})")
    if not items:
        raise InputError("no explanations given")
    return items


def _per_row(values, rows: Sequence[int], n: int, what: str) -> list:
    """Values aligned with the rows, given one per row or one per sample of the batch."""
    if values is None:
        return [None] * len(rows)
    vals = values.tolist() if isinstance(values, (Tensor, np.ndarray)) else list(values)
    if len(vals) == len(rows):
        return vals
    if len(vals) == n:
        return [vals[i] for i in rows]
    raise InputError(f"{what} has {len(vals)} entries; expected one per row ({len(rows)}) or per sample ({n})")


def plot_grid(
    explanations,
    *,
    inputs: Any = None,
    masks: Any = None,
    indices: Sequence[int] | None = None,
    labels: Sequence[Any] | None = None,
    reduce: str = "sum",
    figsize: tuple[float, float] | None = None,
    overlay: bool = False,
    percentile: float = 99.5,
    cell_size: float = 2.0,
):
    """Compare methods side by side: one row per sample, columns input, ground-truth
    mask (when ``masks`` is given), then one column per method.

    ``explanations`` is an Explanation, a list of them (columns titled by method name)
    or a dict ``name -> Explanation``. ``inputs`` default to the first explanation's
    stored inputs; without any, the input column is left out. ``labels`` (one per row
    or one per sample) are written beside each row. Each map gets its own colour limits
    (symmetric for signed maps). Column titles show the run time when it is known.
    """
    named = _named_explanations(explanations)
    if inputs is None:
        inputs = next((e.inputs for _, e in named if getattr(e, "inputs", None) is not None), None)
    n = len(named[0][1].attributions)
    if indices is None:
        rows = list(range(n))
    else:
        rows = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
        for i in rows:
            if not 0 <= i < n:
                raise InputError(f"index {i} is out of range for explanations of {n} samples")
    if not rows:
        raise InputError("no samples to plot (indices is empty)")
    row_labels = _per_row(labels, rows, n, "labels")
    heats = [(name, e, to_heatmap(e.attributions, reduce=reduce)) for name, e in named]

    n_cols = (inputs is not None) + (masks is not None) + len(heats)
    if figsize is None:
        figsize = (cell_size * n_cols, cell_size * len(rows) + 0.4)
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), n_cols, squeeze=False))
    for r, i in enumerate(rows):
        c = 0
        img = None
        if inputs is not None:
            img = image_for_display(inputs[i]) if i < len(inputs) else None
            ax = axes[r, c]
            if img is not None:
                _show_image(ax, img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("input", fontsize=9)
            c += 1
        if masks is not None:
            ax = axes[r, c]
            plot_mask(img, masks[i], ax=ax)
            if r == 0:
                ax.set_title("ground truth", fontsize=9)
            c += 1
        for name, e, h in heats:
            ax = axes[r, c]
            c += 1
            if r == 0:
                sec = float(getattr(e, "seconds", 0.0) or 0.0)
                ax.set_title(name + (f"\n{sec:.3g} s" if sec > 0 else ""), fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= len(h):
                continue
            heat = h[i].numpy().astype(np.float64)
            signed = _is_signed_map(e, reduce)
            vmin, vmax = color_limits(heat, signed, percentile)
            cmap = default_cmap(signed)
            if overlay and img is not None and heat.shape[0] > 1:
                _show_image(ax, img)
                H, W = img.shape[:2]
                _draw_heat(ax, heat, cmap=cmap, vmin=vmin, vmax=vmax, alpha=0.6, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
            else:
                _draw_heat(ax, heat, cmap=cmap, vmin=vmin, vmax=vmax)
        lab = row_labels[r]
        axes[r, 0].set_ylabel(f"#{i}" if lab is None else str(lab), fontsize=9)
    for ax in axes.ravel():
        for s in ax.spines.values():
            s.set_visible(False)
    return fig
