"""``seethrough tcav`` and ``seethrough dissect``: concept tests and network dissection.

Thin: the model is a :class:`~seethrough.app.models.ModelSpec`, the inputs a
:class:`~seethrough.app.data.DataSpec`, the concept data come from
:mod:`seethrough.app.concepts`; the work is the concepts family's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seethrough._core.errors import ConfigError, InputError
from seethrough.app.data import HELD_OUT_SEED, Data, DataSpec
from seethrough.app.models import ModelSpec
from seethrough.app.specs import add_model_arguments, model_spec

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
        raise ConfigError(f"cannot read {what} {text!r}: give comma-separated class indices (0,1)") from None
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


def _common(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data and the protocol (default: 0)")
    p.add_argument("--batch-size", type=int, help="images per model call (default: automatic)")
    p.add_argument("--html", help="also write an HTML report here")


def register(sub: Any) -> None:
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
    t.add_argument(
        "--concept-dir",
        action="append",
        metavar="NAME=FOLDER",
        help="a concept given by a folder of example images (repeatable)",
    )
    t.add_argument("--classes", help="comma-separated class indices to test (default: every label present)")
    t.add_argument(
        "--inputs",
        help="class inputs: bundled data, a folder of images or a tensor file "
        "(bundled models: their own generated data)",
    )
    t.add_argument("--labels", help="labels of --inputs: a tensor file (.npy, .safetensors, torch)")
    t.add_argument("--n-inputs", type=int, default=200, help="generated inputs for a bundled model (default: 200)")
    t.add_argument("--random-dir", help="random images: a folder or tensor file (default: generated)")
    t.add_argument("--random-runs", type=int, default=20, help="runs per concept (default: 20)")
    t.add_argument("--n-examples", type=int, default=20, help="examples per run (default: 20)")
    t.add_argument(
        "--protocol",
        choices=("disjoint", "shared"),
        default="disjoint",
        help="'disjoint' (default, calibrated) or 'shared' (the paper's per-run t-test)",
    )
    t.add_argument("--significance", type=float, default=0.05, help="family-wise level (default: 0.05)")
    t.add_argument(
        "--null-check",
        type=int,
        default=0,
        metavar="TRIALS",
        help="also measure the false-positive rate on random sets posed as concepts",
    )
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
    d.add_argument("--scenes", help="your own scenes instead of generated ones: a folder of images or a tensor file")
    d.add_argument(
        "--concept-masks",
        help="the masks of --scenes: a .safetensors file with one boolean (N, H, W) tensor per concept, named by it",
    )
    d.add_argument("--iou", type=float, default=0.04, help="IoU threshold for a label (default: 0.04)")
    d.add_argument("--quantile", type=float, default=0.005, help="top quantile per unit (default: 0.005)")
    d.add_argument("--top", type=int, default=10, help="units listed per layer (default: 10)")
    d.add_argument("--labels-out", help="write the unit labels as JSON, for 'seethrough atlas --labels'")
    d.set_defaults(handler=_run_dissect)


def _own_data(spec: ModelSpec) -> str:
    """The bundled data a bundled model was trained on (its held-out part is the inputs)."""
    info = spec.info
    from seethrough.data.shapes import CLASSES as SHAPES

    if tuple(info.classes) == tuple(SHAPES):
        return "shapes"
    if tuple(info.classes) == ("plain", "striped"):
        return "stripes"
    if tuple(info.input_shape) == (1, 28, 28):
        return "mnist"
    raise ConfigError(f"no generated inputs for {spec.name!r}; give --inputs and --labels")


def _inputs(args: Any, spec: ModelSpec, shape: tuple[int, int, int]) -> Data:
    c, h, _ = shape
    if args.inputs is None:
        if not spec.bundled:
            raise ConfigError("give --inputs (and --labels) for a model that is not bundled")
        if args.n_inputs < 1:
            raise ConfigError(f"--n-inputs must be at least 1, got {args.n_inputs}")
        return DataSpec(_own_data(spec), n=args.n_inputs, seed=HELD_OUT_SEED + args.seed, size=h, channels=c).load()
    return DataSpec(args.inputs, size=h, channels=c, labels=args.labels).load()


def _save_report(title: str, add: Any, path: str) -> None:
    from seethrough.report.html import HtmlReport

    report = HtmlReport(title)
    add(report)
    print(f"Report written to {Path(report.save(path)).resolve()}")


def _run_tcav(args: Any) -> int:
    from seethrough.app.concepts import run_null_check, run_tcav
    from seethrough.concepts import TCAV
    from seethrough.concepts.views import add_tcav

    concepts: dict[str, str | None] = {c: None for c in _names(args.concepts, "--concepts")}
    concepts.update(_concept_dirs(args.concept_dir))
    if not concepts:
        raise ConfigError("give --concepts (generated names) and/or --concept-dir NAME=FOLDER")
    spec = model_spec(args)
    shape = spec.require_input_shape("tcav")
    model = spec.load()
    data = _inputs(args, spec, shape)
    classes = _ints(args.classes, "--classes")
    if data.labels is None and classes is None:
        raise ConfigError("give --classes (the inputs have no labels)")
    tcav = TCAV(
        model,
        layer=args.layer,
        random_runs=args.random_runs,
        n_examples=args.n_examples,
        protocol=args.protocol,
        significance=args.significance,
        batching=args.batch_size,
        seed=args.seed,
    )
    names = spec.classes or (list(data.classes) if data.classes else None)
    result = run_tcav(
        tcav, data.images, concepts, random=args.random_dir, labels=data.labels, classes=classes, class_names=names
    )
    print(result.to_text())
    null = None
    if args.null_check:
        if args.null_check < 1:
            raise ConfigError(f"--null-check takes a positive number of trials, got {args.null_check}")
        print(f"  null check: {args.null_check} trials ...", file=sys.stderr, flush=True)
        null = run_null_check(
            tcav, data.images, random=args.random_dir, labels=data.labels, classes=classes, trials=args.null_check
        )
        lo, hi = null.interval
        print(
            f"null check: {null.n_false_positives}/{null.trials} random sets called significant "
            f"(false-positive rate {null.false_positive_rate:.3f}, 95% CI {lo:.3f}-{hi:.3f}; level {null.significance})"
        )
    if args.html:
        _save_report(f"TCAV: {args.model}, layer {result.layer}", lambda r: add_tcav(r, result, null=null), args.html)
    return 0


def _run_dissect(args: Any) -> int:
    from seethrough.concepts import ConceptMasks, Dissection
    from seethrough.concepts.views import add_dissection
    from seethrough.data.concepts import concept_scenes

    layers = _names(args.layers, "--layers")
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.top < 0:
        raise ConfigError(f"--top must be >= 0, got {args.top}")
    spec = model_spec(args)
    channels, size, _ = spec.require_input_shape("dissect")
    model = spec.load()
    if (args.scenes is None) != (args.concept_masks is None):
        raise ConfigError("--scenes and --concept-masks go together: your scenes and one mask per concept")
    if args.scenes is not None:
        from seethrough.app.concepts import load_concept_scenes

        mean, std = spec.normalization
        scenes: ConceptMasks = load_concept_scenes(
            args.scenes, args.concept_masks, size=size, channels=channels, mean=mean, std=std
        )
    else:
        if size < 24:
            raise InputError(f"scenes need at least 24 pixels; the model takes {size}")
        scenes = concept_scenes(args.n, seed=args.seed, size=size, channels=channels)
    result = Dissection(
        model, layers=layers, quantile=args.quantile, iou_threshold=args.iou, batching=args.batch_size
    ).dissect(scenes)
    print(result.to_text(top=args.top))
    if args.html:
        _save_report(
            f"Network dissection: {args.model}",
            lambda r: add_dissection(r, result, model=model, scenes=scenes),
            args.html,
        )
    if args.labels_out:
        out = Path(args.labels_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        labels = {layer: {str(k): v for k, v in units.items()} for layer, units in result.unit_labels().items()}
        out.write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
        print(f"Unit labels written to {out.resolve()}")
    return 0
