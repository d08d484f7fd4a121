"""Activation patching / causal tracing (Meng et al., 2022, ROME).

Three runs of a causal LM on one prompt:

1. the **clean** run, whose states are recorded at every layer and position;
2. a **corrupted** run: Gaussian noise added to the token embeddings at ``corrupt``
   positions (``noise`` times the standard deviation of the embedding matrix, 3 as in ROME;
   seeded), or a **counterfactual** prompt of the same length run instead;
3. for every ``(layer, position)`` a corrupted run in which that one state is **restored**
   from the clean run; the target's probability then says how much of the clean behaviour
   that state carries.

States (``kinds``): ``"resid"`` the residual stream (each block's output), ``"attn"`` the
attention module's output (before the residual add in a pre-norm block), ``"mlp"`` the MLP's
output. ``window`` > 1 restores that many consecutive layers around ``layer`` (ROME uses 10
for attention and MLP states). ``samples`` > 1 averages the probabilities over that many noise
draws.

All ``(kind, layer, position)`` restorations are rows of batched forward passes: row ``b``
restores its own state through forward hooks that write the clean values into that row only
(hooks exist only inside the ``with`` blocks, removed in ``finally``). Each pass stops at the
last block and reads the head at the last position only. Rows go layer by layer, and in a
chunk the blocks before the first layer it restores are not run again: they would compute
the corrupted run's outputs, which are kept from that run and handed on (about half the block
evaluations of recomputing every layer). The chunk size comes from :class:`Batching`
(forward chunks sized from one row's largest activation), rounded to whole layers: on a CPU
about 32 rows (one layer of a 32-token prompt), on an accelerator up to an eighth of the layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching
from .._core.capture import capture
from .._core.errors import ConfigError, InputError
from .._core.hooks import StopForward
from .._core.result import Result, register_view
from .._core.seeds import check_seed, generator
from .._core.state import model_guard
from .lens import _causal, one_prompt, readout, resolve_target
from .model import TextModel

__all__ = ["CausalTrace", "causal_trace", "KINDS"]

KINDS = ("resid", "attn", "mlp")


@dataclass(frozen=True, eq=False)
class CausalTrace(Result):
    """Restored target probabilities per state kind, layer and position.

    ``restored[kind]`` ``(L, T)``: the target's probability with that state restored in the
    corrupted run. ``clean_prob`` / ``corrupted_prob``: without corruption / with it and
    nothing restored. ``corrupted``: the corrupted positions (noise), or the counterfactual
    prompt in ``counterfactual_ids`` / ``counterfactual_tokens``.
    """

    tokens: tuple[str, ...]
    ids: Tensor
    target: int
    target_token: str
    clean_prob: float
    corrupted_prob: float
    restored: dict[str, Tensor]
    kinds: tuple[str, ...]
    corrupted: tuple[int, ...]
    noise: float | None
    samples: int
    seed: int
    window: int
    counterfactual_ids: Tensor | None
    counterfactual_tokens: tuple[str, ...]
    batch_size: int

    def effect(self, kind: str = "resid") -> Tensor:
        """The indirect effect ``restored - corrupted_prob`` ``(L, T)`` of one kind."""
        return self.restored[kind] - self.corrupted_prob

    def __repr__(self) -> str:
        return (
            f"CausalTrace(target={self.target_token!r}, clean p={self.clean_prob:.3g}, corrupted p="
            f"{self.corrupted_prob:.3g}, kinds={self.kinds}, layers={next(iter(self.restored.values())).shape[0]})"
        )


def _module_names(tm: TextModel, kind: str) -> list[str]:
    names = {"resid": tm.blocks, "attn": tm.attentions, "mlp": tm.mlps}[kind]
    if len(names) != tm.n_layers:
        raise ConfigError(f"{tm.name} has no {kind} module in every block (found {len(names)} of {tm.n_layers})")
    return names


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _replace_first(out: Any, new: Tensor) -> Any:
    if isinstance(out, tuple):
        return (new, *out[1:])
    if isinstance(out, list):
        return [new, *out[1:]]
    return new


class _Plan:
    """The rows of the current chunk: for each (kind, layer), which rows restore which position."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}
        self.noise_rows: Tensor | None = None


