"""Incremental occlusion for convolutional networks.

An occluding window changes the activations of a convolutional layer only inside its
receptive-field cone: the positions whose input window meets the occluded block. So the
early, local part of the network (convolutions, pooling, batch norm, activations,
residual additions) need not be recomputed over the whole image for each window: each
layer is recomputed only on the region that the window can reach, from the clean
activations of the layer before with the already recomputed region pasted in (the
incremental inference of Nakandala et al., SIGMOD 2019). The rest of the network, from a
split point on, runs in full on the patched activation of the split layer.

The output is the same as :class:`~seethrough.attribution.perturbation.Occlusion`'s (same
windows, same baseline, same mean score drop), up to float rounding.

How the regions are computed
----------------------------
The model is traced with :func:`torch.fx.symbolic_trace`. For every local operation the
affected interval of output positions follows, per spatial dimension, from the affected
interval of its input (a window operation with kernel ``k``, stride ``s``, dilation
``d`` and leading padding ``p`` reads inputs ``o*s - p .. o*s - p + d*(k-1)`` at output
``o``; a pointwise or elementwise operation takes the union of its inputs' intervals).
All windows share one region size per layer (the largest interval, shifted inside the
map at the borders), so the regions of many windows are computed as one batch. A window
operation reads its region's input box from the clean activation padded with the
layer's own padding value (zeros, or ``-inf`` for max pooling), where the positions of
the input's recomputed region are replaced by the recomputed values, and is then run
without padding: the box holds exactly what the layer sees there in the full network,
including its zero padding at the image borders, so every recomputed value equals the
full recomputation's.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from .._core.batching import Batching
from .._core.errors import ConfigError
from .._core.forward import ForwardRunner
from .._core.layers import resolve_layer
from .._core.receptive import LocalOp, affected, classify, fixed_regions, run_node
from .._core.targets import Target
from ._base import Computed
from .perturbation import Occlusion, _baseline

__all__ = ["IncrementalOcclusion"]

# Cost model, in multiply-add equivalents per element (calibrated on a CPU with
# bench/bench_incremental.py): an elementwise pass over an activation, a gathered element
# of a box (two gathers and a select), and an element of the patched split activation.
_ELEMENT = 16.0
_GATHER = 48.0
_PASTE = 24.0


class _Tracer(fx.Tracer):
    """Default leaves plus the modules given (kept whole so their hooks fire)."""

    def __init__(self, leaves: tuple[nn.Module, ...]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return any(m is leaf for leaf in self._leaves) or super().is_leaf_module(m, qualname)


@dataclass
class _Analysis:
    """The clean pass over the local part of the graph, for one batch of inputs."""

    gm: fx.GraphModule
    input: fx.Node
    values: dict  # node -> clean value
    ops: dict  # node -> LocalOp (local, input-dependent nodes)
    order: list  # local nodes in topological order (without the input)
    cuts: list  # local nodes after which only their own output flows on
    stop: tuple | None  # (node, reason) of the first input-dependent node that is not local

    def n(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.values[node].shape[2:])

    def channels(self, node: fx.Node) -> int:
        return int(self.values[node].shape[1])


def _display(node: fx.Node, gm: fx.GraphModule) -> str:
    """A user-facing name that :meth:`IncrementalOcclusion` accepts as ``split``: the
    module path of a module called once, else of the innermost module whose output the
    node is (its last node), else the graph node's name."""
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    if node.op == "call_module" and sum(n.op == "call_module" and n.target == node.target for n in nodes) == 1:
        return str(node.target)
    last: dict = {}
    for n in nodes:
        for scope in _scopes(n):
            last[scope] = n
    for scope in reversed(_scopes(node)):
        if last.get(scope) is node and not any(n.op == "call_module" and n.target == scope for n in nodes):
            return scope
    return node.name


def _scopes(node: fx.Node) -> list[str]:
    stack = node.meta.get("nn_module_stack") or {}
    out = []
    for key, val in stack.items():
        path = val[0] if isinstance(val, tuple) and val and isinstance(val[0], str) else str(key).split("@")[0]
        out.append(path)
    return out


def _global_hooks() -> bool:
    from torch.nn.modules import module as _module

    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks)


