"""Views of the influence results: plots, HTML fragments, and report sections.

Registered as the results' views (:func:`seethrough._core.result.register_view`), so that
``result.plot(ax=...)`` and ``result.to_html()`` of an :class:`InfluenceResult`,
:class:`NeuronMaps`, :class:`ClassComparison` and :class:`EssenceResult` draw with the
functions here. Each plot function draws into ``ax`` (a new figure when None) and returns
the figure; nothing is shown or saved. The ``add_*`` functions append a result's HTML
fragment to an :class:`~seethrough.report.html.HtmlReport`.
"""

from __future__ import annotations

import html as _html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from .._core.errors import ConfigError
from .._core.result import _thaw, register_view
from ..report.html import HtmlReport, _kv_table, _table_html
from ..report.plot import (
    _colorize,
    _is_signed_map,
    _new_axes,
    _resize_nearest,
    _to_rgb,
    color_limits,
    default_cmap,
    figure_to_png,
    image_for_display,
    png_data_uri,
    to_heatmap,
)
from .essence import EssenceResult
from .explain import ClassComparison, NeuronMaps
from .internal import InfluenceResult

__all__ = [
    "plot_influence",
    "plot_neuron_maps",
    "plot_comparison",
    "plot_essence",
    "mosaic",
    "influence_html",
    "neuron_maps_html",
    "comparison_html",
    "essence_html",
    "add_influence",
    "add_neuron_maps",
    "add_comparison",
    "add_essence",
    "neuron_rows",
    "no_negative_note",
    "essence_rows",
]


# -- plots ------------------------------------------------------------------------------
def plot_influence(result: InfluenceResult, *, ax=None, k: int = 5, title: str | None = None):
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
        title
        if title is not None
        else f"{result.target} · {result.distribution} distribution ({result.n_instances}){red}",
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


def plot_neuron_maps(maps: NeuronMaps, *, ax=None, n_show: int = 4, cell: int = 96, title: str | None = None):
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
    _draw_mosaic(
        ax,
        cells,
        [f"#{i}" for i in range(n)],
        cols,
        title if title is not None else f"{maps.method} of {maps.neuron} activations at {maps.layer}",
    )
    return fig


def plot_comparison(comparison: ClassComparison, *, ax=None, n_show: int = 4, cell: int = 96, title: str | None = None):
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
    _draw_mosaic(
        ax,
        cells,
        rows,
        cols,
        title
        if title is not None
        else f"class {comparison.name_of(comparison.cls)}{vs} · slice {comparison.influence.layer}",
    )
    return fig


def plot_essence(result: EssenceResult, *, ax=None, metric: str = "accuracy", title: str | None = None):
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


# -- HTML -------------------------------------------------------------------------------
def _esc(v: Any) -> str:
    return _html.escape(str(v), quote=True)


def _p(text: str) -> str:
    return f"<p>{_esc(text)}</p>"


def _figure_html(fig: Any, caption: str | None = None) -> str:
    png = figure_to_png(fig, dpi=100)
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure class="st-figure"><img src="{png_data_uri(png)}" alt="{_esc(caption or "figure")}">{cap}</figure>'


def _dict_table(rows: Sequence[Mapping[str, Any]], caption: str | None = None) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return _table_html(cols, [[r.get(c, "") for c in cols] for r in rows], caption)


def neuron_rows(result: InfluenceResult, k: int = 5) -> list[dict]:
    """The top ``k`` neurons of positive influence and the top ``k`` of negative influence
    (neurons with influence exactly 0 are in neither list)."""
    k = min(k, result.n_neurons)
    v = result.neuron_influence
    rows = []
    pos = [j for j in result.top_positive(k).tolist() if v[j] > 0]
    neg = [j for j in result.top_negative(k).tolist() if v[j] < 0]
    for rank, j in enumerate(pos, 1):
        rows.append({"rank": f"+{rank}", result.neuron: j, "influence": float(v[j])})
    for rank, j in enumerate(neg, 1):
        rows.append({"rank": f"-{rank}", result.neuron: j, "influence": float(v[j])})
    return rows


def no_negative_note(result: InfluenceResult) -> str | None:
    """Why no neuron is listed with negative influence, or None when some are."""
    if bool((result.neuron_influence < 0).any()):
        return None
    why = (
        (
            " With reduce='max' a channel is negative only if its influence is negative at every "
            "position; a max-pooling or ReLU after the slice leaves positions at 0."
        )
        if result.reduce == "max"
        else ""
    )
    return f"no {result.neuron} has negative influence.{why}"


def _describe(result: InfluenceResult) -> str:
    red = (
        (f" A channel's influence is the {result.reduce} over its positions of the averaged gradient map.")
        if result.reduce
        else ""
    )
    mult = " Gradients are multiplied by the activation." if result.multiply_by_activation else ""
    return (
        f"Internal influence at slice {result.layer!r} of the quantity {result.target}, averaged over "
        f"the {result.distribution} distribution of interest ({result.n_instances} instance(s)); "
        f"{result.n_neurons} {result.neuron}s; {result.seconds:.2f} s, {result.n_evaluations} model "
        f"evaluations.{red}{mult}"
    )


def influence_html(result: InfluenceResult, *, k: int = 5) -> str:
    """A paragraph describing ``result``, its bar chart and the top neurons' table."""
    parts = [
        _p(_describe(result)),
        _figure_html(plot_influence(result, k=k), f"influence of every {result.neuron}; top {k} of each sign marked"),
        _dict_table(neuron_rows(result, k), caption="most influential neurons (positive and negative)"),
    ]
    note = no_negative_note(result)
    if note:
        parts.append(_p(note))
    return "\n".join(parts)


