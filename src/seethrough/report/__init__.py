"""Plots and self-contained HTML reports of explanations.

Importing this package registers the views of the core results (``Explanation.plot`` and
``Explanation.to_html``).
"""

from .._core.result import Explanation, register_view
from .html import HtmlReport, explanation_html
from .plot import (
    array_to_png,
    color_limits,
    figure_to_png,
    heatmap_overlay,
    image_for_display,
    mask_overlay,
    plot_explanation,
    plot_grid,
    plot_mask,
    png_data_uri,
    to_heatmap,
)

__all__ = [
    "HtmlReport",
    "explanation_html",
    "to_heatmap",
    "image_for_display",
    "color_limits",
    "plot_explanation",
    "plot_grid",
    "plot_mask",
    "mask_overlay",
    "heatmap_overlay",
    "figure_to_png",
    "png_data_uri",
    "array_to_png",
]

register_view(Explanation, plot=plot_explanation, html=explanation_html)
