"""The logit lens: what each layer of a causal LM would predict, read through its head.

nostalgebraist's logit lens reads the residual stream after every block (and the embedding
output) through the model's own final norm and unembedding, as if the network ended there.
:func:`logit_lens` returns, at every layer and position, the probability and rank of a target
token and the top-1 token with its probability (:class:`LogitLens`).

The hidden states are recorded with :func:`~seethrough._core.capture.capture` on the token
embedding and on every block's output (the raw block output: transformers'
``output_hidden_states`` gives the last one already through the final norm, so reading it
again would norm it twice). The last layer's read-out therefore equals the model's logits; a
model whose head does more than ``unembed(final_norm(h))`` (a logit soft-cap, a scale) is
caught by that check and warned about.

The helpers :func:`readout`, :func:`resolve_target` and :func:`last_block_logits` are shared
with AtMan and activation patching, which score the target on the last block's output at the
scored positions only (no ``(B, T, V)`` logits for a batch).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._core.capture import capture
from .._core.errors import ConfigError, InputError, SeethroughWarning
from .._core.hooks import StopForward
from .._core.result import Result, register_view
from .._core.state import model_guard
from .model import TextModel

__all__ = ["LogitLens", "logit_lens"]


def _causal(tm: TextModel, what: str) -> None:
    if tm.kind != "causal":
        raise ConfigError(
            f"{what} reads a next-token probability, and {tm.name} is an encoder (no next-token head); use a causal "
            f"LM (e.g. kv-lm or smollm2)"
        )
    if tm.unembed is None:
        raise ConfigError(f"{what} needs the model's unembedding; {tm.name} has none (pass unembed= to TextModel)")


def readout(tm: TextModel) -> Callable[[Tensor], Tensor]:
    """``h -> unembed(final_norm(h))``: the model's head applied to a hidden state ``(..., D)``."""
    _causal(tm, "reading a hidden state out")
    norm = tm.module(tm.final_norm) if tm.final_norm else None
    head = tm.module(tm.unembed)  # type: ignore[arg-type]

    def read(h: Tensor) -> Tensor:
        return head(norm(h) if norm is not None else h)

    return read


def one_prompt(tm: TextModel, prompt: str | Tensor) -> Tensor:
    """Checked ids ``(1, T)`` of one prompt."""
    ids = tm.ids(prompt)
    if ids.shape[0] != 1:
        raise InputError(f"this method explains one prompt (1, T) at a time, got a batch of {ids.shape[0]}")
    return ids


def resolve_target(tm: TextModel, target: int | str | None, last_logits: Tensor | None) -> int:
    """The target token id: the model's top prediction (``target=None``, from ``last_logits``
    ``(V,)``), a token id, or a text that is exactly one token (:class:`NotOneToken` else)."""
    if target is None:
        if last_logits is None:
            raise ConfigError("no target given and no logits to take the predicted token from")
        return int(last_logits.argmax())
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        raise InputError(f"target must be a token id, a one-token text or None, got {type(target).__name__}")
    return tm.token_id(target)


def last_block_logits(tm: TextModel, ids: Tensor, positions: Sequence[int] | Tensor, **forward: Any) -> Tensor:
    """The logits ``(B, P, V)`` at ``positions`` only, from the last block's output (the pass
    stops there; the head runs on those positions only). Call inside ``model_guard`` and
    ``torch.no_grad()``; ``forward`` goes to :meth:`TextModel.forward`."""
    name = tm.blocks[-1]
    store: dict[str, Any] = {}
    with capture({name: tm.module(name)}, store, stop=True, clone=False):
        try:
            tm.forward(ids, **forward)
        except StopForward:
            pass
    h = store[name]
    pos = torch.as_tensor(positions, dtype=torch.long, device=h.device)
    return readout(tm)(h[:, pos]).float()


@dataclass(frozen=True, eq=False)
class LogitLens(Result):
    """The logit lens of one prompt.

    Rows are ``layers`` (``"embed"``, then ``"0"`` .. ``"L-1"``: the embedding output and
    each block's output), columns the prompt positions (position ``t`` predicts token
    ``t + 1``). ``target_probs`` / ``target_ranks`` ``(L + 1, T)``: the target's probability
    and rank (0 = top-1) at every layer and position; ``top_ids`` / ``top_probs`` /
    ``top_tokens``: the top-1 prediction. ``position``: where the target is predicted (the
    last position by default).
    """

    tokens: tuple[str, ...]
    ids: Tensor
    layers: tuple[str, ...]
    target: int
    target_token: str
    position: int
    target_probs: Tensor
    target_ranks: Tensor
    top_ids: Tensor
    top_probs: Tensor
    top_tokens: tuple[tuple[str, ...], ...]

    @property
    def prob(self) -> Tensor:
        """The target's probability at ``position``, one per layer ``(L + 1,)``."""
        return self.target_probs[:, self.position]

    @property
    def rank(self) -> Tensor:
        """The target's rank at ``position``, one per layer ``(L + 1,)``."""
        return self.target_ranks[:, self.position]

    def __repr__(self) -> str:
        return (
            f"LogitLens(target={self.target_token!r}, layers={len(self.layers)}, tokens={len(self.tokens)}, "
            f"final p={float(self.prob[-1]):.3g})"
        )


