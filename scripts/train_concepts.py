#!/usr/bin/env python
"""Train the zoo model with concept ground truth (``stripes-cnn``) and write its weights.

    python scripts/train_concepts.py --threads 1
    python scripts/train_concepts.py --quick --out /tmp/w   # tiny settings (seconds)

Writes ``<out>/stripes-cnn.safetensors`` and ``<out>/stripes-cnn.json`` (metrics);
``<out>`` defaults to ``src/seethrough/zoo/weights``. Deterministic for the seed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny configuration (seconds; for tests)")
    parser.add_argument("--out", default=None, help="output folder (default: the package's weights folder)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)

    import torch

    from seethrough.zoo import WEIGHTS_DIR
    from seethrough.zoo.train import save_weights, train_stripes

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = dict(n_train=200, n_test=100, epochs=1) if args.quick else {}
    t0 = time.perf_counter()
    model, metrics = train_stripes(seed=args.seed, progress=not args.no_progress, **settings)
    metrics["total_seconds"] = round(time.perf_counter() - t0, 2)
    metrics["quick"] = args.quick
    out = save_weights(
        model,
        (WEIGHTS_DIR if args.out is None else Path(args.out)) / "stripes-cnn.safetensors",
        {
            "name": "stripes-cnn",
            "architecture": "ShapesCNN",
            "accuracy": f"{metrics['test_accuracy']:.4f}",
            "seed": str(args.seed),
            "command": "python scripts/train_concepts.py" + ("" if not argv else " " + shlex.join(argv)),
            "torch_version": torch.__version__,
            "metrics": metrics,
        },
    )
    print(f"stripes-cnn: held-out accuracy {metrics['test_accuracy']:.4f}, {metrics['total_seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