def _alias_root(node: fx.Node, ops: dict) -> fx.Node:
    while node in ops and ops[node].alias:
        node = ops[node].deps[0]
    return node


def _inplace_conflict(op: LocalOp, ops: dict) -> str | None:
    """The model's in-place operation writes into its input; refuse when that tensor (or
    an alias of it) is used elsewhere, since the model's later uses see the write."""
    members = {_alias_root(op.deps[0], ops)}
    frontier = list(members)
    while frontier:
        m = frontier.pop()
        for u in m.users:
            if u in ops and ops[u].alias and u not in members:
                members.add(u)
                frontier.append(u)
    for m in members:
        for u in m.users:
            if u is not op.node and u not in members:
                return f"the in-place operation {op.label} writes into {op.deps[0].name!r}, which {u.name!r} also uses"
    return None


def _analyse(gm: fx.GraphModule, x: Tensor, stop_modules: tuple[nn.Module, ...]) -> _Analysis:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConfigError(
            f"IncrementalOcclusion needs a model whose forward takes one tensor; the traced "
            f"forward takes {len(placeholders)} arguments. Use Occlusion instead."
        )
    inp = placeholders[0]
    D, B = x.dim() - 2, x.shape[0]
    values: dict = {inp: x}
    deps = {inp}
    ops: dict = {}
    order: list = []
    cuts: list = []
    remaining = {inp: len(inp.users)}
    open_nodes = {inp} if inp.users else set()
    stop = None
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if not any(a in deps for a in node.all_input_nodes):
            values[node] = run_node(gm, node, values)
            continue
        op: LocalOp | str
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        if mod is not None and any(mod is m for m in stop_modules):
            op = "it is the target layer, which must run in full"
        elif mod is not None and (mod._forward_hooks or mod._forward_pre_hooks or _global_hooks()):
            op = f"module {node.target} has forward hooks, which may change what it computes"
        else:
            op = classify(node, gm, values, deps, D, B)
        if isinstance(op, LocalOp) and op.inplace:
            op = _inplace_conflict(op, ops) or op
        if isinstance(op, str):
            stop = (node, op)
            break
        # clean value, as the model computes it (in-place writes go to a copy)
        inputs = dict(values)
        if op.inplace:
            inputs[op.deps[0]] = values[op.deps[0]].clone()
        out = run_node(gm, node, inputs)
        bad = None
        if not isinstance(out, Tensor) or out.dim() != D + 2 or out.shape[0] != B:
            bad = "its output is not a (batch, channels, *spatial) tensor"
        elif op.kind == "window":
            assert op.window is not None  # every window operation has one
            if tuple(out.shape[2:]) != op.window.out_size(tuple(values[op.deps[0]].shape[2:])):
                bad = "its output size does not follow from its window"
        elif any(tuple(values[d].shape[2:]) != tuple(out.shape[2:]) for d in op.deps):
            bad = "it changes or broadcasts the spatial size"
        if bad is not None:
            stop = (node, bad)
            break
        values[node] = out
        deps.add(node)
        ops[node] = op
        order.append(node)
        for a in op.deps:
            remaining[a] -= 1
            if remaining[a] == 0:
                open_nodes.discard(a)
        remaining[node] = len(node.users)
        if node.users:
            open_nodes.add(node)
        if open_nodes == {node}:
            cuts.append(node)
    return _Analysis(gm, inp, values, ops, order, cuts, stop)


@dataclass
class _Geometry:
    """Per local node: the affected interval of each window (``(K, D)`` inclusive
    bounds), and the fixed-size region computed for it (start ``(K, D)``, size)."""

    ranges: dict
    starts: dict
    sizes: dict
    win_lo: Tensor  # exact occluded block per window, spatial dims (K, D), inclusive
    win_hi: Tensor
    chan_lo: Tensor  # channel range per window (K,), half-open
    chan_hi: Tensor