def logit_lens(
    tm: TextModel, prompt: str | Tensor, *, target: int | str | None = None, position: int = -1
) -> LogitLens:
    """The logit lens of ``prompt`` for ``target`` (the model's prediction at ``position`` by
    default; a token id or a one-token text otherwise). See :class:`LogitLens`."""
    _causal(tm, "the logit lens")
    ids = one_prompt(tm, prompt)
    T = ids.shape[1]
    if not -T <= position < T:
        raise InputError(f"position {position} is out of range for a prompt of {T} tokens")
    position %= T
    names = [tm.embedding, *tm.blocks]
    read = readout(tm)
    with model_guard(tm.model, method="logit lens"), torch.no_grad():
        store: dict[str, Any] = {}
        with capture({n: tm.module(n) for n in names}, store):
            logits = tm.logits(ids)[0].float()
        tid = resolve_target(tm, target, logits[position])
        t_probs, t_ranks, top_i, top_p = [], [], [], []
        for n in names:
            lg = read(store[n][0]).float()  # (T, V)
            p = torch.softmax(lg, dim=-1)
            best = p.max(dim=-1)
            top_i.append(best.indices)
            top_p.append(best.values)
            t_probs.append(p[:, tid])
            t_ranks.append((lg > lg[:, tid : tid + 1]).sum(-1))
        scale = float(logits.abs().max()) + 1.0
        if not torch.allclose(lg, logits, atol=1e-4 * scale, rtol=1e-4):
            warnings.warn(
                f"{tm.name}'s logits are not unembed(final_norm(last block output)) (max difference "
                f"{float((lg - logits).abs().max()):.3g}): its head does more than the lens reads through, so the "
                f"layers' read-outs are on a different scale from its output",
                SeethroughWarning,
                stacklevel=2,
            )
    top_ids = torch.stack(top_i).cpu()
    return LogitLens(
        tokens=tuple(tm.tokens(ids)),
        ids=ids[0].cpu(),
        layers=("embed", *(str(i) for i in range(len(tm.blocks)))),
        target=tid,
        target_token=tm.tokens([tid])[0],
        position=position,
        target_probs=torch.stack(t_probs).cpu(),
        target_ranks=torch.stack(t_ranks).cpu(),
        top_ids=top_ids,
        top_probs=torch.stack(top_p).cpu(),
        top_tokens=tuple(tuple(tm.tokens(row)) if tm.tokenizer is not None else () for row in top_ids),
    )


# -- views ---------------------------------------------------------------------------------
def _lens_plot(r: LogitLens, *, ax: Any = None, what: str = "target", **kw: Any) -> Any:
    from .views import plot_matrix

    M, label = (r.target_probs, f"p({r.target_token!r})") if what == "target" else (r.top_probs, "top-1 p")
    return plot_matrix(
        list(r.layers),
        list(r.tokens),
        M.numpy(),
        ax=ax,
        title=kw.pop("title", f"logit lens: {label} per layer and position"),
        xlabel="position (predicts the next token)",
        ylabel="layer",
        vmax=kw.pop("vmax", 1.0),
        **kw,
    )


def _lens_html(r: LogitLens, **kw: Any) -> str:
    import html

    from .views import matrix_html

    grid = matrix_html(
        list(r.layers),
        list(r.tokens),
        r.target_probs.numpy(),
        title=kw.get("title", f"logit lens: p({r.target_token!r}) per layer and position"),
    )
    rows = []
    for name, toks, ps in zip(r.layers, r.top_tokens, r.top_probs.tolist()):
        cells = "".join(
            f'<td title="p={p:.3g}" style="padding:0 4px;opacity:{0.35 + 0.65 * p:.2f}">{html.escape(t)}</td>'
            for t, p in zip(toks, ps)
        )
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    head = "".join(f"<th>{html.escape(t)}</th>" for t in r.tokens)
    top = (
        '<div style="font-weight:600;margin:.5rem 0 .2rem">top-1 token per layer and position (hover: p)</div>'
        f'<table style="font-family:ui-monospace,monospace;font-size:.8rem"><tr><th></th>{head}</tr>'
        + "".join(rows)
        + "</table>"
    )
    return grid + top


register_view(LogitLens, plot=_lens_plot, html=_lens_html)
