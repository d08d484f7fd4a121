#!/usr/bin/env python
"""Train the zoo model with concept ground truth (``stripes-cnn``) and write its weights.

    python scripts/train_concepts.py --threads 1
    python scripts/train_concepts.py --quick --out /tmp/w   # tiny settings (seconds)

Writes ``<out>/stripes-cnn.safetensors`` and ``<out>/stripes-cnn.json`` (metrics);
``<out>`` defaults to ``src/seethrough/zoo/weights``. Deterministic for the seed.
"""

from __future__ import annotations

from typing import Any

NAME = "stripes-cnn"


def _train(names: list[str], *, seed: int, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """``stripes-cnn`` of ``ZOO_RECIPES`` trained with ``seed``."""
    from seethrough.zoo.train import ZOO_RECIPES, run_recipes

    return run_recipes(
        {NAME: ZOO_RECIPES[NAME]},
        names,
        caller="seethrough.zoo.train.train_stripes",
        log=print,
        metadata=lambda name, model, settings, m: {
            "architecture": "ShapesCNN",
            "accuracy": f"{m['test_accuracy']:.4f}",
        },
        summary=lambda name, m: f"held-out accuracy {m['test_accuracy']:.4f}, {m['total_seconds']:.0f} s",
        overrides={"seed": seed},
        **kwargs,
    )


def main(argv: list[str] | None = None) -> int:
    from seethrough.zoo.train import recipe_main

    return recipe_main(argv, recipes=[NAME], train=_train, script="scripts/train_concepts.py", doc=__doc__, seed=True)


if __name__ == "__main__":
    raise SystemExit(main())
