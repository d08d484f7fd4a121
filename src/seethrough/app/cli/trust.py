"""``seethrough trust``: the trust report from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

from seethrough._core.errors import ConfigError

DEFAULT_METHODS = "saliency,guided_backprop,integrated_gradients,gradcam,occlusion"


def register(sub) -> None:
    p = sub.add_parser(
        "trust",
        help="evaluate attribution methods: sanity checks, faithfulness, robustness, localization",
        description="Run every evaluation metric for a list of methods on a model and data set "
        "and write a self-contained HTML trust report.",
    )
    p.add_argument("--model", default="shapes-cnn", help="bundled name, TorchScript file, or package.module:factory")
    p.add_argument("--weights", help="state dict for a factory model")
    p.add_argument(
        "--data",
        default="shapes",
        help="shapes (with evidence masks), shapes-shortcut (masks = the planted mark), mnist, "
        "or a tensor file (.npy, .safetensors, torch)",
    )
    p.add_argument("--masks", help="ground-truth masks for a tensor --data, (N, H, W) tensor file")
    p.add_argument("--n", type=int, default=16, help="number of inputs (default: 16)")
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/trust.html", help="HTML file to write (default: reports/trust.html)")
    p.add_argument("--list-metrics", action="store_true", help="list the metrics and exit")
    p.set_defaults(handler=_run)


def _say(text: str) -> None:
    print(f"  {text} ...", file=sys.stderr, flush=True)


def load_trust_data(data: str, n: int, *, seed: int, masks_path: str | None = None):
    """``(inputs, masks or None, class names or None, note)`` for a ``--data`` value."""
    from seethrough._core.files import load_tensor

    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if masks_path and data in ("shapes", "shapes-shortcut", "mnist"):
        raise ConfigError(f"--masks is for a tensor --data; '{data}' brings its own ground truth (or none)")
    if data in ("shapes", "shapes-shortcut"):
        from seethrough.data.shapes import make_shapes

        d = make_shapes(n, seed=10_000 + seed, shortcut=data == "shapes-shortcut")
        masks = d.shortcut_masks if data == "shapes-shortcut" else d.masks
        what = "the planted shortcut mark" if data == "shapes-shortcut" else "the object (evidence mask)"
        return d.images, masks, list(d.classes), f"Held-out synthetic shapes; ground truth: {what}."
    if data == "mnist":
        from seethrough.data.mnist import mnist_split

        split = mnist_split(seed=0)
        return split.x_test[:n], None, [str(i) for i in range(10)], "Held-out MNIST digits (no ground-truth masks)."
    x = load_tensor(data)[:n]
    masks = load_tensor(masks_path)[:n] if masks_path else None
    return x, masks, None, f"Inputs from {data}."


def _run(args) -> int:
    from seethrough import zoo
    from seethrough.app.cli._args import _parse_target
    from seethrough.app.models import load_model
    from seethrough.evaluation.registry import metrics
    from seethrough.evaluation.trust import trust_report

    if args.list_metrics:
        for s in metrics().values():
            arrow = "higher" if s.higher_is_better else "lower"
            print(f"{s.name:28s} {s.family:14s} {arrow:6s} {s.summary}")
        return 0
    model = load_model(args.model, args.weights)
    info = zoo.info(args.model) if args.model in zoo.available() else None
    x, masks, classes, note = load_trust_data(args.data, args.n, seed=args.seed, masks_path=args.masks)
    rl = load_model(args.random_label_model) if args.random_label_model else None
    report = trust_report(
        model,
        x,
        [m for m in args.methods.split(",") if m.strip()],
        target=_parse_target(args.target),
        masks=masks,
        layer=args.layer or (info.default_cam_layer if info else None),
        metrics=args.metrics.split(",") if args.metrics else None,
        families=args.families.split(",") if args.families else None,
        randomization=not args.no_randomization,
        random_label_model=rl,
        class_names=classes or (list(info.classes) if info else None),
        time_budget=args.time_budget,
        seed=args.seed,
        progress=_say,
        title=f"Trust report: {args.model} on {args.data}",
    )
    path = report.save(args.out)
    for row in report.table():
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else str(v) for k, v in row.items()))
    print(f"{note} Report written to {Path(path).resolve()}")
    return 0
