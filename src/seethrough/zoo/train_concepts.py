"""Training of the zoo model with concept ground truth: ``stripes-cnn``.

A :class:`~seethrough.zoo.models.ShapesCNN` with two outputs (``plain``, ``striped``)
trained on :func:`seethrough.data.concepts.concept_dataset` for the concept ``stripes``:
an image is ``striped`` exactly when a striped region (any orientation) is drawn on it.
Colours, dots, checkerboards and shapes appear with the same distribution in both
classes, so a model that solves the task relies on stripes and on nothing else: the
ground truth that TCAV should recover.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..data.concepts import concept_dataset
from .models import ShapesCNN
from .train import TEST_SEED_OFFSET, _deterministic, _fit, evaluate

__all__ = ["STRIPES_CLASSES", "train_stripes"]

#: Class names of ``stripes-cnn``, in label order.
STRIPES_CLASSES: tuple[str, str] = ("plain", "striped")


def train_stripes(
    *,
    n_train: int = 6000,
    n_test: int = 2000,
    epochs: int = 4,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 4e-3,
    weight_decay: float = 1e-4,
    size: int = 64,
    progress: bool = True,
) -> tuple[ShapesCNN, dict[str, Any]]:
    """Train ``stripes-cnn``; the held-out set uses ``seed + TEST_SEED_OFFSET``.

    Returns the model (eval mode) and its metrics (held-out accuracy overall and per
    class, training history, timings).
    """
    t0 = time.perf_counter()
    x, y = concept_dataset(n_train, "stripes", seed=seed, size=size)
    test_seed = seed + TEST_SEED_OFFSET
    xt, yt = concept_dataset(n_test, "stripes", seed=test_seed, size=size)
    data_seconds = time.perf_counter() - t0
    with _deterministic(seed):
        model = ShapesCNN(num_classes=len(STRIPES_CLASSES))
        t1 = time.perf_counter()
        hist = _fit(
            model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            seed=seed, augment=None, progress=progress, desc="stripes-cnn",
        )
        train_seconds = time.perf_counter() - t1
        acc = evaluate(model, xt, yt)
        per_class = {
            name: evaluate(model, xt[yt == k], yt[yt == k]) for k, name in enumerate(STRIPES_CLASSES)
        }
        acc_train = evaluate(model, x, y)
    metrics: dict[str, Any] = {
        "test_accuracy": acc,
        "test_accuracy_per_class": per_class,
        "train_accuracy": acc_train,
        "loss_history": hist["loss"],
        "train_accuracy_history": hist["train_accuracy"],
        "n_train": n_train,
        "n_test": n_test,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "test_seed": test_seed,
        "image_size": size,
        "concept": "stripes",
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
    }
    return model, metrics