def _geometry(an: _Analysis, positions, window, strides, sample_shape) -> _Geometry:
    pos = torch.tensor(positions, dtype=torch.long).reshape(len(positions), len(sample_shape))
    s = torch.tensor(strides, dtype=torch.long)
    w = torch.tensor(window, dtype=torch.long)
    n = torch.tensor(sample_shape, dtype=torch.long)
    lo = pos * s
    hi = torch.minimum(lo + w, n) - 1
    ranges = {an.input: (lo[:, 1:], hi[:, 1:])}
    starts, sizes = {}, {}
    st, R = fixed_regions(lo[:, 1:], hi[:, 1:], tuple(sample_shape[1:]))
    starts[an.input], sizes[an.input] = st, R
    for node in an.order:
        ranges[node] = affected(an.ops[node], ranges, an.n(node))
        starts[node], sizes[node] = fixed_regions(*ranges[node], an.n(node))
    return _Geometry(ranges, starts, sizes, lo[:, 1:], hi[:, 1:], lo[:, 0], hi[:, 0] + 1)


def _ancestors(node: fx.Node, an: _Analysis) -> list:
    seen = set()
    stack = [node]
    while stack:
        v = stack.pop()
        if v in seen or v not in an.ops:
            continue
        seen.add(v)
        stack.extend(an.ops[v].deps)
    return [v for v in an.order if v in seen]


def _costs(an: _Analysis, geo: _Geometry) -> dict:
    """Estimated per-row cost of each split candidate (multiply-add equivalents)."""
    full, inc = {}, {}
    for v in an.order:
        op = an.ops[v]
        C, n, R = an.channels(v), an.n(v), geo.sizes[v]
        e_full, e_reg = C * math.prod(n), C * math.prod(R)
        full[v] = e_full * (op.macs + _ELEMENT)
        c = e_reg * (op.macs + _ELEMENT)
        if op.kind == "window":
            _, box = op.window.box(torch.zeros(1, len(R), dtype=torch.long), R)
            c += _GATHER * an.channels(op.deps[0]) * math.prod(box)
        else:
            for d in op.deps:
                if d is an.input or geo.sizes[d] != R or not torch.equal(geo.starts[d], geo.starts[v]):
                    c += _GATHER * an.channels(d) * math.prod(R)
        inc[v] = c
    total_full = sum(full.values())
    out = {}
    for v in an.cuts:
        anc = set(_ancestors(v, an))
        paste = _PASTE * an.channels(v) * math.prod(an.n(v))
        out[v] = sum(inc[u] for u in anc) + paste + total_full - sum(full[u] for u in anc)
    return out


class _Store:
    """Values of one node for gathering boxes by flat index: rows ``[0, n_clean)`` are the
    clean activation, padded, channels last, for every sample; the rows after it hold the
    recomputed region of the current chunk (or, for the input, the padded baseline)."""

    def __init__(self, clean: Tensor, pad_lo, pad_hi, value: float, extra: Tensor | None = None) -> None:
        if any(pad_lo) or any(pad_hi):
            pads = []
            for lo, hi in zip(reversed(pad_lo), reversed(pad_hi)):
                pads += [lo, hi]
            clean = torch.nn.functional.pad(clean, pads, value=value)
            if extra is not None:
                extra = torch.nn.functional.pad(extra, pads, value=value)
        self.shape = tuple(clean.shape[2:])  # padded spatial size
        self.C = clean.shape[1]
        self.per_sample = math.prod(self.shape)
        self.n_clean = clean.shape[0] * self.per_sample
        parts = [clean.movedim(1, -1).reshape(self.n_clean, self.C)]
        if extra is not None:
            parts.append(extra.movedim(1, -1).reshape(self.n_clean, self.C))
        self.buf = torch.cat(parts) if len(parts) > 1 else parts[0].contiguous()
        self.fixed = extra is not None
        self.token = None

    def put(self, new: Tensor, token) -> None:
        """Store a chunk's recomputed region ``(R, C, *size)`` after the clean rows."""
        if self.token is token:
            return
        n = new.numel() // self.C
        if self.buf.shape[0] < self.n_clean + n:
            buf = self.buf.new_empty((self.n_clean + n, self.C))
            buf[: self.n_clean] = self.buf[: self.n_clean]
            self.buf = buf
        self.buf[self.n_clean : self.n_clean + n].view(new.movedim(1, -1).shape).copy_(new.movedim(1, -1))
        self.token = token


