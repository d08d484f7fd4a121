"""Attention as an explanation: raw attention maps, attention rollout and ALTI.

* :func:`attention_maps`: every layer's and head's attention probabilities ``(L, H, T, T)``
  (rows: queries, columns: keys), recorded by
  :func:`~seethrough.language._attention.attention_scope` (the eager computation, so the
  same probabilities as ``output_attentions=True``).
* :func:`attention_rollout` (Abnar & Zuidema, 2020): per layer the heads' mean ``A``, the
  residual added as ``0.5 A + 0.5 I``, rows renormalised, and the layers multiplied
  ``R_L = Ã_L ⋯ Ã_1``; ``R[i, j]`` is how much of input token ``j`` reaches position ``i``.
* :func:`alti` (Ferrando et al., 2022, "Measuring the Mixing of Contextual Information in
  the Transformer"): per layer, each output ``y_i`` of the attention block (the residual
  included) is split into one term per input token, ``y_i = Σ_j T_i(x_j) + b``; the
  contribution of ``j`` is ``c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)``, normalised per row,
  and the layers are rolled out as above (``R_L = C_L ⋯ C_1``; no identity is added, the
  residual is already in ``T_i(x_i)``).

How ``T_i(x_j)`` is built for each architecture (both checked against the block's actual
output: :class:`~seethrough.language.model.NotATextModel` if the decomposition does not
reproduce it):

- **pre-norm (Llama, SmolLM2, kv-lm; blocks with ``input_layernorm`` and
  ``self_attn.{v,o}_proj``)**: the block's attention part is ``y = x + o_proj(attn(norm(x)))``.
  The norm acts on each token alone, so ``T_i(x_j) = Σ_h A^h_ij W_O^h (W_V^h norm(x_j) + b_V^h)
  + δ_ij x_i`` is a function of ``x_j`` only; grouped key/value heads are repeated to their
  query heads; an ``o_proj`` bias (none in Llama) is in ``y`` but no token's term.
- **post-norm (BERT, MiniLM; blocks with ``attention.self`` and ``attention.output``)**: the
  block is ``y = LN(z)`` with ``z_i = Σ_j z_ij + b_O``, ``z_ij = Σ_h A^h_ij W_O^h (W_V^h x_j +
  b_V^h) + δ_ij x_i``. LN is decomposed linearly as in the paper: with ``s_i`` the standard
  deviation of the whole ``z_i`` (held fixed), ``T_i(x_j) = γ ⊙ (z_ij − mean(z_ij)) / s_i``
  and ``y_i = Σ_j T_i(x_j) + γ ⊙ (b_O − mean(b_O)) / s_i + β`` exactly.

The MLP of each block is not decomposed (it acts on each token alone, as in the paper).
Causal masks are respected: a key after the query has ``A = 0``, so ``T_i(x_j) = 0`` and
``c_ij = 0``. All three return token-level results with the tokens and ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._core.capture import capture
from .._core.errors import ConfigError, InputError
from .._core.result import Result, register_view
from .._core.state import model_guard
from ._attention import attention_scope
from .model import NotATextModel, TextModel

__all__ = ["AttentionMaps", "TokenMixing", "attention_maps", "attention_rollout", "alti"]


@dataclass(frozen=True, eq=False)
class AttentionMaps(Result):
    """Attention probabilities ``probs`` ``(L, H, T, T)`` (layer, head, query, key)."""

    tokens: tuple[str, ...]
    ids: Tensor
    probs: Tensor

    def layer(self, layer: int = -1, head: int | None = None) -> Tensor:
        """One layer's map ``(T, T)``: one head, or the heads' mean (``head=None``)."""
        a = self.probs[layer]
        return a.mean(0) if head is None else a[head]

    def __repr__(self) -> str:
        L, H, T, _ = self.probs.shape
        return f"AttentionMaps(layers={L}, heads={H}, tokens={T})"


@dataclass(frozen=True, eq=False)
class TokenMixing(Result):
    """How much each input token contributes to each position, per layer and rolled out.

    ``per_layer`` ``(L, T, T)``: each layer's row-stochastic mixing matrix (rollout: ``0.5 A +
    0.5 I`` renormalised; ALTI: the normalised contributions ``c_ij``). ``rolled`` ``(L, T,
    T)``: the products up to each layer (``rolled[-1]``: through the whole model).
    ``position``: the row that :attr:`scores` reads (the last token for a causal LM, the
    first, ``[CLS]``, for an encoder). ``method``: ``"rollout"`` or ``"alti"``.
    """

    tokens: tuple[str, ...]
    ids: Tensor
    method: str
    per_layer: Tensor
    rolled: Tensor
    position: int

    @property
    def matrix(self) -> Tensor:
        """The rolled-out mixing through every layer ``(T, T)``."""
        return self.rolled[-1]

    @property
    def scores(self) -> Tensor:
        """Each input token's share in the final representation at ``position`` ``(T,)``."""
        return self.rolled[-1, self.position]

    def __repr__(self) -> str:
        L, T, _ = self.per_layer.shape
        return f"TokenMixing(method={self.method!r}, layers={L}, tokens={T}, position={self.position})"


