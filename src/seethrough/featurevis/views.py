"""Views of feature visualizations: an image grid in HTML and in matplotlib.

Registered as the views of :class:`~seethrough.featurevis.FeatureVisualization`
(:func:`seethrough._core.result.register_view`), so that ``vis.plot(ax=...)`` and
``vis.to_html()`` work; :func:`add_visualization` adds one to an
:class:`~seethrough.report.html.HtmlReport`.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from typing import Any

import torch

from .._core.errors import ConfigError
from .._core.result import register_view
from ..report.html import HtmlReport
from ..report.plot import _new_axes, _show_image, array_to_png, image_for_display, png_data_uri
from .render import FeatureVisualization

__all__ = [
    "image_grid_html",
    "captions",
    "settings_text",
    "visualization_html",
    "add_visualization",
    "plot_visualization",
]


def image_grid_html(images: torch.Tensor, captions: Sequence[str], *, src: Sequence[str] | None = None) -> str:
    """A wrapping grid of images (``(K, C, H, W)`` in [0, 1]) with captions. With
    ``src`` the images are linked files (relative paths); otherwise they are embedded."""
    if src is not None and len(src) != len(captions):
        raise ConfigError(f"got {len(src)} image paths for {len(captions)} captions; give one per image")
    cells = []
    for k, cap in enumerate(captions):
        if src is not None:
            uri = _html.escape(str(src[k]), quote=True)
        else:
            uri = png_data_uri(array_to_png(images[k].detach().cpu().clamp(0, 1), min_size=128))
        text = _html.escape(str(cap))
        cells.append(
            f'<figure class="st-sample"><img class="st-img" src="{uri}" alt="{text}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    return '<div class="st-samples">' + "".join(cells) + "</div>"


def captions(vis: FeatureVisualization, labels: Sequence[str] | None = None) -> list[str]:
    """One caption per image: the label (default: the channel, else the objective) and
    the final objective value."""
    if labels is not None and len(labels) != len(vis):
        raise ConfigError(f"got {len(labels)} labels for {len(vis)} images; give one per image")
    out = []
    for k in range(len(vis)):
        if labels is not None:
            head = str(labels[k])
        elif vis.channels is not None:
            head = f"channel {vis.channels[k]}"
        else:
            head = vis.objectives[k]
        out.append(f"{head} (objective {float(vis.scores[k]):.3g})")
    return out


def settings_text(vis: FeatureVisualization) -> str:
    """One line on how the images were made and how far the objective rose."""
    s = vis.settings
    first, last = vis.history[0].mean().item(), vis.history[-1].mean().item()
    return (
        f"{len(vis)} image(s), {s['size'][0]}x{s['size'][1]}, {s['steps']} Adam steps (lr {s['lr']:g}, "
        f"seed {s['seed']}), {s['param']['space']} parameterization, redirected ReLU for the first "
        f"{s['redirect_relu_steps']} steps; mean objective {first:.3g} at the first step, {last:.3g} at "
        f"the last; {vis.seconds:.1f} s."
    )


def visualization_html(
    vis: FeatureVisualization, *, labels: Sequence[str] | None = None, src: Sequence[str] | None = None
) -> str:
    """The image grid (captioned by channel or objective and final objective value),
    then a paragraph of its settings: ``vis.to_html()``."""
    grid = image_grid_html(vis.images, captions(vis, labels), src=src)
    return grid + f"<p>{_html.escape(settings_text(vis))}</p>"


def add_visualization(
    report: HtmlReport,
    vis: FeatureVisualization,
    *,
    labels: Sequence[str] | None = None,
    src: Sequence[str] | None = None,
) -> HtmlReport:
    """Add ``vis`` to ``report`` as an image grid, captioned by channel (or objective) and
    final objective value, followed by a line of its settings."""
    report.add_html(image_grid_html(vis.images, captions(vis, labels), src=src))
    report.add_paragraph(settings_text(vis))
    return report


def plot_visualization(
    vis: FeatureVisualization, *, ax: Any = None, labels: Sequence[str] | None = None, columns: int | None = None
) -> Any:
    """The images side by side in a grid (``columns`` per row; default about square),
    titled like :func:`captions`; drawn into ``ax`` (its area is split) or a new figure.
    Returns the figure: ``vis.plot()``."""
    n = len(vis)
    cols = columns if columns is not None else max(1, math.ceil(math.sqrt(n)))
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ConfigError(f"columns must be a positive int, got {columns!r}")
    rows = max(1, math.ceil(n / cols))
    fig, ax = _new_axes(ax, (1.8 * cols, 2.0 * rows))
    ax.set_axis_off()
    titles = captions(vis, labels)
    for k in range(n):
        r, c = divmod(k, cols)
        sub = ax.inset_axes([c / cols, 1 - (r + 1) / rows, 1 / cols, 1 / rows])
        _show_image(sub, image_for_display(vis.images[k].clamp(0, 1)))
        sub.set_title(titles[k], fontsize=7)
        sub.set_axis_off()
    return fig


register_view(FeatureVisualization, plot=plot_visualization, html=visualization_html)