@contextmanager
def _patch_hooks(
    tm: TextModel, clean: dict[str, list[Tensor]], plan: _Plan, noise: Tensor | None, positions: Tensor
) -> Iterator[None]:
    """Hooks that add the noise (per row, from ``plan.noise_rows``) to the embeddings and
    write clean states into the rows ``plan.at`` names; removed on exit."""
    with ExitStack() as stack:
        if noise is not None:

            def add_noise(_m: nn.Module, _i: Any, out: Any) -> Any:
                x = _first(out).clone()
                rows = plan.noise_rows
                n = noise if rows is None else noise[rows]  # (B, P, D)
                x[:, positions] = x[:, positions] + n.to(x.dtype)
                return _replace_first(out, x)

            h = tm.module(tm.embedding).register_forward_hook(add_noise)
            stack.callback(h.remove)
        for kind in clean:
            for layer, name in enumerate(_module_names(tm, kind)):

                def restore(_m: nn.Module, _i: Any, out: Any, key: tuple[str, int] = (kind, layer)) -> Any:
                    hit = plan.at.get(key)
                    if hit is None:
                        return None
                    rows, pos = hit
                    x = _first(out).clone()
                    x[rows, pos] = clean[key[0]][key[1]][pos].to(x.dtype)
                    return _replace_first(out, x)

                h = tm.module(name).register_forward_hook(restore)
                stack.callback(h.remove)
        yield


@contextmanager
def _skip_blocks(tm: TextModel, cached: Sequence[Tensor | None], rows: Tensor) -> Iterator[None]:
    """Blocks ``0 .. len(cached) - 1`` return their cached corrupted-run outputs (``cached[l]
    [rows]``) instead of running: no row of the chunk restores anything in them, so they would
    compute exactly these. Only blocks whose output is a plain tensor are skipped; the
    instance attribute ``forward`` is removed on exit."""
    done: list[nn.Module] = []
    try:
        for name, c in zip(tm.blocks, cached):
            if c is None:
                break
            m = tm.module(name)
            if "forward" in m.__dict__:
                break

            def fwd(*_a: Any, _c: Tensor = c, **_k: Any) -> Tensor:
                return _c[rows]

            m.__dict__["forward"] = fwd
            done.append(m)
        yield
    finally:
        for m in done:
            m.__dict__.pop("forward", None)


def _probs(tm: TextModel, seq: Tensor, tid: int) -> Tensor:
    """The target's probability at the last position for each row of ``seq`` ``(B, T)``."""
    name = tm.blocks[-1]
    store: dict[str, Any] = {}
    with capture({name: tm.module(name)}, store, stop=True, clone=False):
        try:
            tm.forward(seq)
        except StopForward:
            pass
    lg = readout(tm)(store[name][:, -1]).float()
    return torch.softmax(lg, dim=-1)[:, tid]


