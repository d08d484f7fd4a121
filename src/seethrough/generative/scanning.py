"""Subset scanning of activations: which nodes of a layer are anomalous for a sample.

After McFowland, Speakman and Neill (2013), "Fast generalized subset scan for anomalous
pattern detection", as used on network activations by Cintas et al. (2020, adversarial
inputs and autoencoder reconstructions) and Cintas et al. (IJCAI 2022, creativity of
generative models):

1. **Background.** The activations of a layer on real data, ``H0`` of shape ``(N, J)``
   (``J`` nodes: the layer's output flattened, or its channels after a ``reduce=`` over
   positions).
2. **Empirical p-values.** For a test sample, node ``j``'s value ``a`` is compared with the
   ``N`` background values of node ``j``. Ties (a ReLU's zeros) give a *range* of p-values
   ``[pmin, pmax]``; for the right tail (large activations are anomalous)::

       pmin = (#{bg > a} + 1) / (N + 1),   pmax = (#{bg >= a} + 1) / (N + 1)

   (the left tail counts ``<`` and ``<=`` instead). Without a tie ``pmin == pmax``.
3. **Scan statistic.** Berk-Jones, ``BJ(N_a, N, a) = N * KL(N_a / N || a)`` when
   ``N_a / N > a`` and 0 otherwise, where ``N_a`` is the number of nodes of the subset with
   a p-value at most ``a``: for a ranged p-value the node counts the share of its range
   below ``a``, ``clip((a - pmin) / (pmax - pmin), 0, 1)`` (``1[pmax <= a]`` when
   ``pmin == pmax``).
4. **Fast subset scan.** For a fixed ``a`` and subset size ``k``, BJ grows with ``N_a``, so
   the best subset of size ``k`` is the ``k`` nodes of largest contribution (the
   linear-time subset scanning property). Nodes with ``pmax <= a`` (contribution 1) come
   first, then the ranged nodes straddling ``a`` in decreasing contribution; nodes with
   ``pmin > a`` only lower the score. Every ``k`` is evaluated at once from cumulative
   sums, and the score is the maximum over ``k`` and over a grid of ``a <= alpha_max``.
   Everything is vectorised over samples (chunks of samples bound the memory).

The alpha grid is the distinct p-values (``pmin`` and ``pmax`` of the scanned samples) up to
``alpha_max``; when there are more than ``max_alphas``, that many of them spread evenly in
log scale (the smallest and the largest are always kept). With ``max_alphas=None`` every
distinct value is used: without ties this is the exact maximum over every ``a`` in
``(0, alpha_max]`` (BJ falls as ``a`` grows while ``N_a`` stays the same, so the maximum sits
at a p-value). With ties it is the maximum over the grid.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._core.capture import collect_activations
from .._core.errors import ConfigError, InputError
from .._core.estimator import Estimator
from .._core.layers import LayerRef, resolve_layer
from .._core.reduce import apply_reduce, check_reduce
from .._core.result import Result
from .._core.seeds import check_seed, generator
from .._core.state import model_guard

__all__ = [
    "empirical_pvalues",
    "berk_jones",
    "alpha_grid",
    "subset_scan",
    "detection_auc",
    "SubsetScanner",
    "ScanResult",
    "planted_check",
    "PlantedCheck",
]

#: elements of the (samples, alphas, nodes) working arrays held at once by the scan
_CHUNK_ELEMENTS = 1 << 24

_REDUCE_OK = ("mean", "max", "sum", "abs_sum", "max_abs", "l2")


# ---------------------------------------------------------------------------------------
# p-values and the statistic
# ---------------------------------------------------------------------------------------
def _as_2d(x: Any, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a tensor or numpy array of shape (samples, nodes), got {type(x).__name__}")
    x = x.detach()
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2:
        raise InputError(
            f"{name} has shape {tuple(x.shape)}; give (samples, nodes) (flatten each sample's activation first)"
        )
    if not x.dtype.is_floating_point:
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or inf; p-values need finite activations")
    return x.cpu()


def _sorted_background(background: Tensor) -> Tensor:
    """``(J, N)``: each node's background values in increasing order."""
    return torch.sort(background.t().contiguous(), dim=1).values.contiguous()


