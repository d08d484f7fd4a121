"""GAN dissection and causal intervention (Bau et al., "GAN Dissection", ICLR 2019).

*Dissection* (:class:`GANDissection`): draw codes ``z ~ N(0, I)``, generate images, segment
them into concepts with a segmenter of the generated images, and compare every unit of a
generator layer (its ``(h, w)`` map, upsampled to the masks) with every concept mask by IoU.
The thresholds and IoUs are those of :func:`seethrough.concepts.dissection.dissect_layers`,
the one implementation that classifier dissection uses too; the masks are made chunk by
chunk from the images generated in the same forward pass (nothing is stored per image).

Threshold rule. The paper chooses, per unit ``u`` and concept ``c``, the threshold
``t_uc`` that maximises the information quality ratio ``I / H`` (mutual information over
joint entropy) of ``(r_u upsampled > t_uc)`` and the concept's mask, on a separate set of
samples (Sec. 3.1; its reference tool does this by default for generators and uses the
0.005 top quantile for classifiers). That is the default here (``threshold="iqr"``): the
threshold is picked among ``bins`` equal-width candidates between the unit's smallest and
largest activation on ``n_selection`` other codes (default: as many as dissected, drawn
from another seed stream), and the IoU is measured on the dissected codes.
``threshold="quantile"`` uses Network Dissection's top ``quantile`` per unit instead
(exact, 0.005 by default). A caveat of ``"iqr"``: a concept that covers most of the image
(a background, "dark") reaches a high IoU with any unit that is active almost everywhere,
even in an untrained generator, so judge labels with the causal test against random units
(:meth:`UnitIntervention.ace_curve`) and :attr:`GANDissectionResult.concept_fraction`.

*Intervention* (:class:`UnitIntervention`, :func:`causal_effect`): a forward hook on the
layer (inside a ``with`` block, removed in ``finally``) sets a set of units ``U`` to 0
(``"ablate"``) or to a high value (``"insert"``; default value: each unit's largest
activation over the codes) at the positions ``P`` (a mask at the layer's resolution; default:
every position), and the segmenter measures the share of the image's pixels showing the
concept. Effects (means over codes ``z``):

* ``"ablate"``: ``E[s_c(x_ablated)] - E[s_c(G(z))]`` (negative: the concept is removed);
* ``"insert"``: ``E[s_c(x_inserted)] - E[s_c(G(z))]``;
* ``"ace"``: the paper's average causal effect ``delta_{U->c} = E[s_c(x_inserted)] -
  E[s_c(x_ablated)]`` (Sec. 3.2),

with ``s_c(x)`` the fraction of the pixels of ``x`` that the segmenter labels ``c``.
:meth:`UnitIntervention.ace_curve` measures the effect of the top-k units by IoU for a
concept (k = 1, 2, 4, ...) against random units of the same count (several draws).

The generator is any ``nn.Module`` ``z (N, Z) -> images (N, C, H, W)`` with a ``latent_dim``
attribute (or ``latent_dim=``); a module that takes ``(N, Z, 1, 1)`` is wrapped with
:class:`seethrough.generative.Generator` first. A segmenter is a callable (or a module)
``images -> {concept: bool (N, H, W)}``, a module with ``concept_masks(images)`` (such a
dict) or ``segment(images)`` (label maps), or returns integer label maps ``(N, H, W)`` /
``(N, M, H, W)`` that ``concepts`` names (``{name: label}`` or ``{name: (map, label)}``).
Every call runs the generator (and a segmenter that is a module) inside
:func:`~seethrough.model_guard`: both are left exactly as they were, also after errors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._core.batching import Batching, as_batching
from .._core.call import ForwardFailed, call_model
from .._core.capture import forward_chunk_rows, resolve_layers
from .._core.errors import ConfigError, InputError, LayerError
from .._core.layers import LayerRef
from .._core.result import Result, register_view
from .._core.seeds import check_seed, generator
from .._core.state import model_guard
from .._core.validation import model_device
from ._ganviews import (
    ace_curve_html,
    effect_html,
    gan_dissection_html,
    plot_ace_curve,
    plot_effect,
    plot_gan_dissection,
)
from .dissection import IQR_METHOD, QUANTILE_METHOD, DissectionResult, check_dissection_settings, dissect_layers

__all__ = [
    "GANDissection",
    "GANDissectionResult",
    "UnitIntervention",
    "InterventionEffect",
    "ACECurve",
    "causal_effect",
    "conv_layers",
    "MODES",
]

#: The interventions :class:`UnitIntervention` knows.
MODES = ("ablate", "insert", "ace")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

#: one segmenter's answer for ``images`` (see the module notes)
SegmenterLike = Callable[[Tensor], Any]


def conv_layers(model: nn.Module) -> list[str]:
    """Dotted names of the model's convolution and transposed-convolution layers."""
    return [n for n, m in model.named_modules() if n and isinstance(m, _CONVS)]


