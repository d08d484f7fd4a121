"""Receptive fields: which input pixels one position of a layer's output can see.

Two ways, the first whenever it applies:

* **layer arithmetic** (``"arithmetic"``): the model is traced with ``torch.fx`` and read
  from its input to the layer with the local-operation rules of
  :mod:`seethrough._core.receptive` (convolutions and pooling windows with
  stride, dilation and padding; pointwise operations; sums and concatenations of local
  branches). Every tensor on the way maps its position ``o`` to the input interval
  ``[o * S + A, o * S + A + L - 1]`` per spatial dimension: the input has ``S = 1, A = 0,
  L = 1``; a window (kernel span ``k``, stride ``s``, padding before ``p``) gives
  ``S' = s S``, ``A' = A - p S``, ``L' = (k - 1) S + L``; a pointwise operation of several
  branches takes the union (equal ``S`` needed). This is the theoretical receptive field,
  clipped to the image.
* **gradient** (``"gradient"``): for layers the tracer cannot reach (an untraceable
  model, a container module, a non-local operation on the path), the patch of one
  example is the bounding box of the input pixels where the gradient of the activation
  at that position is non-zero: the pixels that value actually depends on for that
  example (it can be smaller than the theoretical field where ReLUs are off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from .._core.result import Result

__all__ = ["ReceptiveField", "arithmetic_fields"]


@dataclass(frozen=True)
class ReceptiveField(Result):
    """Input interval ``[o * stride + offset, o * stride + offset + span - 1]`` per
    spatial dimension for output position ``o`` (before clipping to the image).

    A small value (compared and hashed by its fields, unlike most results)."""

    stride: tuple[int, ...]
    offset: tuple[int, ...]
    span: tuple[int, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("stride", "offset", "span"):  # tuples of ints, also when read back by load()
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    def boxes(self, positions: Tensor, input_size: tuple[int, ...]) -> Tensor:
        """Clipped boxes ``(..., 2 D)`` = first positions then last positions (inclusive)
        of the input region seen by ``positions`` ``(..., D)``."""
        s = torch.tensor(self.stride, dtype=torch.long)
        a = torch.tensor(self.offset, dtype=torch.long)
        span = torch.tensor(self.span, dtype=torch.long)
        n = torch.tensor(input_size, dtype=torch.long)
        lo = positions.long() * s + a
        hi = lo + span - 1
        return torch.cat([lo.clamp(min=0), torch.minimum(hi, n - 1)], dim=-1)


def arithmetic_fields(model: nn.Module, names: list[str], x_probe: Tensor) -> dict[str, ReceptiveField]:
    """Receptive fields by layer arithmetic of the named (leaf) modules that the traced
    graph reaches through local operations only; the others are left out.

    ``x_probe`` is one input ``(1, C, *spatial)``; the graph runs on it once (no grad)
    to learn the tensor shapes. Call inside ``model_guard`` (eval mode).
    """
    from .._core.receptive import LocalOp, classify, run_node

    wanted = set(names)
    out: dict[str, ReceptiveField] = {}
    if x_probe.dim() < 3 or not wanted:
        return out
    try:
        gm = fx.symbolic_trace(model)
    except Exception:  # untraceable control flow, unsupported calls: gradient fallback
        return out
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return out
    inp = placeholders[0]
    D, B = x_probe.dim() - 2, x_probe.shape[0]
    values: dict = {inp: x_probe.clone()}
    fields: dict = {inp: ((1,) * D, (0,) * D, (1,) * D)}
    deps = {inp}
    tainted: set = set()  # depend on the input through a non-local operation
    with torch.no_grad():
        for node in gm.graph.nodes:
            if node.op in ("placeholder", "output"):
                continue
            if any(a in tainted for a in node.all_input_nodes):
                tainted.add(node)
                op: LocalOp | str = "it depends on a non-local operation"
            try:
                if node in tainted:
                    values[node] = run_node(gm, node, values)
                    continue
                if not any(a in deps for a in node.all_input_nodes):
                    values[node] = run_node(gm, node, values)
                    continue
                op = classify(node, gm, values, deps, D, B)
                args = dict(values)
                if not isinstance(op, str) and op.inplace:
                    args[op.deps[0]] = values[op.deps[0]].clone()
                values[node] = run_node(gm, node, args)
            except Exception:
                return out
            v = values[node]
            if isinstance(op, str) or not isinstance(v, Tensor) or v.dim() != D + 2:
                tainted.add(node)  # not local: this node and what depends on it get no field
                continue
            if op.kind == "window":
                S, A, L = fields[op.deps[0]]
                w = op.window
                assert w is not None  # every window operation has one
                fields[node] = (
                    tuple(s * si for s, si in zip(w.stride, S)),
                    tuple(a - p * si for a, p, si in zip(A, w.pad_lo, S)),
                    tuple((sp - 1) * si + li for sp, si, li in zip(w.span, S, L)),
                )
            else:
                parts = [fields[d] for d in op.deps]
                strides = {p[0] for p in parts}
                if len(strides) != 1:
                    tainted.add(node)
                    continue
                lo = tuple(min(p[1][i] for p in parts) for i in range(D))
                hi = tuple(max(p[1][i] + p[2][i] for p in parts) for i in range(D))
                fields[node] = (parts[0][0], lo, tuple(h - a for h, a in zip(hi, lo)))
            deps.add(node)
            if node.op == "call_module" and node.target in wanted:
                S, A, L = fields[node]
                out[str(node.target)] = ReceptiveField(S, A, L)
    # a module called more than once has no single field
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    return {k: v for k, v in out.items() if calls.get(k, 0) == 1}
