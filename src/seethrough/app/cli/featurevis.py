"""``seethrough featurevis``: render the channels of a layer to PNGs and an HTML page."""

from __future__ import annotations

import sys
from pathlib import Path

from seethrough._core.errors import ConfigError
from seethrough.app.cli._args import _floats

__all__ = ["register"]


def _channels(text: str | None) -> list[int] | None:
    if text is None or text.strip() == "all":
        return None
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"cannot read --channels {text!r}: give comma-separated indices (0,1,5) or 'all'") from None
    if not out:
        raise ConfigError("--channels is empty: give comma-separated indices (0,1,5) or 'all'")
    return out


def register(sub) -> None:
    p = sub.add_parser(
        "featurevis",
        help="render images that maximise the channels of a layer (feature visualization)",
        description="Optimise one image per channel of a layer so that it excites that channel; "
        "write them as PNGs and an HTML page (index.html) into --out.",
    )
    p.add_argument("--model", required=True, help="bundled name, TorchScript file, or package.module:factory")
    p.add_argument("--weights", help="state dict for a factory model: .safetensors or a torch file (weights only)")
    p.add_argument("--layer", required=True, help="dotted layer name (see model.named_modules())")
    p.add_argument("--channels", default="all", help="comma-separated channel indices, or 'all' (default)")
    p.add_argument("--steps", type=int, default=256, help="optimisation steps (default: 256)")
    p.add_argument("--size", type=int, help="image size (default: the bundled model's, else 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--param", choices=("fft", "pixel"), default="fft", help="image parameterization (default: fft)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default: 0.05)")
    p.add_argument("--batch-size", type=int, help="images optimised together (default: automatic)")
    p.add_argument("--input-range", type=_floats, help="the model's input range lo,hi (default: 0,1)")
    p.add_argument("--mean", type=_floats, help="per-channel mean of the model's input normalisation")
    p.add_argument("--std", type=_floats, help="per-channel std of the model's input normalisation")
    p.add_argument("--out", default="reports/featurevis", help="output folder (default: reports/featurevis)")
    p.set_defaults(handler=_run)


def _run(args) -> int:
    from seethrough.app.models import ModelSpec
    from seethrough.featurevis import FeatureVisualizer
    from seethrough.featurevis.views import add_visualization
    from seethrough.report.html import HtmlReport

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    spec = ModelSpec(args.model, weights=args.weights, mean=_tuple(args.mean), std=_tuple(args.std))
    model = spec.load()
    info = spec.info  # a bundled model's card: its input shape and normalisation
    mean, std = (args.mean, args.std) if args.input_range is not None else spec.normalization

    def progress(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    fv = FeatureVisualizer(
        model,
        param=args.param,
        steps=args.steps,
        lr=args.lr,
        size=args.size,
        seed=args.seed,
        input_range=args.input_range,
        mean=mean,
        std=std,
        input_shape=None if info is None else tuple(info.input_shape),
    )
    vis = fv.visualize_channels(args.layer, _channels(args.channels), batching=args.batch_size, progress=progress)
    out = Path(args.out)
    paths = vis.save_pngs(out)
    report = HtmlReport(f"Feature visualization: {args.model}, layer {vis.layer}")
    report.add_paragraph(
        f"One image per channel of layer {vis.layer!r}, optimised to maximise the channel's mean "
        f"activation (input space: {vis.settings['input_space']})."
    )
    add_visualization(report, vis, src=[p.name for p in paths])
    index = report.save(out / "index.html")
    print(f"{len(paths)} images and {index.name} written to {out.resolve()}")
    return 0


def _tuple(values: list[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(values)
