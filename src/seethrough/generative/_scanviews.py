"""Views of the subset-scanning and creative-decoding results, registered with
:func:`~seethrough._core.result.register_view`: ``result.plot(ax=...)`` draws into ``ax``
(a new figure when None) and returns the figure; ``result.to_html()`` gives a fragment.
Importing this module registers them (``seethrough.generative`` does)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from .._core.result import register_view
from ..report.html import HtmlReport, _img_tag
from ..report.plot import _new_axes, figure_to_png, image_for_display
from .creative import CreativeSamples
from .scanning import PlantedCheck, ScanResult

__all__ = ["plot_scan", "scan_html", "plot_planted", "planted_html", "plot_creative", "creative_html"]


def plot_scan(result: ScanResult, *, ax=None, groups: Sequence[Hashable] | None = None, what: str = "score"):
    """Histogram of the scan scores (``what="score"``) or subset sizes (``"size"``), one
    per group when ``groups`` (a label per sample) is given. Returns the figure."""
    if what not in ("score", "size"):
        raise ValueError(f"what must be 'score' or 'size', got {what!r}")
    fig, ax = _new_axes(ax, (4.4, 3.0))
    values = result.scores if what == "score" else result.sizes
    labels = ["all"] if groups is None else list(dict.fromkeys(groups))
    arr = values.double().numpy()
    bins = np.histogram_bin_edges(arr, bins=min(30, max(5, len(arr) // 5))) if arr.size else 10
    for k, g in enumerate(labels):
        sel = np.ones(len(arr), bool) if groups is None else np.array([x == g for x in groups])
        ax.hist(arr[sel], bins=bins, alpha=0.6 if groups is not None else 0.9, label=str(g), color=f"C{k}")
    ax.set_xlabel("Berk-Jones score" if what == "score" else "subset size (nodes)")
    ax.set_ylabel("samples")
    where = f" at {result.layer}" if result.layer else ""
    ax.set_title(f"Subset scan{where} ({result.n_nodes} nodes)", fontsize=10)
    if groups is not None:
        ax.legend(fontsize=7)
    return fig


def _scan_settings(result: ScanResult) -> list[tuple[str, Any]]:
    return [
        ("layer", result.layer or "—"),
        ("nodes", result.n_nodes),
        ("node shape", str(tuple(result.node_shape))),
        ("reduce", result.reduce or "none"),
        ("tail", result.tail),
        ("background samples", result.n_background),
        ("alpha_max", result.alpha_max),
        ("alphas scanned", int(result.alpha_grid.numel())),
        ("samples", len(result)),
        ("seconds", round(result.seconds, 3)),
    ]


def scan_html(result: ScanResult, *, groups: Sequence[Hashable] | None = None, rows: int = 20) -> str:
    """Settings, the score histogram, the group summary and the first ``rows`` samples."""
    report = HtmlReport("subset scan")
    report.add_table([{"setting": k, "value": v} for k, v in _scan_settings(result)])
    report.add_figure(plot_scan(result, groups=groups), caption="Scores of the most anomalous subset per sample.")
    report.add_table(result.group_summary(groups), caption="Per group.")
    report.add_table(result.table(rows), caption=f"The first {min(rows, len(result))} samples.")
    return report._repr_html_()


def plot_planted(result: PlantedCheck, *, ax=None):
    """Score histograms of clean, shifted and null samples. Returns the figure."""
    fig, ax = _new_axes(ax, (4.4, 3.0))
    parts = {"clean": result.scores_clean, "planted": result.scores_planted, "null": result.scores_null}
    allv = torch.cat([v.double() for v in parts.values()]).numpy()
    bins = np.histogram_bin_edges(allv, bins=30)
    for k, (name, v) in enumerate(parts.items()):
        ax.hist(v.double().numpy(), bins=bins, alpha=0.6, label=name, color=f"C{k}")
    ax.set_xlabel("Berk-Jones score")
    ax.set_ylabel("samples")
    ax.set_title(
        f"Planted check: precision {result.precision:.2f}, recall {result.recall:.2f}, AUC {result.auc:.3f}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    return fig


def planted_html(result: PlantedCheck) -> str:
    report = HtmlReport("planted subset-scan check")
    s = dict(result.settings)
    report.add_table(
        [
            {
                "nodes": s.get("nodes"),
                "planted": s.get("planted"),
                "shift (x range)": s.get("shift"),
                "precision": round(result.precision, 3),
                "recall": round(result.recall, 3),
                "AUC planted vs clean": round(result.auc, 3),
                "null AUC": round(result.null_auc, 3),
                "passed": "yes" if result.passed else "no",
            }
        ]
    )
    report.add_figure(plot_planted(result), caption="Scores of clean, planted and null samples.")
    return report._repr_html_()


def _display(x: torch.Tensor) -> np.ndarray:
    """An output shown as an image: an image as it is, anything else as a 2-D map."""
    if x.dim() == 3 and x.shape[0] in (1, 3):
        return image_for_display(x)
    a = x.detach().double().cpu().numpy()
    return a.reshape(a.shape[0], -1) if a.ndim >= 2 else a[None, :]


def plot_creative(result: CreativeSamples, *, ax=None, n: int = 8):
    """A grid: rows normal, control and creative decodings of the first ``n`` codes
    (images, or each output as a map). Returns the figure."""
    k = min(n, len(result))
    fig, ax = _new_axes(ax, (1.0 + 1.1 * k, 3.6))
    rows = [("normal", result.normal), (result.control_kind, result.control), ("creative", result.creative)]
    tiles = []
    for _, out in rows:
        cells = [_display(out[i]) for i in range(k)]
        cells = [np.repeat(c[..., None], 3, axis=-1) if c.ndim == 2 else c for c in cells]
        lo = min(float(c.min()) for c in cells) if cells else 0.0
        hi = max(float(c.max()) for c in cells) if cells else 1.0
        scale = (hi - lo) or 1.0
        cells = [(c - lo) / scale if not result.is_image() else np.clip(c, 0, 1) for c in cells]
        h = max(c.shape[0] for c in cells)
        w = max(c.shape[1] for c in cells)
        pad = np.ones((h, 1, 3))
        strip = [np.pad(c, ((0, h - c.shape[0]), (0, w - c.shape[1]), (0, 0)), constant_values=1.0) for c in cells]
        tiles.append(np.concatenate([x for c in strip for x in (c, pad)], axis=1))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=1.0) for t in tiles]
    gap = np.ones((1, width, 3))
    grid = np.concatenate([x for t in tiles for x in (t, gap)], axis=0)
    ax.imshow(grid, interpolation="nearest", aspect="auto" if not result.is_image() else "equal")
    h = tiles[0].shape[0] + 1
    ax.set_yticks([h * i + h / 2 for i in range(3)])
    ax.set_yticklabels([name for name, _ in rows], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"Creative decoding at {result.layer} (strength {result.strength:g})", fontsize=10)
    return fig


def creative_html(result: CreativeSamples, *, n: int = 8) -> str:
    """The grid and a table of how far each decoding moved from the normal one."""
    report = HtmlReport("creative decoding")
    report.add_html(_img_tag(figure_to_png(plot_creative(result, n=n)), alt="creative decoding grid"))
    rows = []
    for i in range(min(n, len(result))):
        rows.append(
            {
                "sample": i,
                "units set": ", ".join(str(u) for u in result.units[i].tolist()),
                "creative change": float(result.creative_change[i]),
                f"{result.control_kind} change": float(result.control_change[i]),
            }
        )
    report.add_table(rows, caption="Mean absolute difference from the normal decoding.")
    report.add_paragraph(
        f"Layer {result.layer}; {result.units.shape[1]} low-active unit(s) per sample set to strength "
        f"{result.strength:g} x their reference; control: {result.control_kind}"
        + (f" (std {result.noise:g})" if result.noise is not None else " (same number of units, same values)")
        + f"; seed {result.seed}."
    )
    return report._repr_html_()


register_view(ScanResult, plot=plot_scan, html=scan_html)
register_view(PlantedCheck, plot=plot_planted, html=planted_html)
register_view(CreativeSamples, plot=plot_creative, html=creative_html)