def _pvalues_sorted(sorted_bg: Tensor, test: Tensor, tail: str) -> tuple[Tensor, Tensor]:
    n = sorted_bg.shape[1]
    values = test.to(sorted_bg.dtype).t().contiguous()
    below = torch.searchsorted(sorted_bg, values, right=False)  # #bg < a
    upto = torch.searchsorted(sorted_bg, values, right=True)  # #bg <= a
    if tail == "right":
        lo_count, hi_count = n - upto, n - below  # #bg > a, #bg >= a
    else:
        lo_count, hi_count = below, upto  # #bg < a, #bg <= a
    pmin = (lo_count.t().double() + 1.0) / (n + 1.0)
    pmax = (hi_count.t().double() + 1.0) / (n + 1.0)
    return pmin.contiguous(), pmax.contiguous()


def _check_tail(tail: object) -> str:
    if tail not in ("right", "left"):
        raise ConfigError(f"tail must be 'right' (large activations are anomalous) or 'left', got {tail!r}")
    return str(tail)


def empirical_pvalues(background: Any, test: Any, *, tail: str = "right") -> tuple[Tensor, Tensor]:
    """Ranged empirical p-values ``(pmin, pmax)``, each ``(M, J)`` float64, of ``test``
    ``(M, J)`` against ``background`` ``(N, J)``, node by node.

    Right tail: ``pmin = (#{bg > a} + 1) / (N + 1)`` and ``pmax = (#{bg >= a} + 1) / (N + 1)``;
    left tail: ``<`` and ``<=``. The two differ only where ``a`` ties with background values
    (a ReLU's zeros); the ``+ 1`` keeps every p-value above 0 (``1 / (N + 1)`` at least)."""
    tail = _check_tail(tail)
    bg = _as_2d(background, "background")
    t = _as_2d(test, "test activations")
    if bg.shape[0] < 1:
        raise InputError("the background is empty; give at least one background sample (hundreds, better)")
    if t.shape[1] != bg.shape[1]:
        raise InputError(
            f"test activations have {t.shape[1]} nodes but the background has {bg.shape[1]}; both must come from "
            f"the same layer with the same reduce"
        )
    return _pvalues_sorted(_sorted_background(bg), t, tail)


def berk_jones(n_alpha: Any, n: Any, alpha: Any) -> Tensor:
    """The Berk-Jones statistic ``n * KL(n_alpha / n || alpha)`` where ``n_alpha / n > alpha``,
    else 0 (also for ``n == 0``); ``KL(q || a) = q log(q / a) + (1 - q) log((1 - q) / (1 - a))``.
    Broadcasts over tensors, arrays and numbers; float64."""
    na = torch.as_tensor(n_alpha, dtype=torch.float64)
    nn_ = torch.as_tensor(n, dtype=torch.float64)
    a = torch.as_tensor(alpha, dtype=torch.float64)
    if bool(((a <= 0) | (a >= 1)).any()):
        raise ConfigError("alpha must lie strictly between 0 and 1")
    safe = torch.where(nn_ > 0, nn_, torch.ones_like(nn_))
    q = (na / safe).clamp(0.0, 1.0)
    kl = torch.xlogy(q, q / a) + torch.xlogy(1.0 - q, (1.0 - q) / (1.0 - a))
    return torch.where((nn_ > 0) & (q > a), nn_ * kl, torch.zeros_like(kl))


