"""Graph analysis for incremental occlusion.

A traced model (``torch.fx``) is read node by node from its input. An operation is
*local* when each output position depends only on a bounded window of input positions
along every spatial dimension, the same window rule everywhere:

* window operations: convolutions and max/average pooling, with kernel, stride,
  dilation and (possibly asymmetric) zero padding per spatial dimension;
* pointwise operations: batch norm in eval mode, elementwise activations, identity,
  dropout in eval mode, elementwise arithmetic between local tensors (and constants
  that do not vary over space), concatenation along channels.

For such operations the set of output positions that a change of the input can reach
is an interval per spatial dimension, computed here (:func:`affected`); the positions
of one output interval read one input interval (:meth:`Window.box`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from .errors import ConfigError

__all__ = ["Window", "LocalOp", "classify", "affected", "fixed_regions", "EMPTY"]

#: Lower end of an empty interval (its upper end is ``-EMPTY``).
EMPTY = 1 << 40


@dataclass(frozen=True)
class Window:
    """Per spatial dimension: kernel, stride, dilation and zero padding before/after."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pad_hi: tuple[int, ...]

    @property
    def span(self) -> tuple[int, ...]:
        """Input positions one output reads, first to last (``dilation * (kernel - 1) + 1``)."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def out_size(self, n: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(
            (ni + lo + hi - sp) // s + 1
            for ni, lo, hi, sp, s in zip(n, self.pad_lo, self.pad_hi, self.span, self.stride)
        )

    def affected(self, lo: Tensor, hi: Tensor, n_out: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Output interval whose windows meet the input interval ``[lo, hi]`` (``(K, D)``
        tensors, inclusive); empty intervals stay empty."""
        s = torch.tensor(self.stride, dtype=torch.long)
        plo = torch.tensor(self.pad_lo, dtype=torch.long)
        span = torch.tensor(self.span, dtype=torch.long)
        # output o reads [o*s - pad_lo, o*s - pad_lo + span - 1]
        new_lo = -torch.div(-(lo + plo - span + 1), s, rounding_mode="floor")
        new_hi = torch.div(hi + plo, s, rounding_mode="floor")
        empty = lo > hi
        new_lo = torch.where(empty, torch.full_like(new_lo, EMPTY), new_lo.clamp(min=0))
        new_hi = torch.where(empty, torch.full_like(new_hi, -EMPTY), torch.minimum(new_hi, torch.tensor(n_out) - 1))
        return new_lo, new_hi

    def box(self, start: Tensor, size: tuple[int, ...]) -> tuple[Tensor, tuple[int, ...]]:
        """Input positions (first, count) read by outputs ``[start, start + size)``; the
        first may be negative (padding)."""
        s = torch.tensor(self.stride, dtype=torch.long, device=start.device)
        plo = torch.tensor(self.pad_lo, dtype=torch.long, device=start.device)
        return start * s - plo, tuple((r - 1) * st + sp for r, st, sp in zip(size, self.stride, self.span))


@dataclass
class LocalOp:
    """A local node of the traced graph and how to evaluate it on a region."""

    node: fx.Node
    kind: str  # "window" or "pointwise"
    deps: tuple[fx.Node, ...]  # input-dependent tensor arguments, in order
    fn: Callable[..., Tensor]  # window: on a zero-padding-free box; pointwise: on deps
    label: str
    window: Window | None = None
    pad_value: float = 0.0
    macs: float = 1.0  # multiply-adds per output element, for the cost model
    inplace: bool = False  # the model's operation writes into deps[0]
    alias: bool = False  # returns its input unchanged
    extra: dict[str, Any] = field(default_factory=dict)


def _ntuple(v, d: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * d
    v = tuple(int(i) for i in v)
    if len(v) == 1:
        return v * d
    return v


_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Threshold,
    nn.Hardshrink,
    nn.Softshrink,
)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_MAXPOOLS = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOLS = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAXPOOL_FN = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}

