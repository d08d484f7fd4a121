"""Plots and HTML of the GAN dissection results (:mod:`seethrough.concepts.gan` registers
them with :func:`~seethrough._core.result.register_view`). Each plot draws into ``ax`` (a
new figure when None) and returns the figure; each HTML view returns a fragment. The
functions read the results' fields only, so this module imports no result class."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..report.html import HtmlReport
from ..report.plot import _new_axes

__all__ = [
    "plot_gan_dissection",
    "gan_dissection_html",
    "plot_ace_curve",
    "ace_curve_html",
    "plot_effect",
    "effect_html",
]


def plot_gan_dissection(result: Any, *, ax=None, layer: str | None = None):
    """The best IoU of every unit of the layer, highest first, coloured by its concept;
    dashed: the IoU a unit needs to be interpretable. Returns the figure."""
    name = layer or result.layer
    d = result[name]
    order = np.argsort(-d.best_iou.numpy(), kind="stable")
    fig, ax = _new_axes(ax, (min(2.0 + 0.12 * d.n_units, 12.0), 3.2))
    colors = {c: f"C{i % 10}" for i, c in enumerate(result.concepts)}
    ious = d.best_iou.numpy()[order]
    ax.bar(np.arange(len(order)), ious, 0.85, color=[colors[d.labels[k]] for k in order])
    ax.axhline(result.iou_threshold, color="k", linestyle="--", linewidth=1, label=f"IoU {result.iou_threshold:g}")
    seen = []
    for k in order:
        c = d.labels[k]
        if c not in seen and bool(d.interpretable[k]):
            seen.append(c)
    for c in seen:
        ax.bar([0], [0], color=colors[c], label=c)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_xlabel("units, by IoU")
    ax.set_ylabel("IoU of the best concept")
    ax.set_title(f"{name}: {d.n_interpretable}/{d.n_units} units interpretable", fontsize=10)
    ax.legend(fontsize=7, ncols=min(4, len(seen) + 1))
    return fig


def gan_dissection_html(result: Any, *, top: int = 12) -> str:
    """The IoU plot, the summary, the concepts' share of the generated pixels and the ``top``
    units by IoU."""
    title = f"GAN dissection of {result.layer}"
    report = HtmlReport(title).add_heading(title, 3)
    report.add_figure(plot_gan_dissection(result), caption="Best IoU of every unit, coloured by its concept.")
    report.add_paragraph(
        f"{result.n_images} generated images (codes z ~ N(0, I), seed {result.seed}), segmented into "
        f"{len(result.concepts)} concepts. Unit threshold: {result.describe_threshold()}"
        + (f", chosen on {result.n_selection} other generated images" if result.n_selection else "")
        + f"; maps upsampled bilinearly to the masks; IoU summed over all images; a unit is labelled when its best "
        f"IoU reaches {result.iou_threshold:g}. {result.seconds:.1f} s."
    )
    report.add_table(result.summary())
    if result.concept_fraction is not None:
        report.add_table(
            [
                {"concept": c, "share of pixels": float(result.concept_fraction[i])}
                for i, c in enumerate(result.concepts)
            ],
            caption="How much of the generated images each concept covers.",
        )
    report.add_table(result.table()[:top], caption=f"The {top} units with the highest IoU.")
    return report._repr_html_()


def plot_ace_curve(result: Any, *, ax=None):
    """The effect of intervening on the top-k units for the concept against k, with the
    mean +- std of random units of the same count. Returns the figure."""
    fig, ax = _new_axes(ax, (4.6, 3.2))
    k = result.counts.numpy()
    ax.plot(k, result.effect.numpy(), "o-", color="C3", label=f"top units for {result.concept}")
    mean, std = result.random_mean.numpy(), result.random_std.numpy()
    ax.plot(k, mean, "s--", color="0.35", label=f"random units ({result.random_draws} draws)")
    ax.fill_between(k, mean - std, mean + std, color="0.6", alpha=0.3, linewidth=0)
    ax.axhline(0.0, color="k", linewidth=0.6)
    if result.mode == "ablate":
        ax.axhline(-result.baseline, color="C3", linestyle=":", linewidth=1, label="all of the concept removed")
    if len(k) > 1 and k.max() / max(k.min(), 1) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(k)
    ax.set_xticklabels([str(int(v)) for v in k])
    ax.set_xlabel("units intervened on")
    ax.set_ylabel(_effect_label(result.mode, result.concept))
    ax.set_title(f"{result.mode} at {result.layer}", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def _effect_label(mode: str, concept: str) -> str:
    if mode == "ace":
        return f"ACE on {concept} (inserted - ablated)"
    return f"change of {concept} pixel share"


def ace_curve_html(result: Any) -> str:
    """The curve and its table."""
    title = f"Causal effect of units of {result.layer} on {result.concept}"
    report = HtmlReport(title).add_heading(title, 3)
    report.add_figure(
        plot_ace_curve(result),
        caption="Effect of the top units by IoU against random units of the same count (mean +- std).",
    )
    report.add_table(result.rows())
    report.add_paragraph(
        f"{result.n_samples} generated images (seed {result.seed}); the concept covers {result.baseline:.3f} of the "
        f"pixels without intervention. {_mode_text(result.mode)} {result.seconds:.1f} s."
    )
    return report._repr_html_()


def _mode_text(mode: str) -> str:
    return {
        "ablate": "Effect: mean change of the concept's pixel share when the units are set to 0 (ablated).",
        "insert": "Effect: mean change of the concept's pixel share when the units are set to a high value (inserted).",
        "ace": "Effect: the average causal effect of GAN Dissection, the concept's pixel share with the units inserted "
        "minus with them ablated.",
    }[mode]


def plot_effect(result: Any, *, ax=None):
    """Histogram of the per-image effect, with its mean. Returns the figure."""
    fig, ax = _new_axes(ax, (4.0, 3.0))
    d = result.per_sample.numpy()
    ax.hist(d, bins=min(30, max(5, len(d) // 5)), color="C0", alpha=0.8)
    ax.axvline(result.effect, color="C3", label=f"mean {result.effect:+.3f}")
    ax.set_xlabel(_effect_label(result.mode, result.concept))
    ax.set_ylabel("images")
    ax.set_title(f"{result.mode} {len(result.units)} units of {result.layer}", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def effect_html(result: Any) -> str:
    """The histogram and a summary."""
    title = f"{result.mode} of units of {result.layer}"
    report = HtmlReport(title).add_heading(title, 3)
    report.add_figure(plot_effect(result), caption="Per-image effect.")
    report.add_table(
        [
            {
                "layer": result.layer,
                "units": ", ".join(map(str, result.units)),
                "concept": result.concept,
                "mode": result.mode,
                "effect": result.effect,
                "std. error": result.stderr,
                "share before": float(result.clean.mean()),
                "images": result.n_samples,
            }
        ]
    )
    report.add_paragraph(_mode_text(result.mode))
    return report._repr_html_()
