"""``seethrough atlas`` (the browsable site) and ``seethrough examples`` (the table only)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seethrough._core.errors import ConfigError, InputError

__all__ = ["register"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def _progress(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="bundled name, TorchScript file, or package.module:factory")
    p.add_argument("--weights", help="state dict for a factory model: .safetensors or a torch file (weights only)")
    p.add_argument("--data", required=True,
                   help="'shapes', 'mnist', a folder of images, or a tensor file (.npy, .safetensors, torch)")
    p.add_argument("--n", type=int, help="images to use (shapes: generated, default 5000; others: the first N, default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shapes data (default: 0)")
    p.add_argument("--size", type=int, help="image size for shapes and folders (bundled models: their own)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="folder images: 1 (grayscale) or 3 (RGB)")
    p.add_argument("--mean", type=_floats, help="per-channel mean the images are normalised with")
    p.add_argument("--std", type=_floats, help="per-channel std the images are normalised with")
    p.add_argument("--tensor-key", help="tensor name inside a .safetensors file")
    p.add_argument("--layers", default="conv",
                   help="'conv' (every convolution, default), 'all' (convolutions and linear layers) or a,b,c")
    p.add_argument("--top-k", type=int, default=9, help="most and least activating examples per unit (default: 9)")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default: sized from memory)")


def register(sub) -> None:
    a = sub.add_parser(
        "atlas",
        help="build a browsable static atlas of a model's units (dataset examples, feature visualisations)",
        description="Build a Microscope-style static site: index (layers) -> layer pages (grid of units) -> "
        "unit pages (feature visualisation, top-k and bottom-k dataset examples with receptive-field "
        "patches). Opens offline from disk. An interrupted build continues where it stopped when run again.",
    )
    _data_args(a)
    a.add_argument("--steps", type=int, default=256,
                   help="feature-visualisation steps per unit (default: 256; 0: none)")
    a.add_argument("--labels", help="JSON file of dissection labels: {layer: {unit: label}}")
    a.add_argument("--out", required=True, help="output folder (new, or one holding an unfinished atlas)")
    a.set_defaults(handler=_cmd_atlas)

    e = sub.add_parser(
        "examples",
        help="record the top-k and bottom-k dataset examples of every unit (a table, no site)",
        description="One resumable pass over a data set; writes the examples table as .safetensors "
        "(seethrough.atlas.DatasetExamples.load) and optionally as CSV.",
    )
    _data_args(e)
    e.add_argument("--out", required=True, help="output .safetensors file")
    e.add_argument("--csv", help="also write the table as CSV here")
    e.add_argument("--checkpoint", help="checkpoint file to resume an interrupted pass from")
    e.set_defaults(handler=_cmd_examples)


def _load(args):
    from seethrough import zoo
    from seethrough.app.models import load_model
    from seethrough.app.data import open_source

    model = load_model(args.model, args.weights)
    info = zoo.info(args.model) if args.model in zoo.available() else None
    size = args.size or (info.input_shape[1] if info else None)
    channels = args.channels or (info.input_shape[0] if info else None)
    if args.n is not None and args.n < 0:
        raise ConfigError(f"--n must be a non-negative number of images, got {args.n}")
    source = open_source(args.data, n=args.n, seed=args.seed, size=size, channels=channels,
                         mean=args.mean, std=args.std, tensor_key=args.tensor_key)
    if len(source) == 0:
        raise InputError(f"the data {args.data!r} holds no images; give a data set with at least one image")
    layers = None if args.layers == "conv" else args.layers
    return model, source, layers


def _cmd_atlas(args) -> int:
    from seethrough.atlas.site import Atlas

    model, source, layers = _load(args)
    labels = None
    if args.labels:
        p = Path(args.labels)
        try:
            labels = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read dissection labels from {args.labels!r}: {err}") from err
        if not isinstance(labels, dict) or not all(isinstance(v, dict) for v in labels.values()):
            raise InputError(f"{args.labels!r} must hold a JSON object {{layer: {{unit: label}}}}")
    build = Atlas(
        model, layers=layers, top_k=args.top_k, steps=args.steps, unit_labels=labels,
        batching=args.batch_size, mean=args.mean, std=args.std, title=f"{args.model} atlas",
        progress=_progress,
    ).build(source, args.out)
    print(
        f"Atlas of {build.n_units} units in {len(build.layers)} layers written to {build.index.resolve()} "
        f"(examples {build.seconds_examples:.1f} s, feature visualisation {build.seconds_featurevis:.1f} s, "
        f"writing {build.seconds_writing:.1f} s)"
    )
    return 0


def _cmd_examples(args) -> int:
    from seethrough.atlas.examples import DatasetExamples

    model, source, layers = _load(args)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out must be a .safetensors file, got {args.out!r}")
    ex = DatasetExamples(model, layers=layers, top_k=args.top_k, batching=args.batch_size,
                         checkpoint=args.checkpoint, progress=_progress).fit(source)
    ex.save(out)
    if args.csv:
        ex.to_csv(args.csv)
    units = sum(ex.n_units(nm) for nm in ex.layers_)
    print(f"Examples of {units} units in {len(ex.layers_)} layers written to {out.resolve()}"
          + (f" and {Path(args.csv).resolve()}" if args.csv else ""))
    return 0
