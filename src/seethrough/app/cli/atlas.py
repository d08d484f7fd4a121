"""``seethrough atlas`` (the browsable site) and ``seethrough examples`` (the table only)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seethrough._core.errors import ConfigError, InputError
from seethrough.app.specs import add_data_arguments, add_model_arguments, data_spec, model_spec

__all__ = ["register"]


def _progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def _arguments(p: argparse.ArgumentParser) -> None:
    """The model and data (the shared vocabulary), then what to record."""
    add_model_arguments(p)
    add_data_arguments(p, n_default=None, labels=False)
    # the earlier name of --data-seed
    p.add_argument("--seed", dest="data_seed", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument(
        "--layers",
        default="conv",
        help="'conv' (every convolution, default), 'all' (convolutions and linear layers) or a,b,c",
    )
    p.add_argument("--top-k", type=int, default=9, help="most and least activating examples per unit (default: 9)")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default: sized from memory)")


def register(sub: Any) -> None:
    a = sub.add_parser(
        "atlas",
        help="build a browsable static atlas of a model's units (dataset examples, feature visualisations)",
        description="Build a Microscope-style static site: index (layers) -> layer pages (grid of units) -> "
        "unit pages (feature visualisation, top-k and bottom-k dataset examples with receptive-field "
        "patches). Opens offline from disk. An interrupted build continues where it stopped when run again. "
        "Generated shapes data: 5,000 images unless --n says otherwise; other data: all of it.",
    )
    _arguments(a)
    a.add_argument(
        "--steps", type=int, default=256, help="feature-visualisation steps per unit (default: 256; 0: none)"
    )
    # dest differs from --labels of the data vocabulary (class labels), which the atlas does not take
    a.add_argument("--labels", dest="unit_labels", help="JSON file of dissection labels: {layer: {unit: label}}")
    a.add_argument("--out", required=True, help="output folder (new, or one holding an unfinished atlas)")
    a.set_defaults(handler=_cmd_atlas)

    e = sub.add_parser(
        "examples",
        help="record the top-k and bottom-k dataset examples of every unit (a table, no site)",
        description="One resumable pass over a data set; writes the examples table as .safetensors "
        "(seethrough.atlas.DatasetExamples.load) and optionally as CSV.",
    )
    _arguments(e)
    e.add_argument("--out", required=True, help="output .safetensors file")
    e.add_argument("--csv", help="also write the table as CSV here")
    e.add_argument("--checkpoint", help="checkpoint file to resume an interrupted pass from")
    e.set_defaults(handler=_cmd_examples)


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any, str | None]:
    """``(model spec, model, image source, layers)``: every image of the data (MNIST: all
    5,000 digits), read by position."""
    if args.n == 0:
        raise InputError("--n 0 selects no images; give --n of at least 1, or leave it out to use all the data")
    spec = model_spec(args)
    model = spec.load()
    source = data_spec(args, spec, split="all").image_source()
    if len(source) == 0:
        raise InputError(f"the data {' '.join(args.data)!r} holds no images; give a data set with at least one image")
    return spec, model, source, None if args.layers == "conv" else args.layers


def _read_labels(path: str) -> dict:
    try:
        labels = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read dissection labels from {path!r}: {err}") from err
    if not isinstance(labels, dict) or not all(isinstance(v, dict) for v in labels.values()):
        raise InputError(f"{path!r} must hold a JSON object {{layer: {{unit: label}}}}")
    return labels


def _cmd_atlas(args: argparse.Namespace) -> int:
    from seethrough.atlas import Atlas

    spec, model, source, layers = _load(args)
    labels = _read_labels(args.unit_labels) if args.unit_labels else None
    mean, std = spec.normalization
    build = Atlas(
        model,
        layers=layers,
        top_k=args.top_k,
        steps=args.steps,
        unit_labels=labels,
        batching=args.batch_size,
        mean=mean,
        std=std,
        title=f"{args.model} atlas",
        progress=_progress,
    ).build(source, args.out)
    print(
        f"Atlas of {build.n_units} units in {len(build.layers)} layers written to {build.index.resolve()} "
        f"(examples {build.seconds_examples:.1f} s, feature visualisation {build.seconds_featurevis:.1f} s, "
        f"writing {build.seconds_writing:.1f} s)"
    )
    return 0


def _cmd_examples(args: argparse.Namespace) -> int:
    from seethrough.atlas import DatasetExamples

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out must be a .safetensors file, got {args.out!r}")
    _, model, source, layers = _load(args)
    ex = DatasetExamples(
        model, layers=layers, top_k=args.top_k, batching=args.batch_size, checkpoint=args.checkpoint, progress=_progress
    ).fit(source)
    ex.save(out)
    if args.csv:
        ex.to_csv(args.csv)
    units = sum(ex.n_units(nm) for nm in ex.layers_)
    print(
        f"Examples of {units} units in {len(ex.layers_)} layers written to {out.resolve()}"
        + (f" and {Path(args.csv).resolve()}" if args.csv else "")
    )
    return 0
