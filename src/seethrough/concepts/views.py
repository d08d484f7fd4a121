"""Views of the concept results: plots and HTML, registered with
:func:`seethrough._core.result.register_view`, so that ``result.plot(ax=...)`` and
``result.to_html()`` of a :class:`~seethrough.concepts.TCAVResult` and a
:class:`~seethrough.concepts.DissectionResult` draw with the functions here. Each plot
function draws into ``ax`` (a new figure when None) and returns the figure; the ``add_*``
functions append a result's section to an :class:`~seethrough.report.html.HtmlReport`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._core.capture import resolve_layers, stream_activations
from .._core.layers import resolve_layer
from .._core.result import register_view
from .._core.state import model_guard
from ..report.html import HtmlReport
from ..report.plot import _new_axes
from .dissection import ConceptMasks, DissectionResult
from .tcav import NullCheckResult, TCAVResult

__all__ = [
    "plot_tcav",
    "plot_dissection",
    "unit_examples",
    "add_tcav",
    "add_dissection",
    "tcav_html",
    "dissection_html",
]

_KIND_COLORS = {"color": "#d95f02", "texture": "#1b9e77", "shape": "#7570b3"}


def plot_tcav(result: TCAVResult, *, ax=None):
    """Bars of the TCAV score of each concept x class (mean over runs, error bars: its
    standard error), with the mean of the random runs it is compared with (black tick);
    ``*`` marks significant pairs. Returns the figure."""
    n_c, n_k = len(result.concepts), len(result.classes)
    fig, ax = _new_axes(ax, (1.6 + 1.1 * n_c * max(n_k, 2) / 2, 3.4))
    width = 0.8 / n_k
    x = np.arange(n_c)
    runs = result.run_scores.shape[-1]
    for j in range(n_k):
        s = result.run_scores[:, j, :].numpy()
        r = result.random_scores[:, j, :].numpy()
        pos = x - 0.4 + width * (j + 0.5)
        se = s.std(axis=1, ddof=1) / np.sqrt(runs) if runs > 1 else np.zeros(n_c)
        ax.bar(
            pos,
            s.mean(axis=1),
            width * 0.9,
            yerr=se,
            capsize=2,
            label=f"class {result.class_label(j)}",
            color=f"C{j}",
            alpha=0.9,
        )
        ax.scatter(
            pos,
            r.mean(axis=1),
            marker="_",
            s=260,
            linewidths=2,
            color="k",
            zorder=3,
            label="random runs (mean)" if j == 0 else None,
        )
        for i in range(n_c):
            if bool(result.significant[i, j]):
                ax.text(pos[i], min(1.05, s[i].mean() + se[i] + 0.03), "*", ha="center", fontsize=13)
    ax.set_xticks(x)
    ax.set_xticklabels(result.concepts)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("TCAV score")
    ax.set_title(f"TCAV at {result.layer} (* significant)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=min(4, n_k + 1), frameon=False)
    return fig


def plot_dissection(result: DissectionResult, *, ax=None):
    """Stacked bars: interpretable units per layer by concept kind. Returns the figure."""
    rows = result.summary()
    kinds = sorted(set(result.kinds.values()))
    fig, ax = _new_axes(ax, (1.5 + 1.1 * len(rows), 3.0))
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for kind in kinds:
        vals = np.array([r[kind] for r in rows], dtype=float)
        ax.bar(x, vals, 0.6, bottom=bottom, label=kind, color=_KIND_COLORS.get(kind))
        bottom += vals
    for i, r in enumerate(rows):
        ax.text(i, bottom[i] + 0.5, f"{r['interpretable']}/{r['units']}", ha="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([r["layer"] for r in rows], fontsize=8)
    ax.set_ylabel("interpretable units")
    ax.set_ylim(0, max(1.0, float(bottom.max()) * 1.2))
    ax.set_title(f"Units with IoU >= {result.iou_threshold:g}", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def _examples(
    model: nn.Module, picks: dict[str, Sequence[int]], thresholds: dict[str, Tensor], images: Tensor, k: int
) -> dict[tuple[str, int], tuple[Tensor, Tensor]]:
    """One pass over ``images`` for every picked unit of every layer: its ``k`` strongest
    images (largest maximum) and where its upsampled map exceeds its threshold."""
    modules = resolve_layers(model, list(picks))
    peaks: dict[tuple[str, int], list[Tensor]] = {(n, u): [] for n in picks for u in picks[n]}
    maps: dict[tuple[str, int], list[Tensor]] = {key: [] for key in peaks}
    with model_guard(model, method="unit examples"):
        for _, acts in stream_activations(model, modules, images):
            for name, unit in peaks:
                a = acts[name][:, unit : unit + 1].float().cpu()
                peaks[(name, unit)].append(a.flatten(1).amax(dim=1))
                maps[(name, unit)].append(a)
    out = {}
    for key in peaks:
        order = torch.argsort(torch.cat(peaks[key]), descending=True, stable=True)[:k]
        a = torch.cat(maps[key])[order]
        up = F.interpolate(a, size=tuple(images.shape[2:]), mode="bilinear", align_corners=False)[:, 0]
        out[key] = (images[order].detach().cpu(), up > float(thresholds[key[0]][key[1]]))
    return out


def unit_examples(
    model: nn.Module, layer: str, unit: int, threshold: float, images: Tensor, *, k: int = 4
) -> tuple[Tensor, Tensor]:
    """The ``k`` images where ``unit`` of ``layer`` responds most (largest maximum), and
    where its upsampled map exceeds ``threshold`` there: ``(images (k, C, H, W), masks
    (k, H, W))``."""
    name, _ = resolve_layer(model, layer)
    thr = torch.zeros(unit + 1)
    thr[unit] = float(threshold)
    return _examples(model, {name: [unit]}, {name: thr}, images, k)[(name, unit)]


def _unit_strips_html(
    model, result: DissectionResult, scenes: ConceptMasks, picks: dict[str, Sequence[int]], k: int
) -> str:
    from ..report.html import _esc, _img_tag
    from ..report.plot import array_to_png, mask_overlay

    examples = _examples(model, picks, {n: result[n].thresholds for n in picks}, scenes.images, k)
    html = []
    for layer, units in picks.items():
        d = result[layer]
        rows = []
        for unit in units:
            imgs, masks = examples[(layer, unit)]
            cells = []
            for i in range(imgs.shape[0]):
                png = array_to_png(mask_overlay(imgs[i], masks[i], color="magenta", alpha=0.15, dim_outside=0.5))
                cells.append(f"<td>{_img_tag(png, alt=f'unit {unit} example {i}')}</td>")
            head = f'unit {unit}<span class="st-sub">{_esc(d.labels[unit])} (IoU {float(d.best_iou[unit]):.3f})</span>'
            rows.append(f"<tr><th>{head}</th>{''.join(cells)}</tr>")
        html.append(
            f'<div class="st-gridwrap"><table class="st-grid"><caption>{_esc(layer)}: where the unit exceeds its '
            f"threshold (outlined) on its {k} strongest scenes</caption><tbody>{''.join(rows)}</tbody></table></div>"
        )
    return "".join(html)


def add_tcav(
    report: HtmlReport, result: TCAVResult, *, null: NullCheckResult | Sequence[NullCheckResult] | None = None
) -> HtmlReport:
    """The result as a bar plot, its table and the protocol; with ``null``, the measured
    false-positive rate(s) of the protocol(s)."""
    report.add_figure(
        plot_tcav(result),
        caption="TCAV score per concept and class (error bars: standard error "
        "over runs); black ticks: mean score of the random runs each is compared with.",
    )
    rows = []
    for r in result.table():
        rows.append(
            {
                **r,
                "p": f"{r['p']:.2g}",
                "p (Bonferroni)": f"{r['p (Bonferroni)']:.2g}",
                "significant": "yes" if r["significant"] else "no",
            }
        )
    report.add_table(rows)
    s = result.settings
    report.add_paragraph(
        result.describe_protocol()
        + f". Each run: {', '.join(f'{c}: {n}' for c, n in result.examples_per_run.items())} concept examples "
        f"against as many random images; CAVs: {s['classifier']} classifier on {s['pooling']}-pooled activations; "
        f"seed {s['seed']}; {result.seconds:.1f} s."
    )
    nulls = [] if null is None else ([null] if isinstance(null, NullCheckResult) else list(null))
    if nulls:
        report.add_table(
            _null_rows(nulls),
            caption="Null check: random image sets posed as concepts; a calibrated "
            "test calls at most the level's share of them significant.",
        )
    return report


def _null_rows(nulls: Sequence[NullCheckResult]) -> list[dict[str, Any]]:
    rows = []
    for n in nulls:
        s = n.settings
        plain = s.get("min_accuracy") == 0 and s.get("min_effect") == 0
        rows.append(
            {
                "protocol": s.get("protocol"),
                "runs": s.get("random_runs"),
                "decision rule": "t-test only"
                if plain
                else f"t-test, |effect| >= {s.get('min_effect')}, CAV accuracy >= {s.get('min_accuracy')}",
                "trials": n.trials,
                "random sets called significant": n.n_false_positives,
                "false-positive rate": round(n.false_positive_rate, 3),
                "95% interval": f"{n.interval[0]:.3f}-{n.interval[1]:.3f}",
                "level": n.significance,
            }
        )
    return rows


def add_dissection(
    report: HtmlReport,
    result: DissectionResult,
    *,
    model: nn.Module | None = None,
    scenes: ConceptMasks | None = None,
    units_per_layer: int = 3,
    examples: int = 4,
) -> HtmlReport:
    """Summary plot and table, the best units of each layer and, with ``model`` and
    ``scenes``, where those units fire on their strongest scenes."""
    report.add_figure(plot_dissection(result), caption="Interpretable units per layer, by kind of concept.")
    report.add_table(result.summary())
    report.add_paragraph(
        f"{result.n_images} scenes. Threshold of each unit: its top {result.quantile:g} quantile "
        f"({result.quantile_method}); maps upsampled bilinearly to the masks; IoU summed over all scenes; "
        f"a unit is labelled when its best IoU reaches {result.iou_threshold:g}. {result.seconds:.1f} s."
    )
    best = []
    for name in result.layers:
        best += [r for r in result.table() if r["layer"] == name][:units_per_layer]
    report.add_table(best, caption="The best units of each layer.")
    if model is not None and scenes is not None and examples > 0:
        picks: dict[str, Sequence[int]] = {}
        for name in result.layers:
            units = [r["unit"] for r in result.table(interpretable_only=True) if r["layer"] == name][:units_per_layer]
            if units:
                picks[name] = units
        if picks:
            report.add_html(_unit_strips_html(model, result, scenes, picks, examples))
    return report


# ------------------------------------------------------------------------------ views
def tcav_html(result: TCAVResult, *, null: NullCheckResult | Sequence[NullCheckResult] | None = None) -> str:
    """An HTML fragment: :func:`add_tcav`'s section."""
    return add_tcav(HtmlReport(f"TCAV at {result.layer}"), result, null=null)._repr_html_()


