"""Command line: a thin layer over the library.

    seethrough demo [--out DIR]             explain the bundled model, write an HTML report
    seethrough explain --model M --images … explain your own model on your own inputs
    seethrough methods                      list the attribution methods
    seethrough models                       list the bundled models
    seethrough run TASK --out DIR …         a dataset-scale job, locally or on Ray
    seethrough serve [--model M] [--port P] the web explorer on 127.0.0.1

Library errors (bad input, unknown names) exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from seethrough._core.errors import SeethroughError

from ._args import method_names, progress

__all__ = ["main", "build_parser"]


# Subcommands that live beside their feature. Each module has ``register(sub)``, which adds its
# parser and sets ``handler=<function(args) -> int>`` with ``set_defaults``. Keep one module a line.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    ".explain",
    ".featurevis",
    ".atlas",
    ".trust",
    ".influence",
    ".sanity",
    ".concepts",
    ".latent",
    ".creative",
    ".gan",
    ".text",
    ".run",
    ".serve",
)


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
    d.add_argument(
        "--maps-only",
        action="store_true",
        help="only the attribution maps (skip the trust reports, feature visualization, atlas, "
        "influence and concept sections)",
    )

    sub.add_parser("methods", help="list the attribution methods")
    sub.add_parser("models", help="list the bundled models")
    for module in _SUBCOMMAND_MODULES:
        importlib.import_module(module, __package__).register(sub)
    return p


def _cmd_demo(args) -> int:
    from seethrough.app.demo import demo_report

    path = demo_report(
        args.out,
        n_images=args.n_images,
        methods=method_names(args.methods),
        seed=args.seed,
        progress=progress,
        model_sections=not args.maps_only,
    )
    print(f"Report written to {path.resolve()}")
    return 0


def _cmd_methods(args) -> int:
    from seethrough.attribution.registry import METHODS

    for s in METHODS.values():
        layer = " (needs --layer)" if s.needs_layer else ""
        print(f"{s.name:30s} {s.family:12s} {s.summary}{layer}")
    from seethrough.language.registry import TEXT_METHODS

    print("\nlanguage models (seethrough text explain --methods ...):")
    for t in TEXT_METHODS.values():
        same = f" (runs {t.image_method} at the token embedding)" if t.image_method else ""
        print(f"{t.name:30s} {t.family:12s} {t.summary}{same}")
    return 0


def _cmd_models(args) -> int:
    from seethrough import zoo

    for name in zoo.available():
        i = zoo.info(name)
        acc = i.metrics.get("test_accuracy")
        acc_s = f"held-out accuracy {100 * acc:.1f}%" if acc is not None else ""
        if i.latent_dim is not None:
            acc_s = f"latent {i.latent_dim}  {acc_s}".rstrip()
        print(f"{name:22s} {i.kind:16s} {i.architecture:18s} input {i.input_shape}  {acc_s}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    builtin = {"demo": _cmd_demo, "methods": _cmd_methods, "models": _cmd_models}
    handler = builtin.get(args.command) or args.handler
    try:
        return handler(args)
    except SeethroughError as e:
        print(f"seethrough: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
