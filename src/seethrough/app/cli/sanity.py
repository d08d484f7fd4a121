"""``seethrough sanity``: model and data randomization checks (Adebayo et al. 2018)."""

from __future__ import annotations

from seethrough._core.errors import ConfigError
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
    p.add_argument("--model", default="shapes-cnn", help="bundled model (default: shapes-cnn)")
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
        help="bundled model trained on permuted labels, for --mode data",
    )
    p.add_argument("--n-images", type=int, default=8, help="held-out shapes images (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="randomization seed (default: 0)")
    p.add_argument("--data-seed", type=int, default=4242, help="seed of the held-out images")
    p.add_argument("--layer", help="layer for layer methods (default: the model's CAM layer)")
    p.add_argument("--curves", action="store_true", help="also print the mean similarity after each stage")
    p.add_argument("--html", help="write an HTML report with curves and example maps here")
    p.set_defaults(handler=_cli_sanity)


def _cli_sanity(args) -> int:
    from seethrough import zoo
    from seethrough.attribution.registry import get_method

    if args.n_images < 1:
        raise ConfigError("--n-images must be at least 1")
    info = zoo.info(args.model)
    model = zoo.load(args.model)
    if info.input_shape != (3, 64, 64):
        from seethrough.data.mnist import mnist_split

        x = mnist_split(seed=0)[2][: args.n_images]
    else:
        from seethrough.data.shapes import make_shapes

        x = make_shapes(args.n_images, seed=args.data_seed).images
    layer = args.layer or info.default_cam_layer
    report = None
    if args.html:
        from seethrough.report.html import HtmlReport

        report = HtmlReport(f"sanity checks: {args.model}")
    print(f"{'method':<24} {'check':<12} " + " ".join(f"{m:>14}" for m in DEFAULT_MEASURES))
    for name in [n.strip() for n in args.methods.split(",") if n.strip()]:
        spec = get_method(name)
        settings = {"layer": layer} if spec.needs_layer else None
        if args.mode == "data":
            res = data_randomization_check(spec.name, model, zoo.load(args.random_model), x, method_settings=settings)
        else:
            res = ModelRandomizationCheck(spec.name, mode=args.mode, seed=args.seed, method_settings=settings).run(
                model, x
            )
        cells = " ".join(f"{res.scores[m]:>9.3f} {res.verdicts[m]:<4}" for m in DEFAULT_MEASURES)
        print(f"{spec.name:<24} {args.mode:<12} {cells}")
        if args.curves:
            for m in DEFAULT_MEASURES:
                curve = ", ".join(f"{st} {v:.3f}" for st, v in zip(res.stages, res.mean_curve(m).tolist()))
                print(f"    {m}: {curve}")
        if report is not None:
            report.add_heading(f"{spec.name} ({args.mode})")
            report.add_table(res.table())
            report.add_figure(plot_randomization_curves(res))
            report.add_figure(plot_randomization_examples(res))
    if report is not None:
        path = report.save(args.html)
        print(f"Report written to {path.resolve()}")
    return 0
