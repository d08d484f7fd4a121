"""``seethrough trust``: the trust report from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

from seethrough.app.data import HELD_OUT_SEED
from seethrough.app.specs import add_data_arguments, add_model_arguments, data_spec, model_spec

DEFAULT_METHODS = "saliency,guided_backprop,integrated_gradients,gradcam,occlusion"


def register(sub) -> None:
    p = sub.add_parser(
        "trust",
        help="evaluate attribution methods: sanity checks, faithfulness, robustness, localization",
        description="Run every evaluation metric for a list of methods on a model and data set "
        "and write a self-contained HTML trust report.",
    )
    add_model_arguments(p, default="shapes-cnn")
    # shapes: evidence masks; shapes-shortcut: masks = the planted mark; a user's data: --masks
    add_data_arguments(p, default="shapes", n_default=16, labels=False, masks=True, seed=False)
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated methods (default: {DEFAULT_METHODS})")
    p.add_argument("--metrics", help="comma-separated metric names (default: all that apply; see --list-metrics)")
    p.add_argument("--families", help="comma-separated metric families instead of --metrics")
    p.add_argument("--layer", help="layer for layer methods (bundled models: their default)")
    p.add_argument("--target", help="class index, or 'predicted' (default)")
    p.add_argument(
        "--random-label-model",
        help="a model of the same architecture trained on permuted labels "
        "(bundled: shapes-cnn-random-labels) for the data randomization check",
    )
    p.add_argument("--no-randomization", action="store_true", help="skip the randomization curves")
    p.add_argument("--time-budget", type=float, help="seconds; no new metric starts after that")
    p.add_argument("--seed", type=int, default=0, help="seed of the metrics' draws and of generated data (default: 0)")
    p.add_argument("--out", default="reports/trust.html", help="HTML file to write (default: reports/trust.html)")
    p.add_argument("--list-metrics", action="store_true", help="list the metrics and exit")
    p.set_defaults(handler=_run)


def _say(text: str) -> None:
    print(f"  {text} ...", file=sys.stderr, flush=True)


def _run(args) -> int:
    from seethrough.app.cli._args import _parse_target
    from seethrough.app.models import ModelSpec
    from seethrough.evaluation.registry import metrics
    from seethrough.evaluation.trust import trust_report

    if args.list_metrics:
        for s in metrics().values():
            arrow = "higher" if s.higher_is_better else "lower"
            print(f"{s.name:28s} {s.family:14s} {arrow:6s} {s.summary}")
        return 0
    spec = model_spec(args)
    model = spec.load()
    data = data_spec(args, spec, seed=HELD_OUT_SEED + args.seed).load(default_n=16)
    rl = ModelSpec(args.random_label_model).load() if args.random_label_model else None
    report = trust_report(
        model,
        data.images,
        [m for m in args.methods.split(",") if m.strip()],
        target=_parse_target(args.target),
        masks=data.masks,
        layer=args.layer or spec.default_layer,
        metrics=args.metrics.split(",") if args.metrics else None,
        families=args.families.split(",") if args.families else None,
        randomization=not args.no_randomization,
        random_label_model=rl,
        class_names=list(data.classes) if data.classes else spec.classes,
        time_budget=args.time_budget,
        seed=args.seed,
        progress=_say,
        title=f"Trust report: {args.model} on {' '.join(args.data)}",
    )
    path = report.save(args.out)
    for row in report.table():
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else str(v) for k, v in row.items()))
    print(f"{data.note}. Report written to {Path(path).resolve()}")
    return 0