def _conv_hint(model: nn.Module) -> str:
    names = conv_layers(model)
    if not names:
        return "(the generator has no convolution layers; pick a layer whose output is (N, units, h, w))"
    shown = ", ".join(repr(n) for n in names[:10])
    return f"the generator's convolution layers: {shown}" + (", ..." if len(names) > 10 else "")


# --------------------------------------------------------------------- generator checks
def _latent_dim(gen: Any, latent_dim: int | None) -> int:
    if not isinstance(gen, nn.Module):
        raise ConfigError(
            f"the generator must be a torch.nn.Module mapping codes z (N, Z) to images, got {type(gen).__name__}"
        )
    dim = latent_dim if latent_dim is not None else getattr(gen, "latent_dim", None)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(
            f"the latent size of {type(gen).__name__} is unknown (latent_dim={dim!r}): give latent_dim= or set an "
            f"integer latent_dim attribute on the generator"
        )
    return int(dim)


def _check_codes(z: Any, dim: int, what: str = "z") -> Tensor:
    if not isinstance(z, Tensor) or not z.dtype.is_floating_point or z.dim() != 2 or z.shape[1] != dim:
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise InputError(
            f"{what} must be float latent codes of shape (N, {dim}) (the generator's latent_dim), got {got}; "
            f"sample z = torch.randn(n, {dim})"
        )
    if z.shape[0] == 0:
        raise InputError(f"{what} holds no codes; give at least one (hundreds recommended)")
    if not bool(torch.isfinite(z).all()):
        raise InputError(f"{what} contains NaN or infinite values; sample finite codes")
    return z.detach()


def _generate(gen: nn.Module, z: Tensor, dim: int, source: str) -> Tensor:
    """The generator's images of ``z``, with a clear error when it does not take such codes
    or does not give images."""
    try:
        with torch.no_grad():
            out = call_model(gen, z)
    except ForwardFailed as e:
        raise InputError(
            f"the generator {type(gen).__name__} does not take latent codes of shape {tuple(z.shape)} "
            f"(latent_dim={dim}, {source}): {e.__cause__ or e}. Give the generator's true latent size with "
            f"latent_dim=, or wrap a module that takes (N, Z, 1, 1) with "
            f"seethrough.generative.Generator(module, z_shape=(Z, 1, 1))"
        ) from e
    if out.dim() != 4 or not out.dtype.is_floating_point:
        raise InputError(
            f"the generator gives {tuple(out.shape)} {out.dtype} outputs; GAN dissection needs images (N, C, H, W)"
        )
    return out


def _sample(n: int, dim: int, seed: int, *stream: int, device: torch.device | None = None) -> Tensor:
    z = torch.randn(int(n), dim, generator=generator(seed, *stream))
    return z if device is None else z.to(device)


