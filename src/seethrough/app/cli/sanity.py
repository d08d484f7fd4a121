"""``seethrough sanity``: model and data randomization checks (Adebayo et al. 2018)."""

from __future__ import annotations

import argparse

from seethrough._core.errors import ConfigError
from seethrough.app.specs import add_data_arguments, add_model_arguments, data_spec, model_spec
from seethrough.evaluation.randomization import DEFAULT_MEASURES, ModelRandomizationCheck, data_randomization_check
from seethrough.evaluation.views import plot_randomization_curves, plot_randomization_examples

__all__ = ["register"]


def register(sub) -> None:
    """``seethrough sanity``: the model randomization check of a method on a bundled model."""
    p = sub.add_parser(
        "sanity",
        help="model/data randomization sanity checks (Adebayo et al. 2018) of attribution methods",
        description="Randomize a bundled model's layers (or compare with its random-label twin) and "
        "measure how much each method's maps change.",
    )
    add_model_arguments(p, default="shapes-cnn")
    add_data_arguments(p, default=None, required=False, n_default=8, labels=False, seed_default=4242)
    p.add_argument("--n-images", type=int, dest="n", help=argparse.SUPPRESS)  # the older spelling of --n
    p.add_argument("--methods", default="saliency,guided_backprop,gradcam", help="comma-separated methods")
    p.add_argument(
        "--mode",
        default="cascading",
        choices=("cascading", "independent", "data"),
        help="cascading (default), independent, or data (against --random-model)",
    )
    p.add_argument(
        "--random-model",
        default="shapes-cnn-random-labels",
        help="a model of the same architecture trained on permuted labels, for --mode data "
        "(bundled name, TorchScript file or package.module:factory; default: shapes-cnn-random-labels)",
    )
    p.add_argument("--random-weights", help="weights of a factory --random-model")
    p.add_argument("--seed", type=int, default=0, help="randomization seed (default: 0)")
    p.add_argument("--layer", help="layer for layer methods (default: the model's CAM layer)")
    p.add_argument("--curves", action="store_true", help="also print the mean similarity after each stage")
    p.add_argument("--html", help="write an HTML report with curves and example maps here")
    p.set_defaults(handler=_cli_sanity)


def _cli_sanity(args) -> int:
    from seethrough.app.models import ModelSpec
    from seethrough.attribution.registry import get_method

    if args.n is not None and args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    spec = model_spec(args)
    model = spec.load()
    if args.data is None:  # a bundled model's own kind of data
        args.data = ["mnist" if spec.input_shape() == (1, 28, 28) else "shapes"]
    x = data_spec(args, spec).load(default_n=8).images
    layer = args.layer or spec.default_layer
    report = None
    if args.html:
        from seethrough.report.html import HtmlReport

        report = HtmlReport(f"sanity checks: {args.model}")
    print(f"{'method':<24} {'check':<12} " + " ".join(f"{m:>14}" for m in DEFAULT_MEASURES))
    for name in [n.strip() for n in args.methods.split(",") if n.strip()]:
        method = get_method(name)
        settings = {"layer": layer} if method.needs_layer else None
        if args.mode == "data":
            random_model = ModelSpec(args.random_model, weights=args.random_weights).load()
            res = data_randomization_check(method.name, model, random_model, x, method_settings=settings)
        else:
            res = ModelRandomizationCheck(method.name, mode=args.mode, seed=args.seed, method_settings=settings).run(
                model, x
            )
        cells = " ".join(f"{res.scores[m]:>9.3f} {res.verdicts[m]:<4}" for m in DEFAULT_MEASURES)
        print(f"{method.name:<24} {args.mode:<12} {cells}")
        if args.curves:
            for m in DEFAULT_MEASURES:
                curve = ", ".join(f"{st} {v:.3f}" for st, v in zip(res.stages, res.mean_curve(m).tolist()))
                print(f"    {m}: {curve}")
        if report is not None:
            report.add_heading(f"{method.name} ({args.mode})")
            report.add_table(res.table())
            report.add_figure(plot_randomization_curves(res))
            report.add_figure(plot_randomization_examples(res))
    if report is not None:
        path = report.save(args.html)
        print(f"Report written to {path.resolve()}")
    return 0
