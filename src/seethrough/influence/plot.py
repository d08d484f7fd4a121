"""Plots of influence results. Each function draws into ``ax`` (a new figure when None)
and returns the figure; nothing is shown or saved."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch import Tensor

from .._core.errors import ConfigError
from ..report.plot import (
    _colorize,
    _is_signed_map,
    _new_axes,
    _resize_nearest,
    _to_rgb,
    color_limits,
    default_cmap,
    image_for_display,
    to_heatmap,
)

__all__ = ["plot_influence", "plot_neuron_maps", "plot_comparison", "plot_essence", "mosaic"]


def plot_influence(result, *, ax=None, k: int = 5, title: str | None = None):
    """Every neuron's influence as a bar (neuron index on the x axis); the top ``k``
    positive neurons in red and the top ``k`` negative in blue, labelled with their index."""
    v = result.neuron_influence.detach().double().cpu().numpy()
    n = v.size
    k = max(0, min(int(k), n))
    fig, ax = _new_axes(ax, figsize=(max(4.0, min(12.0, 0.06 * n + 3)), 2.8))
    colors = np.full(n, "#b0b4ba", dtype=object)
    pos = result.top_positive(k).tolist() if k else []
    neg = [j for j in (result.top_negative(k).tolist() if k else []) if v[j] < 0]
    pos = [j for j in pos if v[j] > 0]
    colors[pos] = "#c0392b"
    colors[neg] = "#2a6fdb"
    ax.bar(np.arange(n), v, color=list(colors), width=0.85)
    ax.axhline(0.0, color="#444", linewidth=0.6)
    for j in pos + neg:
        ax.annotate(str(j), (j, v[j]), ha="center", va="bottom" if v[j] > 0 else "top", fontsize=7)
    ax.set_xlim(-1, n)
    ax.set_xlabel(f"{result.neuron} of {result.layer}")
    red = f", {result.reduce} over positions" if result.reduce else ""
    ax.set_ylabel("influence" + (" x activation" if result.multiply_by_activation else ""))
    ax.set_title(
        title if title is not None else f"{result.target} · {result.distribution} distribution ({result.n_instances}){red}",
        fontsize=9,
    )
    return fig


def _cell_image(x: Any, size: int) -> np.ndarray:
    img = _to_rgb(image_for_display(x))
    return _resize_nearest(img, *_cell_shape(img.shape[:2], size))


def _cell_shape(hw: tuple[int, int], size: int) -> tuple[int, int]:
    h, w = hw
    s = max(1, int(np.ceil(size / max(h, w))))
    return h * s, w * s


def _cell_heat(attr: Tensor, signed: bool, size: int, percentile: float = 99.5) -> np.ndarray:
    heat = to_heatmap(attr.unsqueeze(0), reduce="sum" if signed else "abs_sum")[0].numpy().astype(np.float64)
    vmin, vmax = color_limits(heat, signed, percentile)
    rgb = _colorize(heat, default_cmap(signed), vmin, vmax)[..., :3]
    return _resize_nearest(rgb, *_cell_shape(heat.shape, size))


def mosaic(cells: Sequence[Sequence[np.ndarray | None]], *, gap: int = 3) -> np.ndarray:
    """Stack ``(h, w, 3)`` images into one grid image (white gaps; None leaves a blank)."""
    rows = len(cells)
    cols = max(len(r) for r in cells)
    h = max(c.shape[0] for r in cells for c in r if c is not None)
    w = max(c.shape[1] for r in cells for c in r if c is not None)
    out = np.ones((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3))
    for i, r in enumerate(cells):
        for j, c in enumerate(r):
            if c is None:
                continue
            y, x = i * (h + gap), j * (w + gap)
            out[y : y + c.shape[0], x : x + c.shape[1]] = c[..., :3]
    return out


def _draw_mosaic(ax, cells, row_labels, col_labels, title):
    img = mosaic(cells)
    ax.imshow(img, interpolation="nearest")
    n_rows, n_cols = len(cells), max(len(r) for r in cells)
    h = (img.shape[0] + 3) / n_rows
    w = (img.shape[1] + 3) / n_cols
    ax.set_yticks([(i + 0.5) * h - 2 for i in range(n_rows)])
    ax.set_yticklabels(row_labels, fontsize=8)
    ax.set_xticks([(j + 0.5) * w - 2 for j in range(n_cols)])
    ax.set_xticklabels(col_labels, fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9, pad=18)


def plot_neuron_maps(maps, *, ax=None, n_show: int = 4, cell: int = 96, title: str | None = None):
    """A row per input (the first ``n_show``): the input, then each neuron's map (signed
    maps in a diverging colormap, each cell scaled to its own 99.5th percentile)."""
    n = min(int(n_show), len(maps.inputs))
    if n < 1:
        raise ConfigError(f"n_show must be at least 1, got {n_show}")
    neurons = maps.neurons.tolist()
    cells = []
    for i in range(n):
        row = [_cell_image(maps.inputs[i], cell)]
        for j in neurons:
            e = maps.maps[j]
            row.append(_cell_heat(e.attributions[i], _is_signed_map(e, "sum"), cell))
        cells.append(row)
    cols = ["input"]
    for j, v in zip(neurons, maps.influence.tolist()):
        cols.append(f"{maps.neuron} {j}" + ("" if np.isnan(v) else f"\n{v:+.3g}"))
    fig, ax = _new_axes(ax, figsize=(1.3 * len(cols) + 0.6, 1.35 * n + 0.7))
    _draw_mosaic(ax, cells, [f"#{i}" for i in range(n)], cols,
                 title if title is not None else f"{maps.method} of {maps.neuron} activations at {maps.layer}")
    return fig


def plot_comparison(comparison, *, ax=None, n_show: int = 4, cell: int = 96, title: str | None = None):
    """A row per explanation (plain integrated gradients, influence-directed; class and
    comparative), a column per shown instance and a last column with the class mean (of the
    inputs, and of each map) over the explained instances."""
    n = min(int(n_show), len(comparison.inputs))
    if n < 1:
        raise ConfigError(f"n_show must be at least 1, got {n_show}")
    mean_input = comparison.inputs.mean(dim=0)
    cells = [[_cell_image(comparison.inputs[i], cell) for i in range(n)] + [_cell_image(mean_input, cell)]]
    rows = ["input"]
    for name, e in comparison.maps.items():
        signed = _is_signed_map(e, "sum")
        row = [_cell_heat(e.attributions[i], signed, cell) for i in range(n)]
        row.append(_cell_heat(comparison.class_maps[name], signed, cell))
        cells.append(row)
        rows.append(name.replace(": ", ":\n", 1))
    cols = [f"#{int(i)}" for i in comparison.instances[:n].tolist()] + [f"class mean\n({len(comparison.instances)})"]
    fig, ax = _new_axes(ax, figsize=(1.3 * (n + 1) + 2.0, 1.35 * len(rows) + 0.7))
    vs = f" vs {comparison.name_of(comparison.vs)}" if comparison.vs is not None else ""
    _draw_mosaic(ax, cells, rows, cols,
                 title if title is not None else f"class {comparison.name_of(comparison.cls)}{vs} · slice {comparison.influence.layer}")
    return fig


def plot_essence(result, *, ax=None, metric: str = "accuracy", title: str | None = None):
    """Balanced accuracy (``metric="accuracy"``) or ROC AUC (``"auc"``) against ``k``: the
    top-``k`` neurons, random ``k`` (mean with a band of one standard deviation), every
    neuron kept (dashed) and chance (dotted)."""
    if metric not in ("accuracy", "auc"):
        raise ConfigError(f"metric must be 'accuracy' or 'auc', got {metric!r}")
    ks = np.asarray(result.ks, dtype=float)
    top = (result.top_accuracy if metric == "accuracy" else result.top_auc).double().numpy()
    rnd = (result.random_accuracy if metric == "accuracy" else result.random_auc).double().numpy()
    mean = rnd.mean(axis=1)
    std = rnd.std(axis=1, ddof=1) if rnd.shape[1] > 1 else np.zeros_like(mean)
    full = result.full_accuracy if metric == "accuracy" else result.full_auc
    fig, ax = _new_axes(ax, figsize=(4.5, 3.2))
    ax.plot(ks, top, "o-", color="#c0392b", label="top-k by influence")
    ax.plot(ks, mean, "s-", color="#555", label=f"random k (mean ± std, {rnd.shape[1]} draws)")
    ax.fill_between(ks, mean - std, mean + std, color="#999", alpha=0.3, linewidth=0)
    ax.axhline(full, color="#2a6fdb", linestyle="--", linewidth=1, label=f"all {result.n_neurons} kept")
    ax.axhline(0.5, color="#888", linestyle=":", linewidth=1, label="chance")
    if len(ks) > 1 and ks.max() / max(ks.min(), 1) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(int(k)) for k in ks])
    ax.set_xlabel(f"neurons kept at {result.layer}")
    ax.set_ylabel("balanced accuracy" if metric == "accuracy" else "ROC AUC")
    ax.set_ylim(0.4, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title if title is not None else f"essence of class {result.cls}: class vs rest", fontsize=9)
    return fig
