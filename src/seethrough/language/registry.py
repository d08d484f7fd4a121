"""The one registry of token-level explanations, read by the CLI, the demo and the trust study.

Each entry explains which prompt tokens a causal LM's next-token prediction rests on and
gives one score per prompt token (:func:`token_scores`), whatever its result type:

| name | family | what |
|---|---|---|
| saliency, input_x_gradient, integrated_gradients | gradient | the attribution family's methods at the token embedding (:class:`~seethrough.language.attribution.TokenAttributor`) |
| occlusion, leave_one_out, kernel_shap | perturbation | a token replaced, deleted, or coalitions of tokens or words |
| atman | attention | AtMan: each token's attention suppressed in turn |
| rollout, alti | mixing | how much of each input token is mixed into the last position's representation |

The gradient and perturbation entries name the image method of the attribution registry that
does the same math (``image_method``): they run it, at the embedding, rather than a copy.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import Tensor

from .._core.errors import ConfigError
from .._core.result import Result
from .atman import AtManExplanation, atman
from .attention import TokenMixing, alti, attention_rollout
from .attribution import TokenAttribution, TokenAttributor
from .model import TextModel

__all__ = [
    "AtMan",
    "AttentionRollout",
    "ALTI",
    "TextMethodSpec",
    "TEXT_METHODS",
    "get_text_method",
    "text_method_names",
    "explain_tokens",
    "token_scores",
]


@dataclass(frozen=True)
class TextMethodSpec:
    """One token-level explanation: its name, family, summary and how it runs."""

    name: str
    family: str
    summary: str
    run: Callable[..., Result] = field(repr=False)
    #: whether it explains a given target token (rollout and ALTI explain the representation
    #: at the last position, whatever the target)
    targeted: bool = True
    #: whether it takes a foil (a contrastive "why this rather than that")
    contrastive: bool = False
    #: the attribution-registry method with the same math, if any
    image_method: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def explain(self, tm: TextModel, prompt: str | Tensor, target: Any = None, *, foil: Any = None, **settings: Any):
        """Run the method on one prompt (``settings`` over :attr:`defaults`)."""
        if foil is not None and not self.contrastive:
            raise ConfigError(
                f"{self.name} does not take a foil (a contrastive target); the contrastive methods are "
                f"{', '.join(n for n, s in TEXT_METHODS.items() if s.contrastive)}"
            )
        return self.run(tm, prompt, target, foil, {**self.defaults, **settings})


def _attributor(method: str) -> Callable[..., Result]:
    def run(tm: TextModel, prompt: Any, target: Any, foil: Any, settings: dict[str, Any]) -> Result:
        return TokenAttributor(tm, method=method, **settings).attribute(prompt, target, foil=foil)

    return run


class AtMan:
    """AtMan (Deiseroth et al. 2023) as a method object: ``AtMan(tm, factor=0.9,
    conceptual=None, batching=None)`` stores the settings; :meth:`attribute` runs
    :func:`~seethrough.language.atman.atman`."""

    def __init__(
        self, tm: TextModel, *, factor: float = 0.9, conceptual: float | None = None, batching: Any = None
    ) -> None:
        self.tm, self.factor, self.conceptual, self.batching = tm, factor, conceptual, batching

    def attribute(self, prompt: str | Tensor, target: Any = None) -> AtManExplanation:
        return atman(self.tm, prompt, target, factor=self.factor, conceptual=self.conceptual, batching=self.batching)


class AttentionRollout:
    """Attention rollout (Abnar & Zuidema 2020) as a method object; :meth:`attribute` runs
    :func:`~seethrough.language.attention.attention_rollout` (the target is not used: rollout
    explains the representation at ``position``)."""

    def __init__(self, tm: TextModel, *, residual: float = 0.5, position: int | None = None) -> None:
        self.tm, self.residual, self.position = tm, residual, position

    def attribute(self, prompt: str | Tensor, target: Any = None) -> TokenMixing:
        return attention_rollout(self.tm, prompt, residual=self.residual, position=self.position)


class ALTI:
    """ALTI (Ferrando et al. 2022) as a method object; :meth:`attribute` runs
    :func:`~seethrough.language.attention.alti` (the target is not used)."""

    def __init__(self, tm: TextModel, *, position: int | None = None, tolerance: float = 1e-3) -> None:
        self.tm, self.position, self.tolerance = tm, position, tolerance

    def attribute(self, prompt: str | Tensor, target: Any = None) -> TokenMixing:
        return alti(self.tm, prompt, position=self.position, tolerance=self.tolerance)


def _method_object(cls: Any) -> Callable[..., Result]:
    def run(tm: TextModel, prompt: Any, target: Any, foil: Any, settings: dict[str, Any]) -> Result:
        return cls(tm, **settings).attribute(prompt, target)

    return run


_atman = _method_object(AtMan)
_rollout = _method_object(AttentionRollout)
_alti = _method_object(ALTI)


_SPECS = [
    TextMethodSpec(
        "saliency", "gradient", "L2 norm of the gradient at each token's embedding", _attributor("saliency"),
        contrastive=True, image_method="saliency",
    ),
    TextMethodSpec(
        "input_x_gradient", "gradient", "embedding times its gradient, summed over the hidden size",
        _attributor("input_x_gradient"), contrastive=True, image_method="input_x_gradient",
    ),
    TextMethodSpec(
        "integrated_gradients", "gradient", "path integral of gradients from a baseline embedding (delta reported)",
        _attributor("integrated_gradients"), contrastive=True, image_method="integrated_gradients",
    ),
    TextMethodSpec(
        "occlusion", "perturbation", "score drop when a token is replaced", _attributor("occlusion"),
        contrastive=True, image_method="occlusion",
    ),
    TextMethodSpec(
        "leave_one_out", "perturbation", "score drop when a token is deleted", _attributor("leave_one_out"),
        contrastive=True,
    ),
    TextMethodSpec(
        "kernel_shap", "perturbation", "Shapley values of tokens (or words) by weighted regression",
        _attributor("kernel_shap"), contrastive=True, image_method="kernel_shap",
    ),
    TextMethodSpec("atman", "attention", "log-probability drop when attention to a token is suppressed", _atman),
    TextMethodSpec(
        "rollout", "mixing", "attention rolled out through the layers (last position's row)", _rollout,
        targeted=False,
    ),
    TextMethodSpec(
        "alti", "mixing", "ALTI: attention-block contributions by distance, rolled out", _alti, targeted=False
    ),
]  # fmt: skip

TEXT_METHODS: Mapping[str, TextMethodSpec] = MappingProxyType({s.name: s for s in _SPECS})


def text_method_names() -> list[str]:
    return list(TEXT_METHODS)


def get_text_method(name: str) -> TextMethodSpec:
    """The registry entry ``name``; an unknown name lists the closest ones."""
    spec = TEXT_METHODS.get(name)
    if spec is None:
        near = difflib.get_close_matches(name, list(TEXT_METHODS), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ConfigError(f"unknown text method {name!r}{hint} (known: {', '.join(TEXT_METHODS)})")
    return spec


def explain_tokens(
    tm: TextModel, prompt: str | Tensor, target: Any = None, *, method: str, foil: Any = None, **settings: Any
) -> Result:
    """``get_text_method(method).explain(tm, prompt, target, foil=foil, **settings)``."""
    return get_text_method(method).explain(tm, prompt, target, foil=foil, **settings)


def token_scores(result: Result) -> Tensor:
    """One score per prompt token ``(T,)`` of any registry method's result (higher: more
    evidence for the target, or a larger share of the last position's representation)."""
    if isinstance(result, TokenAttribution):
        return result.scores.reshape(-1)[: result.n_prompt]
    if isinstance(result, AtManExplanation):
        return result.scores.reshape(-1)
    if isinstance(result, TokenMixing):
        return result.scores.reshape(-1)
    raise ConfigError(f"no per-token scores for a {type(result).__name__}")
