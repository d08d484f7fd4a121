"""The language family: explanations of language models, token by token and layer by layer.

Every method takes a :class:`TextModel` (a transformers causal LM or encoder with its
tokenizer). See docs/language.md.
"""

from .model import (
    EmptyPrompt,
    EncoderCannotGenerate,
    MissingDependency,
    NotATextModel,
    NotOneToken,
    PromptTooLong,
    TextModel,
    require,
)

__all__ = [
    "TextModel",
    "require",
    "MissingDependency",
    "NotATextModel",
    "EmptyPrompt",
    "PromptTooLong",
    "NotOneToken",
    "EncoderCannotGenerate",
]
