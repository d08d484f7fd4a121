"""The latent space of an autoencoder: encode, decode, interpolate and traverse.

:class:`Latent` wraps a model that follows the autoencoder protocol (``encode(x) -> (B, Z)``,
``decode(z)``, ``latent_dim``) or a pair of ``encoder`` / ``decoder`` callables. Every model
call runs inside :func:`~seethrough._core.state.model_guard` (eval mode, frozen parameters,
restored on exit), without gradients, in chunks sized by one
:class:`~seethrough._core.batching.Batching` (an explicit batch size or a memory budget).

Walks (:meth:`Latent.interpolate`, :meth:`Latent.traverse`) return a :class:`LatentWalk`:
the codes, the decoded outputs and an :class:`~seethrough.generative.table.AttributeTable`
of one row per step, to which a ``describe(outputs, z) -> Mapping[str, column]`` callable
adds columns (peptide descriptors, classifier scores, predicted factors, ...).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching
from .._core.errors import ConfigError, InputError
from .._core.forward import forward_row_bytes
from .._core.result import Result
from .._core.state import model_guard
from .._core.validation import model_device
from .directions import Direction, as_direction
from .table import AttributeTable

__all__ = ["Latent", "LatentWalk", "slerp", "lerp", "Describer", "DECODE_WORKING_SET"]

#: Automatic chunks of ``Latent.encode``/``decode`` aim at this many bytes of the largest
#: activation per chunk on CPU. Decoders run fastest when a chunk stays near the size of a
#: core's cache: on this machine's conv VAEs 2-4 MiB was 1.4-2x faster than the forward
#: default of 128 MiB (bench/bench_generative.py), and the peptide GRU did not care.
DECODE_WORKING_SET = 4 * 1024 * 1024

#: ``describe(decoded_outputs, z) -> {column name: values}``
Describer = Callable[[Tensor, Tensor], Mapping[str, Any]]

_METHODS = ("linear", "slerp")
#: sin(angle) below which two codes count as parallel and slerp falls back to linear
_PARALLEL = 1e-6


def lerp(a: Tensor, b: Tensor, alphas: Tensor) -> Tensor:
    """``(1 - t) a + t b`` for each ``t`` in ``alphas``: ``(N, Z)`` from codes ``(Z,)``."""
    t = alphas.to(a.dtype)[:, None]
    return (1 - t) * a[None] + t * b[None]


def slerp(a: Tensor, b: Tensor, alphas: Tensor) -> Tensor:
    """Spherical interpolation of two codes ``(Z,)`` at ``alphas`` ``(N,)``.

    The direction moves along the great circle between ``a/|a|`` and ``b/|b|``
    (``sin((1-t)w)/sin(w) u + sin(tw)/sin(w) v`` with ``cos w = u.v``, at constant angular
    speed) and the norm goes linearly from ``|a|`` to ``|b|``; for codes of equal norm this is
    Shoemake's slerp (White 2016). Parallel or antiparallel codes (no unique great circle),
    and a zero code, fall back to linear interpolation."""
    a64, b64 = a.double(), b.double()
    na, nb = a64.norm(), b64.norm()
    if float(na) == 0.0 or float(nb) == 0.0:
        return lerp(a, b, alphas)
    u, v = a64 / na, b64 / nb
    cos = float(torch.clamp(u @ v, -1.0, 1.0))
    omega = math.acos(cos)
    s = math.sin(omega)
    if s < _PARALLEL:
        return lerp(a, b, alphas)
    t = alphas.double()[:, None]
    direction = (torch.sin((1 - t) * omega) / s) * u[None] + (torch.sin(t * omega) / s) * v[None]
    norm = (1 - t) * na + t * nb
    return (direction * norm).to(a.dtype)


@dataclass(frozen=True, eq=False)
class LatentWalk(Result):
    """A path through latent space and what the decoder makes of it.

    Attributes
    ----------
    z:
        ``(N, Z)`` codes along the path, in order.
    outputs:
        The decoded outputs ``(N, ...)``: images ``(N, C, H, W)``, logits ``(N, L, V)``, ...
    table:
        One row per step: ``alpha`` (interpolations) or ``strength`` (traversals), ``z_norm``,
        and the columns of ``describe``.
    method:
        ``"linear"`` or ``"slerp"`` for interpolations, ``"traverse"`` for traversals.
    alphas:
        ``(N,)`` interpolation weights from 0 (start) to 1 (end), or None.
    strengths:
        ``(N,)`` steps along the direction (traversals), or None.
    direction:
        The direction's name (traversals), else "".
    """

    z: Tensor
    outputs: Tensor
    table: AttributeTable
    method: str
    alphas: Tensor | None = None
    strengths: Tensor | None = None
    direction: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.z.shape[0])

    @property
    def positions(self) -> Tensor:
        """``alphas`` or ``strengths``, whichever the walk has."""
        p = self.alphas if self.alphas is not None else self.strengths
        assert p is not None
        return p

    @property
    def is_image(self) -> bool:
        """Whether the outputs look like images ``(N, C, H, W)`` with 1, 3 or 4 channels."""
        return self.outputs.dim() == 4 and self.outputs.shape[1] in (1, 3, 4)

    def __repr__(self) -> str:
        what = f"direction={self.direction!r}" if self.direction else f"method={self.method!r}"
        return f"LatentWalk({len(self)} steps, {what}, outputs {tuple(self.outputs.shape)}, columns {self.table.names})"


def _modules(*objs: Any) -> list[nn.Module]:
    out: list[nn.Module] = []
    for o in objs:
        if isinstance(o, nn.Module) and all(o is not m for m in out):
            out.append(o)
    return out


class Latent:
    """Encode, decode and walk the latent space of an autoencoder.

    Parameters
    ----------
    model:
        An autoencoder following the protocol (``encode``, ``decode``, ``latent_dim``), or
        None when ``encoder`` and ``decoder`` are given.
    encoder, decoder:
        Callables or modules replacing ``model.encode`` / ``model.decode`` (e.g. a GAN
        generator as ``decoder`` with no encoder).
    batching:
        A :class:`~seethrough._core.batching.Batching`, an int batch size, or None
        (automatic chunks from one row's largest activation, aiming at
        :data:`DECODE_WORKING_SET` per chunk, within the memory budget).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        encoder: Callable[[Tensor], Tensor] | None = None,
        decoder: Callable[[Tensor], Tensor] | None = None,
        batching: Batching | int | None = None,
    ) -> None:
        if model is None and encoder is None and decoder is None:
            raise ConfigError("Latent needs a model (an autoencoder with encode/decode) or encoder= and/or decoder=")
        if model is not None and not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._encoder = encoder if encoder is not None else getattr(model, "encode", None)
        self._decoder = decoder if decoder is not None else getattr(model, "decode", None)
        self.batching = (
            as_batching(batching) if batching is not None else Batching(forward_working_set=DECODE_WORKING_SET)
        )
        self._guarded = _modules(model, encoder, decoder)
        self._latent_dim: int | None = getattr(model, "latent_dim", None)
        self._rows: dict[tuple, int] = {}

    # -- plumbing ---------------------------------------------------------------------
    @property
    def latent_dim(self) -> int | None:
        """``Z``: the model's ``latent_dim``, or learnt from the first encoded batch."""
        return self._latent_dim

    @property
    def device(self) -> torch.device:
        for m in self._guarded:
            dev = model_device(m)
            if dev is not None:
                return dev
        return torch.device("cpu")

    @contextlib.contextmanager
    def _guard(self, method: str) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for m in self._guarded:
                stack.enter_context(model_guard(m, method=method))
            with torch.no_grad():
                yield

    def _chunk_rows(self, fn: Callable[[Tensor], Tensor], kind: str, x: Tensor) -> int:
        if self.batching.batch_size is not None:
            return self.batching.batch_size
        key = (kind, tuple(x.shape[1:]), x.dtype, str(x.device))
        if key not in self._rows:
            peak = forward_row_bytes(self._guarded, x[:1], call=fn)
            self._rows[key] = self.batching.forward_rows_per_chunk(peak, x.device)
        return self._rows[key]

    def _run(self, fn: Callable[[Tensor], Tensor], kind: str, x: Tensor, method: str) -> Tensor:
        outs = []
        with self._guard(method):
            size = self._chunk_rows(fn, kind, x)
            for sl in Batching.chunks(x.shape[0], size):
                out = fn(x[sl])
                if isinstance(out, (tuple, list)):
                    out = out[0]
                if not isinstance(out, Tensor):
                    raise InputError(f"the {kind}r returned {type(out).__name__}; it must return a tensor")
                outs.append(out.detach())
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _inputs(self, x: Any, what: str = "inputs") -> Tensor:
        if isinstance(x, str) or (
            isinstance(x, Sequence) and not isinstance(x, Tensor) and x and all(isinstance(s, str) for s in x)
        ):
            tokens = getattr(self.model, "tokens", None)
            if tokens is None:
                raise InputError(f"{what} are strings, but the model has no tokens(sequences) method to encode them")
            x = tokens([x] if isinstance(x, str) else list(x))
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, Tensor):
            raise InputError(f"{what} must be a tensor with a leading batch dimension, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[0] == 0:
            raise InputError(f"{what} need a leading batch dimension with at least one sample, got {tuple(x.shape)}")
        if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
            raise InputError(f"{what} contain NaN or infinite values; clean them first (torch.nan_to_num)")
        return x.detach().to(self.device)

    def _codes(self, z: Any, what: str = "z") -> Tensor:
        if isinstance(z, np.ndarray):
            z = torch.from_numpy(z)
        if not isinstance(z, Tensor):
            raise InputError(f"{what} must be a tensor of latent codes (N, Z), got {type(z).__name__}")
        if z.dim() == 1:
            z = z[None]
        if z.dim() != 2 or z.shape[0] == 0:
            raise InputError(f"{what} must be latent codes of shape (N, Z) or (Z,), got shape {tuple(z.shape)}")
        if self._latent_dim is not None and z.shape[1] != self._latent_dim:
            raise InputError(f"{what} have {z.shape[1]} dimensions but the latent space has {self._latent_dim}")
        if not z.dtype.is_floating_point:
            z = z.float()
        if not bool(torch.isfinite(z).all()):
            raise InputError(f"{what} contain NaN or infinite values")
        return z.detach().to(self.device)

    # -- encode / decode --------------------------------------------------------------
    def encode(self, x: Any) -> Tensor:
        """Codes ``(B, Z)`` of inputs ``(B, ...)`` (strings for a model with ``tokens``)."""
        if self._encoder is None:
            raise ConfigError("this Latent has no encoder; give a model with encode() or encoder=")
        z = self._run(self._encoder, "encode", self._inputs(x), "encoding")
        if z.dim() != 2:
            raise InputError(f"the encoder returned shape {tuple(z.shape)}; codes must be (B, Z)")
        if self._latent_dim is None:
            self._latent_dim = int(z.shape[1])
        return z

    def encode_distribution(self, x: Any) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` from the model's ``encode_distribution`` (batched and guarded)."""
        fn = getattr(self.model, "encode_distribution", None)
        if fn is None:
            raise ConfigError("the model has no encode_distribution(x) method")
        x = self._inputs(x)
        mus, logvars = [], []
        with self._guard("encoding"):
            size = self._chunk_rows(lambda t: fn(t)[0], "encode", x)
            for sl in Batching.chunks(x.shape[0], size):
                mu, logvar = fn(x[sl])
                mus.append(mu.detach())
                logvars.append(logvar.detach())
        return torch.cat(mus), torch.cat(logvars)

    def decode(self, z: Any) -> Tensor:
        """Decoded outputs of codes ``(N, Z)``."""
        if self._decoder is None:
            raise ConfigError("this Latent has no decoder; give a model with decode() or decoder=")
        return self._run(self._decoder, "decode", self._codes(z), "decoding")

    # -- walks ------------------------------------------------------------------------
    def _walk(
        self,
        z: Tensor,
        first: dict[str, Any],
        describe: Describer | None,
        **fields: Any,
    ) -> LatentWalk:
        outputs = self.decode(z).cpu()
        z = z.cpu()
        cols: dict[str, Any] = dict(first)
        cols["z_norm"] = z.double().norm(dim=1)
        if describe is not None:
            extra = describe(outputs, z)
            if not isinstance(extra, Mapping):
                raise InputError(f"describe must return a mapping of column name -> values, got {type(extra).__name__}")
            clash = [k for k in extra if k in cols]
            if clash:
                raise InputError(f"describe returned columns {clash} that the walk already has; rename them")
            cols.update(extra)
        return LatentWalk(z=z, outputs=outputs, table=AttributeTable(cols), **fields)

    def interpolate(
        self, a: Any, b: Any, *, steps: int = 8, method: str = "linear", describe: Describer | None = None
    ) -> LatentWalk:
        """Encode inputs ``a`` and ``b`` (one sample each, batch dimension 1, or a string for a
        sequence model) and interpolate their codes (:meth:`interpolate_z`)."""
        za, zb = self.encode(a), self.encode(b)
        for what, z in (("a", za), ("b", zb)):
            if z.shape[0] != 1:
                raise InputError(f"{what} must be one sample (batch dimension 1, e.g. x[i:i+1]), got {z.shape[0]}")
        return self.interpolate_z(za[0], zb[0], steps=steps, method=method, describe=describe)

    def interpolate_z(
        self, z_a: Any, z_b: Any, *, steps: int = 8, method: str = "linear", describe: Describer | None = None
    ) -> LatentWalk:
        """``steps`` codes from ``z_a`` to ``z_b`` (both ends included), ``"linear"`` or
        ``"slerp"`` (:func:`slerp`), decoded and described."""
        if method not in _METHODS:
            raise ConfigError(f"method must be one of {_METHODS}, got {method!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ConfigError(f"steps must be an int >= 2 (both ends are included), got {steps!r}")
        za, zb = self._codes(z_a, "z_a"), self._codes(z_b, "z_b")
        if za.shape[0] != 1 or zb.shape[0] != 1:
            raise InputError("z_a and z_b must be one code each, shape (Z,) or (1, Z)")
        if za.shape[1] != zb.shape[1]:
            raise InputError(f"z_a has {za.shape[1]} dimensions and z_b {zb.shape[1]}")
        alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        fn = slerp if method == "slerp" else lerp
        z = fn(za[0].cpu(), zb[0].cpu(), alphas)
        z[0], z[-1] = za[0].cpu(), zb[0].cpu()  # the ends exactly
        return self._walk(
            z.to(self.device),
            {"alpha": alphas},
            describe,
            method=method,
            alphas=alphas.float(),
            settings={"steps": steps, "method": method},
        )

    def traverse(
        self,
        z0: Any,
        direction: Direction | Tensor | int,
        *,
        strengths: Sequence[float] | Tensor = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
        describe: Describer | None = None,
    ) -> LatentWalk:
        """Codes ``z0 + s * v`` for each strength ``s``, where ``v`` is the unit vector of
        ``direction`` (a fitted :class:`~seethrough.generative.directions.Direction`, a
        vector, or an int: that latent coordinate). ``z0`` is one code ``(Z,)`` or ``(1, Z)``."""
        z = self._codes(z0, "z0")
        if z.shape[0] != 1:
            raise InputError(f"z0 must be one code, shape (Z,) or (1, Z), got {tuple(z.shape)}")
        d = as_direction(direction, int(z.shape[1]))
        s = torch.as_tensor(np.asarray(strengths, dtype=np.float64)).reshape(-1)
        if s.numel() == 0 or not bool(torch.isfinite(s).all()):
            raise ConfigError("strengths must be a non-empty sequence of finite numbers")
        zs = d.apply(z.cpu().expand(s.numel(), -1), s.to(z.dtype))
        return self._walk(
            zs.to(self.device),
            {"strength": s},
            describe,
            method="traverse",
            strengths=s.float(),
            direction=d.label,
            settings={"direction": d.label},
        )

    def traverse_input(
        self,
        x: Any,
        direction: Direction | Tensor | int,
        *,
        strengths: Sequence[float] | Tensor = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
        describe: Describer | None = None,
    ) -> LatentWalk:
        """:meth:`traverse` from the code of one input ``x`` (batch dimension 1)."""
        z = self.encode(x)
        if z.shape[0] != 1:
            raise InputError(f"x must be one sample (batch dimension 1), got {z.shape[0]}")
        return self.traverse(z, direction, strengths=strengths, describe=describe)

    def __repr__(self) -> str:
        name = type(self.model).__name__ if self.model is not None else "callables"
        return f"Latent({name}, latent_dim={self._latent_dim})"
