"""Tests of the synthetic shapes generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from seethrough.data import SHAPE_CLASSES, SHORTCUT_COLORS, ShapesData, make_shapes
from seethrough.data.shapes import CLASSES


@pytest.fixture(scope="module")
def data() -> ShapesData:
    return make_shapes(200, seed=3)


@pytest.fixture(scope="module")
def marked() -> ShapesData:
    return make_shapes(120, seed=11, shortcut=True)


def test_classes_constant():
    assert SHAPE_CLASSES == CLASSES == ("circle", "square", "triangle", "cross")


def test_shapes_dtypes_ranges(data):
    n = len(data)
    assert n == 200
    assert data.images.shape == (n, 3, 64, 64) and data.images.dtype == torch.float32
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert data.masks.shape == (n, 1, 64, 64) and data.masks.dtype == torch.bool
    assert data.shortcut_masks is None
    assert data.classes == CLASSES
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    assert torch.isfinite(data.images).all()
    assert set(data.labels.tolist()) <= set(range(4))


def test_other_size():
    d = make_shapes(12, seed=0, size=32)
    assert d.images.shape == (12, 3, 32, 32)
    assert d.masks.flatten(1).any(1).all()


def test_deterministic_for_seed():
    a = make_shapes(16, seed=5, shortcut=True, shortcut_prob=0.5)
    b = make_shapes(16, seed=5, shortcut=True, shortcut_prob=0.5)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.masks, b.masks)
    assert torch.equal(a.shortcut_masks, b.shortcut_masks)
    c = make_shapes(16, seed=6, shortcut=True, shortcut_prob=0.5)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.masks, c.masks)


def test_masks_nonempty_and_inside(data):
    area = data.masks.flatten(1).sum(1)
    # r in [8, 18] px: smallest triangle ~1.3 * (1.2*8)^2 ~ 120 px; largest circle ~1020 px
    assert int(area.min()) >= 80
    assert int(area.max()) <= 1400
    # the object never touches the image border
    border = data.masks.clone()
    border[..., 1:-1, 1:-1] = False
    assert not border.any()


def test_object_is_one_connected_flat_region(data):
    imgs = data.images.numpy()
    for i in range(len(data)):
        m = data.masks[i, 0].numpy()
        _, ncomp = ndimage.label(m, structure=np.ones((3, 3)))  # 8-connected
        assert ncomp == 1
        pix = imgs[i][:, m]  # (3, P)
        # flat colour plus a little sensor noise (sigma <= 0.04)
        assert pix.std(axis=1).max() < 0.08


def test_object_contrasts_with_surroundings(data):
    """Mask area correlates with the object: the pixels just outside the mask differ
    from the object colour much more than the object's own pixels do."""
    imgs = data.images.numpy()
    gaps = []
    for i in range(len(data)):
        m = data.masks[i, 0].numpy()
        ring = ndimage.binary_dilation(m, iterations=3) & ~ndimage.binary_dilation(m, iterations=1)
        inner = ndimage.binary_erosion(m, iterations=1)
        color = np.median(imgs[i][:, inner], axis=1)
        d_in = np.linalg.norm(imgs[i][:, inner] - color[:, None], axis=0).mean()
        d_out = np.linalg.norm(imgs[i][:, ring] - color[:, None], axis=0).mean()
        gaps.append(d_out - d_in)
    gaps = np.asarray(gaps)
    assert np.median(gaps) > 0.25
    assert (gaps > 0.1).mean() > 0.95


def test_class_balance():
    d = make_shapes(401, seed=1)
    counts = torch.bincount(d.labels, minlength=4)
    assert int(counts.max()) - int(counts.min()) <= 1
    # and the order is shuffled, not blocked
    assert len(set(d.labels[:12].tolist())) >= 3


def _geometry(mask: np.ndarray) -> tuple[float, float]:
    """(compactness, solidity) of a mask: area / (pi * max radius^2) and
    area / convex-hull area."""
    from skimage.morphology import convex_hull_image

    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    rmax = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2).max() + 0.5
    area = mask.sum()
    compact = area / (math.pi * rmax**2)
    solidity = area / convex_hull_image(mask).sum()
    return compact, solidity


def test_label_is_decided_by_shape(data):
    """Each class has its own mask geometry: circles are compact, triangles the least
    compact convex shape, squares in between, crosses clearly non-convex."""
    feats = {k: [] for k in range(4)}
    for i in range(len(data)):
        feats[int(data.labels[i])].append(_geometry(data.masks[i, 0].numpy()))
    f = {k: np.asarray(v) for k, v in feats.items()}
    circle, square, triangle, cross = f[0], f[1], f[2], f[3]
    # (ranges seen over 800 images: circle (0.87-0.95, 0.95-0.98), square (0.59-0.69,
    # 0.91-1.0), triangle (0.38-0.50, 0.87-0.96), cross (0.57-0.62, 0.68-0.75))
    assert circle[:, 0].min() > 0.8 and circle[:, 1].min() > 0.9
    assert 0.55 < square[:, 0].min() and square[:, 0].max() < 0.75 and square[:, 1].min() > 0.85
    assert triangle[:, 0].max() < 0.53 and triangle[:, 1].min() > 0.83
    assert cross[:, 1].max() < 0.8
    # a simple rule on these two numbers recovers every label
    predicted = []
    truth = []
    for k, v in f.items():
        for compact, solid in v:
            if solid < 0.8:
                predicted.append(3)
            elif compact > 0.78:
                predicted.append(0)
            elif compact > 0.545:
                predicted.append(1)
            else:
                predicted.append(2)
            truth.append(k)
    assert np.mean(np.asarray(predicted) == np.asarray(truth)) == 1.0