def _check_count(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{what} must be a positive int, got {v!r}")
    return int(v)


@contextmanager
def _guarded(gen: nn.Module, segmenter: Any, method: str) -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(model_guard(gen, method=method))
        if isinstance(segmenter, nn.Module) and segmenter is not gen:
            stack.enter_context(model_guard(segmenter, method=method))
        yield


# --------------------------------------------------------------------------- segmenter
class _Segmentation:
    """A segmenter as one function ``images -> bool (N, concepts, H, W)``; the concept
    names are fixed by the first call."""

    def __init__(self, segmenter: Any, concepts: Sequence[str] | Mapping[str, Any] | None) -> None:
        if not callable(segmenter) and not callable(getattr(segmenter, "concept_masks", None)):
            raise ConfigError(
                f"segmenter must be callable (images -> {{concept: bool (N, H, W)}} or label maps), got "
                f"{type(segmenter).__name__}"
            )
        self.segmenter = segmenter
        self.spec = concepts
        self.names: tuple[str, ...] | None = None
        self.size: tuple[int, ...] = ()

    def _raw(self, images: Tensor) -> Any:
        for attr in ("concept_masks", "segment"):
            fn = getattr(self.segmenter, attr, None)
            if callable(fn):
                return fn(images)
        return self.segmenter(images)

    def _names(self, found: Sequence[str]) -> tuple[str, ...]:
        if self.spec is None:
            return tuple(str(c) for c in found)
        return tuple(str(c) for c in self.spec)

    def __call__(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            raw = self._raw(images)
        n, size = int(images.shape[0]), None
        if isinstance(raw, Mapping):
            names = self._names(list(raw))
            missing = [c for c in names if c not in raw]
            if missing:
                raise InputError(
                    f"the segmenter gives no mask for concept(s) {', '.join(map(repr, missing))}; it gives: "
                    f"{', '.join(map(repr, raw))}"
                )
            masks = [raw[c] for c in names]
            for c, m in zip(names, masks):
                if not isinstance(m, Tensor) or m.dtype != torch.bool or m.dim() != 3 or m.shape[0] != n:
                    got = f"{getattr(m, 'dtype', type(m).__name__)} {tuple(getattr(m, 'shape', ()))}"
                    raise InputError(f"the segmenter's mask of {c!r} must be bool (N={n}, H, W), got {got}")
            out = torch.stack(masks, dim=1) if masks else torch.zeros(n, 0, 1, 1, dtype=torch.bool)
        elif isinstance(raw, Tensor) and raw.dtype == torch.bool and raw.dim() == 4:
            if self.spec is None or isinstance(self.spec, Mapping) or len(self.spec) != raw.shape[1]:
                raise ConfigError(
                    f"the segmenter gives {raw.shape[1]} bool mask channels; name them with concepts=[...] "
                    f"({raw.shape[1]} names)"
                )
            names, out = self._names(self.spec), raw
        elif isinstance(raw, Tensor) and not raw.dtype.is_floating_point and raw.dim() in (3, 4):
            names, out = self._labels(raw)
        else:
            got = f"{getattr(raw, 'dtype', type(raw).__name__)} {tuple(getattr(raw, 'shape', ()))}"
            raise InputError(
                f"the segmenter returned {got}; it must return {{concept: bool (N, H, W)}}, bool masks (N, C, H, W) "
                f"or integer label maps (N, H, W) / (N, M, H, W)"
            )
        if out.shape[0] != n:
            raise InputError(f"the segmenter gave masks for {out.shape[0]} images, not {n}")
        if not names:
            raise InputError("the segmenter gives no concepts; name at least one with concepts=")
        size = tuple(out.shape[2:])
        if self.names is None:
            self.names, self.size = names, size
        elif names != self.names or size != self.size:
            raise InputError(
                f"the segmenter's concepts/size changed between batches: {self.names} {self.size} then {names} {size}"
            )
        return out.cpu()

    def _labels(self, raw: Tensor) -> tuple[tuple[str, ...], Tensor]:
        maps = raw if raw.dim() == 4 else raw[:, None]
        spec = self.spec
        if spec is None:
            raise ConfigError(
                "the segmenter returns label maps; name the concepts with concepts={name: label} (one map) or "
                "{name: (map, label)} (several maps), e.g. {'red': (1, 1)}"
            )
        items: list[tuple[str, int, int]] = []
        if isinstance(spec, Mapping):
            for name, where in spec.items():
                if isinstance(where, int) and not isinstance(where, bool):
                    items.append((str(name), 0, int(where)))
                elif isinstance(where, (tuple, list)) and len(where) == 2:
                    items.append((str(name), int(where[0]), int(where[1])))
                else:
                    raise ConfigError(f"concept {name!r}: give its label (int) or (map, label), got {where!r}")
        else:
            items = [(str(name), 0, i) for i, name in enumerate(spec) if name]
        for name, m, _ in items:
            if not 0 <= m < maps.shape[1]:
                raise ConfigError(f"concept {name!r} reads label map {m}, but the segmenter gives {maps.shape[1]}")
        out = torch.stack([maps[:, m] == lab for _, m, lab in items], dim=1)
        return tuple(name for name, _, _ in items), out


def _concept_index(names: Sequence[str], concept: str) -> int:
    if concept not in names:
        raise InputError(f"concept {concept!r} is not among the segmenter's concepts: {', '.join(map(repr, names))}")
    return list(names).index(concept)


# ------------------------------------------------------------------------ dissection
@dataclass(frozen=True, eq=False)
class GANDissectionResult(DissectionResult):
    """Dissection of a generator layer on generated images (a :class:`DissectionResult`:
    ``result[layer]``, ``table()``, ``summary()``, ``top_units(concept)``, ...).

    Attributes (beyond the dissection's):
        layer: the dissected layer.
        latent_dim: size of the codes.
        seed: seed of the codes (``z``: stream ``seed``; selection codes: stream ``(seed, 1)``).
        n_selection: codes on which the ``"iqr"`` thresholds were chosen (0 for ``"quantile"``).
        concept_fraction: ``(concepts,)`` share of the generated pixels that show each concept.
        image_shape: ``(C, H, W)`` of the generated images.
    """

    layer: str = ""
    latent_dim: int = 0
    seed: int = 0
    n_selection: int = 0
    concept_fraction: Tensor | None = None
    image_shape: tuple[int, ...] = ()


class GANDissection:
    """Which units of a generator layer draw which concepts (see the module notes).

    Parameters
    ----------
    generator:
        ``z (N, Z) -> images (N, C, H, W)``, with ``latent_dim`` (or give ``latent_dim=``).
    layer:
        The layer to dissect (dotted name or module); it must output ``(N, units, h, w)``.
    segmenter:
        What labels the generated images (see the module notes).
    concepts:
        The concepts to dissect: names (default: all the segmenter gives) or, for label
        maps, ``{name: label}`` / ``{name: (map, label)}``.
    kinds:
        Concept -> kind (``"shape"``, ``"color"``, ...) for the summaries; default ``"custom"``.
    threshold:
        ``"iqr"`` (the paper's rule, default) or ``"quantile"`` (Network Dissection's).
    quantile:
        Top quantile of the ``"quantile"`` rule (Network Dissection: 0.005).
    iou_threshold:
        IoU from which a unit counts as a detector of its best concept (0.04).
    bins:
        Candidate thresholds per unit of the ``"iqr"`` rule.
    batching:
        A :class:`~seethrough.Batching`, a batch size or None (automatic).
    """

    def __init__(
        self,
        generator: nn.Module,
        *,
        layer: LayerRef,
        segmenter: SegmenterLike,
        concepts: Sequence[str] | Mapping[str, Any] | None = None,
        kinds: Mapping[str, str] | None = None,
        threshold: str = "iqr",
        quantile: float = 0.005,
        iou_threshold: float = 0.04,
        bins: int = 128,
        latent_dim: int | None = None,
        batching: Batching | int | None = None,
    ) -> None:
        self.generator, self.layer, self.segmenter = generator, layer, segmenter
        self.concepts, self.kinds = concepts, kinds
        self.threshold, self.quantile, self.iou_threshold, self.bins = threshold, quantile, iou_threshold, bins
        self.latent_dim, self.batching = latent_dim, batching

    def dissect(
        self,
        n_samples: int = 2000,
        seed: int = 0,
        *,
        n_selection: int | None = None,
        z: Tensor | None = None,
        selection: Tensor | None = None,
        progress: bool = False,
    ) -> GANDissectionResult:
        """Dissect the layer on ``n_samples`` generated images (codes drawn with ``seed``,
        or the codes ``z`` given). The ``"iqr"`` thresholds are chosen on the codes
        ``selection``, or on ``n_selection`` codes drawn from another stream of ``seed``
        (default: as many as dissected)."""
        check_dissection_settings(self.quantile, self.iou_threshold, self.threshold, self.bins)
        seed = check_seed(seed)
        gen = self.generator
        dim = _latent_dim(gen, self.latent_dim)
        source = "given" if self.latent_dim is not None else "the generator's latent_dim"
        seg = _Segmentation(self.segmenter, self.concepts)
        t0 = time.perf_counter()
        with _guarded(gen, self.segmenter, "GAN dissection"):
            device = model_device(gen)
            if z is None:
                n = _check_count(n_samples, "n_samples")
                codes = _sample(n, dim, seed, device=device)
            else:
                codes = _check_codes(z, dim)
            layers = resolve_layers(gen, self.layer)
            if len(layers) != 1:
                raise LayerError("GANDissection dissects one layer; run it once per layer")
            name = next(iter(layers))
            images = _generate(gen, codes[:1], dim, source)
            seg(images)  # fixes the concept names and the mask size
            assert seg.names is not None
            concepts = seg.names
            chosen_on: tuple[Tensor, Any] | None = None
            n_sel = 0
            if self.threshold == "iqr":
                if selection is not None:
                    sel_codes = _check_codes(selection, dim, "selection")
                else:
                    count = n_selection if n_selection is not None else int(codes.shape[0])
                    sel_codes = _sample(_check_count(count, "n_selection"), dim, seed, 1, device=device)
                n_sel = int(sel_codes.shape[0])
                chosen_on = (sel_codes, lambda sl, out: seg(_out(out)))
            share = torch.zeros(len(concepts), dtype=torch.float64)

            def masks(sl: slice, out: Tensor | None) -> Tensor:
                lab = seg(_out(out))
                share.add_(lab.flatten(2).double().mean(dim=2).sum(dim=0))
                return lab

            result_layers, _, settings = dissect_layers(
                gen,
                layers,
                codes,
                masks,
                concepts=concepts,
                mask_size=(int(seg.size[0]), int(seg.size[1])),
                quantile=self.quantile,
                iou_threshold=self.iou_threshold,
                rule=self.threshold,
                bins=self.bins,
                selection=chosen_on,
                needs_output=True,
                batching=self.batching,
                hint=_conv_hint(gen),
                progress=progress,
            )
        given = dict(self.kinds or {})
        return GANDissectionResult(
            layers=result_layers,
            concepts=concepts,
            kinds={c: str(given.get(c, "custom")) for c in concepts},
            quantile=float(self.quantile),
            iou_threshold=float(self.iou_threshold),
            n_images=int(codes.shape[0]),
            quantile_method=QUANTILE_METHOD if self.threshold == "quantile" else IQR_METHOD,
            seconds=time.perf_counter() - t0,
            settings={
                "quantile": float(self.quantile),
                "iou_threshold": float(self.iou_threshold),
                "latent": f"z ~ N(0, I) of size {dim}" if z is None else "given codes",
                **settings,
            },
            rule=self.threshold,
            layer=name,
            latent_dim=dim,
            seed=seed,
            n_selection=n_sel,
            concept_fraction=(share / max(int(codes.shape[0]), 1)).float(),
            image_shape=tuple(int(s) for s in images.shape[1:]),
        )


def _out(out: Tensor | None) -> Tensor:
    if out is None:  # pragma: no cover - dissect_layers gives the output when asked for it
        raise RuntimeError("the generator's output was not captured")
    return out


# ---------------------------------------------------------------------- intervention
@dataclass(frozen=True, eq=False)
class InterventionEffect(Result):
    """The effect of one intervention on a concept's share of the generated pixels.

    Attributes:
        layer, units, concept, mode: what was done (``mode`` in :data:`MODES`).
        effect: mean over the codes (see the module notes for each mode's definition).
        stderr: its standard error over the codes.
        clean: ``(N,)`` the concept's pixel share of each image without intervention.
        ablated: ``(N,)`` with the units set to 0 (``"ablate"`` and ``"ace"``), else None.
        inserted: ``(N,)`` with the units inserted (``"insert"`` and ``"ace"``), else None.
        value: ``(len(units),)`` the inserted values, or None.
    """

    layer: str
    units: tuple[int, ...]
    concept: str
    mode: str
    effect: float
    stderr: float
    clean: Tensor
    ablated: Tensor | None
    inserted: Tensor | None
    value: Tensor | None
    n_samples: int
    seconds: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def per_sample(self) -> Tensor:
        """``(N,)`` the effect on each image."""
        return _per_sample(self.mode, self.clean, self.ablated, self.inserted)

    def __repr__(self) -> str:
        return (
            f"InterventionEffect({self.mode} {len(self.units)} units of {self.layer} on {self.concept!r}: "
            f"{self.effect:+.4f} +- {self.stderr:.4f}, {self.n_samples} images)"
        )


def _per_sample(mode: str, clean: Tensor, ablated: Tensor | None, inserted: Tensor | None) -> Tensor:
    if mode == "ablate":
        assert ablated is not None
        return ablated - clean
    if mode == "insert":
        assert inserted is not None
        return inserted - clean
    assert ablated is not None and inserted is not None
    return inserted - ablated


def _mean_se(d: Tensor) -> tuple[float, float]:
    n = int(d.numel())
    se = float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return float(d.mean()), se


@dataclass(frozen=True, eq=False)
class ACECurve(Result):
    """Effect of intervening on the top-k units for a concept against k, with random units
    of the same count as the control.

    Attributes:
        layer, concept, mode: what was measured.
        counts: ``(M,)`` the numbers of units k.
        top_units: the top-k units for each k (by IoU with the concept).
        effect: ``(M,)`` the effect of the top-k units; ``effect_stderr`` its standard error.
        random_effects: ``(M, draws)`` the effect of each random draw of k units.
        random_units: the random units of every draw, per k.
        baseline: the concept's mean pixel share without intervention.
    """

    layer: str
    concept: str
    mode: str
    counts: Tensor
    top_units: tuple[tuple[int, ...], ...]
    effect: Tensor
    effect_stderr: Tensor
    random_effects: Tensor
    random_units: tuple[tuple[tuple[int, ...], ...], ...]
    baseline: float
    n_samples: int
    seed: int = 0
    seconds: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def random_draws(self) -> int:
        return int(self.random_effects.shape[1])

    @property
    def random_mean(self) -> Tensor:
        return self.random_effects.mean(dim=1)

    @property
    def random_std(self) -> Tensor:
        d = self.random_effects
        return d.std(dim=1, unbiased=True) if d.shape[1] > 1 else torch.zeros(d.shape[0], dtype=d.dtype)

    def rows(self) -> list[dict[str, Any]]:
        """One row per k: the top units, their effect and the random units' mean and std."""
        out = []
        for i, k in enumerate(self.counts.tolist()):
            out.append(
                {
                    "units": int(k),
                    "top units": ", ".join(map(str, self.top_units[i][:12])) + (", ..." if k > 12 else ""),
                    "effect (top)": round(float(self.effect[i]), 4),
                    "std. error": round(float(self.effect_stderr[i]), 4),
                    "effect (random, mean)": round(float(self.random_mean[i]), 4),
                    "effect (random, std)": round(float(self.random_std[i]), 4),
                }
            )
        return out

    def __repr__(self) -> str:
        parts = ", ".join(
            f"k={int(k)}: {float(e):+.3f} vs {float(r):+.3f}"
            for k, e, r in zip(self.counts, self.effect, self.random_mean)
        )
        return f"ACECurve({self.mode} {self.layer} on {self.concept!r}: {parts})"


@contextmanager
def _unit_edit(module: nn.Module, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """While active, ``module``'s ``(B, K, h, w)`` output has the units ``state["units"]``
    replaced by ``state["values"]`` (``(U,)``) where ``state["where"]`` holds (None: every
    position; ``(h, w)`` or ``(B, h, w)`` bool, the rows of the current chunk); nothing is
    changed while ``state["units"]`` is None. Counts the layer's runs in ``state["ran"]``.
    The hook is removed on exit, also after an exception."""

    def hook(_mod: nn.Module, _inp: object, out: object) -> Tensor | None:
        state["ran"] += 1
        units = state.get("units")
        if units is None:
            return None
        if not isinstance(out, Tensor) or out.dim() != 4:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise LayerError(f"the layer gives {got}; intervene at a layer with (N, units, h, w) maps")
        new = out.clone()
        vals = state["values"].to(device=out.device, dtype=out.dtype).reshape(1, -1, 1, 1)
        where = state.get("where")
        current = new[:, units]
        if where is None:
            new[:, units] = vals.expand_as(current)
        else:
            mask = where.to(out.device).reshape(-1, 1, *where.shape[-2:])
            new[:, units] = torch.where(mask, vals, current)
        return new

    handle = module.register_forward_hook(hook)
    try:
        yield state
    finally:
        handle.remove()


class UnitIntervention:
    """Ablate or insert units of a generator layer and measure the change of a concept in
    the generated images (see the module notes).

    Parameters
    ----------
    generator, layer, segmenter, concepts, latent_dim, batching:
        As for :class:`GANDissection`; ``layer`` must output ``(N, units, h, w)`` maps.
    """

    def __init__(
        self,
        generator: nn.Module,
        *,
        layer: LayerRef,
        segmenter: SegmenterLike,
        concepts: Sequence[str] | Mapping[str, Any] | None = None,
        latent_dim: int | None = None,
        batching: Batching | int | None = None,
    ) -> None:
        self.generator, self.layer, self.segmenter = generator, layer, segmenter
        self.concepts, self.latent_dim, self.batching = concepts, latent_dim, batching

    # -- shared machinery ----------------------------------------------------------------
    def _setup(self, z: Tensor) -> tuple[int, str, nn.Module, tuple[int, int, int], int]:
        """Inside the guard: ``(latent_dim, layer name, module, (units, h, w), rows per chunk)``."""
        gen = self.generator
        dim = _latent_dim(gen, self.latent_dim)
        _check_codes(z, dim)
        layers = resolve_layers(gen, self.layer)
        if len(layers) != 1:
            raise LayerError("intervene at one layer at a time")
        name, module = next(iter(layers.items()))
        shape: list[tuple[int, ...]] = []

        def probe(_m: nn.Module, _i: object, out: object) -> None:
            shape.append(tuple(out.shape) if isinstance(out, Tensor) else ())

        handle = module.register_forward_hook(probe)
        try:
            _generate(gen, z[:1], dim, "given" if self.latent_dim is not None else "the generator's latent_dim")
        finally:
            handle.remove()
        if not shape:
            raise LayerError(f"layer {name!r} did not run when generating; pick a layer on the path to the images")
        if len(shape) > 1:
            raise LayerError(f"layer {name!r} runs {len(shape)} times per image; intervene at a module that runs once")
        if len(shape[0]) != 4:
            raise LayerError(
                f"layer {name!r} outputs shape {shape[0][1:]} per code; unit interventions need (units, h, w) maps "
                f"from a convolution layer: {_conv_hint(gen)}"
            )
        rows = forward_chunk_rows(gen, z, as_batching(self.batching))
        return dim, name, module, (int(shape[0][1]), int(shape[0][2]), int(shape[0][3])), rows

    def _check_units(self, units: Any, n_units: int) -> Tensor:
        try:
            u = torch.as_tensor(units, dtype=torch.long).reshape(-1)
        except (TypeError, ValueError, RuntimeError) as e:
            raise InputError(f"units must be unit indices (ints), got {units!r}") from e
        if u.numel() == 0:
            raise InputError("no units given; name at least one unit to intervene on")
        if int(u.min()) < 0 or int(u.max()) >= n_units:
            raise InputError(f"units must be in 0..{n_units - 1} (the layer has {n_units}), got {u.tolist()}")
        if len(set(u.tolist())) != u.numel():
            raise InputError(f"units repeat: {u.tolist()}")
        return u

    def _positions(self, positions: Any, n: int, hw: tuple[int, int]) -> Tensor | None:
        if positions is None:
            return None
        p = torch.as_tensor(positions)
        if (
            p.dtype != torch.bool
            or tuple(p.shape[-2:]) != hw
            or p.dim() not in (2, 3)
            or (p.dim() == 3 and p.shape[0] != n)
        ):
            raise InputError(
                f"positions must be a bool mask at the layer's resolution, {hw} or ({n}, *{hw}), got "
                f"{p.dtype} {tuple(p.shape)}"
            )
        return p

    def _mode(self, mode: str, value: Any) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if mode == "ablate" and value is not None:
            raise ConfigError("ablation sets the units to 0; value= is for mode='insert' or 'ace'")

    def _shares(
        self,
        z: Tensor,
        module: nn.Module,
        seg: _Segmentation,
        concept: str,
        rows: int,
        *,
        units: Tensor | None = None,
        values: Tensor | None = None,
        where: Tensor | None = None,
    ) -> Tensor:
        """``(N,)`` the concept's pixel share of each generated image, with ``units`` set to
        ``values`` (where ``where`` holds) or without intervention."""
        out = []
        state: dict[str, Any] = {"units": units, "values": values, "where": None, "ran": 0}
        with _unit_edit(module, state):
            for sl in Batching.chunks(int(z.shape[0]), rows):
                state["ran"] = 0
                state["where"] = None if where is None else (where if where.dim() == 2 else where[sl])
                with torch.no_grad():
                    images = call_model(self.generator, z[sl])
                if state["ran"] != 1:
                    raise LayerError(
                        f"the layer ran {state['ran']} times for one batch; intervene at a module that runs once"
                    )
                lab = seg(images)
                c = _concept_index(seg.names or (), concept)
                out.append(lab[:, c].flatten(1).double().mean(dim=1))
        return torch.cat(out)

    def _unit_max(self, z: Tensor, module: nn.Module, rows: int) -> Tensor:
        """Each unit's largest activation over all codes and positions."""
        best: list[Tensor] = []

        def hook(_m: nn.Module, _i: object, out: object) -> None:
            assert isinstance(out, Tensor)
            best.append(out.detach().float().amax(dim=(0, 2, 3)).cpu())

        handle = module.register_forward_hook(hook)
        try:
            for sl in Batching.chunks(int(z.shape[0]), rows):
                with torch.no_grad():
                    call_model(self.generator, z[sl])
        finally:
            handle.remove()
        return torch.stack(best).amax(dim=0)

    def _values(self, value: Any, units: Tensor, unit_max: Tensor | None) -> Tensor:
        if value is None:
            assert unit_max is not None
            return unit_max[units]
        v = torch.as_tensor(value, dtype=torch.float32)
        if v.dim() == 0:
            return v.expand(units.numel()).clone()
        if v.dim() == 1 and v.numel() == units.numel():
            return v
        raise InputError(f"value must be a number or one per unit ({units.numel()}), got shape {tuple(v.shape)}")

    def _measure(
        self,
        mode: str,
        z: Tensor,
        module: nn.Module,
        seg: _Segmentation,
        concept: str,
        rows: int,
        units: Tensor,
        values: Tensor | None,
        where: Tensor | None,
        clean: Tensor,
    ) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """Per-image shares with the units ablated and/or inserted (as ``mode`` needs) and
        the per-image effect."""
        ablated = inserted = None
        if mode in ("ablate", "ace"):
            zeros = torch.zeros(units.numel())
            ablated = self._shares(z, module, seg, concept, rows, units=units, values=zeros, where=where)
        if mode in ("insert", "ace"):
            inserted = self._shares(z, module, seg, concept, rows, units=units, values=values, where=where)
        return ablated, inserted, _per_sample(mode, clean, ablated, inserted)

    # -- public methods --------------------------------------------------------------------
    def effect(
        self,
        units: Sequence[int] | Tensor | int,
        concept: str,
        z: Tensor,
        *,
        mode: str = "ablate",
        value: float | Sequence[float] | Tensor | None = None,
        positions: Tensor | None = None,
    ) -> InterventionEffect:
        """The effect on ``concept`` of intervening on ``units`` for the codes ``z``.

        ``mode``: ``"ablate"`` (units set to 0), ``"insert"`` (set to ``value``) or
        ``"ace"`` (inserted minus ablated), where ``positions`` holds: a bool ``(h, w)`` or
        ``(N, h, w)`` mask at the layer's resolution (None: everywhere). ``value``:
        a number, one per unit, or None (each unit's largest activation over ``z``)."""
        self._mode(mode, value)
        seg = _Segmentation(self.segmenter, self.concepts)
        t0 = time.perf_counter()
        with _guarded(self.generator, self.segmenter, "unit intervention"):
            z = _check_codes(z, _latent_dim(self.generator, self.latent_dim))
            _dim, name, module, (k, h, w), rows = self._setup(z)
            u = self._check_units(units, k)
            where = self._positions(positions, int(z.shape[0]), (h, w))
            clean = self._shares(z, module, seg, concept, rows)
            values = None
            if mode != "ablate":
                values = self._values(value, u, self._unit_max(z, module, rows) if value is None else None)
            ablated, inserted, d = self._measure(mode, z, module, seg, concept, rows, u, values, where, clean)
        mean, se = _mean_se(d)
        return InterventionEffect(
            layer=name,
            units=tuple(u.tolist()),
            concept=concept,
            mode=mode,
            effect=mean,
            stderr=se,
            clean=clean.float(),
            ablated=None if ablated is None else ablated.float(),
            inserted=None if inserted is None else inserted.float(),
            value=values,
            n_samples=int(z.shape[0]),
            seconds=time.perf_counter() - t0,
            settings={
                "value": "given" if value is not None else ("unit max over z" if mode != "ablate" else "0"),
                "positions": "all" if where is None else f"mask {tuple(where.shape)}",
                "share": "fraction of the image's pixels the segmenter labels the concept",
            },
        )

    def ace_curve(
        self,
        dissection: DissectionResult,
        concept: str,
        *,
        counts: Sequence[int] | None = None,
        n_samples: int = 500,
        seed: int = 0,
        random_draws: int = 5,
        mode: str = "ablate",
        value: float | Tensor | None = None,
        positions: Tensor | None = None,
        z: Tensor | None = None,
        progress: bool = False,
    ) -> ACECurve:
        """The effect of the top-k units by IoU with ``concept`` in ``dissection`` (of this
        layer), for each k in ``counts`` (default 1, 2, 4, ... up to half the units), against
        ``random_draws`` sets of k random units of the layer. Codes: ``z``, or ``n_samples``
        drawn from ``seed`` (a stream apart from the dissection's codes of the same seed).
        ``value=None`` inserts each unit's largest activation over the codes."""
        self._mode(mode, value)
        seed = check_seed(seed)
        draws = _check_count(random_draws, "random_draws")
        if not isinstance(dissection, DissectionResult):
            raise InputError(
                f"dissection must be a DissectionResult (GANDissection(...).dissect()), got {type(dissection).__name__}"
            )
        seg = _Segmentation(self.segmenter, self.concepts)
        t0 = time.perf_counter()
        with _guarded(self.generator, self.segmenter, "unit intervention"):
            dim = _latent_dim(self.generator, self.latent_dim)
            if z is None:
                z = _sample(_check_count(n_samples, "n_samples"), dim, seed, 3, device=model_device(self.generator))
            z = _check_codes(z, dim)
            _dim, name, module, (k_units, h, w), rows = self._setup(z)
            if name not in dissection.layers:
                raise LayerError(
                    f"the dissection is of layer(s) {', '.join(map(repr, dissection.layers))}, not {name!r}; "
                    f"dissect {name!r} first"
                )
            if dissection[name].n_units != k_units:
                raise InputError(
                    f"the dissection has {dissection[name].n_units} units at {name!r}; the layer has {k_units}"
                )
            order = dissection.top_units(concept, layer=name)
            ks = self._counts(counts, k_units)
            where = self._positions(positions, int(z.shape[0]), (h, w))
            clean = self._shares(z, module, seg, concept, rows)
            unit_max = self._unit_max(z, module, rows) if (mode != "ablate" and value is None) else None
            effect, stderr, rand, top_sets, rand_sets = [], [], [], [], []
            with tqdm(total=len(ks) * (1 + draws), desc="unit interventions", disable=not progress, leave=False) as bar:
                for k in ks:
                    top = torch.tensor(order[:k], dtype=torch.long)
                    vals = None if mode == "ablate" else self._values(value, top, unit_max)
                    _, _, d = self._measure(mode, z, module, seg, concept, rows, top, vals, where, clean)
                    m, se = _mean_se(d)
                    effect.append(m)
                    stderr.append(se)
                    top_sets.append(tuple(top.tolist()))
                    bar.update(1)
                    row, sets = [], []
                    for j in range(draws):
                        pick = torch.randperm(k_units, generator=generator(seed, 4, k, j))[:k].sort().values
                        vals = None if mode == "ablate" else self._values(value, pick, unit_max)
                        _, _, d = self._measure(mode, z, module, seg, concept, rows, pick, vals, where, clean)
                        row.append(float(d.mean()))
                        sets.append(tuple(pick.tolist()))
                        bar.update(1)
                    rand.append(row)
                    rand_sets.append(tuple(sets))
        return ACECurve(
            layer=name,
            concept=concept,
            mode=mode,
            counts=torch.tensor(ks, dtype=torch.long),
            top_units=tuple(top_sets),
            effect=torch.tensor(effect, dtype=torch.float64),
            effect_stderr=torch.tensor(stderr, dtype=torch.float64),
            random_effects=torch.tensor(rand, dtype=torch.float64),
            random_units=tuple(rand_sets),
            baseline=float(clean.mean()),
            n_samples=int(z.shape[0]),
            seed=seed,
            seconds=time.perf_counter() - t0,
            settings={
                "ranking": f"IoU with {concept!r} ({dissection.describe_threshold()})",
                "random": f"{draws} draws of k units uniformly without replacement among {k_units}",
                "value": "0" if mode == "ablate" else ("unit max over z" if value is None else "given"),
                "positions": "all" if where is None else f"mask {tuple(where.shape)}",
            },
        )

    @staticmethod
    def _counts(counts: Sequence[int] | None, n_units: int) -> list[int]:
        if counts is None:
            ks, k = [], 1
            while k <= max(1, n_units // 2):
                ks.append(k)
                k *= 2
            return ks
        out = []
        for k in counts:
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_units:
                raise ConfigError(f"counts must be ints in 1..{n_units} (the layer's units), got {list(counts)!r}")
            out.append(int(k))
        if not out:
            raise ConfigError("counts is empty; give at least one number of units")
        return out


def causal_effect(
    generator: nn.Module,
    layer: LayerRef,
    units: Sequence[int] | Tensor | int,
    concept: str,
    z: Tensor,
    *,
    segmenter: SegmenterLike,
    concepts: Sequence[str] | Mapping[str, Any] | None = None,
    mode: str = "ablate",
    value: float | Sequence[float] | Tensor | None = None,
    positions: Tensor | None = None,
    latent_dim: int | None = None,
    batching: Batching | int | None = None,
) -> InterventionEffect:
    """:meth:`UnitIntervention.effect` in one call."""
    return UnitIntervention(
        generator, layer=layer, segmenter=segmenter, concepts=concepts, latent_dim=latent_dim, batching=batching
    ).effect(units, concept, z, mode=mode, value=value, positions=positions)


register_view(GANDissectionResult, plot=plot_gan_dissection, html=gan_dissection_html)
register_view(ACECurve, plot=plot_ace_curve, html=ace_curve_html)
register_view(InterventionEffect, plot=plot_effect, html=effect_html)
