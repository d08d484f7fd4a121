"""Which tokens make two sentences similar: integrated gradients and a token × token
decomposition of the cosine similarity of a sentence encoder (all-MiniLM-L6-v2 and any
BERT-like encoder with mean pooling).

The embedding is what sentence-transformers computes for such a model: the encoder's last
hidden states averaged over the attention mask (special tokens included) and L2-normalised,
``e(x) = p(x) / |p(x)|``, so that ``s(a, b) = e(a) · e(b)`` is the cosine similarity.

The attribution works at the word-embedding layer (``x``: the ``(T, D)`` token embeddings fed
to the encoder as ``inputs_embeds``; positions and token types are added inside the model as
usual). The reference ``r`` of a sentence replaces every non-special token by ``[PAD]`` (or
``[MASK]``, or a given id) and keeps ``[CLS]``/``[SEP]``, so special tokens get no
attribution. Along the straight path ``x(α) = r + α (x - r)`` the *integrated Jacobian* of
token ``i`` is the ``D``-vector

    ``Φ[i] = ∫_0^1 J_e(x(α)) · ((x - r) ⊙ 1_i) dα``  (``1_i``: token ``i``'s rows only)

so that ``Σ_i Φ[i] = e(x) - e(r)`` (IG's completeness, once per embedding dimension). It is
computed with forward-mode AD (one Jacobian-vector product per token and step, batched; no
backward pass), on a quadrature rule of ``steps`` points (Gauss-Legendre by default).

From ``Φ_a`` and ``Φ_b`` (Moeller, Nikolaev & Padó 2023, "An Attribution Method for Siamese
Encoders", integrated Jacobians of the embedding; here of the normalised one, so the matrix is
on the cosine's scale):

* ``pairs[i, j] = Φ_a[i] · Φ_b[j]``; ``Σ_ij pairs = (e(a) - e(r_a)) · (e(b) - e(r_b))
  = s(a, b) - s(r_a, b) - s(a, r_b) + s(r_a, r_b)``: the pairwise token × token part of the
  similarity (``pair_delta`` is how far the quadrature is from that).
* ``pairs_ref_a[i] = Φ_a[i] · e(r_b)`` and ``pairs_ref_b[j] = e(r_a) · Φ_b[j]``: each token
  against the other sentence's reference; with ``s(r_a, r_b)`` they complete the exact
  decomposition ``s(a, b) = Σ_ij pairs + Σ_i pairs_ref_a + Σ_j pairs_ref_b + s(r_a, r_b)``.
* ``scores_a[i] = Φ_a[i] · e(b)``: integrated gradients of ``s(·, b)`` with respect to sentence
  a's token embeddings, b held fixed, so ``Σ_i scores_a = s(a, b) - s(r_a, b)`` (``delta_a``
  the error); likewise ``scores_b``. They are the row sums of the full matrix:
  ``scores_a = pairs.sum(1) + pairs_ref_a``.
* with ``joint=True``, ``scores_a``/``scores_b`` are instead integrated gradients along one path
  moving both sentences together from their references: ``Σ scores_a + Σ scores_b = s(a, b) -
  s(r_a, r_b)``. Two references of the same length are the same sentence (``s(r_a, r_b) = 1``),
  so the joint scores explain ``s(a, b) - 1``, usually negative; the default, one sentence at a
  time, explains the similarity to the other sentence as it is.

Measured on all-MiniLM-L6-v2 (``"A cat sits on the mat"`` / ``"A dog sits on the mat"``,
[PAD] references): ``s = 0.749``, ``s(r_a, b) = -0.068``, ``s(a, r_b) = -0.069``,
``s(r_a, r_b) = 1``; the completeness error of 32 Gauss-Legendre steps is at most 6e-4 on these pairs (64
steps: 1e-6). The pair matrix puts ``(sits, sits)`` and ``(mat, mat)`` at the top of their
rows and ``(cat, dog)`` at the top of cat's row. Because of the references' terms the pair
matrix sums to about 1.89, not 0.75: it is the interaction part of the similarity, with the
reference row and column holding the rest (about -1.07 each).

``method="gradient"`` replaces the integral by the Jacobian at the input (one point,
``J_e(x) (x - r)``): cheaper, no completeness.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.batching import Batching, as_batching
from .._core.errors import ConfigError, InputError
from .._core.result import Result, register_view
from .._core.state import model_guard
from ..attribution import integration_points
from ..report.html import HtmlReport
from ._attention import attention_scope
from .model import TextModel
from .views import matrix_html, plot_matrix, plot_tokens, tokens_html

__all__ = ["SimilarityExplanation", "SimilarityAttribution", "sentence_embedding"]

_METHODS = ("ig", "gradient")
_POOLING = ("mean", "cls")


def _pool(hidden: Tensor, mask: Tensor, pooling: str, normalize: bool) -> Tensor:
    if pooling == "cls":
        pooled = hidden[:, 0]
    else:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if normalize:
        pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return pooled


def _hidden(tm: TextModel, embeds: Tensor, mask: Tensor) -> Tensor:
    out = tm.model(inputs_embeds=embeds, attention_mask=mask)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _check_encoder(tm: Any) -> TextModel:
    if not isinstance(tm, TextModel):
        raise ConfigError(
            f"similarity explanations take a TextModel (an encoder and its tokenizer), got {type(tm).__name__}"
        )
    if tm.kind != "encoder":
        raise ConfigError(
            f"{tm.name} is a {tm.kind} model; sentence similarity needs a sentence encoder such as all-MiniLM-L6-v2 "
            f"(--model minilm)"
        )
    return tm


def sentence_embedding(tm: TextModel, text: str | Tensor, *, pooling: str = "mean", normalize: bool = True) -> Tensor:
    """The sentence embedding ``(D,)`` of ``text`` (or ids ``(1, T)``): the last hidden states
    mean-pooled over the tokens (``pooling="cls"``: the first token's) and L2-normalised, as
    sentence-transformers computes it for all-MiniLM-L6-v2."""
    _check_encoder(tm)
    if pooling not in _POOLING:
        raise ConfigError(f"pooling must be one of {_POOLING}, got {pooling!r}")
    ids = tm.ids(text)
    if ids.shape[0] != 1:
        raise InputError(f"one sentence at a time: ids must be (1, T), got {tuple(ids.shape)}")
    emb = tm.module(tm.embedding)
    mask = torch.ones_like(ids)
    with model_guard(tm.model, method="sentence embedding"), torch.no_grad():
        return _pool(_hidden(tm, emb(ids), mask), mask, pooling, normalize)[0]


@dataclass(frozen=True, eq=False)
class SimilarityAttribution(Result):
    """Token and token-pair attributions of the cosine similarity of two sentences (see
    :mod:`seethrough.language.similarity` for what sums to what).

    Attributes
    ----------
    tokens_a, tokens_b, ids_a, ids_b:
        The two sentences' tokens (display strings) and ids ``(T,)``.
    special_a, special_b:
        ``(T,)`` bool, the special tokens ([CLS], [SEP]) kept in the references.
    scores_a, scores_b:
        ``(Ta,)``, ``(Tb,)`` integrated gradients of the similarity per token.
    pairs:
        ``(Ta, Tb)`` the token × token decomposition ``Φ_a[i] · Φ_b[j]``.
    pairs_ref_a, pairs_ref_b:
        ``(Ta,)``, ``(Tb,)`` each token against the other sentence's reference.
    similarity:
        ``s(a, b)``, the cosine similarity of the embeddings.
    similarity_ref_a, similarity_ref_b, reference_similarity:
        ``s(r_a, b)``, ``s(a, r_b)``, ``s(r_a, r_b)``.
    delta_a, delta_b, pair_delta:
        Completeness errors: ``Σ scores_a - (s(a,b) - s(r_a,b))`` (joint: ``Σ scores_a + Σ scores_b
        - (s(a,b) - s(r_a,r_b))`` in both), likewise ``delta_b``, and
        ``Σ pairs - (s(a,b) - s(r_a,b) - s(a,r_b) + s(r_a,r_b))``.
    method, steps, rule, baseline, joint, pooling, seconds, settings:
        How it was computed.
    """

    tokens_a: tuple[str, ...]
    tokens_b: tuple[str, ...]
    ids_a: Tensor
    ids_b: Tensor
    special_a: Tensor
    special_b: Tensor
    scores_a: Tensor
    scores_b: Tensor
    pairs: Tensor
    pairs_ref_a: Tensor
    pairs_ref_b: Tensor
    similarity: float
    similarity_ref_a: float
    similarity_ref_b: float
    reference_similarity: float
    delta_a: float
    delta_b: float
    pair_delta: float
    method: str = "ig"
    steps: int = 32
    rule: str = "gausslegendre"
    baseline: str = "pad"
    joint: bool = False
    pooling: str = "mean"
    seconds: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def delta(self) -> float:
        """The largest completeness error, ``max(|delta_a|, |delta_b|, |pair_delta|)``."""
        return max(abs(self.delta_a), abs(self.delta_b), abs(self.pair_delta))

    @property
    def pair_total(self) -> float:
        """What ``pairs`` sums to exactly: ``s(a,b) - s(r_a,b) - s(a,r_b) + s(r_a,r_b)``."""
        return self.similarity - self.similarity_ref_a - self.similarity_ref_b + self.reference_similarity

    def top_pairs(self, k: int = 5) -> list[tuple[str, str, float]]:
        """The ``k`` token pairs with the largest ``pairs`` value: ``(token_a, token_b, value)``."""
        flat = self.pairs.reshape(-1)
        k = max(0, min(int(k), flat.numel()))
        top = torch.topk(flat, k).indices.tolist() if k else []
        nb = self.pairs.shape[1]
        return [(self.tokens_a[i // nb], self.tokens_b[i % nb], float(flat[i])) for i in top]

    def __repr__(self) -> str:
        return (
            f"SimilarityAttribution(similarity {self.similarity:.4f}, {len(self.tokens_a)} x {len(self.tokens_b)} "
            f"tokens, {self.method} {self.steps} steps, delta {self.delta:.2g})"
        )


class SimilarityExplanation:
    """Explain the cosine similarity of two sentences' embeddings under a sentence encoder.

    Parameters
    ----------
    tm:
        A :class:`~seethrough.language.model.TextModel` over a transformers encoder (BERT-like:
        it takes ``inputs_embeds``) with its tokenizer.
    steps:
        Quadrature points on the path from the reference (32: completeness error below 6e-4
        on all-MiniLM-L6-v2; ``method="gradient"`` uses one point).
    method:
        ``"ig"`` (integrated Jacobians) or ``"gradient"`` (the Jacobian at the input times the
        difference from the reference; no completeness).
    rule:
        Quadrature rule of :func:`seethrough.attribution.integration_points`.
    baseline:
        The token that replaces every non-special token in the reference: ``"pad"``,
        ``"mask"`` or a token id.
    joint:
        Token scores from one path moving both sentences (see the module docstring).
    pooling:
        ``"mean"`` over the attention mask (sentence-transformers' default) or ``"cls"``.
    batching:
        Rows (one token at one step) per forward pass: a :class:`Batching`, an int or None.
    """

    def __init__(
        self,
        tm: TextModel,
        *,
        steps: int = 32,
        method: str = "ig",
        rule: str = "gausslegendre",
        baseline: str | int = "pad",
        joint: bool = False,
        pooling: str = "mean",
        batching: Batching | int | None = None,
    ) -> None:
        self.tm = _check_encoder(tm)
        if method not in _METHODS:
            raise ConfigError(f"method must be one of {_METHODS}, got {method!r}")
        if pooling not in _POOLING:
            raise ConfigError(f"pooling must be one of {_POOLING}, got {pooling!r}")
        if method == "ig":
            integration_points(steps, rule)  # checks steps and rule
        self.steps = int(steps) if method == "ig" else 1
        self.method = method
        self.rule = rule if method == "ig" else "right"
        self.baseline = baseline
        self.joint = bool(joint)
        self.pooling = pooling
        self.batching = as_batching(batching)

    # -- pieces ------------------------------------------------------------------------------
    def _baseline_id(self) -> tuple[int, str]:
        b = self.baseline
        tok = self.tm.tokenizer
        if isinstance(b, bool) or not isinstance(b, (str, int)):
            raise ConfigError(f"baseline must be 'pad', 'mask' or a token id, got {b!r}")
        if isinstance(b, int):
            return self.tm.token_id(b), f"id {b}"
        name = {"pad": "pad_token_id", "mask": "mask_token_id"}.get(b)
        if name is None:
            raise ConfigError(f"baseline must be 'pad', 'mask' or a token id, got {b!r}")
        tid = getattr(tok, name, None) if tok is not None else None
        if tid is None:
            raise ConfigError(f"the tokenizer has no {b} token; pass baseline=<a token id>")
        return int(tid), b

    def _special(self, ids: Tensor) -> Tensor:
        tok = self.tm.tokenizer
        row = ids[0].tolist()
        if tok is not None and hasattr(tok, "get_special_tokens_mask"):
            mask = tok.get_special_tokens_mask(row, already_has_special_tokens=True)
            return torch.tensor(mask, dtype=torch.bool)
        return torch.zeros(len(row), dtype=torch.bool)

    def embed(self, text: str | Tensor) -> Tensor:
        """The sentence embedding ``(D,)`` this explanation uses (see :func:`sentence_embedding`)."""
        return sentence_embedding(self.tm, text, pooling=self.pooling)

    def _integrate(self, x: Tensor, r: Tensor, moving: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per step: the embedding ``e(x(α_s))`` ``(S, D)`` and the JVPs ``(S, T, D)`` of each
        token's part of the path direction; and the weights ``(S,)``."""
        import torch.autograd.forward_ad as fwAD

        if self.method == "ig":
            al, w = integration_points(self.steps, self.rule)
        else:
            al, w = np.ones(1), np.ones(1)
        dev, dt = x.device, x.dtype
        alphas = torch.tensor(al, dtype=dt, device=dev)
        weights = torch.tensor(w, dtype=dt, device=dev)
        T, D = x.shape
        S = alphas.numel()
        diff = x - r
        toks = torch.nonzero(moving).reshape(-1)
        n_tok = max(int(toks.numel()), 1)
        hidden = D
        cfg = getattr(self.tm.model, "config", None)
        inter = int(getattr(cfg, "intermediate_size", 4 * hidden) or 4 * hidden)
        heads = max(self.tm.n_heads, 1)
        peak = 2 * 4 * T * max(inter, T * heads, hidden)  # primal + tangent, float32
        size = self.batching.forward_rows_per_chunk(peak, dev)
        prim = torch.zeros(S, hidden, dtype=dt, device=dev)
        jv = torch.zeros(S, T, hidden, dtype=dt, device=dev)
        n_rows = S * n_tok if toks.numel() else S
        for sl in Batching.chunks(n_rows, size):
            rows = torch.arange(sl.start, sl.stop, device=dev)
            s_idx = rows // n_tok
            pts = r + alphas[s_idx, None, None] * diff  # (B, T, D)
            tan = torch.zeros_like(pts)
            if toks.numel():
                t_idx = toks[rows % n_tok]
                tan[torch.arange(len(rows), device=dev), t_idx] = diff[t_idx]
            mask = torch.ones(len(rows), T, dtype=torch.long, device=dev)
            with fwAD.dual_level():
                e = _pool(_hidden(self.tm, fwAD.make_dual(pts, tan), mask), mask, self.pooling, True)
                p, g = fwAD.unpack_dual(e)
            prim[s_idx] = p.detach()
            if toks.numel() and g is not None:
                jv[s_idx, t_idx] = g.detach()
        return prim, jv, weights

    # -- the explanation -----------------------------------------------------------------------
    def attribute(self, a: str | Tensor, b: str | Tensor) -> SimilarityAttribution:
        """Explain ``s(a, b)`` for two sentences (text, or ids ``(1, T)`` with their special tokens)."""
        t0 = time.perf_counter()
        tm = self.tm
        ids_a, ids_b = tm.ids(a), tm.ids(b)
        for name, ids in (("a", ids_a), ("b", ids_b)):
            if ids.shape[0] != 1:
                raise InputError(f"sentence {name}: one sentence at a time, ids (1, T), got {tuple(ids.shape)}")
        base_id, base_name = self._baseline_id()
        emb = tm.module(tm.embedding)
        sp_a, sp_b = self._special(ids_a), self._special(ids_b)
        ref_a = torch.where(sp_a.to(ids_a.device)[None], ids_a, torch.full_like(ids_a, base_id))
        ref_b = torch.where(sp_b.to(ids_b.device)[None], ids_b, torch.full_like(ids_b, base_id))

        with model_guard(tm.model, method="similarity explanation"), torch.no_grad():
            with attention_scope(tm, record=False):  # eager attention: forward-mode AD runs through it
                xa, xb, ra, rb = (emb(t)[0] for t in (ids_a, ids_b, ref_a, ref_b))

                def e(v: Tensor) -> Tensor:
                    mask = torch.ones(1, v.shape[0], dtype=torch.long, device=v.device)
                    return _pool(_hidden(tm, v[None], mask), mask, self.pooling, True)[0]

                ea, eb, era, erb = e(xa), e(xb), e(ra), e(rb)
                moving_a = (xa - ra).abs().amax(-1) > 0
                moving_b = (xb - rb).abs().amax(-1) > 0
                pa, ga, w = self._integrate(xa, ra, moving_a)
                pb, gb, _ = self._integrate(xb, rb, moving_b)

        phi_a = torch.einsum("s,std->td", w, ga)  # (Ta, D)
        phi_b = torch.einsum("s,std->td", w, gb)
        pairs = phi_a @ phi_b.T
        ref_col = phi_a @ erb
        ref_row = phi_b @ era
        sim = float(ea @ eb)
        s_ra_b, s_a_rb, s_rr = float(era @ eb), float(ea @ erb), float(era @ erb)
        if self.joint:
            scores_a = torch.einsum("s,sd,std->t", w, pb, ga)
            scores_b = torch.einsum("s,sd,std->t", w, pa, gb)
            d = float(scores_a.sum() + scores_b.sum()) - (sim - s_rr)
            delta_a = delta_b = d
        else:
            scores_a = phi_a @ eb
            scores_b = phi_b @ ea
            delta_a = float(scores_a.sum()) - (sim - s_ra_b)
            delta_b = float(scores_b.sum()) - (sim - s_a_rb)
        pair_delta = float(pairs.sum()) - (sim - s_ra_b - s_a_rb + s_rr)
        seconds = time.perf_counter() - t0
        return SimilarityAttribution(
            tokens_a=tuple(tm.tokens(ids_a)),
            tokens_b=tuple(tm.tokens(ids_b)),
            ids_a=ids_a[0].detach().cpu(),
            ids_b=ids_b[0].detach().cpu(),
            special_a=sp_a.cpu(),
            special_b=sp_b.cpu(),
            scores_a=scores_a.detach().cpu(),
            scores_b=scores_b.detach().cpu(),
            pairs=pairs.detach().cpu(),
            pairs_ref_a=ref_col.detach().cpu(),
            pairs_ref_b=ref_row.detach().cpu(),
            similarity=sim,
            similarity_ref_a=s_ra_b,
            similarity_ref_b=s_a_rb,
            reference_similarity=s_rr,
            delta_a=delta_a,
            delta_b=delta_b,
            pair_delta=pair_delta,
            method=self.method,
            steps=self.steps,
            rule=self.rule,
            baseline=base_name,
            joint=self.joint,
            pooling=self.pooling,
            seconds=seconds,
            settings={"model": tm.name, "baseline_id": base_id},
        )

    __call__ = attribute


# -- views ---------------------------------------------------------------------------------------
def _shown(result: SimilarityAttribution, specials: bool) -> tuple[list[int], list[int]]:
    ia = [i for i in range(len(result.tokens_a)) if specials or not bool(result.special_a[i])]
    ib = [j for j in range(len(result.tokens_b)) if specials or not bool(result.special_b[j])]
    return ia or list(range(len(result.tokens_a))), ib or list(range(len(result.tokens_b)))


def _caption(result: SimilarityAttribution) -> str:
    return (
        f"cosine similarity {result.similarity:.4f}; {result.method} ({result.steps} steps, {result.baseline} "
        f"reference), completeness error {result.delta:.2g}"
    )


def plot_similarity(result: SimilarityAttribution, *, ax: Any = None, specials: bool = False) -> Any:
    """The token × token matrix (rows: sentence a, columns: sentence b) on ``ax``; without
    ``ax``, a new figure with the two sentences' token scores above it (one colour scale for
    both). Special tokens are left out unless ``specials``. Returns the figure."""
    ia, ib = _shown(result, specials)
    rows = [result.tokens_a[i] for i in ia]
    cols = [result.tokens_b[j] for j in ib]
    mat = result.pairs[ia][:, ib]
    title = f"token pairs: {_caption(result)}"
    if ax is not None:
        return plot_matrix(rows, cols, mat, ax=ax, title=title, xlabel="sentence b", ylabel="sentence a")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.6 + 0.42 * len(cols)), 3.2 + 0.34 * len(rows)), layout="constrained")
    subs: Any = fig.subfigures(3, 1, height_ratios=[1.0, 1.0, 1.2 + 0.34 * len(rows)])
    top, mid, low = list(subs)
    v = float(torch.cat([result.scores_a[ia], result.scores_b[ib]]).abs().max()) or 1.0
    plot_tokens(rows, result.scores_a[ia], ax=top.add_subplot(), title="sentence a: token scores", vmax=v)
    plot_tokens(cols, result.scores_b[ib], ax=mid.add_subplot(), title="sentence b: token scores", vmax=v)
    plot_matrix(rows, cols, mat, ax=low.add_subplot(), title=title, xlabel="sentence b", ylabel="sentence a")
    return fig


