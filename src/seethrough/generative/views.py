"""Views of the generative results: plots (``ax=`` in, figure out) and HTML, registered with
:func:`seethrough._core.result.register_view` for :class:`AttributeTable`, :class:`LatentWalk`,
:class:`SampleSet`, :class:`FactorResponse`, :class:`MIGResult` and :class:`DCIResult`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

from .._core.errors import ConfigError
from .._core.result import register_view
from ..report.html import HtmlReport, _esc, _img_tag, _input_png
from ..report.plot import _new_axes
from .disentangle import DCIResult, FactorResponse, MIGResult
from .latent import LatentWalk
from .sampler import SampleSet
from .table import AttributeTable

__all__ = [
    "plot_table",
    "table_html",
    "plot_walk",
    "walk_html",
    "plot_samples",
    "samples_html",
    "plot_factor_response",
    "factor_response_html",
]


def _numeric(table: AttributeTable, columns: Sequence[str] | None, skip: Sequence[str] = ()) -> list[str]:
    if columns is None:
        return [c for c in table.numeric() if c not in skip]
    bad = [c for c in columns if c not in table.numeric()]
    if bad:
        raise ConfigError(f"columns {bad} are not numeric columns of the table; numeric: {list(table.numeric())}")
    return list(columns)


def plot_table(
    table: AttributeTable, *, ax: Any = None, columns: Sequence[str] | None = None, x: str | Any = None
) -> Any:
    """Each numeric column along the rows: small multiples in a new figure, or, with ``ax``,
    all columns min-max normalised on that one axes. ``x``: a column name or values for the
    horizontal axis (default the row index). Returns the figure."""
    xlabel = "row"
    if isinstance(x, str):
        xs, xlabel, skip = table.array(x), x, [x]
    elif x is not None:
        xs, skip = np.asarray(x, dtype=np.float64), []
    else:
        xs, skip = np.arange(len(table), dtype=np.float64), []
    cols = _numeric(table, columns, skip)
    if ax is not None or not cols:
        fig, ax = _new_axes(ax, (5.0, 3.0))
        for i, c in enumerate(cols):
            v = table.array(c)
            lo, hi = np.nanmin(v), np.nanmax(v)
            ax.plot(xs, (v - lo) / (hi - lo) if hi > lo else v * 0 + 0.5, marker=".", label=c, color=f"C{i % 10}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("min-max normalised")
        if cols:
            ax.legend(fontsize=7, ncols=min(3, len(cols)))
        if table.title:
            ax.set_title(table.title, fontsize=10)
        return fig
    from matplotlib.figure import Figure

    ncols = min(4, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig = Figure(figsize=(2.6 * ncols, 1.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    for k, c in enumerate(cols):
        a = axes[k // ncols][k % ncols]
        a.plot(xs, table.array(c), marker=".", color=f"C{k % 10}")
        a.set_title(c, fontsize=9)
        a.tick_params(labelsize=7)
        if k // ncols == nrows - 1:
            a.set_xlabel(xlabel, fontsize=8)
    for k in range(len(cols), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    if table.title:
        fig.suptitle(table.title, fontsize=10)
    return fig


def table_html(table: AttributeTable, *, caption: str | None = None, max_rows: int = 200) -> str:
    """A table (numbers formatted, every cell escaped); at most ``max_rows`` rows."""
    report = HtmlReport(table.title or "table")
    rows = table.rows()
    cap = caption or table.title or None
    if len(rows) > max_rows:
        cap = f"{cap + '; ' if cap else ''}first {max_rows} of {len(rows)} rows"
    report.add_table(rows[:max_rows], header=list(table.names), caption=cap)
    return report._repr_html_()


def _image_row(ax: Any, images: Tensor, labels: Sequence[str]) -> None:
    from ..report.plot import _show_image, image_for_display

    n = images.shape[0]
    strip = [image_for_display(images[i]) for i in range(n)]
    ax.set_axis_off()
    fig = ax.figure
    box = ax.get_position()
    w = box.width / n
    for i, img in enumerate(strip):
        sub = fig.add_axes((box.x0 + i * w, box.y0, w * 0.95, box.height))
        _show_image(sub, img)
        sub.set_xticks([])
        sub.set_yticks([])
        sub.set_title(labels[i], fontsize=7)


def plot_walk(walk: LatentWalk, *, ax: Any = None, columns: Sequence[str] | None = None) -> Any:
    """Image outputs: a row of the decoded images, labelled by alpha or strength; otherwise
    the walk's table along the path. Returns the figure."""
    key = "alpha" if walk.alphas is not None else "strength"
    if walk.is_image:
        fig, ax = _new_axes(ax, (1.2 * len(walk) + 0.4, 1.6))
        if ax.figure.get_layout_engine() is not None:
            ax.figure.set_layout_engine("none")
        labels = [f"{key} {float(v):.2g}" for v in walk.positions]
        _image_row(ax, walk.outputs, labels)
        title = walk.direction or walk.method
        ax.set_title(title, fontsize=9, pad=14)
        return fig
    return plot_table(walk.table, ax=ax, columns=columns, x=key)


