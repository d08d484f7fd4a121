"""Creative decoding: decode with units that the training data rarely activates turned on.

After Das et al. (creative decoding) and Cintas et al. (IJCAI 2022, "Towards creativity
characterization of generative models via group-based subset scanning"): a decoder's units
(the channels of a conv layer, the features of a linear layer) that are low-active on the
codes of the training set carry what the decoder can draw but the data seldom asks for.
Setting a few of them to a high value while decoding gives samples off the data's usual
path ("creative"), which are compared with normal decoding and with a control that perturbs
the same number of *randomly chosen* units of the layer (any unit, not only low-active
ones) by the same value, or adds Gaussian noise to the codes.

:class:`CreativeDecoder` ``fit(z_train)`` decodes the training codes and records, per unit,
its activation rate (the share of codes for which the unit's largest value over positions
exceeds ``threshold``) and its maximum; the low-active units are those with a rate of at
most ``max_rate``. The value a chosen unit is set to is ``strength`` times a reference:
the layer's ``quantile`` over all units, positions and codes (``reference="quantile"``,
the default) or the unit's own maximum (``reference="unit_max"``). The hook that sets
the units exists only inside a ``with`` block (``try/finally``), under
:func:`~seethrough.model_guard`: the decoder is left as it was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching
from .._core.capture import capture
from .._core.errors import ConfigError, InputError, LayerError
from .._core.estimator import Estimator
from .._core.layers import LayerRef, resolve_layer
from .._core.result import Result
from .._core.seeds import check_seed, generator
from .._core.state import model_guard

__all__ = ["CreativeDecoder", "CreativeSamples", "set_units"]


def _decode_fn(decoder: nn.Module) -> Callable[[Tensor], Tensor]:
    """``decoder.decode`` for an autoencoder (the family's protocol), else ``decoder``."""
    fn = getattr(decoder, "decode", None)
    return fn if callable(fn) else decoder


def _as_codes(z: Any, name: str = "z") -> Tensor:
    if not isinstance(z, Tensor):
        z = torch.as_tensor(z)
    if z.dim() != 2 or not z.dtype.is_floating_point:
        raise InputError(f"{name} must be a float tensor of codes (samples, latent_dim), got shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise InputError(f"{name} contains NaN or inf")
    return z.detach()


def _unit_view(out: Tensor, unit_dim: int) -> Tensor:
    """``out`` with the unit dimension second: ``(B, U, ...)``."""
    d = unit_dim % out.dim()
    if d == 0:
        raise LayerError("unit_dim cannot be the batch dimension (0); use 1 for channels, -1 for features last")
    return out.movedim(d, 1)


@contextmanager
def set_units(module: nn.Module, unit_dim: int = 1) -> Iterator[dict[str, Any]]:
    """While active, ``module``'s output has, for row ``i`` of each forward pass, the units
    ``state["mask"][i]`` (a ``(B, U)`` bool tensor) set to ``state["values"]`` (``(U,)`` or a
    scalar) at every position. ``state["mask"] = None`` leaves the output alone. The hook is
    removed on exit, also after an exception."""
    state: dict[str, Any] = {"mask": None, "values": None, "ran": 0}

    def hook(_mod: nn.Module, _inp: object, out: object) -> Tensor | None:
        mask = state["mask"]
        if mask is None:
            return None
        if not isinstance(out, Tensor):
            raise LayerError(f"the layer returns a {type(out).__name__}; set units at a layer that returns a tensor")
        view = _unit_view(out, unit_dim)
        if tuple(mask.shape) != tuple(view.shape[:2]):
            raise LayerError(
                f"the layer gives {tuple(view.shape[:2])} (samples, units) but the unit mask has shape "
                f"{tuple(mask.shape)}; check unit_dim"
            )
        shape = (*mask.shape, *([1] * (view.dim() - 2)))
        values = torch.as_tensor(state["values"], dtype=view.dtype, device=view.device)
        if values.dim() == 1:
            values = values.reshape(1, -1, *([1] * (view.dim() - 2)))
        new = torch.where(mask.to(view.device).reshape(shape), values, view)
        state["ran"] += 1
        return new.movedim(1, unit_dim % out.dim()).contiguous()

    handle = module.register_forward_hook(hook)
    try:
        yield state
    finally:
        handle.remove()


@dataclass(frozen=True, eq=False)
class CreativeSamples(Result):
    """Normal, control and creative decodings of the same codes ``z``, side by side.

    ``units`` ``(M, k)``: the low-active units set in each creative sample; ``control``:
    the control decoding (``control_kind``: ``"random units"``, with ``control_units`` the
    randomly chosen units of the layer, or ``"z noise"``, Gaussian noise of std
    ``noise`` added to the codes). ``value``: what each set unit was set to (per unit,
    ``(U,)``). ``creative_change`` and ``control_change`` ``(M,)``: mean absolute difference
    from the normal decoding."""

    z: Tensor
    normal: Tensor
    creative: Tensor
    control: Tensor
    units: Tensor
    control_units: Tensor | None
    control_kind: str
    value: Tensor
    strength: float
    noise: float | None
    layer: str
    creative_change: Tensor
    control_change: Tensor
    seed: int = 0
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(self.z.shape[0])

    def is_image(self) -> bool:
        return self.normal.dim() == 4 and self.normal.shape[1] in (1, 3)


class CreativeDecoder(Estimator):
    """Decode with low-active units of ``layer`` set high (see the module notes).

    Parameters
    ----------
    decoder:
        The decoder (``z -> outputs``), or an autoencoder with a ``decode(z)`` method;
        ``layer`` is one of its modules (dotted name).
    layer:
        The layer whose units are set; its output is ``(B, U, ...)`` (``unit_dim=1``: the
        channels of a conv layer, a linear layer's features) or ``(B, ..., U)`` with
        ``unit_dim=-1``.
    quantile:
        The reference of ``reference="quantile"``: this quantile of the layer's values over
        all units, positions and training codes.
    threshold:
        A unit is active on a code when its largest value over positions exceeds this.
    max_rate:
        Low-active units: an activation rate of at most this.
    reference:
        ``"quantile"`` or ``"unit_max"`` (each unit's own maximum on the training codes;
        the quantile for a unit whose maximum is not positive).

    Fitted: ``activation_rate_`` ``(U,)``, ``unit_max_`` ``(U,)``, ``reference_value_``
    (the layer's quantile), ``low_active_units_`` (increasing rate), ``layer_name_``.
    """

    def __init__(
        self,
        decoder: nn.Module,
        *,
        layer: LayerRef,
        quantile: float = 0.99,
        threshold: float = 0.0,
        max_rate: float = 0.1,
        reference: str = "quantile",
        unit_dim: int = 1,
        batching: Batching | int | None = None,
    ) -> None:
        self.decoder = decoder
        self.layer = layer
        self.quantile = quantile
        self.threshold = threshold
        self.max_rate = max_rate
        self.reference = reference
        self.unit_dim = unit_dim
        self.batching = batching

    # -- running the decoder -----------------------------------------------------------
    def _rows(self, z: Tensor) -> int:
        b = as_batching(self.batching)
        if b.batch_size is not None:
            return b.batch_size
        return max(1, min(b.max_forward_rows, 1024))

    def _check(self) -> None:
        if not isinstance(self.decoder, nn.Module):
            raise TypeError(f"decoder must be a torch.nn.Module, got {type(self.decoder).__name__}")
        if not 0 < self.quantile < 1:
            raise ConfigError(f"quantile must be in (0, 1), got {self.quantile!r}")
        if not 0 <= self.max_rate < 1:
            raise ConfigError(f"max_rate must be in [0, 1), got {self.max_rate!r}")
        if self.reference not in ("quantile", "unit_max"):
            raise ConfigError(f"reference must be 'quantile' or 'unit_max', got {self.reference!r}")

    def fit(self, z_train: Any) -> CreativeDecoder:
        """Decode the training codes and find the low-active units of the layer."""
        self._check()
        z = _as_codes(z_train, "z_train")
        name, module = resolve_layer(self.decoder, self.layer)
        decode = _decode_fn(self.decoder)
        peaks: list[Tensor] = []
        sample: list[Tensor] = []
        stride = 0  # rows kept for the quantile: every stride-th code (bounds memory; independent of chunks)
        with model_guard(self.decoder, method="creative decoding"), torch.no_grad():
            for sl in Batching.chunks(z.shape[0], self._rows(z)):
                store: dict[str, Any] = {}
                with capture({name: module}, store, clone=False):
                    decode(z[sl])
                if name not in store:
                    raise LayerError(f"layer {name!r} did not run while decoding; pick a layer of the decoder")
                view = _unit_view(store[name].float(), self.unit_dim)
                flat = view.reshape(view.shape[0], view.shape[1], -1)
                peaks.append(flat.amax(dim=2).cpu())
                if stride == 0:
                    stride = max(1, math.ceil(z.shape[0] * flat[0].numel() / (1 << 22)))
                rows = torch.arange(sl.start, sl.stop)
                sample.append(flat[(rows % stride == 0).to(flat.device)].reshape(-1).cpu())
        peak = torch.cat(peaks)
        rate = (peak > self.threshold).double().mean(0)
        self.activation_rate_ = rate
        self.unit_max_ = peak.amax(0).double()
        self.reference_value_ = float(torch.quantile(torch.cat(sample).double(), self.quantile))
        order = torch.argsort(rate, stable=True)
        low = order[rate[order] <= self.max_rate]
        if low.numel() == 0:
            raise ConfigError(
                f"no unit of layer {name!r} has an activation rate <= max_rate={self.max_rate} on the training codes "
                f"(the lowest is {float(rate.min()):.3f}); raise max_rate, raise threshold, or pick another layer"
            )
        self.low_active_units_ = low
        self.layer_name_ = name
        self.n_units_ = int(rate.numel())
        return self

    # -- choosing and setting units ----------------------------------------------------
    def unit_values(self, strength: float = 1.0) -> Tensor:
        """What each unit is set to: ``strength`` x its reference, ``(U,)``."""
        self.check_fitted()
        if self.reference == "unit_max":
            # a unit that never exceeded 0 has no useful maximum: it gets the layer's quantile
            ref = torch.where(
                self.unit_max_ > 0, self.unit_max_, torch.full_like(self.unit_max_, self.reference_value_)
            )
        else:
            ref = torch.full((self.n_units_,), self.reference_value_, dtype=torch.float64)
        return float(strength) * ref

    def choose_units(self, n_samples: int, n_units: int | None = None, *, seed: int = 0, pool: str = "low") -> Tensor:
        """``(n_samples, k)`` units drawn without replacement for each sample (sample ``i``
        from the stream ``(seed, i)``, so independent of chunking): from the low-active units
        (``pool="low"``) or from every unit of the layer (``pool="all"``, the control)."""
        self.check_fitted()
        seed = check_seed(seed)
        candidates = self.low_active_units_ if pool == "low" else torch.arange(self.n_units_)
        k = self._n_units(n_units)
        if k > candidates.numel():
            raise ConfigError(
                f"n_units={k} but only {candidates.numel()} low-active units were found; lower n_units or raise "
                f"max_rate"
            )
        stream = 1 if pool == "low" else 2
        out = torch.empty(n_samples, k, dtype=torch.long)
        for i in range(n_samples):
            perm = torch.randperm(candidates.numel(), generator=generator(seed, stream, i))[:k]
            out[i] = candidates[perm]
        return out

    def _n_units(self, n_units: int | None) -> int:
        if n_units is None:
            return int(min(3, self.low_active_units_.numel()))
        if isinstance(n_units, bool) or not isinstance(n_units, int) or n_units < 1:
            raise ConfigError(f"n_units must be a positive int, got {n_units!r}")
        return n_units

    def _run(self, z: Tensor, units: Tensor | None, values: Tensor | None) -> Tensor:
        _, module = resolve_layer(self.decoder, self.layer_name_)
        decode = _decode_fn(self.decoder)
        outs = []
        with model_guard(self.decoder, method="creative decoding"), torch.no_grad():
            with set_units(module, self.unit_dim) as state:
                state["values"] = values
                for sl in Batching.chunks(z.shape[0], self._rows(z)):
                    if units is None:
                        state["mask"] = None
                    else:
                        mask = torch.zeros(sl.stop - sl.start, self.n_units_, dtype=torch.bool)
                        mask.scatter_(1, units[sl], True)
                        state["mask"] = mask
                    outs.append(decode(z[sl]).detach())
                if units is not None and state["ran"] == 0 and z.shape[0] > 0:
                    raise LayerError(f"layer {self.layer_name_!r} did not run while decoding")
        return torch.cat(outs) if outs else torch.empty(0)

    def decode(
        self,
        z: Any,
        *,
        strength: float = 1.0,
        n_units: int | None = None,
        units: Sequence[int] | Tensor | None = None,
        seed: int = 0,
    ) -> Tensor:
        """Decode ``z`` with units set to ``strength`` x their reference: ``units`` (the same
        for every sample; any units of the layer) or, by default, ``n_units`` low-active
        units drawn per sample (seeded; 3 or as many as were found)."""
        self.check_fitted()
        zz = _as_codes(z)
        return self._run(zz, self._units_for(zz.shape[0], n_units, units, seed), self.unit_values(strength))

    def _units_for(self, m: int, n_units: int | None, units: Sequence[int] | Tensor | None, seed: int) -> Tensor:
        if units is None:
            return self.choose_units(m, n_units, seed=seed)
        u = torch.as_tensor(units, dtype=torch.long).reshape(-1)
        if u.numel() == 0 or bool(((u < 0) | (u >= self.n_units_)).any()):
            raise ConfigError(f"units must be indices in [0, {self.n_units_}) of layer {self.layer_name_!r}, got {u}")
        return u[None, :].expand(m, -1).contiguous()

    def compare(
        self,
        z: Any,
        *,
        strength: float = 1.0,
        n_units: int | None = None,
        noise: float | None = None,
        seed: int = 0,
    ) -> CreativeSamples:
        """Normal, control and creative decodings of ``z`` (:class:`CreativeSamples`).

        The control sets the same number of units of the layer, drawn from all units, to
        the same values; with ``noise`` (a std) it decodes ``z + noise * N(0, I)`` instead."""
        start = time.perf_counter()
        self.check_fitted()
        zz = _as_codes(z)
        m = zz.shape[0]
        values = self.unit_values(strength)
        units = self.choose_units(m, n_units, seed=seed)
        normal = self._run(zz, None, None)
        creative = self._run(zz, units, values)
        control_units: Tensor | None = None
        if noise is None:
            control_units = self.choose_units(m, units.shape[1], seed=seed, pool="all")
            control = self._run(zz, control_units, values)
            kind = "random units"
        else:
            if not math.isfinite(noise) or noise <= 0:
                raise ConfigError(f"noise must be a positive std, got {noise!r}")
            eps = torch.randn(zz.shape, generator=generator(check_seed(seed), 3), dtype=zz.dtype)
            control = self._run(zz + float(noise) * eps.to(zz.device), None, None)
            kind = "z noise"

        def change(out: Tensor) -> Tensor:
            return (out - normal).abs().reshape(m, -1).mean(1).double().cpu()

        return CreativeSamples(
            z=zz.cpu(),
            normal=normal.cpu(),
            creative=creative.cpu(),
            control=control.cpu(),
            units=units,
            control_units=control_units,
            control_kind=kind,
            value=values,
            strength=float(strength),
            noise=None if noise is None else float(noise),
            layer=self.layer_name_,
            creative_change=change(creative),
            control_change=change(control),
            seed=int(seed),
            seconds=time.perf_counter() - start,
        )
