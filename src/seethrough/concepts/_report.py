"""Concept results in plots and HTML reports, and the two demo sections."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._core.layers import resolve_layer
from .._core.state import model_guard
from ..report.html import HtmlReport
from .dissection import DissectionResult
from .tcav import NullCheckResult, TCAVResult

__all__ = [
    "plot_tcav",
    "plot_dissection",
    "unit_examples",
    "add_tcav",
    "add_dissection",
    "tcav_section",
    "dissection_section",
]

_KIND_COLORS = {"color": "#d95f02", "texture": "#1b9e77", "shape": "#7570b3"}


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


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
        ax.bar(pos, s.mean(axis=1), width * 0.9, yerr=se, capsize=2, label=f"class {result.class_label(j)}",
               color=f"C{j}", alpha=0.9)
        ax.scatter(pos, r.mean(axis=1), marker="_", s=260, linewidths=2, color="k", zorder=3,
                   label="random runs (mean)" if j == 0 else None)
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
    from .._core.batching import Batching
    from ._common import iter_activations

    modules = {}
    for layer in picks:
        name, module = resolve_layer(model, layer)
        modules[name] = module
    peaks: dict[tuple[str, int], list[Tensor]] = {(n, u): [] for n in picks for u in picks[n]}
    maps: dict[tuple[str, int], list[Tensor]] = {key: [] for key in peaks}
    with model_guard(model, method="unit examples"):
        for _, acts in iter_activations(model, modules, images, Batching()):
            for (name, unit) in peaks:
                a = acts[name][:, unit:unit + 1].float().cpu()
                peaks[(name, unit)].append(a.flatten(1).amax(dim=1))
                maps[(name, unit)].append(a)
    out = {}
    for key in peaks:
        order = torch.argsort(torch.cat(peaks[key]), descending=True, stable=True)[:k]
        a = torch.cat(maps[key])[order]
        up = F.interpolate(a, size=tuple(images.shape[2:]), mode="bilinear", align_corners=False)[:, 0]
        out[key] = (images[order].detach().cpu(), up > float(thresholds[key[0]][key[1]]))
    return out


def unit_examples(model: nn.Module, layer: str, unit: int, threshold: float, images: Tensor, *, k: int = 4) -> tuple[Tensor, Tensor]:
    """The ``k`` images where ``unit`` of ``layer`` responds most (largest maximum), and
    where its upsampled map exceeds ``threshold`` there: ``(images (k, C, H, W), masks
    (k, H, W))``."""
    name, _ = resolve_layer(model, layer)
    thr = torch.zeros(unit + 1)
    thr[unit] = float(threshold)
    return _examples(model, {name: [unit]}, {name: thr}, images, k)[(name, unit)]


def _unit_strips_html(model, result: DissectionResult, scenes, picks: dict[str, Sequence[int]], k: int) -> str:
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
            head = f"unit {unit}<span class=\"st-sub\">{_esc(d.labels[unit])} (IoU {float(d.best_iou[unit]):.3f})</span>"
            rows.append(f"<tr><th>{head}</th>{''.join(cells)}</tr>")
        html.append(
            f'<div class="st-gridwrap"><table class="st-grid"><caption>{_esc(layer)}: where the unit exceeds its '
            f"threshold (outlined) on its {k} strongest scenes</caption><tbody>{''.join(rows)}</tbody></table></div>"
        )
    return "".join(html)


def add_tcav(report: HtmlReport, result: TCAVResult, *, null: NullCheckResult | Sequence[NullCheckResult] | None = None) -> HtmlReport:
    """The result as a bar plot, its table and the protocol; with ``null``, the measured
    false-positive rate(s) of the protocol(s)."""
    report.add_figure(plot_tcav(result), caption="TCAV score per concept and class (error bars: standard error "
                      "over runs); black ticks: mean score of the random runs each is compared with.")
    rows = []
    for r in result.table():
        rows.append({**r, "p": f"{r['p']:.2g}", "p (Bonferroni)": f"{r['p (Bonferroni)']:.2g}",
                     "significant": "yes" if r["significant"] else "no"})
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
        report.add_table([
            {
                "protocol": n.settings.get("protocol"),
                "runs": n.settings.get("random_runs"),
                "decision rule": "t-test only" if n.settings.get("min_accuracy") == 0 and n.settings.get("min_effect") == 0
                else f"t-test, |effect| >= {n.settings.get('min_effect')}, CAV accuracy >= {n.settings.get('min_accuracy')}",
                "trials": n.trials,
                "random sets called significant": n.n_false_positives,
                "false-positive rate": round(n.false_positive_rate, 3),
                "95% interval": f"{n.interval[0]:.3f}-{n.interval[1]:.3f}",
                "level": n.significance,
            }
            for n in nulls
        ], caption="Null check: random image sets posed as concepts; a calibrated test calls at most the "
                   "level's share of them significant.")
    return report


def add_dissection(
    report: HtmlReport,
    result: DissectionResult,
    *,
    model: nn.Module | None = None,
    scenes=None,
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
        picks = {}
        for name in result.layers:
            units = [r["unit"] for r in result.table(interpretable_only=True) if r["layer"] == name][:units_per_layer]
            if units:
                picks[name] = units
        if picks:
            report.add_html(_unit_strips_html(model, result, scenes, picks, examples))
    return report


# ------------------------------------------------------------------------------ demo sections


def tcav_section(report: HtmlReport, *, progress: Callable[[str], None] | None = None) -> None:
    """TCAV on the bundled ``stripes-cnn`` (its class ``striped`` depends on stripes by
    construction, not on dots or red), with the null check of both protocols."""
    from .. import zoo
    from ..data.concepts import concept_dataset
    from ..zoo.train import TEST_SEED_OFFSET
    from .tcav import TCAV, tcav_null_check

    if "stripes-cnn" not in zoo.available():
        return
    try:
        model = zoo.load("stripes-cnn")
    except FileNotFoundError:
        return
    info = zoo.info("stripes-cnn")
    if progress:
        progress("tcav")
    t0 = time.perf_counter()
    x, y = concept_dataset(200, "stripes", seed=TEST_SEED_OFFSET)
    layer = "features.13"
    tcav = TCAV(model, layer=layer, seed=0)
    result = tcav.test(x, ["stripes", "dots", "red"], labels=y, class_names=info.classes)
    plain = dict(min_effect=0.0, min_accuracy=0.0, seed=0)  # the t-test alone
    nulls = [
        tcav_null_check(TCAV(model, layer=layer, protocol="shared", random_runs=10, **plain), x[:100], labels=y[:100],
                        trials=40),
        tcav_null_check(TCAV(model, layer=layer, random_runs=10, **plain), x[:100], labels=y[:100], trials=40),
    ]
    report.add_heading("Concepts: TCAV")
    acc = info.metrics.get("test_accuracy")
    report.add_paragraph(
        "Model 'stripes-cnn' calls an image 'striped' exactly when a striped region is drawn on it; "
        "dots, colours and shapes appear equally often in both classes"
        + (f" (held-out accuracy {100 * acc:.1f}%)" if acc is not None else "")
        + ". TCAV should find 'stripes' significant for both classes (positive for 'striped', negative for "
        "'plain') and neither 'dots' nor 'red'. 200 held-out images, generated concept and random images."
    )
    add_tcav(report, result, null=nulls)
    report.add_paragraph(
        "The null check above poses random image sets as concepts (40 trials each, 10 runs, the t-test alone: "
        "no effect or accuracy filter). The paper's per-run t-test ('shared': every run reuses the same "
        "concept examples) calls many of them significant; independent runs ('disjoint', the default) keep "
        f"the rate near the level. Section computed in {time.perf_counter() - t0:.0f} s."
    )


def dissection_section(report: HtmlReport, *, progress: Callable[[str], None] | None = None):
    """Network dissection of the bundled ``shapes-cnn`` on 300 generated scenes; returns the
    result (its ``unit_labels()`` label the demo atlas)."""
    from .. import zoo
    from ..data.concepts import concept_scenes
    from .dissection import Dissection

    if progress:
        progress("dissection")
    t0 = time.perf_counter()
    model = zoo.load("shapes-cnn")
    scenes = concept_scenes(300, seed=0)
    layers = ["features.2", "features.9", "features.13", "features.16"]
    result = Dissection(model, layers=layers).dissect(scenes)
    report.add_heading("Concepts: network dissection")
    report.add_paragraph(
        "Each unit of four layers of 'shapes-cnn' is compared with the pixel masks of 13 concepts (colours, "
        "textures, the four shapes) on generated scenes. Early layers hold colour and texture detectors; "
        "the last layer, whose units feed the shape classifier, is dominated by shape detectors."
    )
    add_dissection(report, result, model=model, scenes=scenes, units_per_layer=2, examples=4)
    report.add_paragraph(f"Section computed in {time.perf_counter() - t0:.0f} s.")
    return result
