"""The language family: explanations of language models, token by token and layer by layer.

Every method takes a :class:`TextModel` (a transformers causal LM or encoder with its
tokenizer; ``seethrough.app.texts.load_text_model`` loads the bundled ``kv-lm``, SmolLM2,
MiniLM or a local directory):

- token attribution (:class:`TokenAttributor`: saliency, input x gradient, integrated
  gradients, occlusion, leave-one-out, KernelSHAP over tokens or words), contrastive and
  continuation targets, the generation step by step (:func:`attribute_generation`);
- AtMan (:func:`atman`), raw attention (:func:`attention_maps`), rollout and ALTI
  (:func:`attention_rollout`, :func:`alti`), one registry of all of them
  (:data:`TEXT_METHODS`, :func:`token_scores`);
- the logit lens (:func:`logit_lens`) and causal tracing (:func:`causal_trace`);
- sentence-similarity explanations of an encoder (:class:`SimilarityExplanation`).

See docs/language.md.
"""

from .atman import AtManExplanation, atman
from .attention import AttentionMaps, TokenMixing, alti, attention_maps, attention_rollout
from .attribution import (
    TOKEN_METHODS,
    ConvergenceWarning,
    TokenAttribution,
    TokenAttributor,
    attribute_tokens,
    word_groups,
)
from .generation import GENERATION_METHODS, GenerationAttribution, attribute_generation, greedy
from .lens import LogitLens, logit_lens
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
from .patching import CausalTrace, causal_trace
from .registry import (
    ALTI,
    TEXT_METHODS,
    AtMan,
    AttentionRollout,
    TextMethodSpec,
    explain_tokens,
    get_text_method,
    text_method_names,
    token_scores,
)
from .similarity import SimilarityAttribution, SimilarityExplanation, sentence_embedding
from .views import display_token, matrix_html, plot_matrix, plot_tokens, tokens_html, value_colors

__all__ = [
    "TextModel",
    "require",
    "MissingDependency",
    "NotATextModel",
    "EmptyPrompt",
    "PromptTooLong",
    "NotOneToken",
    "EncoderCannotGenerate",
    "TokenAttributor",
    "TokenAttribution",
    "attribute_tokens",
    "TOKEN_METHODS",
    "word_groups",
    "GenerationAttribution",
    "attribute_generation",
    "GENERATION_METHODS",
    "greedy",
    "ConvergenceWarning",
    "AtMan",
    "atman",
    "AtManExplanation",
    "AttentionRollout",
    "ALTI",
    "attention_maps",
    "attention_rollout",
    "alti",
    "AttentionMaps",
    "TokenMixing",
    "logit_lens",
    "LogitLens",
    "causal_trace",
    "CausalTrace",
    "SimilarityExplanation",
    "SimilarityAttribution",
    "sentence_embedding",
    "TextMethodSpec",
    "TEXT_METHODS",
    "get_text_method",
    "text_method_names",
    "explain_tokens",
    "token_scores",
    "plot_tokens",
    "tokens_html",
    "plot_matrix",
    "matrix_html",
    "display_token",
    "value_colors",
]
