"""Dataset examples: the images that excite (and that least excite) every unit.

One streaming pass over a data set records, for every unit of every chosen layer, the
``top_k`` examples with the highest activation and the ``bottom_k`` with the lowest.
A unit is a channel of a convolutional layer (its activation on an image is its
**maximum over positions**, whose position is recorded too) or one output of a linear
layer. For layers with spatial positions the **receptive-field patch** of that maximum
is recorded as a box in input coordinates (see :mod:`seethrough.atlas.receptive`:
layer arithmetic when the traced graph allows, else the gradient of the activation).

Memory is bounded by the number of units, not by the data set: only the running
top-k/bottom-k per unit (values, data-set indices, positions) and per-unit sums are
kept. Each batch is merged into them by a stable sort (ties go to the lower data-set
index), so the result does not depend on the batch size. With ``checkpoint=PATH`` the
state is written to disk every ``checkpoint_every`` batches with the position in the
data; a pass started again with the same settings continues from there and gives the
identical result, and the checkpoint is removed when the pass completes.

>>> ex = DatasetExamples(model, top_k=9).fit(images)        # doctest: +SKIP
>>> ex.top_indices_["features.0"][5]   # data-set indices of unit 5's top examples
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching, saved_bytes
from .._core.capture import forward_chunk_rows, resolve_layers, run_capture, stream_activations
from .._core.errors import ConfigError, InputError, LayerError
from .._core.estimator import Estimator
from .._core.layers import LayerRef, resolve_layer
from .._core.result import Result
from .._core.sources import ImageSource, as_source
from .._core.state import model_guard
from .._core.validation import model_device
from .receptive import ReceptiveField, arithmetic_fields

__all__ = ["DatasetExamples", "UnitExamples", "select_layers", "model_fingerprint"]

_FORMAT = "seethrough.dataset_examples/1"
_CKPT_FORMAT = "seethrough.dataset_examples.checkpoint/1"
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def select_layers(model: nn.Module, layers: str | LayerRef | Sequence[LayerRef] | None) -> list[str]:
    """Dotted names of the layers to record.

    ``None`` or ``"conv"``: every convolution (``nn.Conv1d/2d/3d``); ``"all"``: every
    convolution and linear layer; a name, a module, or a list of them (resolved with
    :func:`~seethrough._core.layers.resolve_layer`, which suggests near names on a miss).
    """
    if layers is None or layers == "conv" or layers == "all":
        kinds = _CONV if layers != "all" else _CONV + (nn.Linear,)
        names = [n for n, m in model.named_modules() if n and isinstance(m, kinds)]
        if not names:
            what = "convolution" if layers != "all" else "convolution or linear"
            from .._core.layers import layer_names

            raise LayerError(
                f"{type(model).__name__} has no {what} layers; name the layers to record "
                f"explicitly (some of: {', '.join(layer_names(model)[:8]) or 'none'})"
            )
        return names
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    out: list[str] = []
    for ref in layers:
        if isinstance(ref, str) and "," in ref:
            refs: list[str | nn.Module] = [r.strip() for r in ref.split(",") if r.strip()]
        else:
            refs = [ref]
        for r in refs:
            name, _ = resolve_layer(model, r)
            if not name:
                raise LayerError("the model itself is not a layer; name one of its submodules")
            if name not in out:
                out.append(name)
    if not out:
        raise LayerError("no layers given; name at least one layer, or None for every convolution")
    return out


def check_hookable(model: nn.Module) -> None:
    """Refuse models whose layers cannot carry forward hooks (TorchScript)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"seethrough explains torch.nn.Module models, not {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise ConfigError(
            "a TorchScript model cannot be hooked to read its layers; load it as a Python module "
            "instead (CLI: --model package.module:factory --weights FILE)"
        )


