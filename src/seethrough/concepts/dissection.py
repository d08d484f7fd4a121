"""Network dissection (Bau et al. 2017): which units of a convolution layer detect which
concepts, measured by the overlap of their strongest activations with concept masks.

The one implementation of unit thresholds and IoUs in seethrough: classifier dissection
(:meth:`Dissection.dissect` on scenes with masks), dissection of any model whose inputs are
not images (:meth:`Dissection.dissect_inputs`: latent codes, say, with masks of whatever
the model's output shows) and GAN dissection (:class:`seethrough.concepts.gan.GANDissection`:
masks from a segmenter of the generated images, per chunk) all run :func:`dissect_layers`.

For each unit ``k`` of a layer, with masks of size ``H x W`` (their size sets the resolution,
not the inputs'):

1. the threshold. Two rules:

   * ``"quantile"`` (Network Dissection, the default): ``T_k`` is the top ``quantile``
     (default 0.005) of the unit's activations over every position of every input, at the
     layer's resolution. It is exact: a first pass keeps, per unit, the
     ``ceil(quantile * N * h * w)`` largest values seen so far (a running top-k) and
     ``T_k`` is the smallest of them;
   * ``"iqr"`` (GAN Dissection, Bau et al. 2019, Sec. 3.1): one threshold ``T_kc`` per unit
     *and concept*, the one that maximises the information quality ratio ``I / H`` (mutual
     information over joint entropy) of the binary maps ``S_k > T_kc`` and the concept's
     mask. It is chosen among ``bins`` equal-width thresholds between the unit's smallest
     and largest activation (``lo + j * (hi - lo) / bins``, ``j = 0 .. bins - 1``), from
     exact pixel counts above each of them (one histogram per unit and concept), and on a
     *selection* set of inputs that may differ from the one the IoU is measured on (the
     paper uses a separate set);
2. a pass upsamples each activation map to the mask resolution (bilinear,
   ``align_corners=False`` as ``F.interpolate``, computed as two matrix products) and
   thresholds it: ``M_k = S_k > T_k`` (strictly, so a unit whose threshold is 0 marks only
   where it is active);
3. ``IoU(k, c) = sum |M_k & L_c| / sum |M_k | L_c|`` with intersection and union summed
   over all inputs (as in the papers), for every concept mask ``L_c``;
4. the unit is labelled with its best concept; it is *interpretable* when that IoU
   reaches ``iou_threshold`` (paper: 0.04).

Memory is bounded by the batch: the data stream through the model twice (once per
pass; three times for ``"iqr"`` with a separate selection set) and only the running top-k
values (``quantile`` of the activations, 0.5% by default) or the histograms
(``units x (bins + 1) x concepts`` counts), the IoU counts and one chunk's upsampled maps
are kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._core.batching import Batching, as_batching
from .._core.capture import resolve_layers, run_capture, stream_activations
from .._core.errors import ConfigError, InputError, LayerError
from .._core.layers import LayerRef
from .._core.result import Result
from .._core.state import model_guard
from ._common import check_images, layer_hint

__all__ = [
    "ConceptMasks",
    "Dissection",
    "DissectionResult",
    "LayerDissection",
    "QUANTILE_METHOD",
    "IQR_METHOD",
    "THRESHOLD_RULES",
    "MaskFn",
    "bilinear_matrix",
    "dissect_layers",
    "check_masks",
    "check_dissection_settings",
    "probe_layers",
    "information_quality_ratio",
]

#: How the per-unit threshold is computed (stated in every result).
QUANTILE_METHOD = "exact: running top-k per unit over all positions of all images, at layer resolution"

#: How the per-unit-and-concept threshold of the ``"iqr"`` rule is computed.
IQR_METHOD = (
    "binned: per unit and concept, the one of `bins` equal-width thresholds between the unit's smallest and "
    "largest activation that maximises the information quality ratio I/H (mutual information over joint "
    "entropy) of the upsampled map above it and the concept mask (GAN Dissection)"
)

#: The threshold rules :func:`dissect_layers` knows.
THRESHOLD_RULES = ("quantile", "iqr")

#: The masks of one chunk: ``fn(rows, output)`` -> bool ``(B, concepts, H, W)``, where ``rows``
#: are the chunk's rows in the stream and ``output`` the model's output on them (None unless
#: :func:`dissect_layers` was asked for it with ``needs_output=True``).
MaskFn = Callable[[slice, Tensor | None], Tensor]

#: the capture key of the model's own output (not a dotted module name)
_OUTPUT = "\x00output"


@runtime_checkable
class ConceptMasks(Protocol):
    """What :meth:`Dissection.dissect` reads: scenes and one pixel mask per concept.

    Any object with these attributes will do (e.g.
    :class:`seethrough.data.concepts.ConceptScenes`); ``kinds`` (concept -> kind, e.g.
    ``"color"``) is optional, a concept without one is of kind ``"custom"``.

    Attributes:
        images: ``(N, C, H, W)`` images.
        masks: concept name -> bool ``(N, H, W)``, the pixels that show the concept.
        concepts: the concept names (the order of the results' columns).
    """

    @property
    def images(self) -> Tensor: ...

    @property
    def masks(self) -> Mapping[str, Tensor]: ...

    @property
    def concepts(self) -> Sequence[str]: ...


def check_masks(masks: Any, concepts: Sequence[str], size: tuple[int, ...]) -> None:
    """Raise :class:`InputError` unless every concept has a bool mask of shape ``size``."""
    for c in concepts:
        m = masks.get(c) if isinstance(masks, Mapping) else None
        if not isinstance(m, Tensor) or m.dtype != torch.bool or tuple(m.shape) != tuple(size):
            what = (
                "missing" if m is None else f"{getattr(m, 'dtype', type(m).__name__)} {tuple(getattr(m, 'shape', ()))}"
            )
            raise InputError(f"mask of concept {c!r} must be a bool tensor of shape {tuple(size)}, got {what}")


def _check_scenes(data: Any) -> tuple[Tensor, Mapping[str, Tensor], tuple[str, ...], dict[str, str]]:
    """``(images, masks, concepts, kinds)`` of ``data``, checked."""
    if isinstance(data, Tensor) or not isinstance(data, ConceptMasks):
        raise InputError(
            f"dissect() takes scenes with one mask per concept (an object with .images, .masks and .concepts, "
            f"e.g. a ConceptScenes), got {type(data).__name__}; build one with "
            f"seethrough.data.concepts.concept_scenes(n) or ConceptScenes(images=..., masks={{name: bool (N, H, W)}}, "
            f"concepts=(...)); for inputs that are not images use dissect_inputs(inputs, masks)"
        )
    images, masks, concepts = data.images, data.masks, tuple(str(c) for c in data.concepts)
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise InputError(f"scene images must be a tensor (N, C, H, W), got {getattr(images, 'shape', images)!r}")
    if images.shape[0] == 0:
        raise InputError("the data hold no images; dissection needs at least one (hundreds recommended)")
    if not concepts:
        raise InputError("the data name no concepts; give at least one concept mask")
    check_masks(masks, concepts, (images.shape[0],) + tuple(images.shape[2:]))
    given = dict(getattr(data, "kinds", None) or {})
    return images, masks, concepts, {c: str(given.get(c, "custom")) for c in concepts}


def bilinear_matrix(out_size: int, in_size: int) -> Tensor:
    """``(out_size, in_size)`` weights of bilinear resizing along one axis, exactly as
    ``F.interpolate(mode="bilinear", align_corners=False)``; ``A @ X @ B.T`` resizes a map
    ``X`` with two matrix products (2.6-4.1x faster than ``F.interpolate`` on one CPU thread
    for the 8-32 px maps of ``shapes-cnn``)."""
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    frac = src - i0
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    m.index_put_((rows, i0), 1 - frac, accumulate=True)
    m.index_put_((rows, i1), frac, accumulate=True)
    return m.float()


@dataclass(frozen=True, eq=False)
class LayerDissection(Result):
    """Dissection of one layer.

    Attributes:
        layer: dotted layer name.
        iou: ``(units, concepts)`` IoU of every unit with every concept.
        thresholds: ``(units,)`` activation threshold ``T_k`` of each unit (``"iqr"`` rule:
            the threshold of its best concept).
        labels: best concept of each unit (whether or not it passes the threshold).
        best_iou: ``(units,)`` IoU of that concept.
        interpretable: ``(units,)`` bool, ``best_iou >= iou_threshold``.
        concept_thresholds: ``(units, concepts)`` threshold of every unit for every concept
            (``"iqr"`` rule), else None (one threshold per unit).
    """

    layer: str
    iou: Tensor
    thresholds: Tensor
    labels: tuple[str, ...]
    best_iou: Tensor
    interpretable: Tensor
    concept_thresholds: Tensor | None = None

    @property
    def n_units(self) -> int:
        return int(self.iou.shape[0])

    @property
    def n_interpretable(self) -> int:
        return int(self.interpretable.sum())


@dataclass(frozen=True, eq=False)
class DissectionResult(Result):
    """Network dissection of one or more layers.

    Attributes:
        layers: layer name -> :class:`LayerDissection`, in the order asked for.
        concepts: the concept names (columns of every ``iou``).
        kinds: concept -> ``"color"``, ``"texture"``, ``"shape"`` (or the user's kinds).
        quantile: the top quantile that sets each unit's threshold (``"quantile"`` rule).
        iou_threshold: the IoU a unit needs to be called interpretable.
        quantile_method: how the threshold was computed (exact running top-k, or the
            binned information quality ratio of the ``"iqr"`` rule).
        n_images: inputs dissected.
        seconds: wall-clock time.
        rule: the threshold rule, ``"quantile"`` or ``"iqr"``.
    """

    layers: Mapping[str, LayerDissection]
    concepts: tuple[str, ...]
    kinds: Mapping[str, str]
    quantile: float
    iou_threshold: float
    n_images: int
    quantile_method: str = QUANTILE_METHOD
    seconds: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    rule: str = "quantile"

    def __getitem__(self, layer: str) -> LayerDissection:
        if layer not in self.layers:
            raise LayerError(f"layer {layer!r} was not dissected; dissected: {', '.join(self.layers)}")
        return self.layers[layer]

    def top_units(self, concept: str, k: int | None = None, *, layer: str | None = None) -> list[int]:
        """The units of ``layer`` (default: the first dissected) by decreasing IoU with
        ``concept`` (ties: lower unit first), the first ``k`` of them (all when None)."""
        if concept not in self.concepts:
            raise InputError(f"concept {concept!r} was not dissected; dissected: {', '.join(self.concepts)}")
        d = self[layer] if layer is not None else next(iter(self.layers.values()))
        order = torch.argsort(d.iou[:, self.concepts.index(concept)], descending=True, stable=True).tolist()
        return order if k is None else order[: int(k)]

    def unit_labels(self) -> dict[str, dict[int, str]]:
        """``{layer: {unit: "red (IoU 0.12)"}}`` for every interpretable unit."""
        return {
            name: {
                k: f"{d.labels[k]} (IoU {float(d.best_iou[k]):.2f})"
                for k in range(d.n_units)
                if bool(d.interpretable[k])
            }
            for name, d in self.layers.items()
        }

    def summary(self) -> list[dict[str, Any]]:
        """Per layer: units, interpretable units (also per concept kind) and the number of
        distinct concepts they detect."""
        rows = []
        for name, d in self.layers.items():
            hit = [d.labels[k] for k in range(d.n_units) if bool(d.interpretable[k])]
            row: dict[str, Any] = {
                "layer": name,
                "units": d.n_units,
                "interpretable": d.n_interpretable,
                "share": round(d.n_interpretable / max(d.n_units, 1), 3),
                "distinct concepts": len(set(hit)),
            }
            for kind in sorted(set(self.kinds.values())):
                row[kind] = sum(1 for c in hit if self.kinds.get(c) == kind)
            rows.append(row)
        return rows

    def table(self, *, interpretable_only: bool = False) -> list[dict[str, Any]]:
        """One row per unit: layer, unit, best concept, its kind and IoU, the second-best
        concept and the unit's threshold, sorted by layer then IoU (highest first)."""
        rows = []
        for name, d in self.layers.items():
            order = torch.argsort(d.best_iou, descending=True, stable=True).tolist()
            for k in order:
                if interpretable_only and not bool(d.interpretable[k]):
                    continue
                ious = d.iou[k]
                second = int(torch.argsort(ious, descending=True, stable=True)[1]) if ious.numel() > 1 else None
                rows.append(
                    {
                        "layer": name,
                        "unit": k,
                        "concept": d.labels[k],
                        "kind": self.kinds.get(d.labels[k], ""),
                        "IoU": round(float(d.best_iou[k]), 4),
                        "interpretable": bool(d.interpretable[k]),
                        "runner-up": "" if second is None else f"{self.concepts[second]} ({float(ious[second]):.3f})",
                        "threshold": round(float(d.thresholds[k]), 4),
                    }
                )
        return rows

    def describe_threshold(self) -> str:
        """The threshold rule in words (what the text and HTML views print)."""
        if self.rule == "iqr":
            bins = self.settings.get("bins", "?")
            return f"per unit and concept, maximal information quality ratio ({bins} candidate thresholds)"
        return f"top {self.quantile:g} quantile ({self.quantile_method})"

    def to_text(self, *, top: int = 10) -> str:
        """Summary per layer and its ``top`` units by IoU (what the CLI prints)."""
        lines = [
            f"{self.n_images} images; unit threshold: {self.describe_threshold()}; "
            f"interpretable: IoU >= {self.iou_threshold:g}"
        ]
        for row in self.summary():
            kinds = ", ".join(f"{k} {row[k]}" for k in sorted(set(self.kinds.values())))
            lines.append(
                f"layer {row['layer']!r}: {row['interpretable']}/{row['units']} units interpretable "
                f"({kinds}; {row['distinct concepts']} distinct concepts)"
            )
            units = [r for r in self.table() if r["layer"] == row["layer"]][:top]
            for r in units:
                mark = "*" if r["interpretable"] else " "
                lines.append(
                    f"  {mark} unit {r['unit']:>4}  {r['concept']:<20} IoU {r['IoU']:.3f}   runner-up {r['runner-up']}"
                )
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {d.n_interpretable}/{d.n_units}" for n, d in self.layers.items())
        return f"{type(self).__name__}({parts} interpretable at IoU >= {self.iou_threshold:g}, {self.n_images} images)"


# ---------------------------------------------------------------------------- the engine
def check_dissection_settings(quantile: float, iou_threshold: float, rule: str = "quantile", bins: int = 128) -> None:
    """Raise :class:`ConfigError` for settings :func:`dissect_layers` cannot use."""
    if rule not in THRESHOLD_RULES:
        raise ConfigError(
            f"threshold must be one of {', '.join(map(repr, THRESHOLD_RULES))} (Network Dissection's top quantile, "
            f"or GAN Dissection's information quality ratio), got {rule!r}"
        )
    if not 0.0 < float(quantile) < 1.0:
        raise ConfigError(f"quantile must be in (0, 1) (paper: 0.005), got {quantile}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ConfigError(f"iou_threshold must be in [0, 1] (paper: 0.04), got {iou_threshold}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ConfigError(f"bins (candidate thresholds of the 'iqr' rule) must be an int >= 2, got {bins!r}")


def probe_layers(model: nn.Module, layers: Mapping[str, nn.Module], x: Tensor, hint: str) -> dict[str, tuple[int, ...]]:
    """Per-input output shape ``(units, h, w)`` of every layer on ``x[:1]``; a layer that
    does not output maps raises :class:`LayerError` ending with ``hint`` (the model's
    convolution layers)."""
    with torch.no_grad():
        acts, _ = run_capture(model, x[:1], layers, what="dissected")
    shapes = {}
    for name, a in acts.items():
        if not isinstance(a, Tensor) or a.dim() != 4:
            raise LayerError(
                f"layer {name!r} outputs shape {tuple(getattr(a, 'shape', ())[1:])} per input; dissection needs "
                f"(units, height, width) maps from a convolution layer, e.g. {hint}"
            )
        shapes[name] = tuple(a.shape[1:])
    return shapes


def _bar(progress: bool, total: int, desc: str):
    return tqdm(total=total, desc=desc, disable=not progress, leave=False, unit="input")


def _stream(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    batching: Batching,
    *,
    extra: int = 0,
    output: bool = False,
    progress: bool = False,
    desc: str = "dissection",
) -> Iterator[tuple[slice, dict[str, Any], Tensor | None]]:
    """``(rows, layer activations, output or None)`` chunk after chunk; the forward pass
    stops at the last layer unless the model's output is asked for."""
    mods = dict(layers)
    if output:
        mods[_OUTPUT] = model
    with _bar(progress, int(x.shape[0]), desc) as bar:
        for sl, acts in stream_activations(model, mods, x, batching=batching, extra_row_bytes=extra, stop=not output):
            out = acts.pop(_OUTPUT, None)
            yield sl, acts, out
            bar.update(sl.stop - sl.start)


def _unit_stats(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    shapes: Mapping[str, tuple[int, ...]],
    batching: Batching,
    *,
    quantile: float | None,
    progress: bool = False,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Pass 1: per unit, the exact top-``quantile`` value (running top-k; skipped when
    ``quantile`` is None) and the smallest and largest activation, at layer resolution."""
    n = x.shape[0]
    ks = {name: max(1, math.ceil((quantile or 0.0) * n * s[1] * s[2])) for name, s in shapes.items()}
    top: dict[str, Tensor | None] = {name: None for name in layers}
    lo: dict[str, Tensor] = {}
    hi: dict[str, Tensor] = {}
    for _, acts, _ in _stream(model, layers, x, batching, progress=progress, desc="dissection: unit thresholds"):
        for name, a in acts.items():
            vals = a.float().transpose(0, 1).reshape(a.shape[1], -1)
            mn, mx = vals.amin(dim=1).cpu(), vals.amax(dim=1).cpu()
            lo[name] = mn if name not in lo else torch.minimum(lo[name], mn)
            hi[name] = mx if name not in hi else torch.maximum(hi[name], mx)
            if quantile is None:
                continue
            prev = top[name]
            cand = vals if prev is None else torch.cat([prev, vals], dim=1)
            k = min(ks[name], cand.shape[1])
            top[name] = cand.topk(k, dim=1, sorted=False).values
    thresholds = {name: t.min(dim=1).values.cpu() for name, t in top.items() if t is not None}
    return thresholds, lo, hi


class _Resizer:
    """Bilinear upsampling of ``(B, K, h, w)`` maps to the mask size, as two matrix products
    (the matrices made once per layer resolution)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self._cache: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def __call__(self, a: Tensor) -> Tensor:
        key = (int(a.shape[2]), int(a.shape[3]))
        if key not in self._cache:
            self._cache[key] = (bilinear_matrix(self.size[0], key[0]), bilinear_matrix(self.size[1], key[1]))
        rows, cols = self._cache[key]
        return rows @ a @ cols.T


def _chunk_masks(masks: MaskFn, sl: slice, out: Tensor | None, n_concepts: int, size: tuple[int, int]) -> Tensor:
    lab = masks(sl, out)
    want = (sl.stop - sl.start, n_concepts, *size)
    if not isinstance(lab, Tensor) or lab.dtype != torch.bool or tuple(lab.shape) != want:
        got = f"{getattr(lab, 'dtype', type(lab).__name__)} {tuple(getattr(lab, 'shape', ()))}"
        raise InputError(f"the concept masks of rows {sl.start}..{sl.stop - 1} must be bool {want}, got {got}")
    return lab.cpu()


def _overlaps(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    masks: MaskFn,
    n_concepts: int,
    size: tuple[int, int],
    thresholds: Mapping[str, Tensor],
    batching: Batching,
    extra: int,
    *,
    output: bool,
    progress: bool,
) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """Pass 2 (``"quantile"``): intersection with every concept mask, and sizes, summed
    over inputs: ``{layer: (inter (K, C), unit pixels (K,), mask pixels (C,))}``."""
    out: dict[str, list[Tensor]] = {}
    for name in layers:
        units = thresholds[name].numel()
        out[name] = [
            torch.zeros(units, n_concepts, dtype=torch.float64),
            torch.zeros(units, dtype=torch.float64),
            torch.zeros(n_concepts, dtype=torch.float64),
        ]
    mask_n = torch.zeros(n_concepts, dtype=torch.float64)
    resize = _Resizer(size)
    for sl, acts, y in _stream(
        model, layers, x, batching, extra=extra, output=output, progress=progress, desc="dissection: overlaps"
    ):
        lab = _chunk_masks(masks, sl, y, n_concepts, size)  # (B, C, H, W) bool
        lab_f = lab.reshape(lab.shape[0], lab.shape[1], -1).float()  # (B, C, P)
        mask_n += lab_f.sum(dim=(0, 2)).double()
        for name, a in acts.items():
            up = resize(a.float().cpu())  # bilinear upsampling to the mask size
            hit = (up > thresholds[name].reshape(1, -1, 1, 1)).reshape(up.shape[0], up.shape[1], -1).float()
            del up
            out[name][0] += torch.bmm(hit, lab_f.transpose(1, 2)).sum(dim=0).double()  # (K, C)
            out[name][1] += hit.sum(dim=(0, 2)).double()
    for name in layers:
        out[name][2] = mask_n
    return {name: (v[0], v[1], v[2]) for name, v in out.items()}


def _histograms(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    x: Tensor,
    masks: MaskFn,
    n_concepts: int,
    size: tuple[int, int],
    lo: Mapping[str, Tensor],
    step: Mapping[str, Tensor],
    bins: int,
    batching: Batching,
    extra: int,
    *,
    output: bool,
    progress: bool,
    desc: str,
) -> tuple[dict[str, tuple[Tensor, Tensor]], Tensor, int]:
    """Per layer, unit and bin ``b`` (``b`` = how many candidate thresholds a pixel's
    upsampled value exceeds, 0..bins): the pixel count ``(K, bins + 1)`` and the count of
    those inside each concept mask ``(K, bins + 1, C)``; the concept masks' pixel counts
    ``(C,)`` and the number of pixels. Counts are exact integers."""
    nb = bins + 1
    hist: dict[str, tuple[Tensor, Tensor]] = {}
    mask_n = torch.zeros(n_concepts, dtype=torch.int64)
    pixels = 0
    resize = _Resizer(size)
    for sl, acts, y in _stream(model, layers, x, batching, extra=extra, output=output, progress=progress, desc=desc):
        lab = _chunk_masks(masks, sl, y, n_concepts, size)
        b = lab.shape[0]
        lab_px = lab.reshape(b, n_concepts, -1)  # (B, C, P)
        mask_n += lab_px.sum(dim=(0, 2))
        pixels += b * int(lab_px.shape[2])
        for name, a in acts.items():
            k = int(a.shape[1])
            # bin of every upsampled value: how many candidate thresholds lo + j * step it exceeds
            pos = resize(a.float().cpu())  # (B, K, H, W), a new tensor: edited in place
            pos.sub_(lo[name].reshape(1, -1, 1, 1)).div_(step[name].reshape(1, -1, 1, 1)).ceil_().clamp_(0, bins)
            idx = pos.to(torch.int32).reshape(b, k, -1)
            del pos
            idx += (torch.arange(k, dtype=torch.int32) * nb).reshape(1, -1, 1)  # unit k's bins offset by k * nb
            total = torch.bincount(idx.reshape(-1), minlength=k * nb).reshape(k, nb)
            by_pixel = idx.transpose(1, 2)  # (B, P, K) view
            inter = torch.zeros(k, nb, n_concepts, dtype=torch.int64)
            for c in range(n_concepts):
                sel = by_pixel[lab_px[:, c]]  # (pixels of the concept, K)
                if sel.numel():
                    inter[:, :, c] = torch.bincount(sel.reshape(-1), minlength=k * nb).reshape(k, nb)
            del idx, by_pixel
            if name in hist:
                hist[name][0].add_(total)
                hist[name][1].add_(inter)
            else:
                hist[name] = (total.to(torch.int64), inter)
    return hist, mask_n, pixels


def _above(counts: Tensor) -> Tensor:
    """Counts above each candidate threshold ``j = 0..bins-1``: the sum over bins ``> j``
    (the bin axis is 1)."""
    suffix = counts.flip(1).cumsum(1).flip(1)  # suffix[:, j] = sum over bins >= j
    return suffix[:, 1:]


def _entropy(*ps: Tensor) -> Tensor:
    return -sum(torch.special.xlogy(p, p) for p in ps)


def information_quality_ratio(n: float, above: Tensor, mask: Tensor, inter: Tensor) -> Tensor:
    """``I(A; L) / H(A, L)`` of two binary pixel variables from counts: ``n`` pixels,
    ``above`` where ``A`` holds, ``mask`` where ``L`` holds, ``inter`` where both do
    (broadcast). 0 where the joint entropy is 0 (both constant)."""
    n = max(float(n), 1.0)
    p11 = inter / n
    p10 = (above - inter) / n
    p01 = (mask - inter) / n
    p00 = (1.0 - p11 - p10 - p01).clamp(min=0.0)
    pa, pm = above / n, mask / n
    h_joint = _entropy(p11, p10, p01, p00)
    mutual = _entropy(pa, 1 - pa) + _entropy(pm, 1 - pm) - h_joint
    return torch.where(h_joint > 1e-12, mutual.clamp(min=0.0) / h_joint.clamp(min=1e-12), torch.zeros_like(h_joint))


def _iou(inter: Tensor, act_n: Tensor, mask_n: Tensor) -> Tensor:
    union = act_n + mask_n - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter)).float()


def _layer_result(
    name: str, iou: Tensor, unit_thr: Tensor, concepts: Sequence[str], iou_threshold: float, concept_thr=None
) -> LayerDissection:
    best, idx = iou.max(dim=1)
    thr = unit_thr if concept_thr is None else concept_thr.gather(1, idx[:, None])[:, 0]
    return LayerDissection(
        layer=name,
        iou=iou,
        thresholds=thr.float(),
        labels=tuple(concepts[i] for i in idx.tolist()),
        best_iou=best,
        interpretable=best >= iou_threshold,
        concept_thresholds=None if concept_thr is None else concept_thr.float(),
    )


def dissect_layers(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    inputs: Tensor,
    masks: MaskFn,
    *,
    concepts: Sequence[str],
    mask_size: tuple[int, int],
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    rule: str = "quantile",
    bins: int = 128,
    selection: tuple[Tensor, MaskFn] | None = None,
    needs_output: bool = False,
    batching: Batching | int | None = None,
    hint: str = "",
    progress: bool = False,
) -> tuple[dict[str, LayerDissection], dict[str, tuple[int, ...]], dict[str, Any]]:
    """The shared dissection of ``layers`` of ``model`` on ``inputs`` (whatever the model
    takes), against the concept masks that ``masks(rows, output)`` gives for each chunk of
    rows (bool ``(B, len(concepts), *mask_size)``; ``output``: the model's output on the
    chunk when ``needs_output``, so that a generator's images can be segmented as they are
    made, else None).

    ``rule="iqr"`` chooses each unit's threshold per concept on ``selection`` (other
    ``(inputs, masks)``; None: the same inputs) and measures the IoUs on ``inputs``.

    Runs inside :func:`~seethrough.model_guard` (the caller's). Returns ``({layer:
    LayerDissection}, {layer: (units, h, w)}, settings)``.
    """
    check_dissection_settings(quantile, iou_threshold, rule, bins)
    b = as_batching(batching)
    size = (int(mask_size[0]), int(mask_size[1]))
    shapes = probe_layers(model, layers, inputs, hint)
    n_c = len(concepts)
    settings: dict[str, Any] = {
        "threshold": rule,
        "upsampling": "bilinear",
        "threshold_rule": "S_k > T_k" if rule == "quantile" else "S_k > T_kc",
        "mask_size": list(size),
        "layer_shapes": {n: list(s) for n, s in shapes.items()},
    }
    results: dict[str, LayerDissection] = {}
    if rule == "quantile":
        # what one input keeps per layer in pass 2: the upsampled map (float), its
        # thresholded copy (bool, then float)
        extra = max(9 * s[0] * size[0] * size[1] for s in shapes.values())
        thresholds, _, _ = _unit_stats(model, layers, inputs, shapes, b, quantile=quantile, progress=progress)
        counts = _overlaps(
            model, layers, inputs, masks, n_c, size, thresholds, b, extra, output=needs_output, progress=progress
        )
        for name in layers:
            inter, act_n, mask_n = counts[name]
            iou = _iou(inter, act_n[:, None], mask_n[None, :])
            results[name] = _layer_result(name, iou, thresholds[name], concepts, iou_threshold)
        return results, shapes, settings
    # "iqr": the upsampled map, its bin indices and one concept's selection of them, per input
    extra = max(16 * s[0] * size[0] * size[1] for s in shapes.values())
    sel_x, sel_masks = selection if selection is not None else (inputs, masks)
    _, lo, hi = _unit_stats(model, layers, sel_x, shapes, b, quantile=None, progress=progress)
    step = {
        name: torch.where(hi[name] > lo[name], (hi[name] - lo[name]) / bins, torch.ones_like(lo[name])) for name in lo
    }
    kw = {"output": needs_output, "progress": progress}
    sel_hist, sel_mask_n, sel_pixels = _histograms(
        model, layers, sel_x, sel_masks, n_c, size, lo, step, bins, b, extra, desc="dissection: thresholds", **kw
    )
    if selection is None:
        ev_hist, ev_mask_n = sel_hist, sel_mask_n
    else:
        ev_hist, ev_mask_n, _ = _histograms(
            model, layers, inputs, masks, n_c, size, lo, step, bins, b, extra, desc="dissection: overlaps", **kw
        )
    grid = torch.arange(bins, dtype=torch.float64)
    for name in layers:
        total, inter = (t.double() for t in sel_hist[name])
        above, inter_above = _above(total), _above(inter)  # (K, bins), (K, bins, C)
        iqr = information_quality_ratio(sel_pixels, above[:, :, None], sel_mask_n.double()[None, None, :], inter_above)
        j = iqr.argmax(dim=1)  # (K, C): the first maximum, i.e. the lowest best threshold
        concept_thr = lo[name].double()[:, None] + grid[j] * step[name].double()[:, None]
        e_total, e_inter = (t.double() for t in ev_hist[name])
        e_above = _above(e_total).gather(1, j)  # (K, C)
        e_inter_above = _above(e_inter).gather(1, j[:, None, :])[:, 0, :]  # (K, C)
        iou = _iou(e_inter_above, e_above, ev_mask_n.double()[None, :])
        results[name] = _layer_result(name, iou, concept_thr[:, 0], concepts, iou_threshold, concept_thr)
    settings.update(
        {
            "bins": int(bins),
            "candidate_thresholds": "lo + j * (hi - lo) / bins, j = 0..bins-1 (lo, hi: the unit's range on the "
            "selection inputs)",
            "selection": "the same inputs" if selection is None else f"{int(sel_x.shape[0])} other inputs",
        }
    )
    return results, shapes, settings


class Dissection:
    """Network dissection of convolution layers on scenes with concept masks.

    Parameters
    ----------
    model:
        Any model; only the chosen layers' outputs are used.
    layers:
        One layer or a list, by dotted ``named_modules()`` name or module; each must
        output ``(N, units, height, width)`` maps.
    quantile:
        Top quantile of each unit's activations that sets its threshold (paper: 0.005).
    iou_threshold:
        IoU from which a unit counts as a detector of its best concept (paper: 0.04).
    batching:
        A :class:`~seethrough.Batching`, a batch size or None (automatic: sized from the
        model's activations and the upsampled maps of one image).
    threshold:
        ``"quantile"`` (Network Dissection, default) or ``"iqr"`` (GAN Dissection's
        per-concept threshold maximising the information quality ratio, chosen and
        measured on the same scenes here); see the module notes.
    bins:
        Candidate thresholds per unit of the ``"iqr"`` rule.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layers: LayerRef | Sequence[LayerRef],
        quantile: float = 0.005,
        iou_threshold: float = 0.04,
        batching: Batching | int | None = None,
        threshold: str = "quantile",
        bins: int = 128,
    ) -> None:
        self.model, self.layers, self.batching = model, layers, batching
        self.quantile, self.iou_threshold = quantile, iou_threshold  # checked when dissect() runs
        self.threshold, self.bins = threshold, bins

    def _check_settings(self) -> None:
        check_dissection_settings(self.quantile, self.iou_threshold, self.threshold, self.bins)

    def _resolve(self) -> dict[str, nn.Module]:
        refs = [self.layers] if isinstance(self.layers, (str, nn.Module)) else list(self.layers)
        if not refs:
            raise LayerError(f"no layers given; name one or more convolution layers, e.g. {layer_hint(self.model)}")
        return resolve_layers(self.model, refs)

    def dissect(self, data: ConceptMasks) -> DissectionResult:
        """Dissect the layers on ``data``: scenes with one pixel mask per concept
        (:class:`ConceptMasks`, e.g. :func:`seethrough.data.concepts.concept_scenes`, or a
        :class:`~seethrough.data.concepts.ConceptScenes` built from your own images and
        masks)."""
        self._check_settings()
        images, masks, concepts, kinds = _check_scenes(data)
        return self._run(images, masks, concepts, kinds, what="scene images")

    def dissect_inputs(
        self,
        inputs: Tensor,
        masks: Mapping[str, Tensor],
        concepts: Sequence[str] | None = None,
        kinds: Mapping[str, str] | None = None,
    ) -> DissectionResult:
        """Dissect the layers on ``inputs`` of any kind the model takes (latent codes
        ``(N, Z)`` of a generator, say) against ``masks``: concept -> bool ``(N, H, W)``,
        the pixels of whatever the model's output (or anything else) shows that concept;
        the masks' ``H x W`` is the resolution of the comparison, whatever the inputs'
        shape. ``concepts``: the order of the columns (default: the masks' order);
        ``kinds``: concept -> kind (default ``"custom"``)."""
        self._check_settings()
        if not isinstance(inputs, Tensor) or inputs.dim() < 1 or inputs.shape[0] == 0:
            raise InputError(
                f"inputs must be a tensor with a leading batch of at least one input, got "
                f"{tuple(getattr(inputs, 'shape', ())) or type(inputs).__name__}"
            )
        if not isinstance(masks, Mapping) or not masks:
            raise InputError("masks must be a non-empty mapping concept -> bool (N, H, W) tensor")
        names = tuple(str(c) for c in (concepts if concepts is not None else masks))
        if not names:
            raise InputError("no concepts named; give at least one concept mask")
        first = masks.get(names[0])
        if not isinstance(first, Tensor) or first.dim() != 3:
            raise InputError(
                f"mask of concept {names[0]!r} must be a bool tensor (N, H, W), got "
                f"{tuple(getattr(first, 'shape', ())) if first is not None else 'missing'}"
            )
        check_masks(masks, names, (int(inputs.shape[0]), *first.shape[1:]))
        given = dict(kinds or {})
        return self._run(inputs, masks, names, {c: str(given.get(c, "custom")) for c in names}, what="inputs")

    def _run(
        self, inputs: Tensor, masks: Mapping[str, Tensor], concepts: tuple[str, ...], kinds: dict[str, str], what: str
    ) -> DissectionResult:
        t0 = time.perf_counter()
        model = self.model
        size = tuple(masks[concepts[0]].shape[1:])

        def chunk(sl: slice, _out: Tensor | None) -> Tensor:
            return torch.stack([masks[c][sl].to(torch.bool).cpu() for c in concepts], dim=1)

        with model_guard(model, method="network dissection"):
            x = check_images(model, inputs, what)
            layers = self._resolve()
            result_layers, _shapes, settings = dissect_layers(
                model,
                layers,
                x,
                chunk,
                concepts=concepts,
                mask_size=(int(size[0]), int(size[1])),
                quantile=self.quantile,
                iou_threshold=self.iou_threshold,
                rule=self.threshold,
                bins=self.bins,
                batching=self.batching,
                hint=layer_hint(model),
            )
        return DissectionResult(
            layers=result_layers,
            concepts=concepts,
            kinds=kinds,
            quantile=float(self.quantile),
            iou_threshold=float(self.iou_threshold),
            n_images=int(x.shape[0]),
            quantile_method=QUANTILE_METHOD if self.threshold == "quantile" else IQR_METHOD,
            seconds=time.perf_counter() - t0,
            settings={"quantile": float(self.quantile), "iou_threshold": float(self.iou_threshold), **settings},
            rule=self.threshold,
        )
