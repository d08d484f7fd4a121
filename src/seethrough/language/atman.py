"""AtMan (Deiseroth et al., 2023): explain a prediction by suppressing attention to one token.

For every prompt token ``j`` the model runs again with the pre-softmax attention scores of
every query for key ``j`` multiplied by ``1 - factor`` (the paper's ``factor = 0.9``), in every
layer and head. The explanation of token ``j`` is the drop in the target's log-probability,
``log p(target) - log p(target | j suppressed)``: positive where suppressing the token hurts
the prediction (evidence), negative where it helps.

``conceptual=κ`` is the paper's correlated-token suppression: suppressing ``j`` also
suppresses (by the same factor) every prompt token whose token embedding has cosine
similarity above ``κ`` with ``j``'s (the paper uses κ = 0.7), so that repeated or synonymous
tokens do not stand in for each other. The return type is the same.

Every suppression is one row of a batch: row ``b`` carries its own ``key_scale`` row
(:func:`~seethrough.language._attention.attention_scope`), so the prompt's suppressions run
in as few forward passes as memory allows. The batch is sized (through :class:`Batching`)
so that a batched pass holds about what one ordinary forward pass of the prompt holds: each
row stops at the last block and reads the head at the scored positions only, so it holds
much less than a forward that computes ``(T, V)`` logits. The rows per pass are that
forward's largest activation divided by what one row keeps alive at once (measured on the
unsuppressed row: four of its largest activations, and its logits with their log-softmax).
A model whose attention or MLP outweighs its ``(T, V)`` logits runs one row per pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._core.batching import Batching, as_batching
from .._core.capture import capture
from .._core.errors import ConfigError, InputError
from .._core.hooks import StopForward
from .._core.result import Result
from .._core.state import model_guard
from ._attention import attention_scope
from .lens import _causal, last_block_logits, one_prompt, readout, resolve_target
from .model import NotOneToken, TextModel
from .views import register_token_views

__all__ = ["AtManExplanation", "atman"]


@dataclass(frozen=True, eq=False)
class AtManExplanation(Result):
    """AtMan relevance of each prompt token for a target.

    ``scores`` ``(T,)``: ``base_logprob - suppressed_logprob`` per prompt token (positive =
    evidence for the target). ``target_ids``: the target token(s) (several: a continuation
    scored by its summed log-probability). ``batch_size``: rows per forward pass used.
    """

    tokens: tuple[str, ...]
    ids: Tensor
    scores: Tensor
    suppressed_logprob: Tensor
    base_logprob: float
    target_ids: tuple[int, ...]
    target_tokens: tuple[str, ...]
    factor: float
    conceptual: float | None
    batch_size: int

    @property
    def target(self) -> str:
        return "".join(self.target_tokens)

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` highest-scoring positions as ``(position, token, score)``."""
        order = torch.argsort(self.scores, descending=True)[:k].tolist()
        return [(i, self.tokens[i], float(self.scores[i])) for i in order]

    def __repr__(self) -> str:
        best = self.top(1)
        b = f", top={best[0][1]!r}" if best else ""
        return f"AtManExplanation(target={self.target!r}, tokens={len(self.tokens)}, factor={self.factor}{b})"


def _targets(tm: TextModel, ids: Tensor, target: int | str | Tensor | None) -> Tensor | None:
    """The target ids ``(L,)`` (None: the model's prediction, decided after the base pass)."""
    if target is None:
        return None
    if isinstance(target, Tensor):
        t = target.reshape(-1).long().to(ids.device)
        if t.numel() == 0:
            raise InputError("the target has no tokens")
        return t
    try:
        return torch.tensor([resolve_target(tm, target, None)], device=ids.device)
    except NotOneToken:
        if not isinstance(target, str):
            raise
        return tm.continuation_ids(target).to(ids.device)  # a continuation: its summed log-probability


def _similar(tm: TextModel, ids: Tensor, kappa: float) -> Tensor:
    """``(T, T)`` bool: token embeddings with cosine similarity above ``kappa`` (and the diagonal)."""
    emb: Any = tm.module(tm.embedding)
    w: Tensor = emb.weight
    e = torch.nn.functional.normalize(w[ids[0]].float(), dim=-1)
    sim = e @ e.T
    return (sim > kappa) | torch.eye(len(e), dtype=torch.bool, device=e.device)


def _score_rows(tm: TextModel, seq: Tensor, scale: Tensor, pos: Tensor, tok: Tensor) -> Tensor:
    """Summed target log-probability for each row of ``scale`` ``(B, Tk)``."""
    name = tm.blocks[-1]
    store: dict[str, Any] = {}
    B = scale.shape[0]
    with attention_scope(tm, record=False, key_scale=scale):
        with capture({name: tm.module(name)}, store, stop=True, clone=False):
            try:
                tm.forward(seq.expand(B, -1))
            except StopForward:
                pass
    lp = torch.log_softmax(readout(tm)(store[name][:, pos]).float(), dim=-1)  # (B, P, V)
    return lp.gather(-1, tok.view(1, -1, 1).expand(B, -1, 1)).squeeze(-1).sum(-1)


