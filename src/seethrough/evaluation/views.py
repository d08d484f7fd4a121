"""Views of the evaluation family's results: plots and HTML, registered with
:func:`seethrough._core.result.register_view`, so that ``result.plot()`` and
``result.to_html()`` work for

- :class:`~seethrough.evaluation.MetricResult`: the curves behind the value when there are
  any (the mean curve over the samples, e.g. a deletion curve, MoRF and LeRF), else the
  value of every sample; the HTML view is a summary table with that figure;
- :class:`~seethrough.evaluation.SanityResult`: the similarity curves
  (:func:`plot_randomization_curves`); the HTML view adds the verdicts and the example maps
  (:func:`plot_randomization_examples`);
- :class:`~seethrough.evaluation.TrustReport`: the full report page (``to_html``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

from .._core.errors import ConfigError, InputError
from .._core.result import register_view
from ..report.html import HtmlReport
from ..report.plot import _new_axes, image_for_display
from ._common import MetricResult
from .randomization import SanityResult
from .registry import METRIC_FAMILIES
from .trust import TrustReport

__all__ = [
    "plot_metric",
    "metric_html",
    "plot_randomization_curves",
    "plot_randomization_examples",
    "sanity_html",
    "trust_report_html",
]


# ---------------------------------------------------------------------------------------
# MetricResult
# ---------------------------------------------------------------------------------------
def plot_metric(result: MetricResult, ax=None):
    """The curves behind a metric's value, averaged over the samples (deletion and insertion:
    score against the fraction of features changed; region perturbation and ROAD: the MoRF
    and LeRF curves; model randomization: similarity after each stage), or, for metrics
    without curves, the value of each sample. Returns the figure (``ax.figure`` if given)."""
    if not isinstance(result, MetricResult):
        raise InputError(f"expected a MetricResult, got {type(result).__name__}")
    curves = dict(result.curves)
    fig, ax = _new_axes(ax, (4.5, 3.2))
    arrow = "higher is better" if result.higher_is_better else "lower is better"
    if "scores" in curves:
        xs = np.asarray(curves.get("fractions", np.arange(curves["scores"].shape[1])), dtype=float)
        ax.plot(xs, _nanmean(curves["scores"]), marker="o", ms=2)
        ax.set_xlabel("fraction of features changed")
        ax.set_ylabel("score")
    elif "morf" in curves and "lerf" in curves:
        n = curves["morf"].shape[1]
        xs = np.asarray(curves["fractions"] if "fractions" in curves else np.arange(n), dtype=float)
        ax.plot(xs, _nanmean(curves["morf"]), marker="o", ms=2, label="MoRF (most relevant first)")
        ax.plot(xs, _nanmean(curves["lerf"]), marker="o", ms=2, label="LeRF (least relevant first)")
        ax.set_xlabel("fraction perturbed" if "fractions" in curves else "step")
        ax.set_ylabel("score")
        ax.legend(fontsize=7)
    elif "similarity" in curves:
        stages = list(result.extras.get("stages", range(curves["similarity"].shape[1])))
        ax.plot(np.arange(len(stages)), _nanmean(curves["similarity"]), marker="o", ms=3)
        ax.set_xticks(np.arange(len(stages)))
        ax.set_xticklabels([str(s) for s in stages], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("similarity to original map")
    else:
        v = result.values.numpy()
        ax.bar(np.arange(v.size), np.nan_to_num(v, nan=0.0))
        ax.axhline(result.mean, color="C1", linestyle=":", linewidth=1.0, label=f"mean {result.mean:.4g}")
        ax.set_xlabel("sample")
        ax.set_ylabel(result.name)
        ax.legend(fontsize=7)
    ax.set_title(f"{result.name}: {result.mean:.4g} ({arrow})", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def _nanmean(t: Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return np.nanmean(t.numpy(), axis=0)


def metric_html(result: MetricResult) -> str:
    """An HTML fragment: the metric's value, direction, settings and :func:`plot_metric`."""
    rep = HtmlReport(result.name)
    rep.add_heading(result.name, level=3)
    rep.add_table(
        [
            {
                "metric": result.name,
                "mean": result.mean,
                "std": result.std,
                "samples": result.values.numel(),
                "better": "higher" if result.higher_is_better else "lower",
                "model rows": result.n_evaluations,
                "seconds": result.seconds,
            }
        ]
    )
    rep.add_table([(k, _setting_text(v)) for k, v in result.settings.items()], ["setting", "value"])
    rep.add_figure(plot_metric(result), caption=f"{result.name} per sample or along its curve")
    return rep._repr_html_()