def model_fingerprint(model: nn.Module) -> str:
    """A hash of the model's class, parameter and buffer names, shapes and values."""
    h = hashlib.blake2b(digest_size=16)
    h.update(type(model).__qualname__.encode())
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class UnitExamples(Result):
    """The examples of one unit (ranked: ``top`` descending, ``bottom`` ascending).

    ``*_positions`` are ``(k, D)`` positions of the maximum in the layer output (``D =
    0`` for linear layers); ``*_boxes`` are ``(k, 2 D)`` input boxes of those positions,
    first then last pixel per dimension, inclusive (``None`` without spatial positions).
    """

    layer: str
    unit: int
    top_values: Tensor
    top_indices: Tensor
    top_positions: Tensor
    top_boxes: Tensor | None
    bottom_values: Tensor
    bottom_indices: Tensor
    bottom_positions: Tensor
    bottom_boxes: Tensor | None
    mean: float
    std: float
    frac_positive: float
    n_examples: int

    @property
    def never_positive(self) -> bool:
        """No example gives this unit a positive activation (a dead unit on this data)."""
        return self.frac_positive == 0.0

    @property
    def constant(self) -> bool:
        """Every example gives the same activation: the ranking says nothing.

        The highest activation (``top_values[0]``) equals the lowest (``bottom_values[0]``,
        or ``top_values[-1]`` when the top examples are all of them). With only one end
        kept (``top_k=0`` or ``bottom_k=0``), that extreme equals the mean exactly when
        every value does (the mean of equal float32 values is exact); with neither, the
        standard deviation is zero up to its rounding.
        """
        n = self.n_examples
        if n <= 0:
            return False
        hi = lo = None
        if self.top_values.numel():
            hi = float(self.top_values[0])
            if self.top_values.numel() >= n:
                lo = float(self.top_values[-1])
        if self.bottom_values.numel():
            lo = float(self.bottom_values[0])
            if hi is None and self.bottom_values.numel() >= n:
                hi = float(self.bottom_values[-1])
        if hi is not None and lo is not None:
            return hi == lo
        if hi is not None or lo is not None:
            return (hi if hi is not None else lo) == self.mean
        # std comes from running sums: a constant c != 0 leaves a residue of ~1e-8 |c|
        return self.std <= 1e-6 * abs(self.mean)


class _Running:
    """Running top-k / bottom-k of one layer, plus per-unit sums."""

    def __init__(self, units: int, D: int, k_top: int, k_bot: int) -> None:
        self.top_v = torch.empty(units, 0)
        self.top_i = torch.empty(units, 0, dtype=torch.long)
        self.top_p = torch.empty(units, 0, D, dtype=torch.long)
        self.bot_v = torch.empty(units, 0)
        self.bot_i = torch.empty(units, 0, dtype=torch.long)
        self.bot_p = torch.empty(units, 0, D, dtype=torch.long)
        self.sum = torch.zeros(units, dtype=torch.float64)
        self.sumsq = torch.zeros(units, dtype=torch.float64)
        self.npos = torch.zeros(units, dtype=torch.long)
        self.k_top, self.k_bot = k_top, k_bot

    @staticmethod
    def _merge(v, i, p, bv, bi, bp, k, descending):
        cv, ci, cp = torch.cat([v, bv], 1), torch.cat([i, bi], 1), torch.cat([p, bp], 1)
        # stable: equal values keep the concatenation order, i.e. the lower data-set index
        order = torch.sort(cv, dim=1, descending=descending, stable=True).indices[:, :k]
        return (
            cv.gather(1, order),
            ci.gather(1, order),
            cp.gather(1, order.unsqueeze(-1).expand(-1, -1, cp.shape[-1])),
        )

    def update(self, vals: Tensor, pos: Tensor, start: int) -> None:
        """``vals`` ``(B, U)``, ``pos`` ``(B, U, D)`` for data-set rows ``start, start+1, ...``."""
        B = vals.shape[0]
        bv = vals.t().float()
        bi = torch.arange(start, start + B, dtype=torch.long).expand_as(bv)
        bp = pos.transpose(0, 1).long()
        self.top_v, self.top_i, self.top_p = self._merge(
            self.top_v, self.top_i, self.top_p, bv, bi, bp, self.k_top, True
        )
        self.bot_v, self.bot_i, self.bot_p = self._merge(
            self.bot_v, self.bot_i, self.bot_p, bv, bi, bp, self.k_bot, False
        )
        d = vals.double()
        self.sum += d.sum(0)
        self.sumsq += (d * d).sum(0)
        self.npos += (vals > 0).sum(0)

    def tensors(self, prefix: str) -> dict[str, Tensor]:
        names = ("top_v", "top_i", "top_p", "bot_v", "bot_i", "bot_p", "sum", "sumsq", "npos")
        return {f"{prefix}.{n}": getattr(self, n).contiguous() for n in names}

    def load(self, prefix: str, tensors: Mapping[str, Tensor]) -> None:
        for n in ("top_v", "top_i", "top_p", "bot_v", "bot_i", "bot_p", "sum", "sumsq", "npos"):
            setattr(self, n, tensors[f"{prefix}.{n}"])


