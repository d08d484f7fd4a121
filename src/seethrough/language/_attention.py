"""Reading and steering a transformers model's attention: :func:`attention_scope`.

transformers computes attention through a function chosen by name from its
``AttentionInterface`` (``config._attn_implementation``: ``"sdpa"``, ``"eager"``, ...). Inside
:func:`attention_scope` the model's configs name ``"seethrough"``, a function registered here
that does the eager computation and in between

- records each layer's attention probabilities ``(B, H, Tq, Tk)`` (``record=True``), and
- changes the pre-softmax scores: ``key_scale`` ``(B, Tk)`` multiplies every query's score
  for each key (AtMan's suppression: ``1 - factor`` at the suppressed key, 1 elsewhere), in
  every layer and head; or a callable ``(layer, scores) -> scores`` for anything else.

The scaling applies to the scaled dot products before the mask is added, so masked keys stay
masked. On exit, even after an error, every config's attention implementation is put back.
Grouped-query attention (fewer key/value heads) is expanded to one key/value per query head.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._core.errors import ConfigError
from .model import NotATextModel, TextModel, require

__all__ = ["attention_scope", "AttentionScope", "ATTN_NAME"]

ATTN_NAME = "seethrough"

_local = threading.local()
_registered = False


@dataclass
class AttentionScope:
    """What one :func:`attention_scope` records and applies (see the module docstring)."""

    record: bool
    key_scale: Tensor | Callable[[int, Tensor], Tensor] | None
    layer_of: dict[int, int]
    probs: list[Tensor | None] = field(default_factory=list)
    calls: int = 0

    def layer(self, module: nn.Module) -> int:
        idx = self.layer_of.get(id(module))
        if idx is None:
            raise NotATextModel(
                f"an attention module ({type(module).__name__}) ran that is not in any of the model's blocks; "
                f"seethrough cannot tell its layer"
            )
        return idx


def _active() -> AttentionScope | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def _expand_kv(x: Tensor, heads: int) -> Tensor:
    if x.shape[1] == heads:
        return x
    if heads % x.shape[1]:
        raise NotATextModel(f"{heads} query heads cannot share {x.shape[1]} key/value heads evenly")
    return x.repeat_interleave(heads // x.shape[1], dim=1)


def _seethrough_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    scope = _active()
    heads = query.shape[1]
    key = _expand_kv(key, heads)
    value = _expand_kv(value, heads)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    softcap = kwargs.get("softcap")
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if scope is not None:
        layer = scope.layer(module)
        ks = scope.key_scale
        if callable(ks):
            scores = ks(layer, scores)
        elif ks is not None:
            if ks.shape[0] != scores.shape[0] or ks.shape[-1] != scores.shape[-1]:
                raise ConfigError(
                    f"key_scale has shape {tuple(ks.shape)} but the attention scores are "
                    f"(B={scores.shape[0]}, H, Tq, Tk={scores.shape[-1]}): give one factor per sample and key"
                )
            scores = scores * ks.to(scores.dtype)[:, None, None, :]
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    if scope is not None:
        scope.calls += 1
        if scope.record:
            while len(scope.probs) <= layer:
                scope.probs.append(None)
            scope.probs[layer] = probs
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, probs


def _register() -> None:
    global _registered
    if _registered:
        return
    require("transformers")
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(ATTN_NAME, _seethrough_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, eager_mask)
    _registered = True


def _configs(model: nn.Module) -> list[Any]:
    seen: dict[int, Any] = {}
    for mod in model.modules():
        cfg = getattr(mod, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation_internal") and id(cfg) not in seen:
            seen[id(cfg)] = cfg
    return list(seen.values())


@contextmanager
def attention_scope(
    tm: TextModel,
    *,
    record: bool = True,
    key_scale: Tensor | Callable[[int, Tensor], Tensor] | None = None,
) -> Iterator[AttentionScope]:
    """Run ``tm``'s model with seethrough's attention (see the module docstring); yields the
    :class:`AttentionScope` whose ``probs`` fill in as the model runs."""
    _register()
    configs = _configs(tm.model)
    if not configs:
        raise NotATextModel(
            f"{type(tm.model).__name__} is not a transformers model (no config with an attention implementation): "
            f"attention-level methods (AtMan, rollout, ALTI, patching of attention) need one"
        )
    layer_of: dict[int, int] = {}
    for i, b in enumerate(tm.blocks):
        for mod in tm.module(b).modules():
            layer_of.setdefault(id(mod), i)
    scope = AttentionScope(record=record, key_scale=key_scale, layer_of=layer_of)
    saved = [(c, c._attn_implementation_internal) for c in configs]
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(scope)
    try:
        for c, _ in saved:
            c._attn_implementation_internal = ATTN_NAME
        yield scope
    finally:
        stack.pop()
        for c, old in saved:
            c._attn_implementation_internal = old
    if scope.calls == 0:
        raise NotATextModel(
            f"{type(tm.model).__name__} did not call transformers' attention interface, so its attention cannot be "
            f"read or changed by seethrough"
        )