def test_colour_not_class_informative():
    d = make_shapes(400, seed=4, distractors=False)
    imgs = d.images.numpy()
    colours = np.stack([np.median(imgs[i][:, d.masks[i, 0].numpy()], axis=1) for i in range(len(d))])
    means = np.stack([colours[d.labels.numpy() == k].mean(0) for k in range(4)])
    # class mean colours all close to the overall mean (uniform colours: sd of a mean ~0.03)
    assert np.abs(means - colours.mean(0)).max() < 0.12


def test_distractors_never_touch_the_object():
    """Same seed with and without distractors: images differ only at the distractors,
    which keep off the object (and off its 1-pixel surroundings)."""
    with_d = make_shapes(60, seed=8, distractors=True)
    without = make_shapes(60, seed=8, distractors=False)
    assert torch.equal(with_d.labels, without.labels)
    assert torch.equal(with_d.masks, without.masks)
    diff = (with_d.images != without.images).any(1)  # (N, S, S) distractor pixels
    assert diff.flatten(1).any(1).float().mean() > 0.5  # 0-3 distractors, mostly >= 1
    for i in range(len(with_d)):
        near = ndimage.binary_dilation(with_d.masks[i, 0].numpy(), iterations=1)
        assert not (diff[i].numpy() & near).any()
        # and they are small: never more than 3 x ~100 pixels
        assert int(diff[i].sum()) < 400


def test_shortcut_masks(marked):
    sm = marked.shortcut_masks
    assert sm is not None and sm.shape == marked.masks.shape and sm.dtype == torch.bool
    area = sm.flatten(1).sum(1)
    assert (area == 16).all()  # a 4x4 mark in every image (prob 1)
    assert not (sm & marked.masks).any()  # never on the object
    imgs = marked.images
    for i in range(len(marked)):
        k = int(marked.labels[i])
        ys, xs = torch.nonzero(sm[i, 0], as_tuple=True)
        # corner encodes the class: k = 2 * (bottom) + (right)
        assert (int(ys.float().mean() > 32) * 2 + int(xs.float().mean() > 32)) == k
        colour = imgs[i][:, sm[i, 0]].mean(1)
        assert torch.allclose(colour, torch.tensor(SHORTCUT_COLORS[k]), atol=0.06)


def test_shortcut_only_changes_the_mark():
    clean = make_shapes(30, seed=21)
    marked = make_shapes(30, seed=21, shortcut=True)
    assert torch.equal(clean.labels, marked.labels)
    assert torch.equal(clean.masks, marked.masks)
    diff = (clean.images != marked.images).any(1, keepdim=True)
    assert not (diff & ~marked.shortcut_masks).any()
    assert diff.any()


def test_shortcut_probability():
    d = make_shapes(200, seed=2, shortcut=True, shortcut_prob=0.5)
    has = d.shortcut_masks.flatten(1).any(1).float().mean()
    assert 0.35 < float(has) < 0.65
    none = make_shapes(20, seed=2, shortcut=True, shortcut_prob=0.0)
    assert none.shortcut_masks is not None and not none.shortcut_masks.any()
    assert make_shapes(5, seed=2, shortcut=False).shortcut_masks is None


def test_subset(marked):
    s = marked.subset([3, 1, 4])
    assert isinstance(s, ShapesData) and len(s) == 3
    assert torch.equal(s.images[0], marked.images[3])
    assert torch.equal(s.labels, marked.labels[[3, 1, 4]])
    assert torch.equal(s.shortcut_masks[2], marked.shortcut_masks[4])
    assert len(marked.subset(slice(0, 10))) == 10
    assert len(marked.subset(marked.labels == 0)) == int((marked.labels == 0).sum())
    assert len(marked.subset(np.array([0, 1]))) == 2
    assert len(marked.subset(7)) == 1


def test_frozen(data):
    with pytest.raises(Exception):
        data.labels = torch.zeros(3)  # type: ignore[misc]


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_shapes(-1)
    with pytest.raises(ValueError):
        make_shapes(2, size=8)
    with pytest.raises(ValueError):
        make_shapes(2, shortcut=True, shortcut_prob=1.5)
    assert len(make_shapes(0)) == 0


@pytest.mark.slow
def test_fast_enough():
    import time

    t = time.perf_counter()
    make_shapes(2000, seed=0)
    # 20,000 images must take well under 30 s; allow for a loaded CI machine
    assert time.perf_counter() - t < 10.0