#: What the capture hook keeps of one layer's output: per unit ``(B, U)`` maxima over the
#: positions, ``(B, U, D)`` their positions, and the per-sample output shape.
_UnitMaxima = tuple[Tensor, Tensor, tuple[int, ...]]


def _unit_maxima(name: str, module: nn.Module, out: Tensor) -> _UnitMaxima:
    """Reduce a layer's output (a :func:`~seethrough._core.capture.capture` transform, so it
    runs inside the hook, before a later in-place operation can change the output) to the
    maximum over positions of every unit and the position of that maximum. Captured with
    ``clone=False``: only the reduction is kept, so no copy of the output is needed."""
    a = out
    if isinstance(module, nn.Linear) and a.dim() > 2:
        a = a.movedim(-1, 1)  # units are the last dimension of a linear layer
    if a.dim() < 2:
        raise LayerError(
            f"layer {name!r} gives output of shape {tuple(a.shape)}: no unit dimension; pick another layer"
        )
    B, U = a.shape[0], a.shape[1]
    spatial = tuple(a.shape[2:])
    if spatial:
        vals, arg = a.reshape(B, U, -1).max(dim=2)
        pos = torch.stack(torch.unravel_index(arg, spatial), dim=-1) if len(spatial) > 1 else arg.unsqueeze(-1)
    else:
        vals = a.clone()  # the output itself: a later in-place operation must not change it
        pos = torch.empty(B, U, 0, dtype=torch.long)
    return vals.float().cpu(), pos.cpu(), tuple(a.shape[1:])