def _row_peak(tm: TextModel, seq: Tensor, n_pos: int) -> tuple[int, int]:
    """(bytes of the largest activation of one AtMan row, of one plain forward of ``seq``)."""
    biggest = [0]

    def hook(_m: Any, _i: Any, out: Any) -> None:
        if isinstance(out, tuple):
            out = out[0]
        if isinstance(out, Tensor):
            biggest[0] = max(biggest[0], out.numel() * out.element_size())

    leaves = [m for b in tm.blocks for m in tm.module(b).modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            _score_rows(
                tm,
                seq,
                torch.ones(1, seq.shape[1], device=seq.device),
                torch.tensor([seq.shape[1] - 1], device=seq.device),
                seq[0, -1:],
            )
    finally:
        for h in handles:
            h.remove()
    T = seq.shape[1]
    el = 4  # attention scores and probabilities are computed in float32
    attn = 2 * max(tm.n_heads, 1) * T * T * el
    V = tm.vocab_size
    # what a row keeps alive at once: a few activations of the largest size (an MLP's gate, up
    # and product; scores and probabilities) and the head's logits with their log-softmax
    row = 4 * max(biggest[0], attn) + 2 * n_pos * V * el
    # one plain forward: its largest activation, the (T, V) logits for a language model
    one = max(biggest[0], attn, T * V * el)
    return row, one


def atman(
    tm: TextModel,
    prompt: str | Tensor,
    target: int | str | Tensor | None = None,
    *,
    factor: float = 0.9,
    conceptual: float | None = None,
    batching: Batching | int | None = None,
) -> AtManExplanation:
    """AtMan relevance of each token of ``prompt`` for ``target`` (see the module docstring).

    ``target``: None (the model's next-token prediction), a token id, a one-token text, or a
    longer text / id tensor (a continuation, scored by its summed log-probability; only the
    prompt's tokens are suppressed). ``factor``: the suppression (pre-softmax scores times
    ``1 - factor``). ``conceptual``: the cosine-similarity threshold κ of correlated-token
    suppression (None: off). ``batching``: rows per pass (an int or :class:`Batching`);
    automatic by default (about one forward pass of memory).
    """
    _causal(tm, "AtMan")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.0 <= float(factor) <= 1.0:
        raise ConfigError(f"factor must be a number in [0, 1] (the paper uses 0.9), got {factor!r}")
    if conceptual is not None and (isinstance(conceptual, bool) or not -1.0 <= float(conceptual) <= 1.0):
        raise ConfigError(
            f"conceptual is a cosine-similarity threshold in [-1, 1] (the paper uses 0.7), got {conceptual!r}"
        )
    b = as_batching(batching)
    ids = one_prompt(tm, prompt)
    T = ids.shape[1]
    with model_guard(tm.model, method="AtMan"), torch.no_grad():
        tgt = _targets(tm, ids, target)
        if tgt is None:
            last = last_block_logits(tm, ids, [T - 1])[0, 0]
            tgt = torch.tensor([resolve_target(tm, None, last)], device=ids.device)
        seq = torch.cat([ids[0], tgt[:-1]])[None] if tgt.numel() > 1 else ids
        Tk = seq.shape[1]
        ctx = tm.context_length
        if ctx is not None and Tk > ctx:
            raise InputError(f"the prompt and target ({Tk} tokens) exceed {tm.name}'s context of {ctx}")
        pos = torch.arange(T - 1, T - 1 + tgt.numel(), device=ids.device)
        base = float(_score_rows(tm, seq, torch.ones(1, Tk, device=ids.device), pos, tgt)[0])
        if b.batch_size is not None:
            size = b.batch_size
        else:
            row, one = _row_peak(tm, seq, tgt.numel())
            size = max(1, min(b.max_forward_rows, one // max(row, 1)))
            if b.memory_budget is not None:
                size = max(1, min(size, b.memory_budget // 3 // max(row, 1)))
        sup = torch.zeros(T, T, dtype=torch.bool, device=ids.device)
        sup[torch.arange(T), torch.arange(T)] = True
        if conceptual is not None:
            sup |= _similar(tm, ids, float(conceptual))
        out = torch.empty(T)
        keep = 1.0 - float(factor)
        for sl in Batching.chunks(T, size):
            scale = torch.ones(sl.stop - sl.start, Tk, device=ids.device)
            scale[:, :T][sup[sl]] = keep
            out[sl] = _score_rows(tm, seq, scale, pos, tgt).cpu()
    tids = tuple(int(t) for t in tgt.tolist())
    return AtManExplanation(
        tokens=tuple(tm.tokens(ids)),
        ids=ids[0].cpu(),
        scores=base - out,
        suppressed_logprob=out,
        base_logprob=base,
        target_ids=tids,
        target_tokens=tuple(tm.tokens(list(tids))),
        factor=float(factor),
        conceptual=None if conceptual is None else float(conceptual),
        batch_size=int(size),
    )


# -- views ---------------------------------------------------------------------------------
def _title(r: AtManExplanation) -> str:
    return f"AtMan (factor {r.factor:g}) for {r.target!r}: drop in log p when a token is suppressed"


register_token_views(AtManExplanation, _title)