def _flat(pos: list[Tensor], shape: tuple[int, ...]) -> Tensor:
    """Row-major flat index of broadcast positions within ``shape``."""
    idx = None
    for p, n in zip(pos, shape):
        idx = p if idx is None else idx * n + p
    assert idx is not None  # at least one spatial dimension
    return idx


class _Engine:
    """Computes the patched split activation for rows (window, sample)."""

    def __init__(self, an: _Analysis, geo: _Geometry, prefix: list, split: fx.Node, base: Tensor) -> None:
        self.an, self.geo, self.prefix, self.split = an, geo, prefix, split
        self.base = base
        self.device = base.device
        self._stores: dict = {}
        self._act: Tensor | None = None
        self._last: dict = {}  # last use of each value among the prefix nodes, to free it early
        for i, v in enumerate(prefix):
            for d in an.ops[v].deps:
                self._last[d] = i
        self.starts = {k: v.to(self.device) for k, v in geo.starts.items()}
        # pointwise inputs whose region is the node's own region need no gather
        self._same = {
            (v, d): geo.sizes[d] == geo.sizes[v] and torch.equal(geo.starts[d], geo.starts[v])
            for v in prefix
            for d in an.ops[v].deps
        }
        self.win_lo, self.win_hi = geo.win_lo.to(self.device), geo.win_hi.to(self.device)
        self.chan_lo, self.chan_hi = geo.chan_lo.to(self.device), geo.chan_hi.to(self.device)
        C = an.channels(an.input)
        self.full_channels = bool(((geo.chan_lo <= 0) & (geo.chan_hi >= C)).all())

    def _store(self, node, pad_lo, pad_hi, value) -> _Store:
        key = (node, tuple(pad_lo), tuple(pad_hi), value)
        if key not in self._stores:
            extra = self.base if node is self.an.input and self.full_channels else None
            self._stores[key] = _Store(self.an.values[node], pad_lo, pad_hi, value, extra)
        return self._stores[key]

    def _positions(self, start: Tensor, size: tuple[int, ...]) -> list[Tensor]:
        """Broadcastable absolute positions per dimension: ``(R, 1.., L_d, ..1)``."""
        R, D = start.shape
        out = []
        for d in range(D):
            shape = [1] * (D + 1)
            shape[d + 1] = size[d]
            ar = torch.arange(size[d], device=self.device).view(shape)
            out.append(start[:, d].view([R] + [1] * D) + ar)
        return out

    def _in_window(self, pos: list[Tensor], k: Tensor) -> Tensor:
        R, D = k.shape[0], len(pos)
        inside = None
        for d, p in enumerate(pos):
            shape = [R] + [1] * D
            m = (p >= self.win_lo[k, d].view(shape)) & (p <= self.win_hi[k, d].view(shape))
            inside = m if inside is None else inside & m
        assert inside is not None  # at least one spatial dimension
        return inside

    def gather(self, node, start, size, pad_lo, pad_hi, pad_value, k, b, vals, token) -> Tensor:
        """Values of ``node`` (as for the occluded input of each row) on the box
        ``[start, start + size)`` (absolute positions; negative ones are padding), as
        ``(R, C, *size)`` in channels-last memory."""
        R, D = start.shape
        store = self._store(node, pad_lo, pad_hi, pad_value)
        pos = self._positions(start, size)
        rows = b.view([R] + [1] * D) * store.per_sample
        clean_idx = rows + _flat([p + lo for p, lo in zip(pos, pad_lo)], store.shape)
        if node is self.an.input:
            inside = self._in_window(pos, k)
            if not self.full_channels:  # a window over some channels only: select per channel
                vals_ = store.buf.index_select(0, clean_idx.reshape(-1)).view(*clean_idx.shape, store.C)
                key = ("baseline", tuple(pad_lo), tuple(pad_hi), pad_value)
                if key not in self._stores:
                    self._stores[key] = _Store(self.base, pad_lo, pad_hi, pad_value)
                pb = self._stores[key]
                base = pb.buf.index_select(0, clean_idx.reshape(-1)).view(*clean_idx.shape, store.C)
                c = torch.arange(store.C, device=self.device)
                cm = (c >= self.chan_lo[k].view(-1, 1)) & (c < self.chan_hi[k].view(-1, 1))
                mask = inside.unsqueeze(-1) & cm.view([R] + [1] * D + [-1])
                return torch.where(mask, base, vals_).movedim(-1, 1)
            idx = torch.where(inside, clean_idx + store.n_clean, clean_idx)
        else:
            new, nstart, nsize = vals[node]
            inside = None
            rel = []
            for d, p in enumerate(pos):
                r = p - nstart[:, d].view([R] + [1] * D)
                m = (r >= 0) & (r < nsize[d])
                inside = m if inside is None else inside & m
                rel.append(r.clamp(0, nsize[d] - 1))
            assert inside is not None  # at least one spatial dimension
            store.put(new, token)
            new_idx = store.n_clean + torch.arange(R, device=self.device).view([R] + [1] * D) * math.prod(nsize)
            new_idx = new_idx + _flat(rel, nsize)
            idx = torch.where(inside, new_idx, clean_idx)
        out = store.buf.index_select(0, idx.reshape(-1))
        return out.view(*idx.shape, store.C).movedim(-1, 1)

    def rows(self, k: Tensor, b: Tensor) -> Tensor:
        an, geo = self.an, self.geo
        k = k.to(self.device)
        b = b.to(self.device)
        token = object()
        vals: dict = {}
        D = len(geo.sizes[an.input])
        zero = (0,) * D
        for i, v in enumerate(self.prefix):
            op = an.ops[v]
            start, size = self.starts[v][k], geo.sizes[v]
            if op.kind == "window":
                w = op.window
                bstart, bsize = w.box(start, size)
                out = op.fn(self.gather(op.deps[0], bstart, bsize, w.pad_lo, w.pad_hi, op.pad_value, k, b, vals, token))
            else:
                args = []
                for d in op.deps:
                    if d in vals and self._same[(v, d)]:
                        args.append(vals[d][0])
                    else:
                        args.append(self.gather(d, start, size, zero, zero, 0.0, k, b, vals, token))
                out = op.fn(*args)
            vals[v] = (out, start, size)
            for d in op.deps:
                if self._last.get(d) == i and d in vals:
                    del vals[d]
        new, start, size = vals[self.split]
        R = k.shape[0]
        store = self._store(self.split, zero, zero, 0.0)
        n = store.per_sample
        # one buffer for the patched activations, reused by every chunk (a fresh large
        # allocation per chunk costs page faults comparable to the copy itself)
        need = R * n * store.C
        if self._act is None or self._act.numel() < need:
            self._act = store.buf.new_empty(need)
        act = self._act[:need].view(R, n, store.C)
        torch.index_select(store.buf[: store.n_clean].view(-1, n, store.C), 0, b, out=act)
        pos = self._positions(start, size)
        dest = torch.arange(R, device=self.device).view([R] + [1] * D) * n + _flat(pos, store.shape)
        act.view(R * n, store.C).index_copy_(0, dest.reshape(-1), new.movedim(1, -1).reshape(-1, store.C))
        return act.view(R, *store.shape, store.C).movedim(-1, 1)