def _atomic_save(tensors: dict[str, Tensor], meta: dict[str, str], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _frozen(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


#: The fitted per-layer tables that :meth:`DatasetExamples.save` writes (``_BOXES`` only when computed).
_TABLES = (
    "top_values_",
    "top_indices_",
    "top_positions_",
    "bottom_values_",
    "bottom_indices_",
    "bottom_positions_",
    "mean_",
    "std_",
    "frac_positive_",
)
_BOXES = ("top_boxes_", "bottom_boxes_")


class DatasetExamples(Estimator):
    """Top-k and bottom-k dataset examples of every unit of the chosen layers.

    Parameters
    ----------
    model:
        The network (any ``nn.Module`` taking one batched tensor); explained in eval
        mode and left as it was.
    layers:
        ``None`` (every convolution), ``"all"`` (every convolution and linear layer), or
        names/modules (see :func:`select_layers`).
    top_k, bottom_k:
        Examples kept per unit with the highest / lowest activation (``bottom_k``
        defaults to ``top_k``; 0 keeps none).
    batching:
        A :class:`~seethrough._core.batching.Batching`, an int batch size, or None
        (images per forward pass sized from the largest activation of one image).
    checkpoint:
        A file to write the running state to (every ``checkpoint_every`` batches) and to
        resume from; removed when the pass completes.
    progress:
        Called with a short message after every batch.

    Fitted attributes (read-only mappings from layer name)
    ------------------------------------------------------
    ``layers_`` (names, in the order given), ``unit_shapes_`` (per-sample output shape),
    ``top_values_``/``top_indices_`` ``(U, k)`` (descending), ``top_positions_``
    ``(U, k, D)``, ``top_boxes_`` ``(U, k, 2D)`` (None for layers without positions), the
    same ``bottom_*`` (ascending), ``mean_``/``std_`` ``(U,)`` of the activation over the
    data, ``frac_positive_`` ``(U,)``, ``receptive_field_`` (``"arithmetic"``,
    ``"gradient"`` or ``"none"``), ``fields_`` (the :class:`ReceptiveField` of arithmetic
    layers), ``n_examples_``, ``input_shape_``, ``data_``, ``seconds_``, ``resumed_from_``
    (examples already done in a checkpoint when this fit started).
    """

    def __init__(
        self,
        model: nn.Module | None,
        *,
        layers: str | LayerRef | Sequence[LayerRef] | None = None,
        top_k: int = 9,
        bottom_k: int | None = None,
        batching: Batching | int | None = None,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = 20,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.layers, self.batching, self.progress = model, layers, batching, progress
        self.top_k, self.bottom_k = top_k, bottom_k
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every

    # -- settings ---------------------------------------------------------------------
    def _check(self) -> tuple[int, int]:
        if self.model is None:
            raise ConfigError("this DatasetExamples was loaded from a file and has no model to fit")
        check_hookable(self.model)
        k_top = self.top_k
        k_bot = self.top_k if self.bottom_k is None else self.bottom_k
        for name, k in (("top_k", k_top), ("bottom_k", k_bot)):
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise ConfigError(f"{name} must be a non-negative int, got {k!r}")
        if k_top + k_bot == 0:
            raise ConfigError("top_k and bottom_k are both 0: there is nothing to record; ask for top_k >= 1")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be a positive number of batches, got {self.checkpoint_every!r}")
        return k_top, k_bot

    # -- fit --------------------------------------------------------------------------
    def fit(self, data: Any) -> DatasetExamples:
        """Stream over ``data`` (an :class:`~seethrough.atlas.ImageSource`, a
        tensor ``(N, ...)`` or a map-style dataset) once; returns ``self``."""
        k_top, k_bot = self._check()
        source = as_source(data)
        n = len(source)
        if n == 0:
            raise InputError("the data set is empty: there are no examples to rank; give at least one image")
        batching = as_batching(self.batching)
        model = self.model
        assert model is not None  # _check refused a DatasetExamples without one
        start_time = time.perf_counter()
        with model_guard(model, method="dataset examples"):
            names = select_layers(model, self.layers)
            modules = resolve_layers(model, names)
            device = model_device(model) or torch.device("cpu")
            x0 = self._read(source, slice(0, 1), device)
            shapes = self._probe(modules, x0)
            ckpt = None if self.checkpoint is None else Path(self.checkpoint)
            config = {
                "model": model_fingerprint(model),
                "layers": names,
                "top_k": k_top,
                "bottom_k": k_bot,
                "data": source.fingerprint(),
                "n": n,
            }
            state = {nm: _Running(shapes[nm][0], len(shapes[nm]) - 1, k_top, k_bot) for nm in names}
            done, chunk = 0, None
            if ckpt is not None and ckpt.is_file():
                done, chunk = self._resume(ckpt, config, state)
            resumed_from = done
            if chunk is None:
                chunk = forward_chunk_rows(model, x0, batching)
            # one batch of ``chunk`` images per forward pass, read by position from where the
            # checkpoint stopped; only the per-unit maxima of a batch are ever alive
            batches = (self._read(source, slice(b0, min(b0 + chunk, n)), device) for b0 in range(done, n, chunk))
            stream = stream_activations(model, modules, batches, batching=chunk, transform=_unit_maxima, clone=False)
            for batch_no, (rows, store) in enumerate(stream, start=1):
                self._update(store, state, resumed_from + rows.start)
                done = resumed_from + rows.stop
                if self.progress is not None:
                    self.progress(f"examples: {done}/{n} images")
                if ckpt is not None and (batch_no % self.checkpoint_every == 0) and done < n:
                    self._save_checkpoint(ckpt, config, state, done, chunk)
            fields = arithmetic_fields(model, names, x0) if x0.dim() >= 3 else {}
            self._finish(names, shapes, state, n, fields, x0)
            self._gradient_boxes(modules, source, device, batching)
        if ckpt is not None and ckpt.is_file():
            ckpt.unlink()
        self.data_ = _frozen(source.describe())
        self.n_examples_ = n
        self.input_shape_ = tuple(x0.shape[1:])
        self.resumed_from_ = resumed_from
        self.seconds_ = time.perf_counter() - start_time
        return self

    @staticmethod
    def _read(source: ImageSource, sl: slice, device) -> Tensor:
        x = source.get(sl)
        if not isinstance(x, Tensor):
            raise InputError(f"the data source returned {type(x).__name__}, not a tensor")
        if not x.dtype.is_floating_point:
            x = x.float()
        if x.dim() < 2 or x.shape[0] != sl.stop - sl.start:
            raise InputError(
                f"the data source returned shape {tuple(x.shape)} for {sl.stop - sl.start} images; "
                f"it must return (batch, ...) tensors"
            )
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"images {sl.start}..{sl.stop - 1} contain NaN or infinite values; clean the data first")
        return x.to(device)

    def _probe(self, modules: Mapping[str, nn.Module], x0: Tensor) -> dict[str, tuple[int, ...]]:
        """The per-sample output shape of every layer, from one image."""
        assert self.model is not None  # fit checked it
        with torch.no_grad():
            store, _ = run_capture(
                self.model, x0, modules, what="ranked by its activation", transform=_unit_maxima, clone=False
            )
        return {nm: store[nm][2] for nm in modules}

    @staticmethod
    def _update(store: Mapping[str, _UnitMaxima], state: dict, start: int) -> None:
        for nm, (vals, pos, _shape) in store.items():
            if not bool(torch.isfinite(vals).all()):
                bad = (~torch.isfinite(vals)).any(1).nonzero().reshape(-1)[:3] + start
                raise InputError(
                    f"layer {nm!r} gave NaN or infinite activations on images {bad.tolist()}; check "
                    f"the inputs and their preprocessing (range, normalisation)"
                )
            state[nm].update(vals, pos, start)

    # -- checkpoints --------------------------------------------------------------------
    def _save_checkpoint(self, path: Path, config: dict, state: dict, done: int, chunk: int) -> None:
        tensors: dict[str, Tensor] = {}
        for i, nm in enumerate(config["layers"]):
            tensors.update(state[nm].tensors(f"l{i}"))
        meta = {"format": _CKPT_FORMAT, "config": json.dumps(config), "done": str(done), "chunk": str(chunk)}
        _atomic_save(tensors, meta, path)

    def _resume(self, path: Path, config: dict, state: dict) -> tuple[int, int]:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ConfigError(f"cannot read the checkpoint {str(path)!r} ({e}); delete it to start over") from e
        if meta.get("format") != _CKPT_FORMAT:
            raise ConfigError(f"{str(path)!r} is not a dataset-examples checkpoint; delete it or pick another path")
        old = json.loads(meta["config"])
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if diff:
            raise ConfigError(
                f"the checkpoint {str(path)!r} was made with other settings (different "
                f"{', '.join(diff)}); delete it to start over, or resume with the same model, "
                f"layers, top_k/bottom_k and data"
            )
        for i, nm in enumerate(config["layers"]):
            state[nm].load(f"l{i}", tensors)
        return int(meta["done"]), int(meta["chunk"])

    # -- results ------------------------------------------------------------------------
    def _finish(self, names, shapes, state, n, fields: dict[str, ReceptiveField], x0: Tensor) -> None:
        tv, ti, tp, bv, bi, bp = {}, {}, {}, {}, {}, {}
        tb: dict[str, Tensor | None] = {}
        bb: dict[str, Tensor | None] = {}
        mean, std, frac, how = {}, {}, {}, {}
        in_spatial = tuple(x0.shape[2:])
        for nm in names:
            r = state[nm]
            tv[nm], ti[nm], tp[nm] = r.top_v, r.top_i, r.top_p
            bv[nm], bi[nm], bp[nm] = r.bot_v, r.bot_i, r.bot_p
            m = r.sum / n
            mean[nm] = m.float()
            std[nm] = (r.sumsq / n - m * m).clamp(min=0).sqrt().float()
            frac[nm] = r.npos.double().div(n).float()
            spatial = shapes[nm][1:]
            if not spatial or len(spatial) != len(in_spatial):
                how[nm], tb[nm], bb[nm] = "none", None, None
            elif nm in fields:
                how[nm] = "arithmetic"
                tb[nm] = fields[nm].boxes(r.top_p, in_spatial)
                bb[nm] = fields[nm].boxes(r.bot_p, in_spatial)
            else:
                how[nm], tb[nm], bb[nm] = "gradient", None, None  # filled by _gradient_boxes
        self.layers_ = tuple(names)
        self.unit_shapes_ = _frozen({nm: tuple(shapes[nm]) for nm in names})
        self.top_values_, self.top_indices_, self.top_positions_ = _frozen(tv), _frozen(ti), _frozen(tp)
        self.bottom_values_, self.bottom_indices_, self.bottom_positions_ = _frozen(bv), _frozen(bi), _frozen(bp)
        # frozen after the gradient boxes
        self.top_boxes_: Mapping[str, Tensor | None] = tb
        self.bottom_boxes_: Mapping[str, Tensor | None] = bb
        self.mean_, self.std_, self.frac_positive_ = _frozen(mean), _frozen(std), _frozen(frac)
        self.receptive_field_ = _frozen(how)
        self.fields_ = _frozen({nm: fields[nm] for nm in names if how[nm] == "arithmetic"})

    def _gradient_boxes(
        self, modules: Mapping[str, nn.Module], source: ImageSource, device: torch.device, batching: Batching
    ) -> None:
        """Boxes of the non-zero input gradient of each recorded activation."""
        assert self.model is not None  # fit checked it
        tb, bb = dict(self.top_boxes_), dict(self.bottom_boxes_)
        for nm, module in modules.items():
            if self.receptive_field_[nm] != "gradient":
                continue
            pos = torch.cat([self.top_positions_[nm], self.bottom_positions_[nm]], 1)  # (U, kt+kb, D)
            idx = torch.cat([self.top_indices_[nm], self.bottom_indices_[nm]], 1)
            U, K = idx.shape
            units = torch.arange(U).unsqueeze(1).expand(U, K).reshape(-1)
            flat_idx, flat_pos = idx.reshape(-1), pos.reshape(U * K, -1)
            boxes = torch.empty(U * K, 2 * flat_pos.shape[1], dtype=torch.long)
            size = self._grad_chunk(module, source, flat_idx[:1], device, batching)
            for sl in Batching.chunks(U * K, size):
                x = self._read_rows(source, flat_idx[sl], device)
                boxes[sl] = _grad_boxes(self.model, nm, module, x, units[sl], flat_pos[sl])
            boxes = boxes.reshape(U, K, -1)
            kt = self.top_indices_[nm].shape[1]
            tb[nm], bb[nm] = boxes[:, :kt], boxes[:, kt:]
        self.top_boxes_, self.bottom_boxes_ = _frozen(tb), _frozen(bb)

    def _read_rows(self, source: ImageSource, rows: Tensor, device) -> Tensor:
        x = source.get(rows)
        return (x if x.dtype.is_floating_point else x.float()).to(device)

    def _grad_chunk(self, module, source, rows, device, batching: Batching) -> int:
        if batching.batch_size is not None:
            return batching.batch_size
        assert self.model is not None  # fit checked it
        x = self._read_rows(source, rows, device)
        with saved_bytes() as counter:
            _grad_boxes(
                self.model,
                "",
                module,
                x,
                torch.zeros(1, dtype=torch.long),
                torch.zeros(1, x.dim() - 2, dtype=torch.long),
            )
        return batching.rows_per_chunk(counter.total + 2 * x.numel() * x.element_size(), x.device)

    # -- views --------------------------------------------------------------------------
    def _require(self) -> None:
        self.check_fitted("call fit(data) first")

    def n_units(self, layer: str) -> int:
        self._require()
        self._layer(layer)
        return int(self.unit_shapes_[layer][0])

    def _layer(self, layer: str) -> str:
        if layer not in self.layers_:
            import difflib

            close = difflib.get_close_matches(str(layer), self.layers_, n=3, cutoff=0.3)
            raise LayerError(
                f"no examples were recorded for layer {layer!r}; recorded layers: "
                f"{', '.join(map(repr, close or self.layers_[:8]))}"
            )
        return layer

    def unit(self, layer: str, unit: int) -> UnitExamples:
        """The ranked examples and statistics of one unit."""
        self._require()
        layer = self._layer(layer)
        U = int(self.unit_shapes_[layer][0])
        if not isinstance(unit, int) or not 0 <= unit < U:
            raise InputError(f"unit {unit!r} is out of range for layer {layer!r} with {U} units (0..{U - 1})")
        tb, bb = self.top_boxes_[layer], self.bottom_boxes_[layer]
        return UnitExamples(
            layer=layer,
            unit=unit,
            top_values=self.top_values_[layer][unit],
            top_indices=self.top_indices_[layer][unit],
            top_positions=self.top_positions_[layer][unit],
            top_boxes=None if tb is None else tb[unit],
            bottom_values=self.bottom_values_[layer][unit],
            bottom_indices=self.bottom_indices_[layer][unit],
            bottom_positions=self.bottom_positions_[layer][unit],
            bottom_boxes=None if bb is None else bb[unit],
            mean=float(self.mean_[layer][unit]),
            std=float(self.std_[layer][unit]),
            frac_positive=float(self.frac_positive_[layer][unit]),
            n_examples=int(self.n_examples_),
        )

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted tables to one ``.safetensors`` file (written atomically)."""
        self._require()
        path = Path(path)
        tensors: dict[str, Tensor] = {}
        for i, nm in enumerate(self.layers_):
            for key in _TABLES:
                tensors[f"l{i}.{key}"] = getattr(self, key)[nm]
            for key in _BOXES:
                if getattr(self, key)[nm] is not None:
                    tensors[f"l{i}.{key}"] = getattr(self, key)[nm]
        meta = {
            "format": _FORMAT,
            "layers": json.dumps(list(self.layers_)),
            "unit_shapes": json.dumps({k: list(v) for k, v in self.unit_shapes_.items()}),
            "receptive_field": json.dumps(dict(self.receptive_field_)),
            "fields": json.dumps({k: [list(f.stride), list(f.offset), list(f.span)] for k, f in self.fields_.items()}),
            "n_examples": str(self.n_examples_),
            "input_shape": json.dumps(list(self.input_shape_)),
            "data": json.dumps(dict(self.data_), default=str),
            "top_k": str(self.top_k),
            "bottom_k": str(self.top_k if self.bottom_k is None else self.bottom_k),
            "seconds": repr(float(self.seconds_)),
        }
        _atomic_save(tensors, meta, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> DatasetExamples:
        """A fitted object from :meth:`save` (without a model: it cannot be refitted)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise InputError(f"dataset-examples file {str(path)!r} does not exist")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise InputError(f"{str(path)!r} is not a dataset-examples file (format {meta.get('format')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        obj = cls(None, top_k=int(meta["top_k"]), bottom_k=int(meta["bottom_k"]))
        names = json.loads(meta["layers"])
        obj.layers_ = tuple(names)
        obj.unit_shapes_ = _frozen({k: tuple(v) for k, v in json.loads(meta["unit_shapes"]).items()})
        for key in _TABLES + _BOXES:
            setattr(obj, key, _frozen({nm: tensors.get(f"l{i}.{key}") for i, nm in enumerate(names)}))
        obj.receptive_field_ = _frozen(json.loads(meta["receptive_field"]))
        obj.fields_ = _frozen(
            {k: ReceptiveField(tuple(s), tuple(o), tuple(sp)) for k, (s, o, sp) in json.loads(meta["fields"]).items()}
        )
        obj.n_examples_ = int(meta["n_examples"])
        obj.input_shape_ = tuple(json.loads(meta["input_shape"]))
        obj.data_ = _frozen(json.loads(meta["data"]))
        obj.resumed_from_ = 0
        obj.seconds_ = float(meta["seconds"])
        return obj

    def to_csv(self, path: str | Path) -> Path:
        """The table as CSV, one row per (layer, unit, kind, rank): the data-set index,
        the activation, the position (space-separated) and the box (first then last
        pixel per dimension; empty without spatial positions)."""
        import csv

        self._require()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["layer", "unit", "kind", "rank", "index", "activation", "position", "box"])
            for nm in self.layers_:
                for u in range(self.n_units(nm)):
                    info = self.unit(nm, u)
                    for kind in ("top", "bottom"):
                        vals = getattr(info, f"{kind}_values")
                        idx = getattr(info, f"{kind}_indices")
                        pos = getattr(info, f"{kind}_positions")
                        boxes = getattr(info, f"{kind}_boxes")
                        for r in range(vals.numel()):
                            w.writerow(
                                [
                                    nm,
                                    u,
                                    kind,
                                    r,
                                    int(idx[r]),
                                    f"{float(vals[r]):.6g}",
                                    " ".join(str(int(v)) for v in pos[r]),
                                    "" if boxes is None else " ".join(str(int(v)) for v in boxes[r]),
                                ]
                            )
        return path

    def __repr__(self) -> str:
        if not self.is_fitted():
            return f"DatasetExamples(layers={self.layers!r}, top_k={self.top_k}) (not fitted)"
        units = sum(int(self.unit_shapes_[nm][0]) for nm in self.layers_)
        return (
            f"DatasetExamples({len(self.layers_)} layers, {units} units, "
            f"{self.n_examples_} examples, top_k={self.top_k})"
        )


def _grad_boxes(model: nn.Module, name: str, module: nn.Module, x: Tensor, units: Tensor, pos: Tensor) -> Tensor:
    """Per row: bounding box of the input pixels where the gradient of activation
    ``[unit, *pos]`` of ``module`` is non-zero (the whole image if it is zero)."""
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        store, _ = run_capture(
            model, leaf, {name: module}, detach=False, clone=False, what="given a receptive field by its gradient"
        )
    act = store[name]
    if isinstance(module, nn.Linear) and act.dim() > 2:
        act = act.movedim(-1, 1)
    rows = torch.arange(act.shape[0])
    index = (rows, units.to(act.device)) + tuple(pos[:, d].to(act.device) for d in range(pos.shape[1]))
    (g,) = torch.autograd.grad(act[index].sum(), leaf, allow_unused=True)
    spatial = tuple(x.shape[2:])
    R = x.shape[0]
    out = torch.empty(R, 2 * len(spatial), dtype=torch.long)
    nz = torch.zeros(x.shape, dtype=torch.bool) if g is None else (g != 0).cpu()
    nz = nz.any(dim=1)  # over input channels
    for r in range(R):
        for d in range(len(spatial)):
            other = tuple(i for i in range(len(spatial)) if i != d)
            line = nz[r].any(dim=other) if other else nz[r]
            hit = line.nonzero().reshape(-1)
            lo, hi = (int(hit[0]), int(hit[-1])) if hit.numel() else (0, spatial[d] - 1)
            out[r, d], out[r, len(spatial) + d] = lo, hi
    return out