_POINTWISE_FUNCS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.neg,
    torch.abs,
    torch.exp,
    torch.maximum,
    torch.minimum,
    torch.clamp,
    torch.clip,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.celu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardtanh,
    F.hardswish,
    F.hardsigmoid,
    F.softplus,
    F.sigmoid,
    F.tanh,
    F.logsigmoid,
}
_INPLACE_FUNCS: dict[Callable[..., Any], Callable[..., Any]] = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
    torch.relu_: torch.relu,
    F.relu_: F.relu,
}
_CAT_FUNCS = {torch.cat, torch.concat}
_POINTWISE_METHODS = {
    "relu",
    "sigmoid",
    "tanh",
    "add",
    "sub",
    "mul",
    "div",
    "clamp",
    "clip",
    "neg",
    "abs",
    "exp",
}
_ALIAS_METHODS = {"contiguous"}


def _is_dep(a, deps: set) -> bool:
    return isinstance(a, fx.Node) and a in deps


def _call(node: fx.Node, call: Callable, order: tuple[fx.Node, ...], consts: dict, force_no_inplace: bool):
    """A function of the input-dependent arguments ``order`` that evaluates ``node``."""

    def fn(*vals):
        sub = dict(zip(order, vals))

        def look(n):
            return sub[n] if n in sub else consts[n]

        args = fx.node.map_arg(node.args, look)
        kwargs = fx.node.map_arg(node.kwargs, look)
        if force_no_inplace and kwargs.get("inplace"):
            kwargs = {**kwargs, "inplace": False}
        return call(*args, **kwargs)

    return fn