def alpha_grid(pmin: Tensor, pmax: Tensor, *, alpha_max: float = 0.5, max_alphas: int | None = 64) -> Tensor:
    """The alphas scanned: the distinct values of ``pmin`` and ``pmax`` up to ``alpha_max``
    (float64, increasing), thinned to ``max_alphas`` values spread evenly in log scale."""
    _check_alpha_max(alpha_max)
    vals = torch.unique(torch.cat([pmin.reshape(-1), pmax.reshape(-1)]).double())
    vals = vals[vals <= alpha_max]
    if vals.numel() == 0:
        return torch.tensor([float(alpha_max)], dtype=torch.float64)
    if max_alphas is not None:
        if not isinstance(max_alphas, int) or max_alphas < 2:
            raise ConfigError(f"max_alphas must be an int >= 2 or None, got {max_alphas!r}")
        if vals.numel() > max_alphas:
            targets = torch.logspace(math.log10(vals[0]), math.log10(vals[-1]), max_alphas, dtype=torch.float64)
            idx = torch.searchsorted(vals, targets).clamp(max=vals.numel() - 1)
            vals = vals[torch.unique(torch.cat([idx, torch.tensor([0, vals.numel() - 1])]))]
    return vals


def _check_alpha_max(alpha_max: object) -> float:
    if isinstance(alpha_max, bool) or not isinstance(alpha_max, (int, float)) or not 0 < alpha_max < 1:
        raise ConfigError(f"alpha_max must be a number in (0, 1), got {alpha_max!r}; 0.5 is usual")
    return float(alpha_max)