def similarity_html(result: SimilarityAttribution, *, specials: bool = False) -> str:
    """The similarity and its decomposition as a table, both sentences' token scores (one
    colour scale) and the token × token matrix, self-contained."""
    ia, ib = _shown(result, specials)
    rows = [result.tokens_a[i] for i in ia]
    cols = [result.tokens_b[j] for j in ib]
    report = HtmlReport("sentence similarity")
    report.add_heading("sentence similarity", 3)
    report.add_paragraph(_caption(result))
    report.add_table(
        [
            ("s(a, b), cosine similarity", result.similarity),
            ("s(reference a, b)", result.similarity_ref_a),
            ("s(a, reference b)", result.similarity_ref_b),
            ("s(reference a, reference b)", result.reference_similarity),
            ("Σ token pairs (= s(a,b) - s(r_a,b) - s(a,r_b) + s(r_a,r_b))", float(result.pairs.sum())),
            ("Σ a tokens × reference b", float(result.pairs_ref_a.sum())),
            ("Σ reference a × b tokens", float(result.pairs_ref_b.sum())),
            ("Σ scores a", float(result.scores_a.sum())),
            ("Σ scores b", float(result.scores_b.sum())),
            (
                "completeness errors (a, b, pairs)",
                f"{result.delta_a:.2g}, {result.delta_b:.2g}, {result.pair_delta:.2g}",
            ),
        ],
        header=["quantity", "value"],
    )
    v = float(torch.cat([result.scores_a[ia], result.scores_b[ib]]).abs().max()) or 1.0
    report.add_html(tokens_html(rows, result.scores_a[ia], title="sentence a", vmax=v))
    report.add_html(tokens_html(cols, result.scores_b[ib], title="sentence b", vmax=v))
    report.add_html(matrix_html(rows, cols, result.pairs[ia][:, ib], title="token pairs (rows: a, columns: b)"))
    return report._repr_html_()


register_view(SimilarityAttribution, plot=plot_similarity, html=similarity_html)