def _images_html(images: Tensor, labels: Sequence[str]) -> str:
    cells = []
    for i in range(images.shape[0]):
        png, _ = _input_png(images[i])
        cells.append(f"<td>{_img_tag(png, alt=labels[i])}<span class='st-sub'>{_esc(labels[i])}</span></td>")
    return f'<div class="st-gridwrap"><table class="st-grid"><tbody><tr>{"".join(cells)}</tr></tbody></table></div>'


def walk_html(walk: LatentWalk) -> str:
    title = f"latent traversal along {walk.direction}" if walk.direction else f"latent interpolation ({walk.method})"
    report = HtmlReport(title)
    report.add_heading(title, 3)
    if walk.is_image:
        key = "alpha" if walk.alphas is not None else "strength"
        report.add_html(_images_html(walk.outputs, [f"{key} {float(v):.2g}" for v in walk.positions]))
    report.add_table(walk.table.rows(), header=list(walk.table.names))
    return report._repr_html_()


def plot_samples(
    samples: SampleSet, *, ax: Any = None, columns: Sequence[str] | None = None, max_images: int = 16
) -> Any:
    """Image samples: the first ``max_images`` in a row; otherwise histograms of the numeric
    columns (one axes: all overlaid, normalised). Returns the figure."""
    if samples.outputs.dim() == 4 and samples.outputs.shape[1] in (1, 3, 4) and len(samples):
        n = min(max_images, len(samples))
        fig, ax = _new_axes(ax, (1.0 * n + 0.4, 1.5))
        if ax.figure.get_layout_engine() is not None:
            ax.figure.set_layout_engine("none")
        _image_row(ax, samples.outputs[:n], [str(i) for i in range(n)])
        ax.set_title(repr(samples), fontsize=8, pad=14)
        return fig
    cols = _numeric(samples.table, columns)
    if ax is not None or len(cols) <= 1:
        fig, ax = _new_axes(ax, (4.5, 3.0))
        for i, c in enumerate(cols):
            v = samples.table.array(c)
            lo, hi = (np.nanmin(v), np.nanmax(v)) if v.size else (0.0, 1.0)
            ax.hist((v - lo) / (hi - lo) if hi > lo else v, bins=20, alpha=0.5, label=c, color=f"C{i % 10}")
        ax.set_xlabel("min-max normalised" if len(cols) > 1 else (cols[0] if cols else ""))
        if cols:
            ax.legend(fontsize=7)
        ax.set_title(repr(samples), fontsize=8)
        return fig
    from matplotlib.figure import Figure

    ncols = min(4, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig = Figure(figsize=(2.6 * ncols, 1.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, c in enumerate(cols):
        a = axes[k // ncols][k % ncols]
        a.hist(samples.table.array(c), bins=20, color=f"C{k % 10}")
        a.set_title(c, fontsize=9)
        a.tick_params(labelsize=7)
    for k in range(len(cols), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    fig.suptitle(repr(samples), fontsize=9)
    return fig


def samples_html(samples: SampleSet, *, max_rows: int = 100) -> str:
    report = HtmlReport("samples")
    report.add_heading("samples", 3)
    report.add_paragraph(
        f"{len(samples)} of {samples.n_requested} requested samples; conditions: "
        f"{'; '.join(samples.conditions) or 'none'}; {samples.n_candidates} candidates scored, acceptance rate "
        f"{samples.acceptance_rate:.4g}; seed {samples.seed}; {samples.seconds:.2f} s."
    )
    if samples.outputs.dim() == 4 and samples.outputs.shape[1] in (1, 3, 4) and len(samples):
        n = min(16, len(samples))
        report.add_html(_images_html(samples.outputs[:n], [str(i) for i in range(n)]))
    rows = samples.table.rows()
    report.add_table(
        rows[:max_rows], header=list(samples.table.names), caption=f"first {min(max_rows, len(rows))} rows"
    )
    return report._repr_html_()


def _heatmap(ax: Any, values: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str, label: str) -> None:
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    top = float(np.nanmax(values)) if values.size else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="k" if v > 0.6 * top else "w")
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, label=label, shrink=0.8)


def plot_factor_response(result: FactorResponse, *, ax: Any = None) -> Any:
    """Heatmap direction x factor of the response, with numbers; purity in the row labels."""
    d, f = result.response.shape
    fig, ax = _new_axes(ax, (1.2 + 0.8 * f, 0.9 + 0.45 * d))
    rows = [f"{n} (purity {float(p):.2f})" for n, p in zip(result.directions, result.purity)]
    _heatmap(ax, result.response.numpy(), rows, result.factor_names, "factor response per unit strength", "response")
    return fig


def factor_response_html(result: FactorResponse) -> str:
    report = HtmlReport("factor response")
    report.add_figure(plot_factor_response(result), caption="Change of each predicted factor per unit strength.")
    report.add_table(result.rows())
    return report._repr_html_()


def _plot_mig(result: MIGResult, *, ax: Any = None) -> Any:
    mi = result.mutual_information.numpy() / np.where(result.entropy.numpy() > 0, result.entropy.numpy(), 1.0)
    fig, ax = _new_axes(ax, (1.2 + 0.8 * mi.shape[1], 0.9 + 0.4 * mi.shape[0]))
    rows = [f"z[{i}]" for i in range(mi.shape[0])]
    _heatmap(ax, mi, rows, result.factor_names, f"normalised mutual information (MIG {result.score:.3f})", "I / H")
    return fig


def _mig_html(result: MIGResult) -> str:
    report = HtmlReport("MIG")
    report.add_paragraph(
        f"Mutual information gap (MIG, Chen et al. 2018): {result.score:.4f}, codes and continuous factors in "
        f"{result.bins} equal-width bins."
    )
    report.add_figure(_plot_mig(result))
    report.add_table([{"factor": n, "gap": float(g)} for n, g in zip(result.factor_names, result.gap)])
    return report._repr_html_()


def _plot_dci(result: DCIResult, *, ax: Any = None) -> Any:
    imp = result.importance.numpy()
    fig, ax = _new_axes(ax, (1.2 + 0.8 * imp.shape[1], 0.9 + 0.4 * imp.shape[0]))
    rows = [f"z[{i}]" for i in range(imp.shape[0])]
    title = f"importance (D {result.disentanglement:.2f}, C {result.completeness:.2f}, I {result.informativeness:.2f})"
    _heatmap(ax, imp, rows, result.factor_names, title, "importance")
    return fig


def _dci_html(result: DCIResult) -> str:
    report = HtmlReport("DCI")
    report.add_paragraph(f"DCI (Eastwood & Williams 2018) from {result.model} feature importances.")
    report.add_figure(_plot_dci(result))
    report.add_table(
        [
            {"score": "disentanglement", "value": result.disentanglement},
            {"score": "completeness", "value": result.completeness},
            {"score": "informativeness", "value": result.informativeness},
        ]
    )
    return report._repr_html_()


register_view(AttributeTable, plot=plot_table, html=table_html)
register_view(LatentWalk, plot=plot_walk, html=walk_html)
register_view(SampleSet, plot=plot_samples, html=samples_html)
register_view(FactorResponse, plot=plot_factor_response, html=factor_response_html)
register_view(MIGResult, plot=_plot_mig, html=_mig_html)
register_view(DCIResult, plot=_plot_dci, html=_dci_html)