def _module_op(node: fx.Node, m: nn.Module, dep: fx.Node, D: int) -> LocalOp | str:
    name = f"{node.target} ({type(m).__name__})"
    if len(node.args) != 1 or node.kwargs:
        return f"module {name} is called with extra arguments"
    for nd, conv in _CONVS.items():
        if isinstance(m, conv):
            if nd != D:
                return f"{name} is a {nd}-d convolution on inputs with {D} spatial dimensions"
            if m.padding_mode != "zeros":
                return f"{name} pads with {m.padding_mode!r}, only zero padding is supported"
            k, s, d = _ntuple(m.kernel_size, D), _ntuple(m.stride, D), _ntuple(m.dilation, D)
            if isinstance(m.padding, str):
                if m.padding == "valid":
                    lo = hi = (0,) * D
                else:  # "same": the extra position goes after, as in PyTorch
                    tot = [dd * (kk - 1) for kk, dd in zip(k, d)]
                    lo = tuple(t // 2 for t in tot)
                    hi = tuple(t - t // 2 for t in tot)
            else:
                lo = hi = _ntuple(m.padding, D)
            w = Window(k, s, d, lo, hi)
            conv_fn = _CONV_FN[D]
            stride, dil, groups = s, d, m.groups

            def conv_box(t, m=m, conv_fn=conv_fn, stride=stride, dil=dil, groups=groups):
                return conv_fn(t, m.weight, m.bias, stride, 0, dil, groups)

            return LocalOp(
                node,
                "window",
                (dep,),
                conv_box,
                name,
                window=w,
                pad_value=0.0,
                macs=(m.in_channels // m.groups) * math.prod(k),
            )
    for nd, pool in _MAXPOOLS.items():
        if isinstance(m, pool):
            if nd != D:
                return f"{name} pools over {nd} dimensions on inputs with {D} spatial dimensions"
            if m.ceil_mode or m.return_indices:
                return f"{name} uses ceil_mode or return_indices"
            k = _ntuple(m.kernel_size, D)
            s = _ntuple(m.stride if m.stride is not None else m.kernel_size, D)
            d, p = _ntuple(m.dilation, D), _ntuple(m.padding, D)
            pool_fn = _MAXPOOL_FN[D]

            def max_pool_box(t, k=k, s=s, d=d, pool_fn=pool_fn):
                return pool_fn(t, k, s, 0, d)

            return LocalOp(
                node,
                "window",
                (dep,),
                max_pool_box,
                name,
                window=Window(k, s, d, p, p),
                pad_value=float("-inf"),
                macs=math.prod(k),
            )
    for nd, avg_pool in _AVGPOOLS.items():
        if isinstance(m, avg_pool):
            if nd != D:
                return f"{name} pools over {nd} dimensions on inputs with {D} spatial dimensions"
            if m.ceil_mode:
                return f"{name} uses ceil_mode"
            k = _ntuple(m.kernel_size, D)
            s = _ntuple(m.stride if m.stride is not None else m.kernel_size, D)
            p = _ntuple(m.padding, D)
            if any(p) and not m.count_include_pad:
                return f"{name} pads but excludes the padding from the average"
            div = getattr(m, "divisor_override", None)

            def avg_pool_box(t, k=k, s=s, div=div, D=D):
                if D == 1:
                    return F.avg_pool1d(t, k, s, 0, False, True)
                f = F.avg_pool2d if D == 2 else F.avg_pool3d
                return f(t, k, s, 0, False, True, div)

            return LocalOp(
                node,
                "window",
                (dep,),
                avg_pool_box,
                name,
                window=Window(k, s, (1,) * D, p, p),
                pad_value=0.0,
                macs=math.prod(k),
            )
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.training or m.running_mean is None or m.running_var is None:
            return f"{name} normalises with batch statistics (train mode or no running statistics)"
        return LocalOp(node, "pointwise", (dep,), m, name, macs=2.0)
    if isinstance(m, _ACTIVATIONS):
        inplace = bool(getattr(m, "inplace", False))
        fn: Callable[..., Tensor]
        if type(m) is nn.ReLU:
            fn = torch.relu
        elif inplace:

            def on_copy(t, m=m):
                return m(t.clone())

            fn = on_copy
        else:
            fn = m
        return LocalOp(node, "pointwise", (dep,), fn, name, inplace=inplace, macs=1.0)
    if isinstance(m, nn.Identity) or isinstance(m, _DROPOUTS):
        if m.training and not isinstance(m, nn.Identity):
            return f"{name} is in train mode (random)"
        return LocalOp(node, "pointwise", (dep,), lambda t: t, name, alias=True, macs=0.0)
    return f"module {name} is not a local operation"


def _const_ok(v, D: int) -> bool:
    """A constant argument that does not vary over samples or space."""
    if isinstance(v, (int, float, bool)) or v is None:
        return True
    if isinstance(v, Tensor):
        if v.dim() > D + 2:
            return False
        shape = (1,) * (D + 2 - v.dim()) + tuple(v.shape)
        return shape[0] == 1 and all(s == 1 for s in shape[2:])
    return False


def classify(node: fx.Node, gm: fx.GraphModule, values: dict, deps: set, D: int, B: int) -> LocalOp | str:
    """The local operation ``node`` computes, or why it is not one. ``values`` holds the
    (clean) value of every earlier node; ``deps`` the input-dependent nodes."""
    dep_args = tuple(dict.fromkeys(a for a in node.all_input_nodes if a in deps))
    for a in dep_args:
        v = values.get(a)
        if not isinstance(v, Tensor) or v.dim() != D + 2 or v.shape[0] != B:
            return f"it takes {a.name!r}, which is not a (batch, channels, *spatial) tensor"
    for a in node.all_input_nodes:
        if a not in deps and not _const_ok(values.get(a), D):
            return f"it uses the constant {a.name!r}, which varies over samples or positions"
    if not dep_args:
        return "it does not take a spatial tensor"
    if node.op == "call_module":
        assert isinstance(node.target, str)  # a call_module target is the module's qualified name
        m = gm.get_submodule(node.target)
        if len(dep_args) != 1 or node.args[0] is not dep_args[0]:
            return f"module {node.target} is called on something else than one tensor"
        return _module_op(node, m, dep_args[0], D)
    consts = {a: values[a] for a in node.all_input_nodes if a not in deps}
    if node.op == "call_function":
        fnc = node.target
        label = getattr(fnc, "__name__", str(fnc))
        if fnc in _CAT_FUNCS:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if dim not in (1, -(D + 1)):
                return f"{label} concatenates along dimension {dim}, not channels"
            return LocalOp(node, "pointwise", dep_args, _call(node, fnc, dep_args, consts, False), label, macs=0.5)
        if fnc is F.dropout or fnc is F.dropout2d or fnc is F.dropout1d or fnc is F.dropout3d:
            training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
            if training:
                return f"{label} is in train mode (random)"
            if node.args[0] is not dep_args[0] or len(dep_args) != 1:
                return f"{label} on something else than one tensor"
            return LocalOp(
                node,
                "pointwise",
                dep_args,
                lambda t: t,
                label,
                alias=True,
                inplace=bool(node.kwargs.get("inplace", False)),
                macs=0.0,
            )
        inplace = False
        if fnc in _INPLACE_FUNCS:
            inplace, fnc = True, _INPLACE_FUNCS[fnc]
        elif fnc in _POINTWISE_FUNCS:
            inplace = bool(node.kwargs.get("inplace", False))
        else:
            return f"function {label} is not a local operation"
        return LocalOp(
            node,
            "pointwise",
            dep_args,
            _call(node, fnc, dep_args, consts, True),
            label,
            inplace=inplace,
            macs=float(len(dep_args)),
        )
    if node.op == "call_method":
        meth = node.target
        assert isinstance(meth, str)  # a call_method target is the method's name
        if not isinstance(node.args[0], fx.Node) or node.args[0] not in deps:
            return f"method {meth} is called on a constant"
        if meth in _ALIAS_METHODS:
            return LocalOp(node, "pointwise", dep_args, lambda t: t, meth, alias=True, macs=0.0)
        inplace = meth.endswith("_") and meth[:-1] in _POINTWISE_METHODS
        base = meth[:-1] if inplace else meth
        if base not in _POINTWISE_METHODS:
            return f"method .{meth}() is not a local operation"

        def call(self_, *a, base=base, **k):
            return getattr(self_, base)(*a, **k)

        return LocalOp(
            node,
            "pointwise",
            dep_args,
            _call(node, call, dep_args, consts, False),
            f".{meth}()",
            inplace=inplace,
            macs=float(len(dep_args)),
        )
    return f"{node.op} {node.target} is not a local operation"


def affected(op: LocalOp, ranges: dict, n_out: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Interval of ``op``'s output positions that the changes in its inputs can reach."""
    if op.kind == "window":
        lo, hi = ranges[op.deps[0]]
        assert op.window is not None  # every window operation has one
        return op.window.affected(lo, hi, n_out)
    los = [ranges[d][0] for d in op.deps]
    his = [ranges[d][1] for d in op.deps]
    lo, hi = los[0], his[0]
    for a, b in zip(los[1:], his[1:]):
        lo, hi = torch.minimum(lo, a), torch.maximum(hi, b)
    return lo, hi


def fixed_regions(lo: Tensor, hi: Tensor, n: tuple[int, ...]) -> tuple[Tensor, tuple[int, ...]]:
    """One region size for all windows (the largest interval, at least 1) and each
    window's start, shifted inside ``[0, n)``: every region contains its interval."""
    size = (hi - lo + 1).clamp(min=0).amax(dim=0) if lo.numel() else torch.zeros(len(n), dtype=torch.long)
    R = tuple(max(1, min(int(r), ni)) for r, ni in zip(size.tolist(), n))
    hi_start = torch.tensor([ni - r for ni, r in zip(n, R)], dtype=torch.long)
    start = torch.minimum(lo.clamp(min=0), hi_start)
    return start, R


def run_node(gm: fx.GraphModule, node: fx.Node, values: dict):
    """Evaluate one traced graph node on the values of its inputs (``values[node]``)."""
    args = fx.node.map_arg(node.args, lambda n: values[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
    if node.op == "get_attr":
        obj = gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        return obj
    target = node.target
    if node.op == "call_module":
        assert isinstance(target, str)  # the module's qualified name
        return gm.get_submodule(target)(*args, **kwargs)
    if node.op == "call_function":
        assert callable(target)  # the function itself
        return target(*args, **kwargs)
    if node.op == "call_method":
        assert isinstance(target, str)  # the method's name
        return getattr(args[0], target)(*args[1:], **kwargs)
    raise ConfigError(f"cannot evaluate graph node {node.name!r} ({node.op})")
