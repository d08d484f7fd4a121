#!/usr/bin/env python
"""Train the peptide autoencoders (``peptide-wae``, ``peptide-vae``) and write their weights.

    python scripts/train_peptides.py --threads 1
    python scripts/train_peptides.py --only peptide-wae --threads 1
    python scripts/train_peptides.py --quick --out /tmp/w   # tiny settings (seconds)

Writes ``<out>/<name>.safetensors`` and ``<out>/<name>.json`` (the card: data, split sizes,
epochs, seed, held-out reconstruction accuracy per token and exact match, validity and
uniqueness of sequences decoded from N(0, I), KL or MMD, training seconds, the command);
``<out>`` defaults to ``src/seethrough/zoo/weights``. Deterministic for the seed on CPU.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

NAMES = ("peptide-wae", "peptide-vae")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=NAMES, action="append", help="train only this model (repeatable)")
    parser.add_argument("--quick", action="store_true", help="tiny configuration (seconds; for tests)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    parser.add_argument("--out", default=None, help="output folder (default: the package's weights folder)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)

    import torch

    from seethrough.zoo import WEIGHTS_DIR
    from seethrough.zoo.train import save_weights
    from seethrough.zoo.train_peptides import train_peptide_autoencoder

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out_dir = WEIGHTS_DIR if args.out is None else Path(args.out)
    for name in args.only or NAMES:
        kind = name.split("-")[1]
        t0 = time.perf_counter()
        model, metrics = train_peptide_autoencoder(
            kind, seed=args.seed, epochs=args.epochs, quick=args.quick, progress=not args.no_progress
        )
        metrics["total_seconds"] = round(time.perf_counter() - t0, 2)
        path = save_weights(
            model,
            out_dir / f"{name}.safetensors",
            {
                "name": name,
                "architecture": "PeptideAutoencoder",
                "kind": kind,
                "latent_dim": str(model.latent_dim),
                "token_accuracy": f"{metrics['test_token_accuracy']:.4f}",
                "seed": str(args.seed),
                "command": "python scripts/train_peptides.py" + ("" if not argv else " " + shlex.join(argv)),
                "torch_version": torch.__version__,
                "metrics": metrics,
            },
        )
        print(
            f"{name}: held-out token accuracy {metrics['test_token_accuracy']:.4f}, exact match "
            f"{metrics['test_exact_match']:.4f}, prior validity {metrics['prior_validity']:.3f}, "
            f"{metrics['train_seconds']:.0f} s -> {path}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
