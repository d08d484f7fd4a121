"""Views of the atlas family's results, for the site and for reports built on it.

* :func:`crop_html`: a receptive-field patch shown as HTML, the full image scaled and
  shifted inside a clipping box (no separate patch file).
* :func:`selective_units`: the units of a layer whose top example stands out most from
  their mean activation (the ones worth showing first).
"""

from __future__ import annotations

import html as _html

import torch

from .._core.errors import InputError
from .examples import DatasetExamples

__all__ = ["crop_html", "selective_units"]


def crop_html(src: str, box: tuple[int, int, int, int], H: int, W: int, side: int, alt: str) -> str:
    """The pixels ``box`` (first row, first col, last row, last col) of the ``H x W``
    image ``src`` shown at ``side`` pixels on their long side: the image itself, scaled and
    shifted inside a clipping ``<span class="patch">`` (style it with ``position:relative;
    overflow:hidden`` and its ``img`` with ``position:absolute``)."""
    y0, x0, y1, x1 = box
    h, w = y1 - y0 + 1, x1 - x0 + 1
    if h < 1 or w < 1:
        raise InputError(f"box {box!r} is empty: it must be (first row, first col, last row, last col)")
    k = side / max(h, w)
    return (
        f'<span class="patch" style="width:{w * k:.1f}px;height:{h * k:.1f}px">'
        f'<img src="{_html.escape(src, quote=True)}" alt="{_html.escape(alt, quote=True)}" '
        f'style="width:{W * k:.1f}px;height:{H * k:.1f}px;left:{-x0 * k:.1f}px;top:{-y0 * k:.1f}px"></span>'
    )


def selective_units(examples: DatasetExamples, layer: str, k: int = 6) -> list[int]:
    """The ``k`` units of ``layer`` with the highest ``(top-1 activation - mean) / std``
    (ties to the lower unit index). Needs ``top_k >= 1``."""
    examples.check_fitted("call fit(data) first")
    examples.n_units(layer)  # checks the layer
    top = examples.top_values_[layer]
    if top.shape[1] == 0:
        raise InputError("these dataset examples keep no top examples (top_k=0): no unit stands out")
    score = (top[:, 0] - examples.mean_[layer]) / examples.std_[layer].clamp(min=1e-6)
    return torch.argsort(score, descending=True, stable=True)[:k].tolist()
