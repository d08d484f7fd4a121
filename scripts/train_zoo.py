#!/usr/bin/env python
"""Train the zoo's bundled models and write their weights.

    python scripts/train_zoo.py                       # all models, full settings
    python scripts/train_zoo.py --only shapes-cnn,mnist-cnn
    python scripts/train_zoo.py --quick --out /tmp/w  # tiny settings (tests)

Writes ``<out>/<name>.safetensors`` and ``<out>/<name>.json`` (metrics) for each model;
``<out>`` defaults to ``src/seethrough/zoo/weights``. Training is deterministic for the
seeds fixed in ``seethrough.zoo.train.ZOO_RECIPES``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from seethrough.zoo.train import ZOO_RECIPES, recipe_main, train_zoo

    return recipe_main(argv, recipes=list(ZOO_RECIPES), train=train_zoo, script="scripts/train_zoo.py", doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
