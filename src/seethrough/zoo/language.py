"""The bundled language model: ``kv-lm``, a tiny Llama trained on tasks with known evidence.

``kv-lm`` is a Hugging Face model directory in the package (``weights/kv-lm/``: config,
safetensors weights, word-level tokenizer and the zoo card ``card.json``); any transformers
loader reads it (``seethrough.app.texts.load_text_model("kv-lm")`` wraps it as a
``TextModel``). It was trained by ``scripts/train_lm.py`` (:mod:`seethrough.zoo.train_lm`) on
the key-value retrieval and copy prompts of :mod:`seethrough.data.text`, whose evidence
positions are known: the ground truth the language family's explanations are scored on.

Measured on the shipped weights (tests/zoo/test_language.py): held-out answer accuracy 1.000
(key-value) and 0.996 (copy) on 2,000 prompts each; replacing the evidence token by a symbol
absent from the prompt makes the model answer that symbol on 1.00 (kv) and 0.99 (copy) of
500 prompts, so the evidence is causal. Where the attention goes differs between the tasks:
on copy prompts two heads of the last block put ~0.99 of their weight on the evidence; on
key-value prompts the last block looks at the ``;`` right after the queried value, which the
first block filled with the value (its previous token) and the key, so raw last-layer
attention points one token past the evidence there (rollout-style methods must go through
the first block to reach it).

This module needs no transformers: it names the bundled language models, finds their
folders and reads their cards (:func:`info` gives a :class:`~seethrough.zoo.ModelInfo` of
kind ``"language-model"``). The language models are not in :func:`seethrough.zoo.available`,
whose models :func:`seethrough.zoo.load` builds from one safetensors file each.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from .._core.errors import ConfigError
from . import WEIGHTS_DIR, ModelInfo

__all__ = ["LANGUAGE_MODELS", "KIND", "CARD_FILE", "available", "model_dir", "card", "info"]

#: The kind of every bundled language model (:attr:`ModelInfo.kind`).
KIND = "language-model"

#: Name -> description of the bundled language models.
LANGUAGE_MODELS: dict[str, str] = {
    "kv-lm": (
        "Tiny LlamaForCausalLM (2 blocks, width 64, 4 heads, word-level tokenizer: one word one token, <bos> "
        "first) trained by scripts/train_lm.py on seethrough.data.text's key-value retrieval ('c 7 ; a 2 ; e 9 ; a' "
        "answers '2') and copy prompts ('d a g e b d a' answers 'g'), whose evidence token positions "
        "are known; held-out answer accuracy of each task in the card."
    ),
}

#: Name of the zoo card inside a bundled language model's directory.
CARD_FILE = "card.json"


def available() -> list[str]:
    """Names of the bundled language models (sorted)."""
    return sorted(LANGUAGE_MODELS)


def _check(name: str) -> str:
    if not isinstance(name, str) or name not in LANGUAGE_MODELS:
        close = difflib.get_close_matches(str(name), available(), n=3, cutoff=0.4)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown bundled language model {name!r}.{hint} Available: {', '.join(available())}.")
    return name


def model_dir(name: str, *, weights_dir: str | Path | None = None) -> Path:
    """The model directory of ``name`` (``<weights_dir>/<name>``, default the package's).

    Raises:
        ConfigError: unknown name.
        FileNotFoundError: the model has not been trained (no ``config.json`` there).
    """
    d = (WEIGHTS_DIR if weights_dir is None else Path(weights_dir)) / _check(name)
    if not (d / "config.json").is_file():
        raise FileNotFoundError(
            f"no trained model {name!r} at {d}; create it with `python scripts/train_lm.py --only {name} --threads 1`"
        )
    return d


def card(name: str, *, weights_dir: str | Path | None = None) -> dict[str, Any]:
    """The zoo card of ``name`` (``card.json`` in its directory): settings, training history
    and the held-out metrics (``metrics["test_accuracy_kv"]``, ``metrics["test_accuracy_copy"]``)."""
    path = model_dir(name, weights_dir=weights_dir) / CARD_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()))


def info(name: str, *, weights_dir: str | Path | None = None) -> ModelInfo:
    """A :class:`~seethrough.zoo.ModelInfo` of kind ``"language-model"``; ``input_shape`` is
    ``(context_length,)`` and ``metrics`` come from the card (empty before training)."""
    _check(name)
    try:
        c = card(name, weights_dir=weights_dir)
        config = json.loads((model_dir(name, weights_dir=weights_dir) / "config.json").read_text())
    except FileNotFoundError:
        c, config = {}, {}
    archs = config.get("architectures") or [c.get("architecture", "LlamaForCausalLM")]
    return ModelInfo(
        name=name,
        architecture=str(archs[0]),
        classes=(),
        input_shape=(int(config.get("max_position_embeddings", 64)),),
        mean=(),
        std=(),
        default_cam_layer="",
        metrics=dict(c.get("metrics", {})),
        description=LANGUAGE_MODELS[name],
        kind=KIND,
    )
