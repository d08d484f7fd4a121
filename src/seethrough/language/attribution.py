"""Token attribution for language models: which prompt tokens a prediction rests on.

:class:`TokenAttributor` explains one prompt with the attribution family's own methods, run
at the token embedding (the model's input ids cannot be differentiated or interpolated, so the
embedding layer's output is what is attributed, as Captum's ``LayerIntegratedGradients`` and
Inseq do):

================================ ============================================== ==================
``method``                       what runs                                      one value per token
================================ ============================================== ==================
``"saliency"``                   :class:`~seethrough.Saliency` at the embedding  L2 norm over the
                                                                                hidden dim (Inseq)
``"input_x_gradient"``           :class:`~seethrough.InputXGradient`             sum over the hidden dim
``"integrated_gradients"``       :class:`~seethrough.IntegratedGradients`        sum (Captum, Sundararajan)
                                 (path from the baseline tokens' embedding;
                                 the completeness error is ``delta``)
``"occlusion"``                  :class:`~seethrough.Occlusion` over windows of  the score drop
                                 tokens, replaced by the ``replacement`` token
``"leave_one_out"``              each prompt token deleted (the model reruns on  the score drop
                                 the sequence without it), scored by the core
                                 forward runner
``"kernel_shap"``                :class:`~seethrough.KernelSHAP` over tokens or  the Shapley value
                                 words (absent ones replaced)
================================ ============================================== ==================

Targets (``attribute(prompt, target=...)``):

- ``None``: the token the model predicts next (greedy);
- a token id, or a text that is exactly one token (``" Paris"``): its next-token
  log-probability, :class:`~seethrough._core.targets.TokenAt`;
- a text of several tokens (or a list / 1-D tensor of ids): a continuation. It is not one
  token, so its teacher-forced **sequence log-probability** is attributed
  (:class:`~seethrough._core.targets.SequenceLogProb`, the sum of the log-probabilities of its
  tokens): the model runs on the prompt followed by the continuation (but its last token), the
  result covers those positions, and ``target_kind == "continuation"`` and ``note`` say so;
- ``foil=`` with a one-token target: contrastive attribution, ``log p(target) - log p(foil)``
  (:class:`~seethrough._core.targets.TokenDifference`): why ``" Paris"`` rather than
  ``" Lyon"``. Both must be one token (:class:`~seethrough.language.model.NotOneToken`);
- any :class:`~seethrough.Target` on the ``(1, T, V)`` logits, used as it is.

Every call runs under :func:`~seethrough._core.state.model_guard` (through the attribution
methods and the runners), so the model is left as it was.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching
from .._core.errors import ConfigError, InputError, SeethroughWarning
from .._core.forward import ForwardRunner
from .._core.result import Result
from .._core.state import model_guard
from .._core.targets import SequenceLogProb, Target, TokenAt, TokenDifference
from .model import NotOneToken, TextModel
from .views import register_token_views

__all__ = [
    "TokenAttribution",
    "TokenAttributor",
    "attribute_tokens",
    "TOKEN_METHODS",
    "word_groups",
    "ConvergenceWarning",
]

#: The methods :class:`TokenAttributor` runs, and how each reduces the hidden dimension.
TOKEN_METHODS: Mapping[str, str] = {
    "saliency": "l2",
    "input_x_gradient": "sum",
    "integrated_gradients": "sum",
    "occlusion": "none",
    "leave_one_out": "none",
    "kernel_shap": "none",
}

_LM_WORKING_SET = 512 << 20

#: Integrated-gradients steps by default (see docs/bench-language-attribution.md for the
#: convergence measured on SmolLM2).
DEFAULT_STEPS = 500


@dataclass(frozen=True, eq=False)
class TokenAttribution(Result):
    """The attribution of one target to each token of a prompt (frozen; saves with the tokens).

    Attributes
    ----------
    tokens, ids:
        The attributed sequence ``(T,)``: the prompt, followed by the continuation but its last
        token when the target is a continuation (``n_prompt`` tokens are the prompt's).
    scores:
        One value per token ``(T,)`` (the hidden dimension reduced by ``aggregate``).
    raw:
        The attribution at the embedding ``(T, D)`` for the gradient methods, else None.
    method, settings:
        The method's name and settings.
    target:
        What was explained, e.g. ``"TokenAt([-1], [7042])"``.
    target_kind:
        ``"next_token"``, ``"continuation"`` (a sequence log-probability), ``"contrast"`` (target
        minus foil) or ``"custom"``.
    target_ids, target_tokens, foil_id, foil_token:
        The target token(s) and the foil, if any.
    target_score:
        The explained score on the clean input (a log-probability, or a difference of two).
    baseline_score, delta:
        Integrated gradients: the score on the baseline and the completeness error
        ``sum(raw) - (target_score - baseline_score)``; None for the other methods.
    note:
        Anything the reader must know, e.g. that a multi-token target was attributed as a
        sequence log-probability.
    extras:
        Method-specific values: ``"groups"`` (the feature of each token) and
        ``"group_scores"`` for KernelSHAP over words, ``"stderr"`` for KernelSHAP.
    """

    tokens: tuple[str, ...]
    ids: Tensor
    scores: Tensor
    method: str
    target: str
    target_kind: str
    target_ids: tuple[int, ...]
    target_tokens: tuple[str, ...]
    n_prompt: int
    target_score: float
    raw: Tensor | None = None
    aggregate: str = "none"
    foil_id: int | None = None
    foil_token: str | None = None
    baseline_score: float | None = None
    delta: float | None = None
    note: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    extras: Mapping[str, Any] = field(default_factory=dict)
    n_evaluations: int = 0
    seconds: float = 0.0

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` highest-scoring positions as ``(position, token, score)``."""
        s = torch.nan_to_num(self.scores.double(), nan=float("-inf"))
        order = torch.argsort(s, descending=True)[:k].tolist()
        return [(i, self.tokens[i], float(self.scores[i])) for i in order]

    def __repr__(self) -> str:
        best = self.top(1)
        b = f", top={best[0][1]!r}" if best else ""
        d = "" if self.delta is None else f", delta={self.delta:.3g}"
        return f"TokenAttribution(method={self.method!r}, target={''.join(self.target_tokens)!r}, tokens={len(self.tokens)}{b}{d})"


class ConvergenceWarning(SeethroughWarning):
    """Integrated gradients' completeness error is large next to the score gap it explains."""


def warn_if_not_converged(delta: float, gap: float, steps: int, *, where: str = "") -> None:
    """Warn when ``|delta|`` exceeds 5 % of ``|gap|`` (and 0.01): the attributions do not add up
    to the change of the score they explain."""
    if abs(delta) > max(0.01, 0.05 * abs(gap)):
        warnings.warn(
            f"integrated gradients did not converge{where}: the attributions add up to {gap + delta:.4g} for a "
            f"score gap of {gap:.4g} (delta {delta:+.3g}) with steps={steps}. Raise steps=, or read the attribution "
            f"as approximate; on SmolLM2 the path from the unknown-token baseline is rough and needs thousands of "
            f"steps (docs/bench-language-attribution.md)",
            ConvergenceWarning,
            stacklevel=3,
        )


# -- model wrappers: ids -> logits, embeddings -> logits -------------------------------------
class _Logits(nn.Module):
    """``ids (B, T) -> logits (B, K, V)`` of a causal LM, without a key/value cache: the logits
    of the last ``keep`` positions only (``keep=None``: all ``T``), through transformers'
    ``logits_to_keep`` where the model takes it, so that the unembedding (for SmolLM2 a fifth
    of the compute at 32 tokens) runs only where a target reads it. Targets index positions
    from the end (``TokenAt(-1, ...)``), which is the same in the kept window."""

    def __init__(self, tm: TextModel, keep: int | None = None) -> None:
        super().__init__()
        self.lm = tm.model
        self._tm = tm
        self.keep = keep if keep is not None and _takes_logits_to_keep(tm.model) else None
        self.training = False  # this wrapper only (the model's own mode is model_guard's)

    def forward(self, ids: Tensor) -> Tensor:
        if self.keep is None:
            return self._tm.logits(ids)
        out = self.lm(input_ids=ids, use_cache=False, logits_to_keep=self.keep)
        return out.logits if hasattr(out, "logits") else out[0]


def _takes_logits_to_keep(model: nn.Module) -> bool:
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        return False


def _kept(target: Target) -> int | None:
    """How many last positions' logits ``target`` reads (None: it may read any)."""
    if isinstance(target, (TokenAt, TokenDifference)):
        pos = target.position.reshape(-1)
        if pos.numel() and bool((pos < 0).all()):
            return int(-pos.min())
    if isinstance(target, SequenceLogProb) and target.start is not None and target.start < 0:
        return int(target.tokens.shape[-1])
    return None


class _FromEmbeddings(nn.Module):
    """``embeddings (B, T, D) -> logits (B, T, V)``: the model run from its input embeddings
    (``inputs_embeds``), so that perturbation methods can replace tokens by another token's
    embedding on float inputs."""

    def __init__(self, tm: TextModel, keep: int | None = None) -> None:
        super().__init__()
        self.lm = tm.model
        self._tm = tm
        self.keep = keep if keep is not None and _takes_logits_to_keep(tm.model) else None
        self.training = False  # this wrapper only (the model's own mode is model_guard's)

    def forward(self, emb: Tensor) -> Tensor:
        kw = {} if self.keep is None else {"logits_to_keep": self.keep}
        out = self.lm(inputs_embeds=emb, use_cache=False, **kw)
        return out.logits if hasattr(out, "logits") else out[0]


def _causal(tm: TextModel, what: str) -> None:
    if not isinstance(tm, TextModel):
        raise TypeError(f"{what} explains a seethrough.language.TextModel, not {type(tm).__name__}")
    if tm.kind != "causal":
        raise ConfigError(
            f"{what} explains next-token predictions of a causal LM; {tm.name} is an encoder (explain a sentence "
            f"similarity instead: seethrough.language.similarity)"
        )


def _one_prompt(tm: TextModel, prompt: str | Tensor) -> Tensor:
    ids = tm.ids(prompt)
    if ids.shape[0] != 1:
        raise InputError(f"token attribution explains one prompt (1, T) at a time, got a batch of {ids.shape[0]}")
    return ids


# -- targets ---------------------------------------------------------------------------------
@dataclass
class _Resolved:
    feed: Tensor  # (1, T') the sequence the model runs on
    target: Target
    kind: str
    target_ids: tuple[int, ...]
    foil: int | None = None
    note: str = ""


def _predicted(tm: TextModel, ids: Tensor) -> int:
    with model_guard(tm.model, method="token attribution"), torch.no_grad():
        return int(tm.logits(ids)[0, -1].argmax())


def _continuation(tm: TextModel, target: Any, device: torch.device) -> Tensor | None:
    """The ids ``(L,)`` of a target that is a sequence (L >= 2), or None for one token."""
    if isinstance(target, str):
        try:
            tm.token_id(target)
            return None
        except NotOneToken:
            return tm.continuation_ids(target).to(device)
    if isinstance(target, Tensor) or (isinstance(target, (list, tuple)) and not isinstance(target, str)):
        t = torch.as_tensor(target).reshape(-1)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise InputError(f"target token ids must be integers, got dtype {t.dtype}")
        if t.numel() == 0:
            raise InputError("the target has no tokens")
        if t.numel() == 1:
            return None
        tm.check_ids(t.reshape(1, -1))
        return t.long().to(device)
    return None


def _single(tm: TextModel, target: Any, what: str) -> int:
    if isinstance(target, Tensor) and target.numel() == 1:
        target = int(target.reshape(-1)[0])
    if isinstance(target, (list, tuple)) and len(target) == 1:
        target = int(target[0])
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        if isinstance(target, (Tensor, list, tuple)):
            raise NotOneToken(
                f"the {what} must be one token; got {len(target)} ids",
                list(torch.as_tensor(target).reshape(-1).tolist()),
            )
        raise InputError(f"the {what} must be a token id or a one-token text, got {type(target).__name__}")
    return tm.token_id(target)


def resolve_token_target(tm: TextModel, ids: Tensor, target: Any = None, foil: Any = None) -> _Resolved:
    """What a token attribution explains (see the module docstring), and the sequence to run."""
    if isinstance(target, Target):
        if foil is not None:
            raise ConfigError("foil= contrasts two tokens; with a Target object, build the contrast into the target")
        return _Resolved(ids, target, "custom", ())
    if foil is not None:
        a = _predicted(tm, ids) if target is None else _single(tm, target, "contrastive target")
        b = _single(tm, foil, "foil")
        if a == b:
            raise ConfigError(f"the target and the foil are the same token ({a}): a contrast needs two tokens")
        return _Resolved(ids, TokenDifference(-1, a, b), "contrast", (a,), foil=b)
    cont = _continuation(tm, target, ids.device)
    if cont is not None:
        L = int(cont.numel())
        feed = torch.cat([ids, cont[:-1].reshape(1, -1)], dim=1)
        tm.check_ids(feed)
        note = (
            f"the target is {L} tokens, not one: its sequence log-probability (the sum of the log-probabilities of "
            f"its {L} tokens, teacher-forced) is attributed, over the prompt and the continuation's first {L - 1} "
            f"token(s)"
        )
        return _Resolved(
            feed, SequenceLogProb(cont.cpu(), start=-(L - 1)), "continuation", tuple(cont.tolist()), note=note
        )
    tok = _predicted(tm, ids) if target is None else _single(tm, target, "target")
    return _Resolved(ids, TokenAt(-1, tok), "next_token", (tok,))


# -- replacement tokens ------------------------------------------------------------------------
def _replacement_id(tm: TextModel, replacement: int | str | None) -> int:
    """The token that stands for an absent one: given, or the tokenizer's unk (Inseq's
    baseline), pad, or 0 (Captum's default baseline ids)."""
    if replacement is None or replacement == "unk":
        tok = tm.tokenizer
        for name in ("unk_token_id", "pad_token_id"):
            v = getattr(tok, name, None) if tok is not None else None
            if isinstance(v, int):
                return v
        return 0
    if replacement == "pad":
        v = getattr(tm.tokenizer, "pad_token_id", None)
        if not isinstance(v, int):
            raise ConfigError("the tokenizer has no pad token; give replacement= a token id")
        return v
    if isinstance(replacement, bool) or not isinstance(replacement, (int, str)):
        raise ConfigError(f"replacement must be a token id, a one-token text, 'unk' or 'pad', got {replacement!r}")
    return tm.token_id(replacement)


def word_groups(tm: TextModel, ids: Tensor) -> Tensor:
    """The word index of each token of ``ids`` ``(T,)``: a new word starts where the decoded
    text has whitespace before the token's own text (a leading space, as byte-level BPE marks
    it, or the space a word-level decoder puts between words), at a special token and at the
    token after one."""
    flat = ids.reshape(-1).tolist()
    tok = tm.tokenizer
    specials = set(getattr(tok, "all_special_ids", []) or []) if tok is not None else set()
    groups: list[int] = []
    g, prev, prev_special = -1, "", True
    for i, t in enumerate(flat):
        text = (
            tok.decode(flat[: i + 1], skip_special_tokens=False)
            if tok is not None
            else " ".join(map(str, flat[: i + 1]))
        )
        new = text[len(prev) :] if text.startswith(prev) else text
        if i == 0 or t in specials or prev_special or new[:1].isspace() or prev[-1:].isspace():
            g += 1
        groups.append(g)
        prev, prev_special = text, t in specials
    return torch.tensor(groups, dtype=torch.long)


# -- the method ----------------------------------------------------------------------------------
class TokenAttributor:
    """Token attribution for a causal LM (see the module docstring).

    ``TokenAttributor(tm, method="integrated_gradients", ...)`` only stores its settings;
    :meth:`attribute` does the work.

    Parameters
    ----------
    method:
        One of :data:`TOKEN_METHODS`.
    steps, rule:
        Integrated gradients' path points and quadrature rule (500 Gauss-Legendre points by
        default). On SmolLM2 the straight path from the unknown-token baseline is rough (the
        gradient along it has spikes of ~1e4 in narrow intervals), so the completeness error
        falls slowly and not monotonically: on the bench's 32-token prompt (a gap of 8.2 nats)
        delta is -18.1, -12.6, -18.6 and +1.8 at 20, 50, 200 and 500 steps; a
        :class:`ConvergenceWarning` says when ``|delta|`` exceeds 5 % of the gap
        (docs/bench-language-attribution.md).
    baseline:
        Integrated gradients' baseline: ``"unk"`` (default: the unknown token, else pad, else id
        0, at every position, as Inseq and Captum), ``"pad"``, ``"zeros"`` (the zero embedding),
        a token id, or a tensor of ids ``(T,)``.
    replacement:
        The token that replaces an occluded or absent one (occlusion, KernelSHAP): ``"unk"``
        (default), ``"pad"`` or a token id / one-token text.
    window:
        Occlusion window in tokens (stride 1); each token gets the mean drop of the windows
        covering it.
    n_samples, seed, features:
        KernelSHAP's coalitions per prompt (None: automatic), seed, and features
        (``"tokens"`` or ``"words"``, words from :func:`word_groups`).
    batching:
        Rows per model call (an int or :class:`~seethrough.Batching`); automatic by default.
    """

    def __init__(
        self,
        tm: TextModel,
        *,
        method: str = "integrated_gradients",
        steps: int = DEFAULT_STEPS,
        rule: str = "gausslegendre",
        baseline: str | int | Tensor = "unk",
        replacement: int | str | None = "unk",
        window: int = 1,
        n_samples: int | None = None,
        seed: int = 0,
        features: str = "tokens",
        batching: Any = None,
    ) -> None:
        self.tm = tm
        self.method = method
        self.steps = steps
        self.rule = rule
        self.baseline = baseline
        self.replacement = replacement
        self.window = window
        self.n_samples = n_samples
        self.seed = seed
        self.features = features
        self.batching = batching

    def settings(self) -> dict[str, Any]:
        m = self.method
        out: dict[str, Any] = {"method": m}
        if m == "integrated_gradients":
            b = self.baseline
            out.update(
                steps=self.steps, rule=self.rule, baseline=b if not isinstance(b, Tensor) else f"ids{tuple(b.shape)}"
            )
        if m in ("occlusion", "kernel_shap"):
            out["replacement"] = self.replacement
        if m == "occlusion":
            out["window"] = self.window
        if m == "kernel_shap":
            out.update(n_samples=self.n_samples, seed=self.seed, features=self.features)
        return out

    def _check(self) -> None:
        if self.method not in TOKEN_METHODS:
            raise ConfigError(f"unknown token attribution method {self.method!r}; use one of {sorted(TOKEN_METHODS)}")
        if self.features not in ("tokens", "words"):
            raise ConfigError(f"features must be 'tokens' or 'words', got {self.features!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"window must be an int >= 1 (tokens), got {self.window!r}")

    def __repr__(self) -> str:
        return f"TokenAttributor({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"

    # -- gradient methods on the embedding -----------------------------------------------------
    def gradient_method(self, keep: int | None = None, batching: Any = None) -> Any:
        """The attribution-family method that runs, on the ids -> logits wrapper (the logits of the
        last ``keep`` positions), at the embedding."""
        from ..attribution import InputXGradient, IntegratedGradients, Saliency

        net = _Logits(self.tm, keep)
        batching = self.batching if batching is None else batching
        if batching is None and self.method == "integrated_gradients":
            # an LM's rows are few and large: chunks of a 512 MiB budget (as autograd's saved
            # tensors measure it; a few tens of rows of SmolLM2 at 32 tokens) run near the
            # forward+backward floor at a fraction of Captum's peak, where the core's 96 MiB CPU working set (tuned
            # on CNNs) gives chunks of a row or two, ~1.5x the floor (docs/bench-language-attribution.md)
            batching = Batching(memory_budget=_LM_WORKING_SET, cpu_working_set=_LM_WORKING_SET)
        layer = f"lm.{self.tm.embedding}"
        if self.method == "saliency":
            return net, Saliency(net, abs=True, layer=layer, batching=batching)
        if self.method == "input_x_gradient":
            return net, InputXGradient(net, layer=layer, batching=batching)
        return net, IntegratedGradients(
            net, steps=self.steps, rule=self.rule, baseline="zeros", layer=layer, batching=batching
        )

    def _baseline_ids(self, feed: Tensor) -> Tensor | str:
        b = self.baseline
        if isinstance(b, str) and b in ("zeros", "zero"):
            return "zeros"
        if isinstance(b, Tensor):
            t = b.reshape(1, -1).long().to(feed.device)
            if t.shape[1] != feed.shape[1]:
                raise InputError(
                    f"baseline ids have {t.shape[1]} tokens but the attributed sequence has {feed.shape[1]}"
                )
            return t
        return torch.full_like(feed, _replacement_id(self.tm, b))

    def _gradient(self, r: _Resolved) -> tuple[Tensor, Tensor, dict[str, Any], int]:
        net, method = self.gradient_method(_kept(r.target))
        kw = {}
        if self.method == "integrated_gradients":
            kw["baseline"] = self._baseline_ids(r.feed)
        e = method.attribute(r.feed, target=r.target, **kw)
        raw = e.attributions[0]  # (T, D)
        scores = raw.norm(dim=-1) if TOKEN_METHODS[self.method] == "l2" else raw.sum(dim=-1)
        info: dict[str, Any] = {"target_score": float(e.scores[0])}
        if "delta" in e.extras:
            info["delta"] = float(e.extras["delta"][0])
            info["baseline_score"] = float(e.extras["baseline_scores"][0])
            warn_if_not_converged(info["delta"], info["target_score"] - info["baseline_score"], self.steps)
        return raw.detach(), scores.detach(), info, int(e.n_evaluations)

    # -- perturbation methods ------------------------------------------------------------------
    def _embeddings(self, ids: Tensor) -> Tensor:
        emb = self.tm.module(self.tm.embedding)
        with torch.no_grad():
            return emb(ids).detach()

    def _perturbation(self, r: _Resolved) -> tuple[Tensor, dict[str, Any], dict[str, Any], int]:
        from ..attribution import KernelSHAP, Occlusion

        net = _FromEmbeddings(self.tm, _kept(r.target))
        x = self._embeddings(r.feed)  # (1, T, D)
        base = self._embeddings(torch.full_like(r.feed, _replacement_id(self.tm, self.replacement)))
        T, D = x.shape[1], x.shape[2]
        extras: dict[str, Any] = {}
        if self.method == "occlusion":
            if self.window > T:
                raise InputError(f"the occlusion window ({self.window} tokens) is longer than the sequence ({T})")
            e = Occlusion(
                net, window=(self.window, D), strides=(1, D), baseline=base, batching=self.batching
            ).attribute(x, target=r.target)
            scores = e.attributions[0, :, 0]
        else:
            groups = word_groups(self.tm, r.feed) if self.features == "words" else torch.arange(T)
            mask = groups.to(x.device).reshape(1, T, 1).expand(1, T, D)
            ks = KernelSHAP(net, n_samples=self.n_samples, baseline=base, seed=self.seed, batching=self.batching)
            e = ks.attribute(x, target=r.target, feature_mask=mask)
            scores = e.attributions[0, :, 0]
            n_groups = int(groups.max()) + 1
            extras["groups"] = groups
            extras["group_scores"] = e.extras["shapley_values"][0, :n_groups].detach().cpu()
            extras["stderr"] = e.extras["stderr"][0, :n_groups].detach().cpu()
            extras["base_value"] = float(e.extras["base_value"][0])
        info = {"target_score": float(e.scores[0])}  # type: ignore[index]
        return scores.detach(), info, extras, int(e.n_evaluations)

    def _leave_one_out(self, r: _Resolved, n_prompt: int) -> tuple[Tensor, dict[str, Any], int]:
        feed = r.feed
        T = feed.shape[1]
        if n_prompt < 2:
            raise InputError("leave-one-out deletes one prompt token at a time: the prompt needs at least 2 tokens")
        net = _Logits(self.tm, _kept(r.target))
        drop = torch.full((T,), float("nan"))
        keep = ~torch.eye(n_prompt, T, dtype=torch.bool, device=feed.device)  # row i: all but token i
        with model_guard(net, method="leave_one_out"):
            runner = ForwardRunner(net, r.target, batching=as_batching(self.batching), progress=False)
            clean = runner.score(feed, torch.zeros(1, dtype=torch.long, device=feed.device))
            got = torch.empty(n_prompt)

            def rows(sl: slice) -> tuple[Tensor, Tensor]:
                k = keep[sl]
                seq = feed.expand(k.shape[0], T)[k].reshape(k.shape[0], T - 1)
                return seq, torch.zeros(k.shape[0], dtype=torch.long, device=feed.device)

            def consume(sl: slice, s: Tensor) -> None:
                got[sl] = s.detach().float().cpu()

            runner.run(n_prompt, rows, consume)
        drop[:n_prompt] = float(clean[0]) - got
        return drop, {"target_score": float(clean[0])}, runner.n_evaluations

    # -- public ----------------------------------------------------------------------------------
    def attribute(self, prompt: str | Tensor, target: Any = None, *, foil: Any = None) -> TokenAttribution:
        """Attribute ``target`` (see the module docstring) to each token of ``prompt`` (a text
        or ids ``(1, T)``); ``foil``: a one-token alternative for a contrastive attribution."""
        self._check()
        tm = self.tm
        _causal(tm, "token attribution")
        start = time.perf_counter()
        ids = _one_prompt(tm, prompt)
        r = resolve_token_target(tm, ids, target, foil)
        n_prompt = int(ids.shape[1])
        raw = None
        extras: dict[str, Any] = {}
        if self.method in ("saliency", "input_x_gradient", "integrated_gradients"):
            raw, scores, info, n_eval = self._gradient(r)
        elif self.method == "leave_one_out":
            scores, info, n_eval = self._leave_one_out(r, n_prompt)
        else:
            scores, info, extras, n_eval = self._perturbation(r)
        feed = r.feed[0].detach().cpu()
        return TokenAttribution(
            tokens=tuple(tm.tokens(feed)),
            ids=feed,
            scores=scores.float().cpu(),
            raw=None if raw is None else raw.float().cpu(),
            method=self.method,
            aggregate=TOKEN_METHODS[self.method],
            target=r.target.describe(),
            target_kind=r.kind,
            target_ids=r.target_ids,
            target_tokens=tuple(tm.tokens(list(r.target_ids))) if r.target_ids else (),
            foil_id=r.foil,
            foil_token=None if r.foil is None else tm.tokens([r.foil])[0],
            n_prompt=n_prompt,
            target_score=float(info["target_score"]),
            baseline_score=info.get("baseline_score"),
            delta=info.get("delta"),
            note=r.note,
            settings=self.settings(),
            extras=extras,
            n_evaluations=n_eval,
            seconds=time.perf_counter() - start,
        )


def attribute_tokens(
    tm: TextModel,
    prompt: str | Tensor,
    target: Any = None,
    *,
    method: str = "integrated_gradients",
    foil: Any = None,
    **settings: Any,
) -> TokenAttribution:
    """``TokenAttributor(tm, method=method, **settings).attribute(prompt, target, foil=foil)``."""
    return TokenAttributor(tm, method=method, **settings).attribute(prompt, target, foil=foil)


# -- views -------------------------------------------------------------------------------------
def _title(r: TokenAttribution) -> str:
    what = "".join(r.target_tokens)
    if r.target_kind == "contrast":
        what = f"{what!r} rather than {r.foil_token!r}"
    elif r.target_kind == "continuation":
        what = f"the continuation {what!r} (sequence log-probability)"
    else:
        what = repr(what)
    d = "" if r.delta is None else f", delta {r.delta:+.3g}"
    return f"{r.method} for {what}{d}"


register_token_views(TokenAttribution, _title)
