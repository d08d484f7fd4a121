#!/usr/bin/env python
"""Train the zoo's tiny language model ``kv-lm`` and write its model directory.

    python scripts/train_lm.py --threads 1                 # the shipped model (a few minutes)
    python scripts/train_lm.py --quick --out /tmp/w        # tiny settings (tests)

Writes ``<out>/kv-lm/`` (default ``<out>`` = ``src/seethrough/zoo/weights``): a Hugging Face
model directory (``config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json``) and ``card.json`` (settings, training history, held-out answer
accuracy of the key-value and copy tasks). Training is deterministic for the seed fixed in
``seethrough.zoo.train_lm.LM_RECIPES``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from seethrough.zoo.train import recipe_main
    from seethrough.zoo.train_lm import LM_RECIPES, train_lm_zoo

    return recipe_main(argv, recipes=list(LM_RECIPES), train=train_lm_zoo, script="scripts/train_lm.py", doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
