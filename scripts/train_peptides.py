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


def main(argv: list[str] | None = None) -> int:
    from seethrough.zoo.train import recipe_main
    from seethrough.zoo.train_peptides import PEPTIDE_RECIPES, train_peptide_zoo

    return recipe_main(
        argv,
        recipes=list(PEPTIDE_RECIPES),
        train=train_peptide_zoo,
        script="scripts/train_peptides.py",
        doc=__doc__,
        seed=True,
        epochs=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
