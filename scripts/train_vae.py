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


def main(argv: list[str] | None = None) -> int:
    from seethrough.zoo.train import recipe_main
    from seethrough.zoo.train_vae import VAE_RECIPES, train_vae_zoo

    return recipe_main(argv, recipes=list(VAE_RECIPES), train=train_vae_zoo, script="scripts/train_vae.py", doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
