"""Per-step generation attribution: what each generated token rests on.

:func:`attribute_generation` generates ``n`` tokens greedily (:meth:`TextModel.generate`) and
explains every step: generated token ``j`` (at position ``P + j`` of the full sequence, with a
prompt of ``P`` tokens) is attributed over the prompt and the ``j`` tokens generated before it.
The result is a matrix ``(n, P + n - 1)``, one row per generated token, NaN above the
causal diagonal (a token cannot depend on a later one).

The steps are independent teacher-forced targets on one sequence, the prompt followed by the
generation but its last token: step ``j`` is ``log p(g_j)`` at position ``P + j - 1`` of that
sequence, :class:`~seethrough._core.targets.TokenAt` with one position and token per row. A
causal LM computes all of them in one forward pass, so every step is a row of one batch: the
attribution family's method runs once on ``n`` copies of the sequence with a per-row target
(``n`` rows in one batched forward and backward for saliency and input x gradient, ``n x
steps`` rows in chunks for integrated gradients), instead of one call per step on a growing
prefix as Inseq does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._core.batching import Batching
from .._core.errors import ConfigError
from .._core.result import Result, register_view
from .._core.state import model_guard
from .._core.targets import TokenAt
from .attribution import DEFAULT_STEPS, TOKEN_METHODS, TokenAttributor, _causal, _one_prompt, warn_if_not_converged
from .model import TextModel

__all__ = ["GenerationAttribution", "attribute_generation", "greedy", "GENERATION_METHODS"]

#: The gradient methods that attribute every step of a generation in one batched call.
GENERATION_METHODS = ("saliency", "input_x_gradient", "integrated_gradients")


@dataclass(frozen=True, eq=False)
class GenerationAttribution(Result):
    """Attribution of each generated token over the prompt and the earlier generated tokens.

    ``tokens``/``ids``: the prompt and the whole generation ``(P + n,)``; ``n_prompt``: ``P``.
    ``matrix`` ``(n, P + n - 1)``: row ``j`` is generated token ``j``'s attribution over the
    first ``P + j`` tokens of the sequence, NaN beyond (the causal diagonal). ``raw``: the
    attributions at the embedding ``(n, P + n - 1, D)`` (None unless asked). ``probabilities``
    ``(n,)``: each generated token's probability at its step; ``delta`` ``(n,)``: integrated
    gradients' completeness error per step (None for the other methods).
    """

    tokens: tuple[str, ...]
    ids: Tensor
    n_prompt: int
    matrix: Tensor
    method: str
    probabilities: Tensor
    raw: Tensor | None = None
    delta: Tensor | None = None
    aggregate: str = "sum"
    settings: Mapping[str, Any] = field(default_factory=dict)
    n_evaluations: int = 0
    seconds: float = 0.0

    @property
    def generated(self) -> tuple[str, ...]:
        """The generated tokens, in order."""
        return self.tokens[self.n_prompt :]

    @property
    def text(self) -> str:
        return "".join(self.generated)

    def __repr__(self) -> str:
        return (
            f"GenerationAttribution(method={self.method!r}, prompt={self.n_prompt} tokens, generated={self.text!r}, "
            f"matrix={tuple(self.matrix.shape)})"
        )


def attribute_generation(
    tm: TextModel,
    prompt: str | Tensor,
    n: int = 10,
    *,
    method: str = "saliency",
    steps: int = DEFAULT_STEPS,
    rule: str = "gausslegendre",
    baseline: str | int | Tensor = "unk",
    generated: Tensor | None = None,
    keep_raw: bool = False,
    batching: Any = None,
) -> GenerationAttribution:
    """Generate ``n`` tokens greedily after ``prompt`` and attribute each one (see the module
    docstring) with ``method`` (one of :data:`GENERATION_METHODS`; ``steps``, ``rule`` and
    ``baseline`` as for :class:`~seethrough.language.attribution.TokenAttributor`).

    ``generated``: ids ``(n,)`` of a continuation to explain instead of generating one
    (teacher-forced). ``keep_raw``: also keep the attributions at the embedding.
    """
    _causal(tm, "generation attribution")
    if method not in GENERATION_METHODS:
        raise ConfigError(
            f"per-step generation attribution runs a gradient method: one of {GENERATION_METHODS}, not {method!r}"
        )
    start = time.perf_counter()
    ids = _one_prompt(tm, prompt)
    P = int(ids.shape[1])
    if generated is None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n (tokens to generate) must be an int >= 1, got {n!r}")
        full = greedy(tm, ids, n)
    else:
        g = torch.as_tensor(generated).reshape(1, -1).long().to(ids.device)
        if g.shape[1] < 1:
            raise ConfigError("generated= has no tokens")
        full = tm.check_ids(torch.cat([ids, g], dim=1))
    n = int(full.shape[1]) - P
    seq = full[:, :-1]  # the sequence every step is scored on
    gen = full[0, P:]
    positions = torch.arange(P - 1, P - 1 + n)
    target = TokenAt(positions - seq.shape[1], gen.cpu())  # from the end: the logits of the last n positions
    attributor = TokenAttributor(tm, method=method, steps=steps, rule=rule, baseline=baseline, batching=batching)
    # the steps as the rows of one batch (automatic chunks for IG's n x steps rows, or beyond 32 steps)
    one_batch = batching is None and method != "integrated_gradients" and n <= 32
    _, m = attributor.gradient_method(keep=n, batching=Batching(batch_size=n) if one_batch else None)
    rows = seq.expand(n, -1).contiguous()
    kw: dict[str, Any] = {}
    if method == "integrated_gradients":
        base = attributor._baseline_ids(seq)
        kw["baseline"] = base if isinstance(base, str) else base.expand(n, -1).contiguous()
    e = m.attribute(rows, target=target, **kw)
    raw = e.attributions.detach()  # (n, T, D)
    per = raw.norm(dim=-1) if TOKEN_METHODS[method] == "l2" else raw.sum(dim=-1)
    T = seq.shape[1]
    causal = torch.arange(T).reshape(1, T) <= positions.reshape(n, 1)
    matrix = torch.where(causal, per.float().cpu(), torch.full((n, T), float("nan")))
    scores = e.scores.detach().float().cpu() if e.scores is not None else torch.full((n,), float("nan"))
    delta = e.extras["delta"].detach().float().cpu() if "delta" in e.extras else None
    if delta is not None and e.scores is not None:
        gaps = (e.scores - e.extras["baseline_scores"]).detach().float().cpu()
        worst = int((delta.abs() - 0.05 * gaps.abs()).argmax())
        warn_if_not_converged(float(delta[worst]), float(gaps[worst]), steps, where=f" at step {worst}")
    flat = full[0].detach().cpu()
    return GenerationAttribution(
        tokens=tuple(tm.tokens(flat)),
        ids=flat,
        n_prompt=P,
        matrix=matrix,
        method=method,
        probabilities=scores.exp(),
        raw=raw.float().cpu() if keep_raw else None,
        delta=delta,
        aggregate=TOKEN_METHODS[method],
        settings={**attributor.settings(), "n": n, "teacher_forced": generated is not None},
        n_evaluations=int(e.n_evaluations),
        seconds=time.perf_counter() - start,
    )


def greedy(tm: TextModel, ids: Tensor, n: int) -> Tensor:
    """``ids`` ``(1, T)`` followed by ``n`` greedily generated tokens ``(1, T + n)``: the tokens of
    :meth:`TextModel.generate`, with the model's key/value cache (one new position per step
    instead of the whole prefix) where the model keeps one; otherwise ``TextModel.generate``."""
    tm.generate(ids[:, :1], 0)  # the checks generate makes (an encoder, the context) on no work
    ctx = tm.context_length
    if ctx is not None and ids.shape[1] + n > ctx:
        return tm.generate(ids, n)  # raises PromptTooLong with its message
    x = ids
    with model_guard(tm.model, method="generation"), torch.no_grad():
        try:
            out = tm.model(input_ids=x, use_cache=True)
        except TypeError:  # pragma: no cover - a model without a cache
            return tm.generate(ids, n)
        cache = _cache_of(out)
        if cache is None:  # pragma: no cover - a model without a cache
            return tm.generate(ids, n)
        # the keyword for the cache: ``cache`` from transformers 5.x on, ``past_key_values`` before
        key = "cache" if "cache" in _forward_parameters(tm.model) else "past_key_values"
        for i in range(n):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            x = torch.cat([x, nxt], dim=1)
            if i + 1 < n:
                out = tm.model(input_ids=nxt, use_cache=True, **{key: _cache_of(out)})
    return x


def _cache_of(out: Any) -> Any:
    for name in ("cache", "past_key_values"):
        c = getattr(out, name, None)
        if c is not None:
            return c
    return None


def _forward_parameters(model: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return set()


# -- views -------------------------------------------------------------------------------------
def _title(r: GenerationAttribution) -> str:
    return f"{r.method} of each generated token (rows) over the prompt and earlier tokens (columns)"


def _plot(r: GenerationAttribution, *, ax: Any = None, **kw: Any) -> Any:
    from .views import plot_matrix

    cols = list(r.tokens[: r.n_prompt + r.matrix.shape[0] - 1])
    return plot_matrix(
        list(r.generated),
        cols,
        r.matrix.numpy(),
        ax=ax,
        title=kw.pop("title", _title(r)),
        xlabel=kw.pop("xlabel", "attributed token"),
        ylabel=kw.pop("ylabel", "generated token"),
        **kw,
    )


def _html(r: GenerationAttribution, **kw: Any) -> str:
    from .views import matrix_html

    cols = list(r.tokens[: r.n_prompt + r.matrix.shape[0] - 1])
    return matrix_html(list(r.generated), cols, r.matrix.numpy(), title=kw.pop("title", _title(r)), **kw)


register_view(GenerationAttribution, plot=_plot, html=_html)