def dissection_html(result: DissectionResult, **kwargs: Any) -> str:
    """An HTML fragment: :func:`add_dissection`'s section (``kwargs`` as there)."""
    return add_dissection(HtmlReport("network dissection"), result, **kwargs)._repr_html_()


def _null_html(result: NullCheckResult) -> str:
    report = HtmlReport("TCAV null check")
    report.add_paragraph(repr(result))
    report.add_table(_null_rows([result]))
    return report._repr_html_()


def _plot_null(result: NullCheckResult, *, ax=None):
    """The false-positive rate with its 95% interval, against the level."""
    fig, ax = _new_axes(ax, (3.0, 3.0))
    lo, hi = result.interval
    rate = result.false_positive_rate
    ax.bar([0], [rate], 0.5, yerr=[[rate - lo], [hi - rate]], capsize=4, color="C0")
    ax.axhline(result.significance, color="k", linestyle=":", label=f"level {result.significance:g}")
    ax.set_xticks([0])
    ax.set_xticklabels([str(result.settings.get("protocol"))])
    ax.set_ylim(0, 1)
    ax.set_ylabel("false-positive rate")
    ax.legend(fontsize=7)
    return fig


register_view(TCAVResult, plot=plot_tcav, html=tcav_html)
register_view(DissectionResult, plot=plot_dissection, html=dissection_html)
register_view(NullCheckResult, plot=_plot_null, html=_null_html)