def _ranged_candidates(lo: Tensor, hi: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    """Contributions of the ranged nodes straddling ``a`` (rows: pairs of a sample and an
    alpha, ``a`` ``(P, 1)``) and which of them can belong to a best subset: those whose
    contribution exceeds alpha. (BJ is convex and 1-homogeneous in ``(N_a, N)``, so adding
    a node of contribution ``c <= alpha`` never raises it: ``BJ(n + c, k + 1) <= BJ(n, k) +
    BJ(c, 1) = BJ(n, k)``.)"""
    frac = (lo <= a) & (hi > a)
    width = (hi - lo).clamp_min(torch.finfo(lo.dtype).tiny)
    c = torch.where(frac, (a - lo) / width, torch.full((), -1.0, dtype=lo.dtype))
    return c, c > a


def _scan_chunk(pmin: Tensor, pmax: Tensor, alphas: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(score, alpha index, subset mask, n_alpha, size) for a chunk of samples.

    Per (sample, alpha): ``n1`` nodes with ``pmax <= alpha`` (contribution 1, counted by a
    search in the sorted ``pmax``) and, where some p-value range straddles alpha, the ranged
    candidates in decreasing contribution, every prefix evaluated at once."""
    m, j = pmin.shape
    n_a = alphas.numel()
    a32 = alphas.to(pmin.dtype)
    grid = a32[None, :].expand(m, n_a).contiguous()
    n1 = torch.searchsorted(torch.sort(pmax, dim=1).values, grid, right=True)  # (m, A)
    nlo = torch.searchsorted(torch.sort(pmin, dim=1).values, grid, right=True)
    best = berk_jones(n1, n1, alphas[None, :])  # (m, A): the subset of the n1 nodes
    n_best = n1.double()
    t_pair = torch.zeros(m, n_a, dtype=torch.long)
    si, ai = torch.nonzero(nlo > n1, as_tuple=True)
    step = max(1, (_CHUNK_ELEMENTS // 2) // max(1, j))
    for s in range(0, si.numel(), step):
        ps, pa = si[s : s + step], ai[s : s + step]
        c, cand = _ranged_candidates(pmin[ps], pmax[ps], a32[pa][:, None])
        ncand = cand.sum(1)
        f = int(ncand.max())
        if f == 0:
            continue
        top = torch.topk(torch.where(cand, c, torch.full((), -1.0, dtype=c.dtype)), f, dim=1).values
        cum = torch.cat([torch.zeros(ps.numel(), 1, dtype=torch.float64), top.clamp(min=0.0).double().cumsum(1)], 1)
        t = torch.arange(f + 1)
        base = n1[ps, pa][:, None]
        bj = berk_jones(base.double() + cum, base + t, alphas[pa][:, None])
        bj = torch.where(t <= ncand[:, None], bj, torch.zeros((), dtype=torch.float64))
        pb, pt = bj.max(dim=1)
        best[ps, pa] = pb
        t_pair[ps, pa] = pt
        n_best[ps, pa] = base[:, 0].double() + cum.gather(1, pt[:, None])[:, 0]
    score, best_a = best.max(dim=1)
    rows = torch.arange(m)
    t_best = t_pair[rows, best_a]
    a_best = a32[best_a][:, None]
    mask = pmax <= a_best
    if t_best.numel() and int(t_best.max()) > 0:
        c, cand = _ranged_candidates(pmin, pmax, a_best)
        idx = torch.topk(torch.where(cand, c, torch.full((), -1.0, dtype=c.dtype)), int(t_best.max()), dim=1).indices
        take = torch.arange(idx.shape[1])[None, :] < t_best[:, None]
        mask |= torch.zeros_like(mask).scatter_(1, idx, take)
    positive = score > 0
    mask &= positive[:, None]
    n_alpha = torch.where(positive, n_best[rows, best_a], torch.zeros(m, dtype=torch.float64))
    return score, best_a, mask, n_alpha, mask.sum(1)


def subset_scan(
    pmin: Any,
    pmax: Any | None = None,
    *,
    alpha_max: float = 0.5,
    alphas: Sequence[float] | Tensor | None = None,
    max_alphas: int | None = 64,
) -> ScanResult:
    """Fast Berk-Jones subset scan of each sample's p-values (``(M, J)``; ``pmax=None``: no
    ranges). ``alphas`` fixes the grid (values in ``(0, 1)``; those above ``alpha_max`` are
    dropped); by default :func:`alpha_grid`. See the module notes for the algorithm."""
    start = time.perf_counter()
    lo = _as_pvalues(pmin, "pmin")
    hi = lo if pmax is None else _as_pvalues(pmax, "pmax")
    if hi.shape != lo.shape:
        raise InputError(f"pmin has shape {tuple(lo.shape)} but pmax has shape {tuple(hi.shape)}")
    if bool((hi < lo).any()):
        raise InputError("pmax is below pmin for some nodes; pass (pmin, pmax) in that order")
    alpha_max = _check_alpha_max(alpha_max)
    if alphas is None:
        grid = alpha_grid(lo, hi, alpha_max=alpha_max, max_alphas=max_alphas)
    else:
        grid = torch.unique(torch.as_tensor(alphas, dtype=torch.float64).reshape(-1))
        if grid.numel() == 0 or bool(((grid <= 0) | (grid >= 1)).any()):
            raise ConfigError("alphas must be a non-empty set of numbers strictly between 0 and 1")
        grid = grid[grid <= alpha_max]
        if grid.numel() == 0:
            raise ConfigError(f"every alpha given is above alpha_max={alpha_max}; raise alpha_max or give smaller ones")
    m, j = lo.shape
    work_lo, work_hi = lo.float(), hi.float()
    # the grid in the working precision: a p-value and an alpha made from the same count compare equal
    step = max(1, _CHUNK_ELEMENTS // max(1, j))
    parts: list[tuple[Tensor, ...]] = []
    for s in range(0, m, step):
        parts.append(_scan_chunk(work_lo[s : s + step], work_hi[s : s + step], grid.float().double()))
    if parts:
        score, best_a, mask, n_alpha, size = (torch.cat(p) for p in zip(*parts))
    else:
        score, best_a = torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
        mask, n_alpha, size = torch.zeros(0, j, dtype=torch.bool), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    best_alpha = torch.where(score > 0, grid[best_a], torch.full_like(score, float("nan")))
    return ScanResult(
        scores=score,
        subsets=mask,
        sizes=size,
        alphas=best_alpha,
        n_alpha=n_alpha,
        alpha_grid=grid,
        alpha_max=alpha_max,
        node_shape=(j,),
        seconds=time.perf_counter() - start,
    )


def _as_pvalues(p: Any, name: str) -> Tensor:
    t = _as_2d(p, name)
    if bool(((t <= 0) | (t > 1)).any()):
        raise InputError(f"{name} must lie in (0, 1]; empirical p-values from empirical_pvalues() always do")
    return t


def detection_auc(scores_real: Any, scores_other: Any) -> float:
    """ROC AUC of telling ``scores_other`` (label 1) from ``scores_real`` (label 0) by the
    score: 1 = every other sample scores above every real one, 0.5 = no separation."""
    from sklearn.metrics import roc_auc_score

    real = np.asarray(torch.as_tensor(scores_real).double().reshape(-1))
    other = np.asarray(torch.as_tensor(scores_other).double().reshape(-1))
    if real.size == 0 or other.size == 0:
        raise InputError("detection_auc needs at least one score in each group")
    y = np.r_[np.zeros(real.size), np.ones(other.size)]
    return float(roc_auc_score(y, np.r_[real, other]))


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ScanResult(Result):
    """Per sample: the Berk-Jones score of the most anomalous subset of nodes, the subset
    (``subsets`` ``(M, J)`` bool), its size, the alpha at which it was found (NaN when the
    score is 0, and then the subset is empty) and its ``n_alpha`` (the fractional count of
    nodes with p-value <= alpha). ``node_shape`` is the shape of one sample's nodes (the
    layer's output shape per sample, or its channels after a reduce)."""

    scores: Tensor
    subsets: Tensor
    sizes: Tensor
    alphas: Tensor
    n_alpha: Tensor
    alpha_grid: Tensor
    alpha_max: float
    node_shape: tuple[int, ...]
    layer: str | None = None
    reduce: str | None = None
    tail: str = "right"
    n_background: int | None = None
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.subsets.shape[1])

    def nodes(self, i: int) -> list[int]:
        """The flat node indices of sample ``i``'s subset."""
        return torch.nonzero(self.subsets[i]).reshape(-1).tolist()

    def node_masks(self) -> Tensor:
        """The subsets in the layer's shape, ``(M, *node_shape)``."""
        return self.subsets.reshape(len(self), *self.node_shape)

    def _groups(self, groups: Sequence[Hashable] | Tensor | np.ndarray | None) -> dict[Hashable, Tensor]:
        if groups is None:
            return {"all": torch.arange(len(self))}
        labels = groups.tolist() if isinstance(groups, (Tensor, np.ndarray)) else list(groups)
        if len(labels) != len(self):
            raise InputError(f"groups has {len(labels)} labels for {len(self)} scanned samples; give one per sample")
        out: dict[Hashable, list[int]] = {}
        for i, g in enumerate(labels):
            out.setdefault(g, []).append(i)
        return {g: torch.tensor(ix, dtype=torch.long) for g, ix in out.items()}

    def size_distribution(self, groups: Sequence[Hashable] | Tensor | None = None) -> dict[Hashable, Tensor]:
        """Per group (one label per sample; all samples when None): how many of its samples
        have a subset of each size, a ``(J + 1,)`` count tensor indexed by size."""
        return {g: torch.bincount(self.sizes[ix], minlength=self.n_nodes + 1) for g, ix in self._groups(groups).items()}

    def node_frequency(self, groups: Sequence[Hashable] | Tensor | None = None) -> dict[Hashable, Tensor]:
        """Per group: the share of its samples whose subset contains each node, ``(J,)``."""
        return {g: self.subsets[ix].double().mean(0) for g, ix in self._groups(groups).items()}

    def group_summary(self, groups: Sequence[Hashable] | Tensor | None = None) -> list[dict[str, Any]]:
        """One row per group: samples, mean and median score, mean, median and largest
        subset size, and the share of samples with a non-empty subset."""
        rows = []
        for g, ix in self._groups(groups).items():
            s, z = self.scores[ix].double(), self.sizes[ix].double()
            rows.append(
                {
                    "group": g,
                    "samples": int(ix.numel()),
                    "mean score": float(s.mean()) if ix.numel() else float("nan"),
                    "median score": float(s.median()) if ix.numel() else float("nan"),
                    "mean size": float(z.mean()) if ix.numel() else float("nan"),
                    "median size": float(z.median()) if ix.numel() else float("nan"),
                    "max size": int(z.max()) if ix.numel() else 0,
                    "non-empty": float((z > 0).double().mean()) if ix.numel() else float("nan"),
                }
            )
        return rows

    def table(self, limit: int | None = None) -> list[dict[str, Any]]:
        """One row per sample: index, score, subset size, alpha, n_alpha."""
        n = len(self) if limit is None else min(len(self), int(limit))
        return [
            {
                "sample": i,
                "score": float(self.scores[i]),
                "size": int(self.sizes[i]),
                "alpha": float(self.alphas[i]),
                "n_alpha": float(self.n_alpha[i]),
            }
            for i in range(n)
        ]