def _spread(drops: Tensor, window, strides, shape) -> Tensor:
    """Mean score drop per element over the windows covering it: ``drops`` is
    ``(B, *counts)``; each dimension's windows are an interval, so the sums over windows
    factor into one small matrix product per dimension."""
    cover = None
    total = drops
    for w, s, n, c in zip(window, strides, shape, drops.shape[1:]):
        i = torch.arange(n, device=drops.device)
        p = torch.arange(c, device=drops.device).view(-1, 1) * s
        member = ((i >= p) & (i < p + w)).to(drops.dtype)  # (c, n)
        total = torch.tensordot(total, member, dims=([1], [0]))
        count = member.sum(0)
        cover = count if cover is None else cover.unsqueeze(-1) * count
    assert cover is not None  # at least one spatial dimension
    return torch.where(cover > 0, total / cover.clamp(min=1), torch.zeros_like(total))


class IncrementalOcclusion(Occlusion):
    """Occlusion with incremental recomputation of the convolutional part of the model.

    Same settings and the same result as :class:`Occlusion` (up to float rounding), for
    models that :func:`torch.fx.symbolic_trace` can trace and whose first layers are
    local operations (convolutions, pooling, batch norm in eval mode, elementwise
    activations, residual additions, concatenation along channels). For each window only
    the region of each early layer that the window can reach is recomputed; from the
    split layer on, the network runs in full on the patched activation.

    Parameters
    ----------
    window, strides, baseline, batching, progress:
        As for :class:`Occlusion`.
    split:
        Where the incremental part ends: a dotted module name from
        ``model.named_modules()`` (its output; a block's output for a block) or a
        ``torch.fx`` node name. The output of that point must be the only value that
        flows on (not inside a residual block). ``None`` (default): chosen per call by
        a cost model, the point that minimises the estimated work; the one used is in
        :attr:`split_used` and the explanation's settings.

    Raises
    ------
    ConfigError
        The model cannot be traced, or its first operation on the input is not local
        (e.g. a linear layer on the flattened input): use :class:`Occlusion`.
    """

    name = "incremental_occlusion"

    def __init__(
        self, model, *, window=None, strides=None, baseline=0.0, split: str | None = None, batching=None, progress=None
    ):
        super().__init__(model, window=window, strides=strides, baseline=baseline, batching=batching, progress=progress)
        self.split = split
        #: The split of the last call (display name).
        self.split_used: str | None = None
        self._traces: dict = {}

    def settings(self):
        s = super().settings()
        s["split"] = self.split_used or self.split or "auto"
        return s

    def _check_settings(self) -> None:
        super()._check_settings()
        if self.split is not None and not isinstance(self.split, str):
            raise ConfigError(f"split must be a layer or node name (str) or None, got {self.split!r}")

    # -- tracing -------------------------------------------------------------------------
    def _trace(self, leaves: tuple[nn.Module, ...]) -> dict:
        fingerprint = tuple((name, id(m)) for name, m in self.model.named_modules())
        key = tuple(id(m) for m in leaves)
        hit = self._traces.get(key)
        if hit is not None and hit["fingerprint"] == fingerprint:
            return hit
        try:
            graph = _Tracer(leaves).trace(self.model)
            gm = fx.GraphModule(self.model, graph, class_name=type(self.model).__name__ + "Traced")
        except Exception as e:  # noqa: BLE001 - any tracing failure means: not traceable
            raise ConfigError(
                f"IncrementalOcclusion needs a model that torch.fx.symbolic_trace can trace, "
                f"and tracing {type(self.model).__name__} failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}). Data-dependent Python control "
                f"flow cannot be traced. Use Occlusion (full re-evaluation) instead."
            ) from e
        hit = {"fingerprint": fingerprint, "gm": gm, "suffixes": {}}
        self._traces[key] = hit
        return hit

    @staticmethod
    def _suffix(gm: fx.GraphModule, split: fx.Node, before: set) -> fx.GraphModule:
        g = fx.Graph()
        env = {split: g.placeholder("split_activation")}
        for n in gm.graph.nodes:
            if n in before or n.op == "placeholder":
                continue
            if n.op == "output":
                g.output(fx.node.map_arg(n.args[0], lambda a: env[a]))
                break
            env[n] = g.node_copy(n, lambda a: env[a])
        sm = fx.GraphModule(gm, g, class_name="IncrementalSuffix")
        sm.graph.eliminate_dead_code()
        sm.recompile()
        return sm

    # -- split -----------------------------------------------------------------------------
    def _no_local(self, an: _Analysis) -> ConfigError:
        node, why = an.stop if an.stop is not None else (None, "")
        where = f"node {node.name!r}" if node is not None else "the graph"
        return ConfigError(
            f"IncrementalOcclusion cannot recompute any part of {type(self.model).__name__} "
            f"locally: {where} right after the input is not a local operation ({why}). The "
            f"first layers must be convolutions, pooling, batch norm or elementwise "
            f"operations. Use Occlusion (full re-evaluation) instead."
        )

    def _resolve_split(self, an: _Analysis) -> fx.Node:
        name = self.split
        nodes = [n for n in an.gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
        by_name = {n.name: n for n in nodes}
        candidates = ", ".join(repr(_display(c, an.gm)) for c in an.cuts[-12:]) or "none"
        if name in by_name:
            node = by_name[name]
        else:
            calls = [n for n in nodes if n.op == "call_module" and n.target == name]
            if len(calls) > 1:
                raise ConfigError(
                    f"split {name!r} is a module that runs {len(calls)} times; name one call by "
                    f"its graph node ({', '.join(repr(c.name) for c in calls)})"
                )
            scoped = [n for n in nodes if name in _scopes(n)]
            if not scoped:
                raise ConfigError(
                    f"unknown split {name!r}: not a module of {type(self.model).__name__} that "
                    f"runs in its forward, nor a graph node. Possible splits: {candidates}"
                )
            node = scoped[-1]
        if node not in an.ops:
            why = ""
            if an.stop is not None:
                why = f": node {an.stop[0].name!r} before it is not local ({an.stop[1]})"
            raise ConfigError(
                f"split {name!r} is not in the local part of the model{why}. Possible splits: {candidates}"
            )
        if node not in an.cuts:
            raise ConfigError(
                f"split {name!r} is not a cut of the graph: other values computed before it "
                f"are used after it (a residual or skip connection). Split at the end of the "
                f"enclosing block instead. Possible splits: {candidates}"
            )
        return node

    # -- attribution -------------------------------------------------------------------------
    def _attribute(self, x: Tensor, target: Target, batching: Batching, **kwargs: Any) -> Computed:
        if kwargs:
            raise TypeError(f"IncrementalOcclusion.attribute() got unexpected arguments {sorted(kwargs)}")
        if x.dim() < 3:
            raise ConfigError(
                f"IncrementalOcclusion needs inputs with spatial dimensions (batch, channels, "
                f"...), got shape {tuple(x.shape)}; use Occlusion instead"
            )
        window, strides, counts = self.geometry(tuple(x.shape[1:]))
        positions = list(itertools.product(*[range(c) for c in counts]))
        base = _baseline(self.baseline, x)
        # The clean scores first: through the model's own forward, so inputs it cannot
        # take fail with seethrough's InputError before any tracing or analysis.
        full_runner = self._runner(target, batching)
        f_x = self._scores(full_runner, x)
        leaves: tuple[nn.Module, ...] = ()
        if target.layer is not None:
            leaves = (resolve_layer(self.model, target.layer)[1],)
        traced = self._trace(leaves)
        with torch.no_grad():
            an = _analyse(traced["gm"], x, leaves)
        if not an.cuts:
            if not an.order:
                raise self._no_local(an)
            raise ConfigError(
                f"IncrementalOcclusion found no point in the local part of "
                f"{type(self.model).__name__} where a single activation carries everything on "
                f"(a connection skips over it). Use Occlusion instead."
            )
        geo = _geometry(an, positions, window, strides, tuple(x.shape[1:]))
        if self.split is None:
            costs = _costs(an, geo)
            split = min(an.cuts, key=lambda v: costs[v])
        else:
            split = self._resolve_split(an)
        self.split_used = _display(split, an.gm)
        before = set()
        for v in [an.input] + an.order:
            before.add(v)
            if v is split:
                break
        suffix = traced["suffixes"].get(split.name)
        if suffix is None:
            suffix = traced["suffixes"][split.name] = self._suffix(an.gm, split, before)
        prefix = _ancestors(split, an)
        keep = {an.input, split} | {d for v in prefix for d in an.ops[v].deps}
        for v in an.order:  # clean activations that no recomputation reads
            if v not in keep:
                an.values.pop(v, None)
        engine = _Engine(an, geo, prefix, split, base)

        runner = ForwardRunner(suffix, target, batching=batching, progress=self.progress)
        B, K = x.shape[0], len(positions)
        drops = torch.zeros(K * B, dtype=x.dtype, device=x.device)  # row k*B + b

        def rows(sl: slice):
            r = torch.arange(sl.start, sl.stop)
            with torch.no_grad():
                act = engine.rows(r // B, r % B)
            return act, (r % B).to(x.device)

        def consume(sl: slice, scores: Tensor) -> None:
            r = torch.arange(sl.start, sl.stop, device=x.device)
            drops[sl] = f_x[r % B] - scores.to(drops.dtype)

        n = runner.run(K * B, rows, consume)
        attr = _spread(drops.view(K, B).t().reshape(B, *counts), window, strides, tuple(x.shape[1:]))
        return Computed(attr, n + full_runner.n_evaluations, scores=f_x)