def neuron_maps_html(maps: NeuronMaps, *, n_show: int = 4) -> str:
    """The mosaic of the neurons' input attributions."""
    return _figure_html(
        plot_neuron_maps(maps, n_show=n_show),
        f"{maps.method} of each {maps.neuron}'s activation (channel mean over positions) with respect "
        f"to the input; the number under a {maps.neuron} is its influence. Red: raises the "
        f"{maps.neuron}'s activation, blue: lowers it.",
    )


def comparison_html(comparison: ClassComparison, *, n_show: int = 4) -> str:
    """HTML fragment of a :class:`ClassComparison`: the side-by-side mosaic and the top
    neurons of the class and comparative quantities."""
    parts = []
    c1 = comparison.name_of(comparison.cls)
    n_cls = comparison.influence.n_instances
    what = f"class {c1!r}" + (
        f" rather than {comparison.name_of(comparison.vs)!r}" if comparison.vs is not None else ""
    )
    parts.append(
        f"<p>Why {_esc(what)}: rows are plain integrated gradients on the input and the influence-directed "
        f"explanations (the input attribution of the top {len(comparison.neurons)} neuron(s) of slice "
        f"{_esc(comparison.influence.layer)} by influence over the {n_cls} instances of {_esc(c1)}); the last "
        f"column is each map's mean over the {len(comparison.instances)} explained instances of the class.</p>"
    )
    parts.append(
        _figure_html(plot_comparison(comparison, n_show=n_show), "class and comparative explanations side by side")
    )
    rows = []
    for label, res, neurons in (
        (f"{c1}", comparison.influence, comparison.neurons),
        (f"{c1} - {comparison.name_of(comparison.vs)}", comparison.comparative, comparison.comparative_neurons),
    ):
        if res is None or neurons is None:
            continue
        rows.append(
            [
                label,
                res.target,
                ", ".join(f"{j} ({float(res.neuron_influence[j]):+.3g})" for j in neurons.tolist()),
                ", ".join(str(j) for j in res.top_positive(min(5, res.n_neurons)).tolist()),
            ]
        )
    parts.append(
        _table_html(["quantity", "target", "neurons used (influence)", f"top 5 {comparison.influence.neuron}s"], rows)
    )
    parts.append(_kv_table(sorted(_thaw(comparison.settings).items()), caption="settings"))
    return "\n".join(parts)


def essence_rows(result: EssenceResult) -> list[dict]:
    """Table rows of an essence result, numbers formatted (mean ± std over random draws)."""
    rows = []
    for r in result.rows():
        rows.append(
            {
                "k": r["k"],
                "top-k balanced acc.": f"{r['top-k balanced accuracy']:.3f}",
                "random-k balanced acc.": f"{r['random-k balanced accuracy (mean)']:.3f} ± {r['random-k balanced accuracy (std)']:.3f}",
                "top-k AUC": f"{r['top-k AUC']:.3f}",
                "random-k AUC": f"{r['random-k AUC (mean)']:.3f} ± {r['random-k AUC (std)']:.3f}",
            }
        )
    rows.append(
        {
            "k": f"all {result.n_neurons}",
            "top-k balanced acc.": f"{result.full_accuracy:.3f}",
            "random-k balanced acc.": "",
            "top-k AUC": f"{result.full_auc:.3f}",
            "random-k AUC": "",
        }
    )
    return rows


def essence_html(result: EssenceResult, *, class_name: str | None = None) -> str:
    """The protocol in a paragraph, the table of balanced accuracies and AUCs, and the plot."""
    c = class_name or str(result.cls)
    counts, s = dict(result.counts), result.settings
    text = (
        f"Essence of class {c!r} at slice {result.layer!r}: only k {result.influence.neuron}s are kept (the "
        f"others zeroed in a forward hook) and the model's margin logit_c - max other logit, thresholded at the "
        f"value that maximises balanced accuracy on the training split "
        f"({counts.get('train_positive')} + {counts.get('train_negative')} instances), classifies class vs rest "
        f"on the test split ({counts.get('test_positive')} + {counts.get('test_negative')}). Top-k: the k "
        f"neurons with the largest influence ({s.get('quantity')} quantity, {s.get('select')} selection); "
        f"random: {s.get('n_random')} draws (seed {s.get('seed')}), mean ± std. Chance is 0.5. "
        f"{result.seconds:.1f} s."
    )
    figure = _figure_html(plot_essence(result), "balanced accuracy against the number of neurons kept")
    return "\n".join([_p(text), _dict_table(essence_rows(result)), figure])


# -- report sections --------------------------------------------------------------------
def add_influence(report: HtmlReport, result: InfluenceResult, *, k: int = 5) -> HtmlReport:
    """:func:`influence_html` appended to ``report``."""
    return report.add_html(influence_html(result, k=k))


def add_neuron_maps(report: HtmlReport, maps: NeuronMaps, *, n_show: int = 4) -> HtmlReport:
    """:func:`neuron_maps_html` appended to ``report``."""
    return report.add_html(neuron_maps_html(maps, n_show=n_show))


def add_comparison(report: HtmlReport, comparison: ClassComparison, *, n_show: int = 4) -> HtmlReport:
    """:func:`comparison_html` appended to ``report``."""
    return report.add_html(comparison_html(comparison, n_show=n_show))


def add_essence(report: HtmlReport, result: EssenceResult, *, class_name: str | None = None) -> HtmlReport:
    """:func:`essence_html` appended to ``report``."""
    return report.add_html(essence_html(result, class_name=class_name))


register_view(InfluenceResult, plot=plot_influence, html=influence_html)
register_view(NeuronMaps, plot=plot_neuron_maps, html=neuron_maps_html)
register_view(ClassComparison, plot=plot_comparison, html=comparison_html)
register_view(EssenceResult, plot=plot_essence, html=essence_html)
