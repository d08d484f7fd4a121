"""``seethrough tcav`` and ``seethrough dissect``: concept tests and network dissection."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from seethrough._core.errors import ConfigError, InputError

__all__ = ["register"]


def _names(text: str | None, what: str) -> list[str]:
    out = [] if text is None else [v.strip() for v in text.split(",") if v.strip()]
    if text is not None and not out:
        raise ConfigError(f"{what} is empty; give comma-separated names")
    return out


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"cannot read {what} {text!r}: give comma-separated class indices (0,1)")
    if not out:
        raise ConfigError(f"{what} is empty: give comma-separated class indices (0,1)")
    return out


def _concept_dirs(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ConfigError(f"--concept-dir takes NAME=FOLDER (e.g. stripes=data/stripes), got {item!r}")
        out[name.strip()] = folder.strip()
    return out


def _common(p) -> None:
    p.add_argument("--model", required=True, help="bundled name, TorchScript file, or package.module:factory")
    p.add_argument("--weights", help="state dict for a factory model: .safetensors or a torch file (weights only)")
    p.add_argument("--size", type=int, help="image size for a model that is not bundled")
    p.add_argument("--channels", type=int, choices=(1, 3), help="image channels for a model that is not bundled")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data and the protocol (default: 0)")
    p.add_argument("--batch-size", type=int, help="images per model call (default: automatic)")
    p.add_argument("--html", help="also write an HTML report here")


def register(sub) -> None:
    t = sub.add_parser(
        "tcav",
        help="test concepts for classes with TCAV (calibrated significance test)",
        description="TCAV at one layer: a score per concept and class, tested against random "
        "concepts (protocol 'disjoint': independent runs, paired t-test, Bonferroni over concepts x "
        "classes). Concepts are generated names or your folders of example images.",
    )
    _common(t)
    t.add_argument("--layer", required=True, help="dotted layer name (see model.named_modules())")
    t.add_argument("--concepts", help="comma-separated generated concepts (e.g. stripes,dots,red)")
    t.add_argument("--concept-dir", action="append", metavar="NAME=FOLDER",
                   help="a concept given by a folder of example images (repeatable)")
    t.add_argument("--classes", help="comma-separated class indices to test (default: every label present)")
    t.add_argument("--inputs", help="class inputs: a folder of images or a tensor file (bundled models: generated)")
    t.add_argument("--labels", help="labels of --inputs: a tensor file (.npy, .safetensors, torch)")
    t.add_argument("--n-inputs", type=int, default=200, help="generated inputs for a bundled model (default: 200)")
    t.add_argument("--random-dir", help="random images: a folder or tensor file (default: generated)")
    t.add_argument("--random-runs", type=int, default=20, help="runs per concept (default: 20)")
    t.add_argument("--n-examples", type=int, default=20, help="examples per run (default: 20)")
    t.add_argument("--protocol", choices=("disjoint", "shared"), default="disjoint",
                   help="'disjoint' (default, calibrated) or 'shared' (the paper's per-run t-test)")
    t.add_argument("--significance", type=float, default=0.05, help="family-wise level (default: 0.05)")
    t.add_argument("--null-check", type=int, default=0, metavar="TRIALS",
                   help="also measure the false-positive rate on random sets posed as concepts")
    t.set_defaults(handler=_run_tcav)

    d = sub.add_parser(
        "dissect",
        help="label the units of convolution layers with concepts (network dissection)",
        description="Network dissection on generated scenes with concept masks: each unit's top "
        "0.5% activations (upsampled) against every concept's pixels; a unit is labelled with its "
        "best concept when the IoU passes --iou.",
    )
    _common(d)
    d.add_argument("--layers", required=True, help="comma-separated dotted layer names")
    d.add_argument("--n", type=int, default=500, help="generated scenes (default: 500)")
    d.add_argument("--iou", type=float, default=0.04, help="IoU threshold for a label (default: 0.04)")
    d.add_argument("--quantile", type=float, default=0.005, help="top quantile per unit (default: 0.005)")
    d.add_argument("--top", type=int, default=10, help="units listed per layer (default: 10)")
    d.add_argument("--labels-out", help="write the unit labels as JSON, for 'seethrough atlas --labels'")
    d.set_defaults(handler=_run_dissect)


def _model_and_shape(args):
    from seethrough import zoo
    from seethrough.app.models import load_model

    model = load_model(args.model, args.weights)
    info = zoo.info(args.model) if args.model in zoo.available() else None
    if info is not None:
        c, h, _ = info.input_shape
        return model, info, args.channels or c, args.size or h
    if args.size is None:
        raise ConfigError(f"--size is needed for a model that is not bundled ({args.model!r})")
    return model, None, args.channels or 3, args.size


def _bundled_inputs(info, n: int, seed: int, size: int, channels: int):
    """Labelled held-out inputs for a bundled model (its own kind of data)."""
    from seethrough.data.concepts import concept_dataset
    from seethrough.data.shapes import CLASSES as SHAPES
    from seethrough.zoo.train import TEST_SEED_OFFSET

    if info.classes == SHAPES:
        from seethrough.data.shapes import make_shapes

        d = make_shapes(n, seed=seed + TEST_SEED_OFFSET, size=size)
        return d.images, d.labels
    if info.classes == ("plain", "striped"):
        return concept_dataset(n, "stripes", seed=seed + TEST_SEED_OFFSET, size=size, channels=channels)
    if info.input_shape == (1, 28, 28):
        from seethrough.data.mnist import mnist_split

        split = mnist_split(seed=0)
        return split.x_test[:n], split.y_test[:n]
    raise ConfigError(f"no generated inputs for {info.name!r}; give --inputs and --labels")


def _load_inputs(args, info, size: int, channels: int):
    from seethrough.data.concepts import load_concept_images
    from seethrough._core.files import load_tensor

    if args.inputs is None:
        if info is None:
            raise ConfigError("give --inputs (and --labels) for a model that is not bundled")
        if args.n_inputs < 1:
            raise ConfigError(f"--n-inputs must be at least 1, got {args.n_inputs}")
        return _bundled_inputs(info, args.n_inputs, args.seed, size, channels)
    x = load_concept_images(args.inputs, size=size, channels=channels)
    labels = None
    if args.labels is not None:
        lab = load_tensor(args.labels)
        labels = lab.round().long().reshape(-1)
    return x, labels


def _run_tcav(args) -> int:
    from seethrough.concepts._report import add_tcav
    from seethrough.concepts.tcav import TCAV, tcav_null_check

    concepts: dict[str, str | None] = {c: None for c in _names(args.concepts, "--concepts")}
    concepts.update(_concept_dirs(args.concept_dir))
    if not concepts:
        raise ConfigError("give --concepts (generated names) and/or --concept-dir NAME=FOLDER")
    model, info, channels, size = _model_and_shape(args)
    x, labels = _load_inputs(args, info, size, channels)
    classes = _ints(args.classes, "--classes")
    if labels is None and classes is None:
        raise ConfigError("give --classes (the inputs have no labels)")
    tcav = TCAV(
        model, layer=args.layer, random_runs=args.random_runs, n_examples=args.n_examples,
        protocol=args.protocol, significance=args.significance, batching=args.batch_size, seed=args.seed,
    )
    class_names = list(info.classes) if info is not None else None
    result = tcav.test(x, concepts, labels=labels, classes=classes, random=args.random_dir, class_names=class_names)
    print(result.to_text())
    null = None
    if args.null_check:
        if args.null_check < 1:
            raise ConfigError(f"--null-check takes a positive number of trials, got {args.null_check}")
        print(f"  null check: {args.null_check} trials ...", file=sys.stderr, flush=True)
        null = tcav_null_check(tcav, x, labels=labels, classes=classes, random=args.random_dir, trials=args.null_check)
        lo, hi = null.interval
        print(
            f"null check: {null.n_false_positives}/{null.trials} random sets called significant "
            f"(false-positive rate {null.false_positive_rate:.3f}, 95% CI {lo:.3f}-{hi:.3f}; level {null.significance})"
        )
    if args.html:
        from seethrough.report.html import HtmlReport

        report = HtmlReport(f"TCAV: {args.model}, layer {result.layer}")
        add_tcav(report, result, null=null)
        path = report.save(args.html)
        print(f"Report written to {Path(path).resolve()}")
    return 0


def _run_dissect(args) -> int:
    from seethrough.data.concepts import concept_scenes
    from seethrough.concepts._report import add_dissection
    from seethrough.concepts.dissection import Dissection

    layers = _names(args.layers, "--layers")
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.top < 0:
        raise ConfigError(f"--top must be >= 0, got {args.top}")
    model, info, channels, size = _model_and_shape(args)
    if size < 24:
        raise InputError(f"scenes need at least 24 pixels; the model takes {size}")
    scenes = concept_scenes(args.n, seed=args.seed, size=size, channels=channels)
    result = Dissection(
        model, layers=layers, quantile=args.quantile, iou_threshold=args.iou, batching=args.batch_size
    ).dissect(scenes)
    print(result.to_text(top=args.top))
    if args.html:
        from seethrough.report.html import HtmlReport

        report = HtmlReport(f"Network dissection: {args.model}")
        with torch.no_grad():
            add_dissection(report, result, model=model, scenes=scenes)
        path = report.save(args.html)
        print(f"Report written to {Path(path).resolve()}")
    if args.labels_out:
        import json

        out = Path(args.labels_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        labels = {layer: {str(k): v for k, v in units.items()} for layer, units in result.unit_labels().items()}
        out.write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
        print(f"Unit labels written to {out.resolve()}")
    return 0
