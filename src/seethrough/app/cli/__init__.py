"""Command line: a thin layer over the library.

    seethrough demo [--out DIR]             explain the bundled model, write an HTML report
    seethrough explain --model M --images … explain your own model on your own inputs
    seethrough methods                      list the attribution methods
    seethrough models                       list the bundled models

Library errors (bad input, unknown names) exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

from seethrough._core.errors import SeethroughError

from ._args import _floats, _parse_target

__all__ = ["main", "build_parser"]


# Subcommands that live beside their feature. Each module has ``register(sub)``, which adds its
# parser and sets ``handler=<function(args) -> int>`` with ``set_defaults``. Keep one module a line.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    ".featurevis",
    ".atlas",
    ".trust",
    ".influence",
    ".sanity",
    ".concepts",
)


def _methods(text: str) -> list[str]:
    from seethrough.attribution.registry import METHODS, get_method

    if text == "all":
        return list(METHODS)
    return [get_method(n).name for n in text.split(",") if n.strip()]


def build_parser() -> argparse.ArgumentParser:
    from seethrough.attribution.registry import METHODS

    p = argparse.ArgumentParser(prog="seethrough", description="Explain PyTorch models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="explain the bundled shapes model with every method; write an HTML report")
    d.add_argument("--out", default="reports/demo", help="output folder (default: reports/demo)")
    d.add_argument("--n-images", type=int, default=6, help="held-out images to explain (default: 6)")
    d.add_argument("--methods", default="all", help=f"comma-separated methods or 'all' (of: {', '.join(METHODS)})")
    d.add_argument("--seed", type=int, default=12345, help="seed of the held-out images")
    d.add_argument("--maps-only", action="store_true",
                   help="only the attribution maps (skip the trust reports, feature visualization, atlas, "
                   "influence and concept sections)")

    e = sub.add_parser(
        "explain",
        help="explain your own model on image or tensor files",
        description="Explain a model (bundled name, TorchScript file, or package.module:factory "
        "with --weights) on image files or a saved tensor.",
    )
    e.add_argument("--model", required=True, help="bundled name, TorchScript file, or package.module:factory")
    e.add_argument("--weights", help="state dict for a factory model: .safetensors or a torch file (weights only)")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", help="image files")
    src.add_argument("--tensor", help="inputs as a tensor file (.npy, .safetensors, or torch tensor file)")
    e.add_argument("--tensor-key", help="tensor name inside a .safetensors file")
    e.add_argument("--size", type=int, help="resize images to SIZE x SIZE (bundled models: their own size)")
    e.add_argument("--channels", type=int, choices=(1, 3), help="1 (grayscale) or 3 (RGB) (default: 3)")
    e.add_argument("--mean", type=_floats, help="per-channel mean subtracted after scaling to [0,1]")
    e.add_argument("--std", type=_floats, help="per-channel std divided after the mean")
    e.add_argument("--methods", default="saliency,integrated_gradients,gradcam",
                   help="comma-separated methods or 'all' (see 'seethrough methods')")
    e.add_argument("--target", help="class index, one per input (3,1,0), class difference (3-5), or 'predicted' (default)")
    e.add_argument("--layer", help="dotted layer name for layer methods (bundled models: their default)")
    e.add_argument("--feature-mask", help="features of mask-based methods (LIME, SHAP, ablation): grid:N, "
                   "slic[:N], quickshift, felzenszwalb or elements (default: an 8x8 grid for images)")
    e.add_argument("--class-names", help="comma-separated class names for the report")
    e.add_argument("--html", help="write an HTML report here")
    e.add_argument("--maps", help="write the maps: a .safetensors file, or a folder of .npy files")

    sub.add_parser("methods", help="list the attribution methods")
    sub.add_parser("models", help="list the bundled models")
    for module in _SUBCOMMAND_MODULES:
        importlib.import_module(module, __package__).register(sub)
    return p


def _progress(name: str) -> None:
    print(f"  running {name} ...", file=sys.stderr, flush=True)


def _cmd_demo(args) -> int:
    from seethrough.app.demo import demo_report

    path = demo_report(args.out, n_images=args.n_images, methods=_methods(args.methods), seed=args.seed,
                       progress=_progress, model_sections=not args.maps_only)
    print(f"Report written to {path.resolve()}")
    return 0


def _cmd_explain(args) -> int:
    from seethrough import zoo
    from seethrough._core.files import load_images, load_tensor
    from seethrough.app.runs import explain_report
    from seethrough.app.models import load_model

    model = load_model(args.model, args.weights)
    info = zoo.info(args.model) if args.model in zoo.available() else None
    if args.images:
        size = args.size or (info.input_shape[1] if info else None)
        channels = args.channels or (info.input_shape[0] if info else 3)
        x = load_images(args.images, size=size, channels=channels, mean=args.mean, std=args.std)
    else:
        x = load_tensor(args.tensor, args.tensor_key)
    layer = args.layer or (info.default_cam_layer if info else None)
    class_names = args.class_names.split(",") if args.class_names else (list(info.classes) if info else None)
    if not args.html and not args.maps:
        args.html = "reports/explain.html"
    from seethrough.attribution.masks import feature_mask_from_spec

    explain_report(
        model, x, _methods(args.methods), target=_parse_target(args.target), layer=layer,
        class_names=class_names, html=args.html, maps=args.maps,
        feature_mask=feature_mask_from_spec(args.feature_mask, x), progress=_progress,
    )
    if args.html:
        print(f"Report written to {Path(args.html).resolve()}")
    if args.maps:
        print(f"Maps written to {Path(args.maps).resolve()}")
    return 0


def _cmd_methods(args) -> int:
    from seethrough.attribution.registry import METHODS

    for s in METHODS.values():
        layer = " (needs --layer)" if s.needs_layer else ""
        print(f"{s.name:30s} {s.family:12s} {s.summary}{layer}")
    return 0


def _cmd_models(args) -> int:
    from seethrough import zoo

    for name in zoo.available():
        i = zoo.info(name)
        acc = i.metrics.get("test_accuracy")
        acc_s = f"held-out accuracy {100 * acc:.1f}%" if acc is not None else ""
        print(f"{name:22s} {i.architecture:10s} input {i.input_shape}  {acc_s}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    builtin = {"demo": _cmd_demo, "explain": _cmd_explain, "methods": _cmd_methods, "models": _cmd_models}
    handler = builtin.get(args.command) or args.handler
    try:
        return handler(args)
    except SeethroughError as e:
        print(f"seethrough: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