@dataclass(frozen=True, eq=False)
class PlantedCheck(Result):
    """The planted-anomaly check of :func:`planted_check`: the subsets found on samples
    whose ``planted`` nodes were shifted (``precision`` and ``recall`` of those nodes,
    averaged over the samples), the AUC of their scores against clean samples, and the
    AUC of clean samples against other clean samples (``null_auc``, about 0.5)."""

    planted: Tensor
    precision: float
    recall: float
    auc: float
    null_auc: float
    scores_clean: Tensor
    scores_planted: Tensor
    scores_null: Tensor
    sizes_planted: Tensor
    settings: Mapping[str, Any]
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Precision and recall >= 0.9, AUC >= 0.95 and the null AUC within 0.5 +- 0.15."""
        return self.precision >= 0.9 and self.recall >= 0.9 and self.auc >= 0.95 and abs(self.null_auc - 0.5) <= 0.15


# ---------------------------------------------------------------------------------------
# the scanner
# ---------------------------------------------------------------------------------------
class SubsetScanner(Estimator):
    """Subset scanning of a layer's activations against a background of real data.

    ``fit(background_inputs)`` records the layer's activations on real inputs (a batch or
    an iterable of batches, streamed with :func:`~seethrough._core.capture.collect_activations`);
    ``scan(inputs)`` scores each input's most anomalous subset of nodes (:class:`ScanResult`).
    ``reduce`` (``"mean"``, ``"max"``, ...) combines every dimension after the first of each
    sample's activation (a conv layer's positions), so the nodes are the channels; None keeps
    every element as a node (``C * H * W``). ``tail="right"``: large activations are anomalous.
    With ``model=None`` only :meth:`fit_activations` and :meth:`scan_activations` work.

    Fitted: ``background_`` ``(N, J)``, ``node_shape_``, ``layer_name_``.
    """

    layer_name_: str | None

    def __init__(
        self,
        model: nn.Module | None,
        *,
        layer: LayerRef | None = None,
        reduce: str | None = None,
        alpha_max: float = 0.5,
        tail: str = "right",
        max_alphas: int | None = 64,
        batching: Any = None,
    ) -> None:
        self.model = model
        self.layer = layer
        self.reduce = reduce
        self.alpha_max = alpha_max
        self.tail = tail
        self.max_alphas = max_alphas
        self.batching = batching

    def _check(self) -> None:
        _check_alpha_max(self.alpha_max)
        _check_tail(self.tail)
        if self.reduce is not None:
            check_reduce(self.reduce, _REDUCE_OK)

    def _layer(self) -> tuple[str, nn.Module]:
        if self.model is None or self.layer is None:
            raise ConfigError(
                "this SubsetScanner has no model and layer; give SubsetScanner(model, layer=...) to scan inputs, "
                "or use fit_activations / scan_activations with activations"
            )
        return resolve_layer(self.model, self.layer)

    def _node_values(self, acts: Tensor) -> Tensor:
        if acts.dim() < 2:
            acts = acts.reshape(-1, 1)
        if self.reduce is not None and acts.dim() > 2:
            acts = apply_reduce(acts.float(), self.reduce, dim=tuple(range(2, acts.dim())))
        return acts

    def activations(self, inputs: Tensor | Iterable[Any]) -> Tensor:
        """The layer's node values on ``inputs``, ``(N, *node shape)`` (after ``reduce``)."""
        self._check()
        name, module = self._layer()
        assert self.model is not None
        transform = None
        if self.reduce is not None:

            def transform(_name: str, _mod: nn.Module, out: Tensor) -> Tensor:
                return self._node_values(out)

        with model_guard(self.model, method="subset scan"):
            acts = collect_activations(
                self.model, {name: module}, inputs, batching=self.batching, transform=transform, clone=transform is None
            )[name]
        return acts

    def fit(self, background_inputs: Tensor | Iterable[Any]) -> SubsetScanner:
        """Record the background: the layer's activations on real inputs."""
        name, _ = self._layer()
        self.fit_activations(self.activations(background_inputs))
        self.layer_name_ = name
        return self

    def fit_activations(self, background: Any) -> SubsetScanner:
        """Use given background activations ``(N, ...)`` (reduced like the layer's)."""
        self._check()
        bg = background if isinstance(background, Tensor) else torch.as_tensor(np.asarray(background))
        bg = self._node_values(bg.detach())
        if bg.shape[0] < 2:
            raise InputError(f"the background has {bg.shape[0]} samples; give hundreds of real samples")
        node_shape = tuple(bg.shape[1:]) or (1,)
        flat = _as_2d(bg.reshape(bg.shape[0], -1), "background activations")
        self.background_ = flat
        self.node_shape_ = node_shape
        self.layer_name_ = None if self.layer is None else (self.layer if isinstance(self.layer, str) else None)
        self._sorted = _sorted_background(flat)
        return self

    def pvalues(self, acts: Any) -> tuple[Tensor, Tensor]:
        """``(pmin, pmax)`` of activations ``(M, ...)`` against the background."""
        self.check_fitted("call fit(background_inputs) or fit_activations(background) first")
        a = acts if isinstance(acts, Tensor) else torch.as_tensor(np.asarray(acts))
        a = self._node_values(a.detach())
        if tuple(a.shape[1:]) != self.node_shape_ and a[0].numel() != math.prod(self.node_shape_):
            raise InputError(
                f"activations have per-sample shape {tuple(a.shape[1:])} but the background's is {self.node_shape_}; "
                f"scan the same layer with the same reduce"
            )
        flat = _as_2d(a.reshape(a.shape[0], -1), "test activations")
        if flat.shape[1] != self.background_.shape[1]:
            raise InputError(f"activations have {flat.shape[1]} nodes, the background {self.background_.shape[1]}")
        return _pvalues_sorted(self._sorted, flat, self.tail)

    def scan_activations(self, acts: Any, *, alphas: Sequence[float] | Tensor | None = None) -> ScanResult:
        """Scan given activations ``(M, ...)`` (from the same layer, unreduced or reduced)."""
        start = time.perf_counter()
        pmin, pmax = self.pvalues(acts)
        r = subset_scan(pmin, pmax, alpha_max=self.alpha_max, alphas=alphas, max_alphas=self.max_alphas)
        return ScanResult(
            scores=r.scores,
            subsets=r.subsets,
            sizes=r.sizes,
            alphas=r.alphas,
            n_alpha=r.n_alpha,
            alpha_grid=r.alpha_grid,
            alpha_max=r.alpha_max,
            node_shape=tuple(self.node_shape_),
            layer=self.layer_name_,
            reduce=self.reduce,
            tail=self.tail,
            n_background=int(self.background_.shape[0]),
            seconds=time.perf_counter() - start,
        )

    def scan(self, inputs: Tensor | Iterable[Any], *, alphas: Sequence[float] | Tensor | None = None) -> ScanResult:
        """Scan the layer's activations on ``inputs`` (a batch or an iterable of batches)."""
        self.check_fitted("call fit(background_inputs) first")
        start = time.perf_counter()
        r = self.scan_activations(self.activations(inputs), alphas=alphas)
        return dataclasses.replace(r, seconds=time.perf_counter() - start)


