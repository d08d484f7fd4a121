"""``seethrough explain``: registered attribution methods on a model and data of your own."""

from __future__ import annotations

import argparse
from pathlib import Path

from seethrough._core.errors import ConfigError
from seethrough.app.specs import add_data_arguments, add_model_arguments, data_spec, model_spec

from ._args import _parse_target, method_names, progress

__all__ = ["register"]


def register(sub) -> None:
    e = sub.add_parser(
        "explain",
        help="explain a model (bundled or your own) on data (bundled or your own)",
        description="Explain a model (bundled name, TorchScript file, or package.module:factory with --weights) "
        "on image files, a folder of images, a tensor file or bundled data.",
    )
    add_model_arguments(e)
    add_data_arguments(e, default=None, labels=False, required=False)  # or one of its older spellings:
    e.add_argument("--images", nargs="+", dest="data", help=argparse.SUPPRESS)
    e.add_argument("--tensor", dest="data", type=lambda s: [s], help=argparse.SUPPRESS)
    e.add_argument(
        "--methods",
        default="saliency,integrated_gradients,gradcam",
        help="comma-separated methods or 'all' (see 'seethrough methods')",
    )
    e.add_argument(
        "--target", help="class index, one per input (3,1,0), class difference (3-5), or 'predicted' (default)"
    )
    e.add_argument("--layer", help="dotted layer name for layer methods (bundled models: their default)")
    e.add_argument(
        "--feature-mask",
        help="features of mask-based methods (LIME, SHAP, ablation): grid:N, "
        "slic[:N], quickshift, felzenszwalb or elements (default: an 8x8 grid for images)",
    )
    e.add_argument("--class-names", help="comma-separated class names for the report")
    e.add_argument("--html", help="write an HTML report here")
    e.add_argument("--maps", help="write the maps: a .safetensors file, or a folder of .npy files")
    e.set_defaults(handler=_run)


def _run(args) -> int:
    from seethrough.app.runs import explain_report
    from seethrough.attribution.masks import feature_mask_from_spec

    if not args.data:
        raise ConfigError("give the inputs with --data (image files, a folder, a tensor file or bundled data)")
    spec = model_spec(args)
    model = spec.load()
    data = data_spec(args, spec).load(default_n=4)
    x = data.images
    layer = args.layer or spec.default_layer
    class_names = (
        args.class_names.split(",")
        if args.class_names
        else (spec.classes or (list(data.classes) if data.classes else None))
    )
    if not args.html and not args.maps:
        args.html = "reports/explain.html"
    explain_report(
        model,
        x,
        method_names(args.methods),
        target=_parse_target(args.target),
        layer=layer,
        class_names=class_names,
        html=args.html,
        maps=args.maps,
        feature_mask=feature_mask_from_spec(args.feature_mask, x),
        progress=progress,
    )
    if args.html:
        print(f"Report written to {Path(args.html).resolve()}")
    if args.maps:
        print(f"Maps written to {Path(args.maps).resolve()}")
    return 0