def _ids(tm: TextModel, prompt: str | Tensor) -> Tensor:
    ids = tm.ids(prompt)
    if ids.shape[0] != 1:
        raise InputError(f"attention explanations take one prompt (1, T) at a time, got a batch of {ids.shape[0]}")
    return ids


def _default_position(tm: TextModel, T: int, position: int | None) -> int:
    if position is None:
        return T - 1 if tm.kind == "causal" else 0
    if not -T <= position < T:
        raise InputError(f"position {position} is out of range for a prompt of {T} tokens")
    return position % T


def _record(tm: TextModel, ids: Tensor) -> Tensor:
    """Attention probabilities ``(L, H, T, T)`` of one prompt (float32, CPU)."""
    with attention_scope(tm, record=True) as scope:
        tm.forward(ids)
    if len(scope.probs) != tm.n_layers or any(p is None for p in scope.probs):
        raise NotATextModel(f"attention was recorded for {len(scope.probs)} of {tm.n_layers} layers")
    return torch.stack([p[0].float() for p in scope.probs if p is not None]).cpu()


def attention_maps(tm: TextModel, prompt: str | Tensor) -> AttentionMaps:
    """Every layer's and head's attention probabilities on ``prompt``."""
    ids = _ids(tm, prompt)
    with model_guard(tm.model, method="attention maps"), torch.no_grad():
        probs = _record(tm, ids)
    return AttentionMaps(tokens=tuple(tm.tokens(ids)), ids=ids[0].cpu(), probs=probs)


def _roll(per_layer: Tensor) -> Tensor:
    out = []
    R = torch.eye(per_layer.shape[-1], dtype=per_layer.dtype)
    for C in per_layer:
        R = C @ R
        out.append(R)
    return torch.stack(out)


def rollout_matrices(probs: Tensor, residual: float = 0.5) -> Tensor:
    """Per-layer rollout matrices ``(L, T, T)`` from attention ``(L, H, T, T)``:
    ``(1 - residual) · mean_h A + residual · I``, rows renormalised."""
    A = probs.double().mean(1)
    eye = torch.eye(A.shape[-1], dtype=A.dtype)
    M = (1.0 - residual) * A + residual * eye
    return M / M.sum(-1, keepdim=True)


def attention_rollout(
    tm: TextModel, prompt: str | Tensor, *, residual: float = 0.5, position: int | None = None
) -> TokenMixing:
    """Attention rollout of ``prompt`` (Abnar & Zuidema 2020; ``residual`` is the identity's
    weight, 0.5 in the paper). See the module docstring."""
    if isinstance(residual, bool) or not 0.0 <= float(residual) <= 1.0:
        raise ConfigError(f"residual must be in [0, 1] (0.5 in the paper), got {residual!r}")
    ids = _ids(tm, prompt)
    with model_guard(tm.model, method="attention rollout"), torch.no_grad():
        probs = _record(tm, ids)
    per = rollout_matrices(probs, float(residual))
    return TokenMixing(
        tokens=tuple(tm.tokens(ids)),
        ids=ids[0].cpu(),
        method="rollout",
        per_layer=per.float(),
        rolled=_roll(per).float(),
        position=_default_position(tm, ids.shape[1], position),
    )


# -- ALTI ----------------------------------------------------------------------------------
@contextmanager
def _block_inputs(modules: dict[str, nn.Module], store: dict[str, Tensor]) -> Iterator[dict[str, Tensor]]:
    """Record each module's first input (``hidden_states``) into ``store``."""

    def make(name: str):
        def hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else kwargs.get("hidden_states")
            if isinstance(x, Tensor):
                store[name] = x.detach()

        return hook

    handles = []
    try:
        for name, m in modules.items():
            handles.append(m.register_forward_pre_hook(make(name), with_kwargs=True))
        yield store
    finally:
        for h in handles:
            h.remove()


def _arch(block: nn.Module) -> str:
    attn = getattr(block, "self_attn", None)
    if attn is not None and all(hasattr(attn, k) for k in ("v_proj", "o_proj")) and hasattr(block, "input_layernorm"):
        return "prenorm"
    att = getattr(block, "attention", None)
    if att is not None and hasattr(att, "self") and hasattr(getattr(att, "output", None), "LayerNorm"):
        if hasattr(att.self, "value") and hasattr(att.output, "dense"):
            return "postnorm"
    raise NotATextModel(
        f"ALTI decomposes Llama-style pre-norm blocks (input_layernorm, self_attn.v_proj/o_proj) and BERT-style "
        f"post-norm blocks (attention.self.value, attention.output.dense/LayerNorm); {type(block).__name__} is neither"
    )