def causal_trace(
    tm: TextModel,
    prompt: str | Tensor,
    target: int | str | None = None,
    *,
    corrupt: Sequence[int] | None = None,
    counterfactual: str | Tensor | None = None,
    noise: float = 3.0,
    samples: int = 1,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    window: int = 1,
    batching: Batching | int | None = None,
) -> CausalTrace:
    """Causal tracing of ``prompt``'s prediction of ``target`` (the clean run's top token by
    default). Corruption: noise on the embeddings at ``corrupt`` positions (default: every
    position but the last, whose state the prediction is read from), or the ``counterfactual``
    prompt (same number of tokens) instead. See the module docstring."""
    _causal(tm, "causal tracing")
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ConfigError(f"kinds must be among {KINDS}, got {list(kinds)!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"window must be an int >= 1, got {window!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples must be an int >= 1, got {samples!r}")
    seed = check_seed(seed)
    b = as_batching(batching)
    ids = one_prompt(tm, prompt)
    T, L, dev = ids.shape[1], tm.n_layers, ids.device
    cf: Tensor | None = None
    if counterfactual is not None:
        if corrupt is not None:
            raise ConfigError("give either corrupt= (noise on those positions) or counterfactual=, not both")
        cf = one_prompt(tm, counterfactual)
        if cf.shape[1] != T:
            raise InputError(
                f"the counterfactual prompt has {cf.shape[1]} tokens and the prompt {T}: patching restores states "
                f"position by position, so both must have the same number of tokens"
            )
        samples = 1
        positions = torch.zeros(0, dtype=torch.long)
    else:
        pos_list = list(range(T - 1)) if corrupt is None else [int(p) for p in corrupt]
        if not pos_list:
            raise ConfigError("no position to corrupt (a one-token prompt): give corrupt=[...] or a counterfactual")
        bad_pos = [p for p in pos_list if not -T <= p < T]
        if bad_pos:
            raise InputError(f"corrupt position {bad_pos[0]} is out of range for a prompt of {T} tokens")
        positions = torch.tensor(sorted({p % T for p in pos_list}), dtype=torch.long)
    positions = positions.to(dev)
    names = {k: _module_names(tm, k) for k in kinds}
    with model_guard(tm.model, method="causal tracing"), torch.no_grad():
        store: dict[str, Any] = {}
        mods = {n: tm.module(n) for k in kinds for n in names[k]}
        with capture(mods, store):
            logits = tm.logits(ids)[0, -1].float()
        clean = {k: [_first(store[n])[0] for n in names[k]] for k in kinds}
        tid = resolve_target(tm, target, logits)
        clean_prob = float(torch.softmax(logits, -1)[tid])
        emb_noise: Tensor | None = None
        if cf is None:
            emb: Any = tm.module(tm.embedding)
            w: Tensor = emb.weight
            std = float(w.float().std())
            g = generator(seed, device=dev)
            emb_noise = (torch.randn(samples, len(positions), w.shape[1], generator=g, device=dev) * (noise * std)).to(
                w.dtype
            )
        base = cf if cf is not None else ids
        n_kind_pos = len(kinds) * T
        n_rows = samples * len(kinds) * L * T
        if b.batch_size is not None:
            size = b.batch_size
        else:
            # one row's largest activation: an MLP's hidden layer (about 4 states wide), the
            # attention scores (float32) or the head's logits at the last position
            state = max(_first(store[n]).numel() * _first(store[n]).element_size() for n in mods) // max(T, 1)
            peak = max(4 * state * T, 2 * max(tm.n_heads, 1) * T * T * 4, tm.vocab_size * 4)
            size = b.forward_rows_per_chunk(peak, dev)
            # whole layers per chunk: the blocks before a chunk's first restored layer are not
            # run, so the fewer layers a chunk spans the more are skipped. On a CPU a chunk of
            # about 32 rows already runs at full speed (one layer of a 32-token prompt); on an
            # accelerator larger chunks pay, up to an eighth of the layers
            per_layer = samples * len(kinds) * T
            most = -(-L // 8) if dev.type != "cpu" else -(-32 // per_layer)
            if size >= per_layer:  # else memory allows less than a layer's rows: keep that size
                size = per_layer * max(1, min(size // per_layer, most))
        plan = _Plan()
        half = window // 2
        out = torch.empty(n_rows)
        with _patch_hooks(tm, clean, plan, emb_noise, positions):
            plan.noise_rows = torch.arange(samples, device=dev) if emb_noise is not None else None
            plan.at = {}
            n_base = samples if emb_noise is not None else 1
            block_mods = {n: tm.module(n) for n in tm.blocks}
            cstore: dict[str, Any] = {}
            with capture(block_mods, cstore, any_output=True):
                corrupted = _probs(tm, base.expand(n_base, -1), tid)
            corrupted_prob = float(corrupted.mean())
            # the corrupted run's block outputs (n_base, T, D): a block before every layer a
            # chunk restores computes exactly these, so it is not run again (see _skip_blocks);
            # a block that returns a tuple is not skipped (nor any after it)
            cached = [cstore[n] if isinstance(cstore.get(n), Tensor) else None for n in tm.blocks]
            for sl in Batching.chunks(n_rows, size):
                # rows in layer-major order (layer, sample, kind, position): a chunk spans few layers
                r = torch.arange(sl.start, sl.stop)
                l_idx, rem = r // (samples * n_kind_pos), r % (samples * n_kind_pos)
                s_idx, rem = rem // n_kind_pos, rem % n_kind_pos
                k_idx, p_idx = rem // T, rem % T
                at: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}
                for ki, kind in enumerate(kinds):
                    for layer in range(L):
                        lo, hi = l_idx - half, l_idx - half + window  # rows whose window covers ``layer``
                        m = (k_idx == ki) & (lo <= layer) & (layer < hi)
                        if bool(m.any()):
                            rows = torch.nonzero(m).reshape(-1)
                            at[(kind, layer)] = (rows.to(dev), p_idx[rows].to(dev))
                plan.at = at
                plan.noise_rows = s_idx.to(dev) if emb_noise is not None else None
                first = min(layer for _, layer in at) if at else L
                rows_s = s_idx.to(dev) if n_base > 1 else torch.zeros(len(r), dtype=torch.long, device=dev)
                with _skip_blocks(tm, cached[:first], rows_s):
                    p = _probs(tm, base.expand(len(r), -1), tid).cpu()
                out[(s_idx * len(kinds) + k_idx) * (L * T) + l_idx * T + p_idx] = p
    grid = out.reshape(samples, len(kinds), L, T).mean(0)
    return CausalTrace(
        tokens=tuple(tm.tokens(ids)),
        ids=ids[0].cpu(),
        target=tid,
        target_token=tm.tokens([tid])[0],
        clean_prob=clean_prob,
        corrupted_prob=corrupted_prob,
        restored={k: grid[i] for i, k in enumerate(kinds)},
        kinds=kinds,
        corrupted=tuple(int(p) for p in positions.tolist()),
        noise=None if cf is not None else float(noise),
        samples=samples,
        seed=seed,
        window=window,
        counterfactual_ids=None if cf is None else cf[0].cpu(),
        counterfactual_tokens=() if cf is None else tuple(tm.tokens(cf)),
        batch_size=int(size),
    )


# -- views ---------------------------------------------------------------------------------
_LABEL = {"resid": "residual stream", "attn": "attention output", "mlp": "MLP output"}


def _labels(r: CausalTrace) -> list[str]:
    marks = set(r.corrupted)
    return [f"{t}*" if i in marks else t for i, t in enumerate(r.tokens)]


def _plot(r: CausalTrace, *, ax: Any = None, kind: str | None = None, **kw: Any) -> Any:
    from .views import plot_matrix

    kinds = [kind] if kind is not None else list(r.kinds)
    if ax is None and len(kinds) > 1:
        import matplotlib.pyplot as plt

        L, T = r.restored[kinds[0]].shape
        fig, axes = plt.subplots(1, len(kinds), figsize=(len(kinds) * (2.0 + 0.42 * T), 1.6 + 0.34 * L))
        for a, k in zip(axes, kinds):
            _plot(r, ax=a, kind=k)
        return fig
    k = kinds[0]
    L = r.restored[k].shape[0]
    return plot_matrix(
        [str(i) for i in range(L)],
        _labels(r),
        r.effect(k).numpy(),
        ax=ax,
        title=kw.pop(
            "title",
            f"{_LABEL[k]} restored: p({r.target_token!r}) - corrupted (clean {r.clean_prob:.3g}, corrupted "
            f"{r.corrupted_prob:.3g})",
        ),
        xlabel="position (* corrupted)",
        ylabel="layer",
        **kw,
    )


def _html(r: CausalTrace, **kw: Any) -> str:
    import html

    from .views import matrix_html

    parts = [
        f"<p>causal tracing of p({html.escape(repr(r.target_token))}): clean {r.clean_prob:.4g}, corrupted "
        f"{r.corrupted_prob:.4g}; cells: restored probability minus corrupted</p>"
    ]
    for k in r.kinds:
        L = r.restored[k].shape[0]
        parts.append(
            matrix_html([str(i) for i in range(L)], _labels(r), r.effect(k).numpy(), title=f"{_LABEL[k]} restored")
        )
    return "".join(parts)


register_view(CausalTrace, plot=_plot, html=_html)
