#!/usr/bin/env python
"""Train the zoo's GANs and the scenes segmenter and write their weights.

    python scripts/train_gan.py --threads 1                        # all six models
    python scripts/train_gan.py --only mnist-gan,mnist-gan-d --threads 1   # one run, both saved
    python scripts/train_gan.py --only scenes-segmenter --threads 1
    python scripts/train_gan.py --quick --out /tmp/w               # tiny settings (tests)

Models: ``mnist-gan`` and its critic ``mnist-gan-d``, ``scenes-gan`` and ``scenes-gan-d``,
``mnist-gan-memorized`` (a planted memoriser of 32 digits) and ``scenes-segmenter``. Writes
``<out>/<name>.safetensors`` and ``<out>/<name>.json`` (the card with the training history and
held-out metrics) for each; ``<out>`` defaults to ``src/seethrough/zoo/weights``. Training is
deterministic for the seeds fixed in ``seethrough.zoo.train_gan.GAN_RECIPES``; a generator and
its critic asked for together are trained once.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from seethrough.zoo.train import recipe_main
    from seethrough.zoo.train_gan import GAN_RECIPES, train_gan_zoo

    return recipe_main(argv, recipes=list(GAN_RECIPES), train=train_gan_zoo, script="scripts/train_gan.py", doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