def _heads_out(v: Tensor, W_O: Tensor, H: int) -> Tensor:
    """``(H, T, D)``: each head's values ``v`` ``(T, Hv, d)`` through its slice of ``W_O``."""
    Hv, d = v.shape[1], v.shape[2]
    if H % Hv:
        raise NotATextModel(f"{H} query heads cannot share {Hv} key/value heads evenly")
    v = v.repeat_interleave(H // Hv, dim=1)  # grouped-query attention: head h reads kv head h // (H / Hv)
    Wo = W_O.reshape(W_O.shape[0], H, d)  # (D, H, d)
    return torch.einsum("thd,ehd->hte", v, Wo)


def _contributions(A: Tensor, Vout: Tensor, resid: Tensor, y: Tensor, post: Any = None, chunk: int = 1 << 24) -> Tensor:
    """``c_ij`` ``(T, T)`` normalised per row. ``A`` ``(H, T, T)``, ``Vout`` ``(H, T, D)``,
    ``resid`` ``(T, D)`` (the residual, added to ``T_i(x_i)``), ``y`` ``(T, D)``; ``post(i_slice,
    terms)`` maps the raw terms ``(c, T, D)`` to ``T_i(x_j)`` (the LN decomposition)."""
    T, D = y.shape
    rows = max(1, chunk // max(T * D, 1))
    out = torch.empty(T, T, dtype=y.dtype)
    ynorm = y.abs().sum(-1)
    for s in range(0, T, rows):
        sl = slice(s, min(T, s + rows))
        terms = torch.einsum("hij,hjd->ijd", A[:, sl], Vout)  # (c, T, D)
        idx = torch.arange(sl.start, sl.stop)
        terms[idx - s, idx] += resid[sl]
        if post is not None:
            terms = post(sl, terms)
        dist = (y[sl, None, :] - terms).abs().sum(-1)
        out[sl] = (ynorm[sl, None] - dist).clamp(min=0)
    total = out.sum(-1, keepdim=True)
    return torch.where(total > 0, out / total.clamp(min=torch.finfo(out.dtype).tiny), torch.eye(T, dtype=out.dtype))


def alti_layer(
    arch: str, block: Any, x: Tensor, A: Tensor, extra: Tensor | None, y_true: Tensor
) -> tuple[Tensor, float]:
    """One layer's ALTI contributions ``(T, T)`` and the decomposition's reconstruction error
    (max abs difference of ``Σ_j T_i(x_j) + bias`` from the block's output ``y_true``)."""
    x = x.double()
    A = A.double()
    H = A.shape[0]
    T = x.shape[0]
    if arch == "prenorm":
        attn = block.self_attn
        nx = extra.double()  # type: ignore[union-attr]
        vp = attn.v_proj
        v = nn.functional.linear(nx, vp.weight.double(), None if vp.bias is None else vp.bias.double())
        v = v.reshape(T, -1, attn.o_proj.weight.shape[1] // H)
        Vout = _heads_out(v, attn.o_proj.weight.double(), H)
        b_o = attn.o_proj.bias
        y = y_true.double()
        recon = torch.einsum("hij,hjd->id", A, Vout) + x + (0 if b_o is None else b_o.double())
        err = float((recon - y).abs().max())
        return _contributions(A, Vout, x, y), err
    att = block.attention
    sa, so = att.self, att.output
    v = nn.functional.linear(x, sa.value.weight.double(), sa.value.bias.double())
    head_dim = sa.value.weight.shape[0] // H
    v = v.reshape(T, H, head_dim)
    Vout = _heads_out(v, so.dense.weight.double(), H)
    ln = so.LayerNorm
    z = torch.einsum("hij,hjd->id", A, Vout) + x + so.dense.bias.double()
    s = torch.sqrt(z.var(-1, unbiased=False) + ln.eps)  # (T,)
    gamma = ln.weight.double()
    b_o = so.dense.bias.double()

    def post(sl: slice, terms: Tensor) -> Tensor:
        return gamma * (terms - terms.mean(-1, keepdim=True)) / s[sl, None, None]

    bias = gamma * (b_o - b_o.mean()) / s[:, None] + ln.bias.double()
    y = y_true.double()
    # Σ_j T_i(x_j) + bias: the terms' sum is z_i - b_O, so this is LN(z_i) rebuilt from the parts
    recon = post(slice(0, T), (z - b_o)[:, None, :])[:, 0] + bias
    err = float((recon - y).abs().max())
    return _contributions(A, Vout, x, y, post), err


def alti(tm: TextModel, prompt: str | Tensor, *, position: int | None = None, tolerance: float = 1e-3) -> TokenMixing:
    """ALTI (Ferrando et al. 2022) of ``prompt``: per-layer token contributions and their
    rollout. The decomposition is checked against each block's output (relative
    ``tolerance``, at least 3e-2 for a half-precision model); see the module docstring for
    what is decomposed per architecture."""
    ids = _ids(tm, prompt)
    blocks = [tm.module(b) for b in tm.blocks]
    arch = _arch(blocks[0])
    ins: dict[str, Tensor] = {}
    outs: dict[str, Any] = {}
    watch: dict[str, nn.Module] = {a: tm.module(a) for a in tm.attentions}
    if arch == "prenorm":
        watch.update({f"{b}.input_layernorm": tm.module(f"{b}.input_layernorm") for b in tm.blocks})
    with model_guard(tm.model, method="ALTI"), torch.no_grad():
        with _block_inputs(dict(zip(tm.blocks, blocks)), ins), capture(watch, outs):
            probs = _record(tm, ids)
        per = []
        for layer, (name, block) in enumerate(zip(tm.blocks, blocks)):
            x = ins[name][0].cpu()
            a_out = outs[tm.attentions[layer]][0].cpu()
            if arch == "prenorm":
                extra = outs[f"{name}.input_layernorm"][0].cpu()
                y = x + a_out
            else:
                extra, y = None, a_out
            C, err = alti_layer(arch, _cpu_view(block), x, probs[layer], extra, y)
            scale = float(y.abs().max()) + 1e-12
            low = x.dtype in (torch.float16, torch.bfloat16)  # the model ran in half precision
            if err > (max(tolerance, 3e-2) if low else tolerance) * scale:
                raise NotATextModel(
                    f"ALTI's decomposition of layer {layer} ({type(block).__name__}) does not reproduce the block's "
                    f"attention output (max error {err:.3g} for values up to {scale:.3g}): this architecture is not "
                    f"the {arch} block ALTI assumes here"
                )
            per.append(C)
    per_t = torch.stack(per)
    return TokenMixing(
        tokens=tuple(tm.tokens(ids)),
        ids=ids[0].cpu(),
        method="alti",
        per_layer=per_t.float(),
        rolled=_roll(per_t).float(),
        position=_default_position(tm, ids.shape[1], position),
    )


def _cpu_view(block: nn.Module) -> nn.Module:
    """The block itself when on the CPU; else a CPU copy (the decomposition runs in float64 on the CPU)."""
    p = next(block.parameters(), None)
    if p is None or p.device.type == "cpu":
        return block
    import copy

    return copy.deepcopy(block).cpu()


# -- views ---------------------------------------------------------------------------------
def _maps_plot(r: AttentionMaps, *, ax: Any = None, layer: int = -1, head: int | None = None, **kw: Any) -> Any:
    from .views import plot_matrix

    L = r.probs.shape[0]
    what = "mean of heads" if head is None else f"head {head}"
    return plot_matrix(
        list(r.tokens),
        list(r.tokens),
        r.layer(layer, head).numpy(),
        ax=ax,
        title=kw.pop("title", f"attention, layer {layer % L}, {what}"),
        xlabel="key",
        ylabel="query",
        vmax=kw.pop("vmax", 1.0),
        **kw,
    )


def _maps_html(r: AttentionMaps, *, layer: int | None = None, **kw: Any) -> str:
    from .views import matrix_html

    L = r.probs.shape[0]
    layers = range(L) if layer is None else [layer % L]
    return "".join(
        matrix_html(list(r.tokens), list(r.tokens), r.layer(i).numpy(), title=f"attention, layer {i}, mean of heads")
        for i in layers
    )


def _mixing_title(r: TokenMixing) -> str:
    name = "attention rollout" if r.method == "rollout" else "ALTI"
    return f"{name}: share of each input token (columns) in each position (rows), all layers"


def _mixing_plot(r: TokenMixing, *, ax: Any = None, **kw: Any) -> Any:
    from .views import plot_matrix

    return plot_matrix(
        list(r.tokens),
        list(r.tokens),
        r.matrix.numpy(),
        ax=ax,
        title=kw.pop("title", _mixing_title(r)),
        xlabel="input token",
        ylabel="position",
        vmax=kw.pop("vmax", 1.0),
        **kw,
    )


def _mixing_html(r: TokenMixing, **kw: Any) -> str:
    from .views import matrix_html, tokens_html

    head = tokens_html(
        list(r.tokens), r.scores.numpy(), title=f"{r.method}: share of each token in position {r.position}"
    )
    return head + matrix_html(list(r.tokens), list(r.tokens), r.matrix.numpy(), title=kw.get("title", _mixing_title(r)))


register_view(AttentionMaps, plot=_maps_plot, html=_maps_html)
register_view(TokenMixing, plot=_mixing_plot, html=_mixing_html)