# ---------------------------------------------------------------------------------------
# the planted check
# ---------------------------------------------------------------------------------------
def _random_relu_net(in_features: int, nodes: int, seed: int) -> nn.Module:
    g = generator(seed, 1)
    net = nn.Sequential(nn.Linear(in_features, 32), nn.ReLU(), nn.Linear(32, nodes), nn.ReLU())
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / m.in_features))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return net.eval()


def _real_like(n: int, in_features: int, seed: int, stream: int) -> Tensor:
    """Real-like inputs: a mixture of 4 Gaussian clusters with a fixed (seeded) layout."""
    centres = torch.randn(4, in_features, generator=generator(seed, 2)) * 1.5
    g = generator(seed, 3, stream)
    which = torch.randint(0, 4, (n,), generator=g)
    return centres[which] + torch.randn(n, in_features, generator=g)


def planted_check(
    *,
    nodes: int = 64,
    planted: int = 8,
    shift: float = 1.0,
    n_background: int = 1000,
    n_test: int = 200,
    in_features: int = 64,
    alpha_max: float = 0.5,
    seed: int = 0,
) -> PlantedCheck:
    """Plant an anomaly and check that the scan finds it.

    A random ReLU network (seeded) is run on real-like inputs (a Gaussian mixture): its
    last layer's ``nodes`` activations on ``n_background`` inputs are the background. Of
    ``n_test`` fresh inputs, a copy has a known set of ``planted`` nodes shifted up by
    ``shift`` times each node's background range (max - min; with ``shift >= 1`` every
    shifted value is at or above the node's background maximum). The scan should return that
    set (precision and recall, averaged over the shifted samples), score the shifted
    samples above the clean ones (AUC near 1), and score clean samples like other clean
    samples (null AUC near 0.5)."""
    start = time.perf_counter()
    seed = check_seed(seed)
    if not 0 < planted <= nodes:
        raise ConfigError(f"planted must be between 1 and nodes={nodes}, got {planted}")
    net = _random_relu_net(in_features, nodes, seed)
    with torch.no_grad():
        bg = net(_real_like(n_background, in_features, seed, 0))
        clean = net(_real_like(n_test, in_features, seed, 1))
        null = net(_real_like(n_test, in_features, seed, 2))
    units = torch.randperm(nodes, generator=generator(seed, 4))[:planted].sort().values
    shifted = clean.clone()
    spread = (bg.amax(0) - bg.amin(0)).clamp_min(1e-3)
    shifted[:, units] += shift * spread[units]
    scanner = SubsetScanner(None, alpha_max=alpha_max).fit_activations(bg)
    r_clean = scanner.scan_activations(clean)
    r_planted = scanner.scan_activations(shifted)
    r_null = scanner.scan_activations(null)
    truth = torch.zeros(nodes, dtype=torch.bool)
    truth[units] = True
    found = r_planted.subsets
    tp = (found & truth).sum(1).double()
    precision = float((tp / found.sum(1).clamp_min(1)).mean())
    recall = float((tp / planted).mean())
    return PlantedCheck(
        planted=units,
        precision=precision,
        recall=recall,
        auc=detection_auc(r_clean.scores, r_planted.scores),
        null_auc=detection_auc(r_null.scores, r_clean.scores),
        scores_clean=r_clean.scores,
        scores_planted=r_planted.scores,
        scores_null=r_null.scores,
        sizes_planted=r_planted.sizes,
        settings={
            "nodes": nodes,
            "planted": planted,
            "shift": shift,
            "n_background": n_background,
            "n_test": n_test,
            "alpha_max": alpha_max,
            "seed": seed,
        },
        seconds=time.perf_counter() - start,
    )