def _setting_text(v: Any) -> str:
    return str(list(v)) if isinstance(v, tuple) else str(v)


# ---------------------------------------------------------------------------------------
# SanityResult
# ---------------------------------------------------------------------------------------
def plot_randomization_curves(
    result: SanityResult,
    ax=None,
    *,
    measures: Sequence[str] | None = None,
    band: bool = True,
    thresholds: bool = True,
):
    """Mean similarity to the original maps after each randomization stage, one line per
    measure (the shaded band spans the 25th to 75th percentile over the samples). The first
    point, "original", is 1 by definition. Returns the figure (``ax.figure`` if given)."""
    if not isinstance(result, SanityResult):
        raise InputError(f"expected a SanityResult, got {type(result).__name__}")
    measures = list(measures) if measures is not None else list(result.similarity)
    for m in measures:
        if m not in result.similarity:
            raise ConfigError(f"measure {m!r} was not computed; computed: {', '.join(result.similarity)}")
    n = len(result.stages)
    fig, ax = _new_axes(ax, (max(4.0, 0.35 * n + 2.5), 3.4))
    xs = np.arange(n + 1)
    colors = ["C0", "C1", "C2", "C3", "C4", "C5"]
    for i, m in enumerate(measures):
        s = result.similarity[m].numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stages
            mean = np.concatenate([[1.0], np.nanmean(s, axis=1)])
            lo = np.concatenate([[1.0], np.nanpercentile(s, 25, axis=1)])
            hi = np.concatenate([[1.0], np.nanpercentile(s, 75, axis=1)])
        c = colors[i % len(colors)]
        ax.plot(xs, mean, marker="o", ms=3, color=c, label=f"{m} ({result.verdicts[m]})")
        if band:
            ax.fill_between(xs, lo, hi, color=c, alpha=0.15, linewidth=0)
        if thresholds:
            ax.axhline(result.thresholds[m], color=c, linestyle=":", linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels(["original", *result.stages], rotation=60, ha="right", fontsize=7)
    ax.set_ylim(min(-0.2, ax.get_ylim()[0]), 1.05)
    ax.set_ylabel("similarity to original map")
    what = {
        "cascading": "cascading randomization (output layer first)",
        "independent": "independent randomization (one layer at a time)",
        "data": "model trained on random labels",
    }.get(result.check, result.check)
    ax.set_title(f"{result.method}: {what}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return fig


def plot_randomization_examples(
    result: SanityResult,
    *,
    max_stages: int = 8,
    cell_size: float = 1.3,
):
    """Example maps per randomization stage: one row per kept sample, columns input,
    original map, then the maps after (up to ``max_stages``, evenly spaced, always including
    the last) stages. Each map is shown as its absolute value scaled to its own maximum.
    Returns the figure."""
    if not isinstance(result, SanityResult):
        raise InputError(f"expected a SanityResult, got {type(result).__name__}")
    k = int(result.original_maps.shape[0]) if result.original_maps.numel() else 0
    if k == 0:
        raise InputError("the result kept no example maps (n_examples=0); run the check with n_examples > 0")
    if result.original_maps.dim() != 3:
        raise InputError("example maps can be drawn for 2-D maps only")
    if max_stages < 1:
        raise ConfigError(f"max_stages must be at least 1, got {max_stages}")
    n = len(result.stages)
    cols = sorted(set(np.linspace(0, n - 1, min(max_stages, n)).round().astype(int).tolist()) | {n - 1})
    from matplotlib.figure import Figure

    n_cols = 2 + len(cols)
    fig = Figure(figsize=(cell_size * n_cols, cell_size * k + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(k, n_cols, squeeze=False))

    def show(ax, heat: Tensor) -> None:
        h = heat.abs().numpy()
        top = float(h.max())
        ax.imshow(h / top if top > 0 else h, cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")

    for r in range(k):
        img = image_for_display(result.example_inputs[r])
        axes[r, 0].imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        show(axes[r, 1], result.original_maps[r])
        for j, s in enumerate(cols):
            show(axes[r, 2 + j], result.randomized_maps[s, r])
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=7)
    axes[0, 1].set_title("original", fontsize=7)
    for j, s in enumerate(cols):
        label = result.stages[s]
        axes[0, 2 + j].set_title(("+" if result.check == "cascading" else "") + label, fontsize=6)
    fig.suptitle(f"{result.method}: maps after each {result.check} randomization stage", fontsize=8)
    return fig


def sanity_html(result: SanityResult) -> str:
    """An HTML fragment: the verdict per measure, the curves and (when kept) the example maps."""
    rep = HtmlReport(f"sanity check: {result.method}")
    rep.add_heading(f"{result.method}: {result.check} randomization", level=3)
    rep.add_paragraph(result.verdict_text())
    rep.add_table(result.table())
    rep.add_figure(plot_randomization_curves(result), caption="similarity to the original maps after each stage")
    if result.original_maps.numel() and result.original_maps.dim() == 3:
        rep.add_figure(plot_randomization_examples(result), caption="example maps")
    return rep._repr_html_()


# ---------------------------------------------------------------------------------------
# TrustReport
# ---------------------------------------------------------------------------------------
def trust_report_html(report: TrustReport) -> str:
    """The trust report as one self-contained HTML page."""
    return _trust_page(report).render()


def _trust_page(report: TrustReport) -> HtmlReport:
    rep = HtmlReport(report.title)
    n = report.inputs.shape[0]
    rep.add_paragraph(
        f"{len(report.methods)} methods on {n} inputs; every map explains "
        + (
            "the predicted class of each input (fixed before any method ran)."
            if report.target_indices is not None
            else "the target given."
        )
        + f" Computed in {report.seconds:.1f} s."
    )
    for note in report.notes:
        rep.add_paragraph(note)
    rep.add_heading("Ranking per metric family")
    fams = [f for f in METRIC_FAMILIES if f in report.rankings]
    rep.add_paragraph(
        "Mean rank of each method over the metrics of a family (1 = best; each metric ranks "
        "the methods by its own direction)."
    )
    rep.add_table([{"method": m, **{f: report.rankings[f].get(m, float("nan")) for f in fams}} for m in report.methods])

    rep.add_heading("Every metric")
    header = ["metric", "family", "better"] + list(report.methods)
    rows = []
    for s in report.metrics:
        row = [s.name, s.family, "higher" if s.higher_is_better else "lower"]
        for m in report.methods:
            r = report.results.get(m, {}).get(s.name)
            if r is None:
                row.append("—")
            else:
                row.append(f"{r.mean:.4g} ± {r.std:.2g}" if r.values.numel() > 1 else f"{r.mean:.4g}")
        rows.append(row)
    rep.add_table(rows, header, caption="mean ± standard deviation over the inputs")
    rep.add_table([(s.name, s.summary) for s in report.metrics], ["metric", "definition"])
    fails = [(m, k, why) for m, d in report.failures.items() for k, why in d.items()]
    if fails:
        rep.add_heading("Missing values", level=3)
        rep.add_table(fails, ["method", "metric", "why"])

    if report.sanity:
        rep.add_heading("Sanity check: cascading model-parameter randomization")
        for name, res in report.sanity.items():
            rep.add_figure(plot_randomization_curves(res), caption=f"{name}: {res.verdict_text()}")
    if report.data_randomization:
        rep.add_heading("Sanity check: data randomization")
        rep.add_table(
            [[name, res.verdict_text()] for name, res in report.data_randomization.items()], ["method", "verdict"]
        )

    rep.add_heading("Example maps")
    rep.add_method_grid(
        report.inputs,
        dict(report.explanations),
        masks=report.masks,
        predictions=report.target_indices,
        class_names=list(report.class_names) if report.class_names else None,
        indices=list(range(min(n, 6))),
    )
    return rep


register_view(MetricResult, plot=plot_metric, html=metric_html)
register_view(SanityResult, plot=plot_randomization_curves, html=sanity_html)
register_view(TrustReport, html=trust_report_html)
