#!/usr/bin/env python
"""Train the zoo's image VAEs and factor predictor and write their weights.

    python scripts/train_vae.py --threads 1                  # mnist-vae, scenes-vae, scenes-factors
    python scripts/train_vae.py --only scenes-vae --threads 1
    python scripts/train_vae.py --quick --out /tmp/w         # tiny settings (tests)

Writes ``<out>/<name>.safetensors`` and ``<out>/<name>.json`` (the card with held-out
metrics) for each model; ``<out>`` defaults to ``src/seethrough/zoo/weights``. Training is
deterministic for the seeds fixed in ``seethrough.zoo.train_vae.VAE_RECIPES``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from seethrough.zoo.train_vae import VAE_RECIPES, train_vae_zoo

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(VAE_RECIPES)}")
    parser.add_argument("--quick", action="store_true", help="tiny configuration (seconds; for tests)")
    parser.add_argument("--out", default=None, help="output folder (default: the package's weights folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)

    names = list(VAE_RECIPES) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in VAE_RECIPES]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(VAE_RECIPES)}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)

    command = "python scripts/train_vae.py" + ("" if not argv else " " + shlex.join(argv))
    t0 = time.perf_counter()
    train_vae_zoo(names, out_dir=args.out, quick=args.quick, progress=not args.no_progress, command=command)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
