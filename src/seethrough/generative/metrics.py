"""Sample quality of a generative model: how close generated samples are to real ones.

Every metric compares *features* of real and generated (fake) samples, ``(N, D)`` arrays
from a feature network (Inception for natural images; any classifier's penultimate layer for
other data, e.g. the bundled MNIST classifier for digits). :class:`FeatureExtractor` gets
them from any ``nn.Module`` (its output or one of its layers), streamed in bounded chunks
inside :func:`~seethrough._core.state.model_guard`.

* :func:`fid` / :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to
  the two feature sets (Heusel et al. 2017), ``|mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))``
  with unbiased covariances. The trace of the matrix square root is computed as the sum of
  the square roots of the eigenvalues of ``S_r^(1/2) S_f S_r^(1/2)``, a symmetric positive
  semi-definite matrix with the same eigenvalues as ``S_r S_f``: two symmetric eigen
  decompositions in float64 (``torch.linalg.eigh``), negative rounding errors clipped to 0,
  so there is never an imaginary part to discard (``scipy.linalg.sqrtm`` of the non-symmetric
  product, the usual route, can return one).
* :func:`kid`: the kernel inception distance (Bińkowski et al. 2018), the unbiased estimate of
  the squared maximum mean discrepancy under the polynomial kernel
  ``k(x, y) = (gamma x.y + coef)^degree`` (gamma = 1/D by default), averaged over random
  subsets; its ``std`` is the spread over subsets.
* :func:`precision_recall` (Kynkäänniemi et al. 2019): the share of fake samples inside the
  real manifold (the union of balls around each real sample reaching its k-th nearest real
  neighbour), and the share of real samples inside the fake manifold.
* :func:`density_coverage` (Naeem et al. 2020): how many real balls contain each fake sample
  on average, divided by k; and the share of real samples whose ball holds a fake sample.
* :func:`inception_score` (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` from class
  probabilities (or logits), mean and spread over splits.
* :class:`SampleQuality`: extract features, then all of the above, with bootstrap intervals;
  a :class:`SampleQualityResult` with ``rows()``, ``plot`` and ``to_html``.

Balls are closed (a sample exactly on a ball's radius is inside), as the papers define them;
the ``prdc`` package tests strictly inside, torch-fidelity closed. With continuous features
the two agree.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._core.batching import Batching, as_batching
from .._core.capture import resolve_layers, stream_activations
from .._core.errors import ConfigError, InputError, SeethroughWarning
from .._core.layers import LayerRef
from .._core.result import Result, register_view
from .._core.seeds import check_seed, generator
from .._core.state import model_guard
from .._core.validation import model_device
from ..report.html import HtmlReport

__all__ = [
    "FeatureExtractor",
    "MetricValue",
    "SampleQuality",
    "SampleQualityResult",
    "frechet_distance",
    "fid",
    "kid",
    "precision_recall",
    "density_coverage",
    "inception_score",
    "SAMPLE_QUALITY_METRICS",
    "plot_sample_quality",
    "sample_quality_html",
]

#: The metrics :class:`SampleQuality` computes by name (``"is"`` needs a classifier).
SAMPLE_QUALITY_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "is")

#: Automatic chunks of :meth:`FeatureExtractor.extract` aim at this many bytes of one chunk's
#: largest activation on CPU (when ``batching`` is None). Convolutional feature networks run
#: faster on a CPU with chunks below the forward default of 128 MiB: on mnist-cnn (100 KB per
#: row at its first layer) 256-512 rows beat 1,024-4,096 by 10-30% (bench/bench_metrics.py
#: probes 128, 512 and 2,048 and found 512 fastest); 48 MiB gives it about 500 rows.
EXTRACT_WORKING_SET = 48 * 1024 * 1024

#: Pairwise distance and kernel blocks are computed this many bytes at a time (float64), so that
#: the memory of the k-nearest-neighbour metrics and of KID's bootstrap stays bounded whatever N.
BLOCK_BYTES = 32 * 1024 * 1024

_LABELS = {
    "fid": "FID",
    "kid": "KID",
    "precision": "precision",
    "recall": "recall",
    "density": "density",
    "coverage": "coverage",
    "is": "IS",
}


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class MetricValue(Result):
    """One sample-quality number with its uncertainty.

    Attributes
    ----------
    name: the metric (``"fid"``, ``"kid"``, ``"precision"``, ...).
    value: the estimate on all samples (KID: the mean over subsets; IS: over splits).
    low, high: the bootstrap interval at ``confidence`` (NaN without a bootstrap); ``interval``
        says which: ``"percentile"``, or ``"basic"`` for FID (see ``_BASIC_INTERVAL``).
    std: the spread of the estimate where the metric defines one (KID: over subsets; IS: over
        splits; population standard deviation, as the reference implementations), else NaN.
    n_real, n_fake: the samples compared. bootstrap: replicates behind ``low``/``high``.
    replicates: the bootstrap replicates ``(bootstrap,)``; parts: the per-subset (KID) or
        per-split (IS) values.
    higher_is_better: the direction of a better model.
    """

    name: str
    value: float
    low: float = math.nan
    high: float = math.nan
    std: float = math.nan
    confidence: float = 0.95
    n_real: int = 0
    n_fake: int = 0
    bootstrap: int = 0
    higher_is_better: bool = False
    interval: str = ""
    replicates: Tensor | None = None
    parts: Tensor | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return _LABELS.get(self.name, self.name)

    def __float__(self) -> float:
        return float(self.value)

    def row(self) -> dict[str, Any]:
        """One table row: metric, value, interval, spread, sizes, direction."""
        return {
            "metric": self.label,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "std": self.std,
            "n_real": self.n_real,
            "n_fake": self.n_fake,
            "better": "higher" if self.higher_is_better else "lower",
            "interval": self.interval,
        }

    def __repr__(self) -> str:
        ci = f" [{self.low:.4g}, {self.high:.4g}]" if math.isfinite(self.low) else ""
        sd = f" ± {self.std:.3g}" if math.isfinite(self.std) else ""
        return f"MetricValue({self.label} = {self.value:.6g}{sd}{ci})"


@dataclass(frozen=True, eq=False)
class SampleQualityResult(Result):
    """Every metric of one real-vs-generated comparison.

    Attributes
    ----------
    metrics: ``{name: MetricValue}`` in the order computed.
    n_real, n_fake, feature_dim: the feature sets compared.
    layer: the feature layer (``""``: the feature network's output; None: features given).
    seconds: wall-clock time (extraction included); extract_seconds: of the extraction.
    settings: the :class:`SampleQuality` settings actually used (e.g. a KID subset size cut
        down to the smaller set).
    """

    metrics: Mapping[str, MetricValue]
    n_real: int
    n_fake: int
    feature_dim: int
    layer: str | None = None
    seconds: float = 0.0
    extract_seconds: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> MetricValue:
        if name not in self.metrics:
            raise KeyError(f"no metric {name!r} in this result; it has {list(self.metrics)}")
        return self.metrics[name]

    def __contains__(self, name: object) -> bool:
        return name in self.metrics

    def values(self) -> dict[str, float]:
        """``{name: value}``."""
        return {k: float(m.value) for k, m in self.metrics.items()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per metric (see :meth:`MetricValue.row`), for tables."""
        return [m.row() for m in self.metrics.values()]

    def __repr__(self) -> str:
        inner = ", ".join(f"{m.label}={m.value:.4g}" for m in self.metrics.values())
        return f"SampleQualityResult({inner}; {self.n_real} real, {self.n_fake} fake, D={self.feature_dim})"


# ----------------------------------------------------------------------------- features
class FeatureExtractor:
    """Features of images (or any inputs) from a network: its output, or one layer's.

    Parameters
    ----------
    model: any ``nn.Module`` (a classifier, an Inception network, ...).
    layer: a dotted layer name or a submodule of ``model``; None: the model's output. The
        pass stops once the layer has run (the rest of the network is not computed).
    batching: rows per forward chunk (an int or a :class:`~seethrough._core.batching.Batching`);
        None sizes chunks from one row's largest activation (:data:`EXTRACT_WORKING_SET` per chunk
        on CPU).
    flatten: flatten each sample's activation to one vector (``(N, C, H, W)`` -> ``(N, C*H*W)``);
        with False the layer must already give ``(N, D)``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: LayerRef | None = None,
        batching: Batching | int | None = None,
        flatten: bool = True,
    ) -> None:
        self.model = model
        self.layer = layer
        self.batching = batching
        self.flatten = flatten

    def layer_name(self) -> str:
        """The dotted name of the feature layer (``""`` for the model's output)."""
        return next(iter(self._layers()))

    def _layers(self) -> dict[str, nn.Module]:
        if not isinstance(self.model, nn.Module):
            raise ConfigError(f"the feature network must be a torch.nn.Module, got {type(self.model).__name__}")
        return resolve_layers(self.model, self.model if self.layer is None else self.layer)

    def extract(self, data: Tensor | Iterable[Any], *, progress: bool = False) -> Tensor:
        """``(N, D)`` float64 features on the CPU of ``data``: one batch, or an iterable of
        batches (a DataLoader, a generator of shards; ``(inputs, labels)`` tuples are fine).
        Raises :class:`InputError` when a feature is NaN or infinite."""
        layers = self._layers()
        name = next(iter(layers))
        where = "the model's output" if name == "" else f"layer {name!r}"
        b = Batching(forward_working_set=EXTRACT_WORKING_SET) if self.batching is None else as_batching(self.batching)
        total = int(data.shape[0]) if isinstance(data, Tensor) and data.dim() > 0 else None
        if isinstance(data, Tensor) and (data.dim() == 0 or data.shape[0] == 0):
            raise InputError(f"no inputs to extract features from (shape {tuple(data.shape)}); give a batch (N, ...)")
        parts: list[Tensor] = []
        bad = 0
        dim: int | None = None
        with model_guard(self.model, method="feature extraction"):
            device = model_device(self.model)
            stream = stream_activations(self.model, layers, _on_device(data, device), batching=b)
            with tqdm(total=total, unit="sample", desc="features", disable=not progress) as bar:
                for rows, store in stream:
                    out = store[name]
                    n = rows.stop - rows.start
                    if self.flatten:
                        out = out.reshape(out.shape[0], -1)
                    elif out.dim() != 2:
                        raise InputError(
                            f"{where} gives activations of shape {tuple(out.shape)}, not (N, D); pass flatten=True "
                            f"or pick a pooled layer"
                        )
                    f = out.detach().to(device="cpu", dtype=torch.float64)
                    if dim is not None and f.shape[1] != dim:
                        raise InputError(f"{where} gave {f.shape[1]} features for some inputs and {dim} for others")
                    dim = int(f.shape[1])
                    bad += int((~torch.isfinite(f)).sum())
                    parts.append(f)
                    bar.update(n)
        if not parts:
            raise InputError("no inputs to extract features from: the data gave no (non-empty) batch")
        if bad:
            raise InputError(
                f"{bad} of the features from {where} are NaN or infinite; check that the inputs are finite and in the "
                f"range the network was trained on (e.g. images in [0, 1]), or pick another layer"
            )
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def __repr__(self) -> str:
        return f"FeatureExtractor({type(self.model).__name__}, layer={self.layer!r})"


def _on_device(data: Tensor | Iterable[Any], device: torch.device | None) -> Tensor | Iterable[Any]:
    """``data`` with every batch on the model's device (a tensor elsewhere is moved in pieces)."""
    if device is None:
        return data
    if isinstance(data, Tensor):
        if data.device == device:
            return data
        piece = Batching().max_forward_rows

        def pieces() -> Iterator[Tensor]:
            for i in range(0, data.shape[0], piece):
                yield data[i : i + piece].to(device)

        return pieces()

    def moved() -> Iterator[Any]:
        for batch in data:
            if isinstance(batch, (tuple, list)) and batch:
                batch = batch[0]
            yield batch.to(device) if isinstance(batch, Tensor) else batch

    return moved()


# ----------------------------------------------------------------------------- checks
def _features(x: Any, what: str) -> Tensor:
    if isinstance(x, Tensor):
        t = x.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise InputError(f"{what} must be an (N, D) array of numbers, got {type(x).__name__}") from e
    if t.dim() != 2:
        raise InputError(
            f"{what} must be features of shape (N, D), got shape {tuple(t.shape)}; extract them with "
            f"FeatureExtractor(model, layer=...).extract(images) (which flattens each sample)"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(f"{what} are empty (shape {tuple(t.shape)})")
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise InputError(
            f"{bad} of the {what} are NaN or infinite; recompute them from finite inputs in the feature network's "
            f"range, or drop those samples"
        )
    return t.contiguous()


def _pair(real: Any, fake: Any, *, min_n: int, why: str) -> tuple[Tensor, Tensor]:
    r = _features(real, "real features")
    f = _features(fake, "fake features")
    if r.shape[1] != f.shape[1]:
        raise InputError(
            f"real features have D={r.shape[1]} and fake features D={f.shape[1]}; extract both with the same "
            f"feature network and layer"
        )
    for t, what in ((r, "real"), (f, "fake")):
        if t.shape[0] < min_n:
            raise InputError(f"{why} needs at least {min_n} {what} samples, got {t.shape[0]}; give more samples")
    return r, f


def _check_confidence(confidence: float) -> float:
    if not isinstance(confidence, (int, float)) or not 0.0 < float(confidence) < 1.0:
        raise ConfigError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return float(confidence)


def _check_bootstrap(bootstrap: int) -> int:
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ConfigError(f"bootstrap must be a non-negative int (0: no interval), got {bootstrap!r}")
    if bootstrap == 1:
        raise ConfigError("bootstrap=1 gives no interval; use 0 (none) or at least 2 replicates (e.g. 200)")
    return bootstrap


def _check_k(k: int, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"{name} (nearest neighbours) must be a positive int, got {k!r}")
    return k


def _warn_rank(n: int, d: int, what: str) -> None:
    if n < d:
        warnings.warn(
            f"FID from {n} {what} samples of {d} features: the covariance is singular (N < D) and the distance is "
            f"biased and noisy; use more samples than features (or a lower-dimensional feature layer)",
            SeethroughWarning,
            stacklevel=3,
        )


# ----------------------------------------------------------------------------- bootstrap
def _bootstrap_counts(n: int, b: int, seed: int, stream: int) -> Tensor:
    """``(b, n)`` float64 multiplicities of ``b`` resamples with replacement of ``n`` samples."""
    g = generator(seed, stream)
    idx = torch.randint(n, (b, n), generator=g)
    counts = torch.zeros(b, n, dtype=torch.float64)
    counts.scatter_add_(1, idx, torch.ones(b, n, dtype=torch.float64))
    return counts


#: Bootstrap intervals: the percentile interval, except for FID, whose estimate is biased upwards
#: at finite N (Chong & Forsyth 2020) and whose resamples, with fewer distinct samples, are biased
#: more: their percentile interval then
#: sits above the estimate and misses the true distance (0 of 60 simulated 16-D Gaussian pairs,
#: N = 500). The basic bootstrap interval ``[2 v - q_hi, 2 v - q_lo]`` (clipped at 0) subtracts that
#: bias and held the truth in 56 of the 60.
_BASIC_INTERVAL = frozenset({"fid"})


def _interval(name: str, value: float, reps: Tensor, confidence: float) -> tuple[float, float, str]:
    a = (1.0 - confidence) / 2.0
    q = torch.quantile(reps, torch.tensor([a, 1.0 - a], dtype=reps.dtype))
    lo, hi = float(q[0]), float(q[1])
    if name in _BASIC_INTERVAL:
        return max(0.0, 2 * value - hi), max(0.0, 2 * value - lo), "basic"
    return lo, hi, "percentile"


def _rows_per_block(cols: int) -> int:
    return max(1, BLOCK_BYTES // (8 * max(cols, 1)))


# ----------------------------------------------------------------------------- FID
#: Eigen decompositions of matrices up to this size run on one thread. LAPACK's threads do not
#: pay off on such small matrices, and on a machine with more busy threads than cores they
#: stall: a 128 x 128 ``torch.linalg.eigh`` took 2.8 s with 2 threads and 0.013 s with one on
#: this 2-core machine under load (the Fréchet distance of the bench's 128 features: 5 s).
SMALL_LINALG = 512


@contextlib.contextmanager
def _linalg_threads(d: int) -> Iterator[None]:
    """One intra-op thread for the decompositions of ``d x d`` matrices when ``d`` is small
    (see :data:`SMALL_LINALG`); the caller's thread count is restored on exit."""
    n = torch.get_num_threads()
    if d > SMALL_LINALG or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _gaussian(x: Tensor) -> tuple[Tensor, Tensor]:
    mu = x.mean(dim=0)
    xc = x - mu
    return mu, (xc.T @ xc) / (x.shape[0] - 1)


def _sqrt_psd(s: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(s)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def _frechet(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    with _linalg_threads(s1.shape[0]):
        r = _sqrt_psd(s1)
        m = r @ s2 @ r
        m = (m + m.T) / 2
        tr_sqrt = torch.linalg.eigvalsh(m).clamp(min=0).sqrt().sum()
    d = mu1 - mu2
    return float(d @ d + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt)


def frechet_distance(real: Any, fake: Any) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` (means and
    unbiased covariances, float64); the FID when the features are Inception's pool features.
    See the module docstring for the stable matrix square root. Needs 2 samples per set; warns
    when a set has fewer samples than features."""
    r, f = _pair(real, fake, min_n=2, why="the Fréchet distance (a covariance)")
    _warn_rank(r.shape[0], r.shape[1], "real")
    _warn_rank(f.shape[0], f.shape[1], "fake")
    mu_r, s_r = _gaussian(r)
    mu_f, s_f = _gaussian(f)
    return _frechet(mu_r, s_r, mu_f, s_f)


def _weighted_second_moments(xc: Tensor, counts: Tensor) -> Tensor:
    """``X^T diag(w) X`` ``(B, D, D)`` for each row ``w`` of ``counts``. For moderate D one pass
    over blocks of samples: the upper triangle of every sample's outer product (``(rows, D(D+1)/2)``)
    times the block of counts, one large matrix product for all resamples; otherwise one
    product per resample."""
    n, d = xc.shape
    b = counts.shape[0]
    tri = d * (d + 1) // 2
    if b * tri * 8 > 4 * BLOCK_BYTES:
        return torch.stack([(xc * w[:, None]).T @ xc for w in counts])
    iu = torch.triu_indices(d, d)
    acc = torch.zeros(b, tri, dtype=torch.float64)
    step = _rows_per_block(tri)
    for i in range(0, n, step):
        blk = xc[i : i + step]
        acc.addmm_(counts[:, i : i + step], blk[:, iu[0]] * blk[:, iu[1]])
    out = torch.empty(b, d, d, dtype=torch.float64)
    out[:, iu[0], iu[1]] = acc
    out[:, iu[1], iu[0]] = acc
    return out


def _weighted_gaussians(x: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Means ``(B, D)`` and unbiased covariances ``(B, D, D)`` of the resamples in ``counts``."""
    n = x.shape[0]
    mu0 = x.mean(dim=0)
    xc = x - mu0  # centred first: the second moments are then small and exact in float64
    shift = (counts @ xc) / n
    second = _weighted_second_moments(xc, counts)
    cov = (second - n * shift[:, :, None] * shift[:, None, :]) / (n - 1)
    return mu0 + shift, cov


def _fid_replicates(r: Tensor, f: Tensor, cr: Tensor, cf: Tensor, progress: bool) -> Tensor:
    """FID of each resample (rows of ``cr`` and ``cf``), in groups of resamples whose ``(D, D)``
    matrices fit in a few blocks; the square roots by batched symmetric eigen decompositions."""
    b, d = cr.shape[0], r.shape[1]
    group = max(1, min(b, (4 * BLOCK_BYTES) // (8 * d * d * 4)))
    out = torch.empty(b, dtype=torch.float64)
    for g0 in tqdm(range(0, b, group), desc="FID bootstrap", disable=not progress):
        sl = slice(g0, min(g0 + group, b))
        mu_r, s_r = _weighted_gaussians(r, cr[sl])
        mu_f, s_f = _weighted_gaussians(f, cf[sl])
        with _linalg_threads(d):
            vals, vecs = torch.linalg.eigh(s_r)
            root = (vecs * vals.clamp(min=0).sqrt()[:, None, :]) @ vecs.transpose(1, 2)
            m = root @ s_f @ root
            m = (m + m.transpose(1, 2)) / 2
            tr_sqrt = torch.linalg.eigvalsh(m).clamp(min=0).sqrt().sum(dim=1)
        diff = mu_r - mu_f
        trace = s_r.diagonal(dim1=1, dim2=2).sum(dim=1) + s_f.diagonal(dim1=1, dim2=2).sum(dim=1)
        out[sl] = (diff * diff).sum(dim=1) + trace - 2 * tr_sqrt
    return out


def fid(
    real: Any,
    fake: Any,
    *,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> MetricValue:
    """:func:`frechet_distance` as a :class:`MetricValue`; with ``bootstrap`` replicates (real
    and fake resampled with replacement, seeded) its basic bootstrap interval (see
    ``_BASIC_INTERVAL``: FID's small-sample bias puts the percentile interval above the truth).
    A replicate costs O(N D^2): for Inception's 2,048 features keep ``bootstrap`` small or 0."""
    bootstrap = _check_bootstrap(bootstrap)
    confidence = _check_confidence(confidence)
    seed = check_seed(seed)
    r, f = _pair(real, fake, min_n=2, why="FID (a covariance)")
    value = frechet_distance(r, f)
    reps = None
    low = high = math.nan
    method = ""
    if bootstrap:
        reps = _fid_replicates(
            r,
            f,
            _bootstrap_counts(r.shape[0], bootstrap, seed, 1),
            _bootstrap_counts(f.shape[0], bootstrap, seed, 2),
            progress,
        )
        low, high, method = _interval("fid", value, reps, confidence)
    return MetricValue(
        name="fid",
        value=value,
        low=low,
        high=high,
        confidence=confidence,
        n_real=int(r.shape[0]),
        n_fake=int(f.shape[0]),
        bootstrap=bootstrap,
        higher_is_better=False,
        interval=method,
        replicates=reps,
        settings={"bootstrap": bootstrap, "seed": seed},
    )


# ----------------------------------------------------------------------------- KID
def _kernel(a: Tensor, b: Tensor, degree: int, gamma: float, coef: float) -> Tensor:
    return (a @ b.T * gamma + coef) ** degree


def _mmd2_unbiased(x: Tensor, y: Tensor, degree: int, gamma: float, coef: float) -> float:
    """Unbiased MMD^2 of two equal-size sets (Bińkowski et al. 2018, eq. 3 with the full cross
    term): off-diagonal means of k(x, x') and k(y, y') minus twice the mean of k(x, y)."""
    m = x.shape[0]
    kxx = _kernel(x, x, degree, gamma, coef)
    kyy = _kernel(y, y, degree, gamma, coef)
    kxy = _kernel(x, y, degree, gamma, coef)
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def _weighted_kernel_sums(
    a: Tensor, b: Tensor | None, wa: Tensor, wb: Tensor | None, degree: int, gamma: float, coef: float
) -> Tensor:
    """``sum_ij wa_i K(a_i, b_j) wb_j`` for every resample (row of the weights), over square
    blocks of the kernel matrix; with ``b`` None the within-set sum over pairs of distinct
    samples (``i != j``), from the blocks on and above the diagonal (the matrix is symmetric)."""
    same = b is None
    bb = a if b is None else b
    wbb = wa if wb is None else wb
    out = torch.zeros(wa.shape[0], dtype=torch.float64)
    side = max(1, int(math.isqrt(BLOCK_BYTES // 8)))
    for i in range(0, a.shape[0], side):
        rows = slice(i, min(i + side, a.shape[0]))
        left = wa[:, rows]
        for j in range(i if same else 0, bb.shape[0], side):
            cols = slice(j, min(j + side, bb.shape[0]))
            k = _kernel(a[rows], bb[cols], degree, gamma, coef)
            if same and i == j:  # pairs (i, i): a sample with itself (or, resampled, its own copy)
                k.fill_diagonal_(0.0)
            part = ((left @ k) * wbb[:, cols]).sum(dim=1)
            out += 2 * part if same and i != j else part
    return out


def _kid_replicates(r: Tensor, f: Tensor, cr: Tensor, cf: Tensor, degree: int, gamma: float, coef: float) -> Tensor:
    """Bootstrap replicates of the unbiased MMD^2 of all samples: a weighted U-statistic whose
    within-set terms skip pairs of copies of the same sample (they would add k(x, x))."""
    nr, nf = r.shape[0], f.shape[0]
    xx = _weighted_kernel_sums(r, None, cr, None, degree, gamma, coef)
    yy = _weighted_kernel_sums(f, None, cf, None, degree, gamma, coef)
    xy = _weighted_kernel_sums(r, f, cr, cf, degree, gamma, coef)
    pairs_r = nr * nr - (cr * cr).sum(dim=1)
    pairs_f = nf * nf - (cf * cf).sum(dim=1)
    return xx / pairs_r + yy / pairs_f - 2 * xy / (nr * nf)


def kid(
    real: Any,
    fake: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    *,
    seed: int = 0,
    bootstrap: int = 0,
    confidence: float = 0.95,
    progress: bool = False,
) -> MetricValue:
    """Kernel inception distance: the unbiased MMD^2 under ``k(x, y) = (gamma x.y + coef)^degree``
    (``gamma`` = 1/D when None) on ``subsets`` random subsets of ``subset_size`` real and fake
    samples; ``value`` is the mean, ``std`` the population spread over subsets, ``parts`` the
    subset values. Each subset takes the first ``subset_size`` of ``torch.randperm(n_real)`` then
    of ``torch.randperm(n_fake)`` from a generator seeded with ``seed`` (torchmetrics draws its
    subsets the same way from the global generator).

    With ``bootstrap`` replicates, ``low``/``high`` are the percentile interval of the unbiased
    MMD^2 of *all* samples (the quantity the subset mean estimates) over resamples with
    replacement of real and fake, computed in one blocked pass over the kernel matrices
    (O((N_real + N_fake)^2 (D + bootstrap))); pairs of copies of one sample are left out."""
    for name, v, lo in (("subsets", subsets, 1), ("subset_size", subset_size, 2), ("degree", degree, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{name} must be an int >= {lo}, got {v!r}")
    if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0):
        raise ConfigError(f"gamma must be a positive number or None (1/D), got {gamma!r}")
    if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not coef >= 0:
        raise ConfigError(f"coef must be a non-negative number, got {coef!r}")
    bootstrap = _check_bootstrap(bootstrap)
    confidence = _check_confidence(confidence)
    seed = check_seed(seed)
    r, f = _pair(real, fake, min_n=2, why="KID (an unbiased MMD over pairs)")
    nr, nf = int(r.shape[0]), int(f.shape[0])
    if subset_size > min(nr, nf):
        which = "real" if nr <= nf else "fake"
        raise ConfigError(
            f"subset_size={subset_size} is more than the {min(nr, nf)} {which} samples; pass "
            f"subset_size={min(nr, nf)} or less, or give more samples"
        )
    g_ = 1.0 / r.shape[1] if gamma is None else float(gamma)
    g = generator(seed)
    values = torch.empty(subsets, dtype=torch.float64)
    for i in tqdm(range(subsets), desc="KID subsets", disable=not progress):
        pr = torch.randperm(nr, generator=g)[:subset_size]
        pf = torch.randperm(nf, generator=g)[:subset_size]
        values[i] = _mmd2_unbiased(r[pr], f[pf], degree, g_, float(coef))
    value = float(values.mean())
    reps = None
    low = high = math.nan
    method = ""
    if bootstrap:
        cr = _bootstrap_counts(nr, bootstrap, seed, 1)
        cf = _bootstrap_counts(nf, bootstrap, seed, 2)
        reps = _kid_replicates(r, f, cr, cf, degree, g_, float(coef))
        low, high, method = _interval("kid", value, reps, confidence)
    return MetricValue(
        name="kid",
        value=value,
        low=low,
        high=high,
        std=float(values.std(unbiased=False)) if subsets > 1 else 0.0,
        confidence=confidence,
        n_real=nr,
        n_fake=nf,
        bootstrap=bootstrap,
        higher_is_better=False,
        interval=method,
        replicates=reps,
        parts=values,
        settings={
            "subsets": subsets,
            "subset_size": subset_size,
            "degree": degree,
            "gamma": g_,
            "coef": float(coef),
            "seed": seed,
            "bootstrap": bootstrap,
        },
    )


# ----------------------------------------------------------------------------- k-NN metrics
def _knn_radii(x: Tensor, ks: Sequence[int]) -> dict[int, Tensor]:
    """Distance of each sample to its k-th nearest other sample, for each k (blocked)."""
    top = max(ks) + 1  # the sample itself is its own nearest, at distance 0
    out = {k: torch.empty(x.shape[0], dtype=torch.float64) for k in ks}
    step = _rows_per_block(x.shape[0])
    for i in range(0, x.shape[0], step):
        d = torch.cdist(x[i : i + step], x)
        near = torch.topk(d, top, dim=1, largest=False).values
        for k in ks:
            out[k][i : i + step] = near[:, k]
    return out


@dataclass(frozen=True)
class _Manifold:
    """Per-sample indicators from which the k-NN metrics are means."""

    in_real: Tensor | None = None  # (N_fake,) fake sample inside the real manifold (k for precision)
    in_fake: Tensor | None = None  # (N_real,) real sample inside the fake manifold
    balls: Tensor | None = None  # (N_fake,) real balls (k for density) holding each fake sample
    covered: Tensor | None = None  # (N_real,) the real ball (k for density) holds a fake sample


def _manifold(r: Tensor, f: Tensor, k_pr: int | None, k_dc: int | None) -> _Manifold:
    ks_real = sorted({k for k in (k_pr, k_dc) if k is not None})
    radii = _knn_radii(r, ks_real)
    r_pr = radii[k_pr] if k_pr is not None else None
    r_dc = radii[k_dc] if k_dc is not None else None
    s_pr = _knn_radii(f, [k_pr])[k_pr] if k_pr is not None else None
    nr, nf = r.shape[0], f.shape[0]
    in_real = torch.zeros(nf, dtype=torch.bool) if k_pr is not None else None
    in_fake = torch.zeros(nr, dtype=torch.bool) if k_pr is not None else None
    balls = torch.zeros(nf, dtype=torch.float64) if k_dc is not None else None
    covered = torch.zeros(nr, dtype=torch.bool) if k_dc is not None else None
    step = _rows_per_block(nf)
    for i in range(0, nr, step):
        rows = slice(i, min(i + step, nr))
        d = torch.cdist(r[rows], f)  # (real block, fake)
        if r_pr is not None and s_pr is not None and in_real is not None and in_fake is not None:
            in_real |= (d <= r_pr[rows, None]).any(dim=0)
            in_fake[rows] = (d <= s_pr[None, :]).any(dim=1)
        if r_dc is not None and balls is not None and covered is not None:
            inside = d <= r_dc[rows, None]
            balls += inside.sum(dim=0, dtype=torch.float64)
            covered[rows] = inside.any(dim=1)
    return _Manifold(in_real, in_fake, balls, covered)


def _mean_metric(
    name: str,
    per_sample: Tensor,
    counts: Tensor | None,
    *,
    scale: float,
    confidence: float,
    n_real: int,
    n_fake: int,
    settings: Mapping[str, Any],
) -> MetricValue:
    v = per_sample.to(torch.float64)
    value = float(v.mean()) * scale
    reps = None
    low = high = math.nan
    method = ""
    if counts is not None:
        reps = (counts @ v) / v.shape[0] * scale
        low, high, method = _interval(name, value, reps, confidence)
    return MetricValue(
        name=name,
        value=value,
        low=low,
        high=high,
        confidence=confidence,
        n_real=n_real,
        n_fake=n_fake,
        bootstrap=0 if counts is None else int(counts.shape[0]),
        higher_is_better=True,
        interval=method,
        replicates=reps,
        settings=dict(settings),
    )


_KNN_BOOTSTRAP = (
    "the k-NN balls are those of all samples; a replicate resamples the scored samples (fake for precision and "
    "density, real for recall and coverage) with replacement"
)


def precision_recall(
    real: Any,
    fake: Any,
    k: int = 3,
    *,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[MetricValue, MetricValue]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): ``(precision, recall)``.

    Precision: the share of fake samples within the real manifold, the union of closed balls
    around every real sample reaching its ``k``-th nearest real neighbour; recall: the share of
    real samples within the fake manifold. Distances are Euclidean in float64, computed in
    blocks (memory bounded whatever N). Needs ``k + 1`` samples in each set.

    ``bootstrap`` replicates give percentile intervals with the manifolds held at those of all
    samples (resampling would pair a sample with its own copy at distance 0 and shrink the
    balls): they cover the sampling of the scored samples."""
    k = _check_k(k)
    bootstrap = _check_bootstrap(bootstrap)
    confidence = _check_confidence(confidence)
    seed = check_seed(seed)
    r, f = _pair(real, fake, min_n=k + 1, why=f"precision/recall with k={k} (a sample and its k neighbours)")
    m = _manifold(r, f, k, None)
    assert m.in_real is not None and m.in_fake is not None
    cr = _bootstrap_counts(r.shape[0], bootstrap, seed, 1) if bootstrap else None
    cf = _bootstrap_counts(f.shape[0], bootstrap, seed, 2) if bootstrap else None
    settings: dict[str, Any] = {"k": k, "seed": seed, "bootstrap": bootstrap}
    if bootstrap:
        settings["bootstrap_scheme"] = _KNN_BOOTSTRAP
    sizes = {"n_real": int(r.shape[0]), "n_fake": int(f.shape[0])}
    p = _mean_metric("precision", m.in_real, cf, scale=1.0, confidence=confidence, settings=settings, **sizes)
    rc = _mean_metric("recall", m.in_fake, cr, scale=1.0, confidence=confidence, settings=settings, **sizes)
    return p, rc


def density_coverage(
    real: Any,
    fake: Any,
    k: int = 5,
    *,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[MetricValue, MetricValue]:
    """Density and coverage (Naeem et al. 2020): ``(density, coverage)``.

    Density: the mean over fake samples of the number of real ``k``-NN balls (closed) that
    hold it, divided by ``k`` (1 on average when fake matches real; above 1 where fakes crowd
    into dense real regions); coverage: the share of real samples whose ball holds at least one
    fake sample. Needs ``k + 1`` real samples. ``bootstrap``: as :func:`precision_recall`."""
    k = _check_k(k)
    bootstrap = _check_bootstrap(bootstrap)
    confidence = _check_confidence(confidence)
    seed = check_seed(seed)
    r = _features(real, "real features")
    if r.shape[0] < k + 1:
        raise InputError(
            f"density/coverage with k={k} needs at least {k + 1} real samples (a sample and its k neighbours), "
            f"got {r.shape[0]}; give more samples or a smaller k"
        )
    r, f = _pair(r, fake, min_n=1, why="density/coverage")
    m = _manifold(r, f, None, k)
    assert m.balls is not None and m.covered is not None
    cr = _bootstrap_counts(r.shape[0], bootstrap, seed, 1) if bootstrap else None
    cf = _bootstrap_counts(f.shape[0], bootstrap, seed, 2) if bootstrap else None
    settings: dict[str, Any] = {"k": k, "seed": seed, "bootstrap": bootstrap}
    if bootstrap:
        settings["bootstrap_scheme"] = _KNN_BOOTSTRAP
    sizes = {"n_real": int(r.shape[0]), "n_fake": int(f.shape[0])}
    d = _mean_metric("density", m.balls, cf, scale=1.0 / k, confidence=confidence, settings=settings, **sizes)
    c = _mean_metric("coverage", m.covered, cr, scale=1.0, confidence=confidence, settings=settings, **sizes)
    return d, c


# ----------------------------------------------------------------------------- IS
def _probs(x: Tensor, logits: bool | None) -> tuple[Tensor, bool]:
    if logits is None:
        sums = x.sum(dim=1)
        logits = not (bool((x >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-4)))
    if logits:
        return torch.softmax(x, dim=1), True
    if bool((x < 0).any()):
        raise InputError("probabilities must be non-negative; pass logits=True for logits")
    sums = x.sum(dim=1, keepdim=True)
    if bool((sums <= 0).any()):
        raise InputError("a row of probabilities sums to 0; give class probabilities (rows summing to 1) or logits")
    return x / sums, False


def inception_score(probs_or_logits: Any, splits: int = 10, *, logits: bool | None = None) -> MetricValue:
    """Inception score (Salimans et al. 2016): ``exp(mean_x KL(p(y|x) || p(y)))`` on each of
    ``splits`` consecutive splits of the samples (split ``i`` holds rows ``i N // splits`` to
    ``(i + 1) N // splits``, as the original code; shuffle beforehand if the rows are ordered),
    ``p(y)`` the split's mean prediction; ``value`` the mean over splits, ``std`` their
    population spread.

    ``probs_or_logits``: ``(N, K)`` class probabilities (rows summing to 1) or logits;
    ``logits=None`` decides from the values (non-negative rows summing to 1 are probabilities)."""
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ConfigError(f"splits must be a positive int, got {splits!r}")
    x = _features(probs_or_logits, "class probabilities or logits")
    n = int(x.shape[0])
    if n < splits:
        raise InputError(f"{n} samples cannot make {splits} splits; give at least {splits} samples or fewer splits")
    if x.shape[1] < 2:
        raise InputError(f"the inception score needs predictions over at least 2 classes, got {x.shape[1]}")
    p, from_logits = _probs(x, logits)
    scores = torch.empty(splits, dtype=torch.float64)
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        pc = p[lo:hi]
        marginal = pc.mean(dim=0, keepdim=True)
        # KL(p(y|x) || p(y)) = sum_y p log p - p log p(y), with 0 log 0 = 0 (p(y) > 0 wherever p > 0)
        kl = (torch.xlogy(pc, pc) - torch.xlogy(pc, marginal.expand_as(pc))).sum(dim=1)
        scores[i] = kl.mean().exp()
    return MetricValue(
        name="is",
        value=float(scores.mean()),
        std=float(scores.std(unbiased=False)) if splits > 1 else 0.0,
        n_fake=n,
        higher_is_better=True,
        parts=scores,
        settings={"splits": splits, "logits": from_logits},
    )


# ----------------------------------------------------------------------------- SampleQuality
class SampleQuality:
    """Extract features of real and generated samples, then compute every sample-quality metric
    with bootstrap intervals.

    Parameters
    ----------
    features: a :class:`FeatureExtractor`, an ``nn.Module`` (its output are the features; use a
        :class:`FeatureExtractor` to pick a layer), or None when :meth:`evaluate` is given features.
    classifier: a module (or :class:`FeatureExtractor`) giving class logits or probabilities of
        the generated samples, for the inception score (``"is"``); None: no IS.
    metrics: names from :data:`SAMPLE_QUALITY_METRICS`; None: all that apply.
    k_precision, k_density: nearest neighbours for precision/recall (3) and density/coverage (5),
        the papers' defaults.
    kid_subsets, kid_subset_size, kid_degree, kid_gamma, kid_coef: see :func:`kid`; the subset
        size is cut down to the smaller set when it has fewer samples (recorded in the settings).
    is_splits: see :func:`inception_score`.
    bootstrap, confidence, seed: bootstrap intervals (0: none; percentile, basic for FID); one set of resamples
        of the real and the fake samples is shared by every metric.
    batching: chunking of the feature networks when they are given as modules.
    """

    def __init__(
        self,
        features: FeatureExtractor | nn.Module | None = None,
        *,
        classifier: FeatureExtractor | nn.Module | None = None,
        metrics: Sequence[str] | None = None,
        k_precision: int = 3,
        k_density: int = 5,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        kid_degree: int = 3,
        kid_gamma: float | None = None,
        kid_coef: float = 1.0,
        is_splits: int = 10,
        bootstrap: int = 200,
        confidence: float = 0.95,
        seed: int = 0,
        batching: Batching | int | None = None,
    ) -> None:
        self.features = features
        self.classifier = classifier
        self.metrics = metrics
        self.k_precision = k_precision
        self.k_density = k_density
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.kid_degree = kid_degree
        self.kid_gamma = kid_gamma
        self.kid_coef = kid_coef
        self.is_splits = is_splits
        self.bootstrap = bootstrap
        self.confidence = confidence
        self.seed = seed
        self.batching = batching

    def _extractor(self, what: FeatureExtractor | nn.Module | None) -> FeatureExtractor | None:
        if what is None or isinstance(what, FeatureExtractor):
            return what
        if isinstance(what, nn.Module):
            return FeatureExtractor(what, batching=self.batching)
        raise ConfigError(
            f"a feature network must be a FeatureExtractor or a torch.nn.Module, got {type(what).__name__}"
        )

    def _names(self, has_probs: bool) -> list[str]:
        if self.metrics is None:
            names = [m for m in SAMPLE_QUALITY_METRICS if m != "is" or has_probs]
        else:
            names = [str(m).lower() for m in ([self.metrics] if isinstance(self.metrics, str) else self.metrics)]
            bad = [m for m in names if m not in SAMPLE_QUALITY_METRICS]
            if bad:
                raise ConfigError(f"unknown metrics {bad}; choose from {list(SAMPLE_QUALITY_METRICS)}")
            if not names:
                raise ConfigError(f"no metrics asked for; choose from {list(SAMPLE_QUALITY_METRICS)}")
            if "is" in names and not has_probs:
                raise ConfigError(
                    "the inception score needs class probabilities of the generated samples: pass classifier= (e.g. "
                    "the classifier itself) to SampleQuality, or fake_probs= to evaluate_features"
                )
        return list(dict.fromkeys(names))

    def _check(self) -> tuple[int, float, int, int, int]:
        """The settings, checked before any feature is extracted."""
        return (
            _check_bootstrap(self.bootstrap),
            _check_confidence(self.confidence),
            check_seed(self.seed),
            _check_k(self.k_precision, "k_precision"),
            _check_k(self.k_density, "k_density"),
        )

    def evaluate(self, real: Any, fake: Any, *, progress: bool = False) -> SampleQualityResult:
        """Compare ``real`` and ``fake`` samples: batches or iterables of batches (features
        ``(N, D)`` when no feature network was given). When the inception score is computed the
        generated samples are read twice (features, then class predictions): a one-shot iterable
        (a generator) is gathered into a list first."""
        t0 = time.perf_counter()
        self._check()
        names = self._names(self.classifier is not None)
        ext = self._extractor(self.features)
        clf = self._extractor(self.classifier) if "is" in names else None
        if clf is not None and not isinstance(fake, Tensor) and not hasattr(fake, "__len__"):
            fake = list(fake)  # consumed twice: features, then class predictions
        layer: str | None = None
        if ext is None:
            r, f = real, fake
        else:
            layer = ext.layer_name()
            r = ext.extract(real, progress=progress)
            f = ext.extract(fake, progress=progress)
        probs = clf.extract(fake, progress=progress) if clf is not None else None
        t_ext = time.perf_counter() - t0
        return self._compute(names, r, f, probs, layer=layer, t0=t0, extract_seconds=t_ext, progress=progress)

    def evaluate_features(
        self, real: Any, fake: Any, *, fake_probs: Any = None, progress: bool = False
    ) -> SampleQualityResult:
        """:meth:`evaluate` on features already extracted (``fake_probs``: the generated samples'
        class probabilities or logits, for ``"is"``)."""
        t0 = time.perf_counter()
        self._check()
        names = self._names(fake_probs is not None)
        return self._compute(names, real, fake, fake_probs, layer=None, t0=t0, extract_seconds=0.0, progress=progress)

    def _compute(
        self,
        names: list[str],
        real: Any,
        fake: Any,
        probs: Any,
        *,
        layer: str | None,
        t0: float,
        extract_seconds: float,
        progress: bool,
    ) -> SampleQualityResult:
        bootstrap, confidence, seed, k_pr, k_dc = self._check()
        r, f = _pair(real, fake, min_n=2, why="comparing samples")
        nr, nf = int(r.shape[0]), int(f.shape[0])
        cr = _bootstrap_counts(nr, bootstrap, seed, 1) if bootstrap else None
        cf = _bootstrap_counts(nf, bootstrap, seed, 2) if bootstrap else None
        subset_size = min(int(self.kid_subset_size), nr, nf) if isinstance(self.kid_subset_size, int) else None
        settings: dict[str, Any] = {
            "metrics": names,
            "bootstrap": bootstrap,
            "confidence": confidence,
            "seed": seed,
            "k_precision": k_pr,
            "k_density": k_dc,
            "kid_subsets": self.kid_subsets,
            "kid_subset_size": subset_size if subset_size is not None else self.kid_subset_size,
            "kid_degree": self.kid_degree,
            "kid_gamma": self.kid_gamma,
            "kid_coef": self.kid_coef,
            "is_splits": self.is_splits,
        }
        if bootstrap:
            settings["bootstrap_scheme"] = (
                "intervals (percentile; basic for FID) over resamples with replacement of the real and the fake "
                "samples, shared by every metric; FID and KID are recomputed on each resample (KID: the unbiased "
                "MMD^2 of all samples); for precision, recall, density and coverage " + _KNN_BOOTSTRAP
            )
        out: dict[str, MetricValue] = {}
        base: dict[str, Any] = {"confidence": confidence, "n_real": nr, "n_fake": nf}
        if "fid" in names:
            v = fid(r, f, bootstrap=0)
            reps = _fid_replicates(r, f, cr, cf, progress) if cr is not None and cf is not None else None
            out["fid"] = _with_replicates(v, reps, confidence, seed)
        if "kid" in names:
            v = kid(
                r,
                f,
                self.kid_subsets,
                subset_size if subset_size is not None else self.kid_subset_size,
                self.kid_degree,
                self.kid_gamma,
                self.kid_coef,
                seed=seed,
                progress=progress,
            )
            reps = None
            if cr is not None and cf is not None:
                g_ = float(v.settings["gamma"])
                reps = _kid_replicates(r, f, cr, cf, int(self.kid_degree), g_, float(self.kid_coef))
            out["kid"] = _with_replicates(v, reps, confidence, seed)
        want_pr = "precision" in names or "recall" in names
        want_dc = "density" in names or "coverage" in names
        if want_pr:
            r_ok, f_ok = nr >= k_pr + 1, nf >= k_pr + 1
            if not (r_ok and f_ok):
                raise InputError(
                    f"precision/recall with k_precision={k_pr} needs at least {k_pr + 1} real and fake samples, got "
                    f"{nr} and {nf}; give more samples or a smaller k_precision"
                )
        if want_dc and nr < k_dc + 1:
            raise InputError(
                f"density/coverage with k_density={k_dc} needs at least {k_dc + 1} real samples, got {nr}; give "
                f"more samples or a smaller k_density"
            )
        if want_pr or want_dc:
            m = _manifold(r, f, k_pr if want_pr else None, k_dc if want_dc else None)
            pr_settings = {"k": k_pr, "seed": seed, "bootstrap": bootstrap}
            dc_settings = {"k": k_dc, "seed": seed, "bootstrap": bootstrap}
            per = {
                "precision": (m.in_real, cf, 1.0, pr_settings),
                "recall": (m.in_fake, cr, 1.0, pr_settings),
                "density": (m.balls, cf, 1.0 / k_dc, dc_settings),
                "coverage": (m.covered, cr, 1.0, dc_settings),
            }
            for name in ("precision", "recall", "density", "coverage"):
                values, counts, scale, s = per[name]
                if name in names and values is not None:
                    out[name] = _mean_metric(name, values, counts, scale=scale, settings=s, **base)
        if "is" in names:
            out["is"] = inception_score(probs, self.is_splits)
        ordered = {n: out[n] for n in names}
        return SampleQualityResult(
            metrics=ordered,
            n_real=nr,
            n_fake=nf,
            feature_dim=int(r.shape[1]),
            layer=layer,
            seconds=time.perf_counter() - t0,
            extract_seconds=extract_seconds,
            settings=settings,
        )


def _with_replicates(v: MetricValue, reps: Tensor | None, confidence: float, seed: int) -> MetricValue:
    if reps is None:
        return v
    low, high, method = _interval(v.name, v.value, reps, confidence)
    settings = dict(v.settings)
    settings.update({"bootstrap": int(reps.shape[0]), "seed": seed})
    return MetricValue(
        name=v.name,
        value=v.value,
        low=low,
        high=high,
        std=v.std,
        confidence=confidence,
        n_real=v.n_real,
        n_fake=v.n_fake,
        bootstrap=int(reps.shape[0]),
        higher_is_better=v.higher_is_better,
        interval=method,
        replicates=reps,
        parts=v.parts,
        settings=settings,
    )


# ----------------------------------------------------------------------------- views
def plot_sample_quality(result: SampleQualityResult, *, ax: Any = None, metrics: Sequence[str] | None = None) -> Any:
    """Each metric's value with its bootstrap interval: one small panel per metric in a new
    figure, or, with ``ax``, the chosen ``metrics`` (of one scale, e.g. precision, recall,
    density and coverage) on that axes. Returns the figure."""
    from ..report.plot import _new_axes

    names = list(result.metrics) if metrics is None else [str(m) for m in metrics]
    bad = [m for m in names if m not in result.metrics]
    if bad:
        raise ConfigError(f"metrics {bad} are not in this result; it has {list(result.metrics)}")

    def draw(a: Any, items: list[MetricValue]) -> None:
        for i, m in enumerate(items):
            a.plot([m.value], [i], "o", color=f"C{i % 10}")
            if math.isfinite(m.low) and math.isfinite(m.high):
                a.plot([m.low, m.high], [i, i], "-", color=f"C{i % 10}", lw=2)
        a.set_yticks(range(len(items)))
        a.set_yticklabels([f"{m.label} ({'↑' if m.higher_is_better else '↓'})" for m in items], fontsize=8)
        a.set_ylim(-0.6, len(items) - 0.4)
        a.tick_params(axis="x", labelsize=7)

    items = [result.metrics[n] for n in names]
    if ax is not None or len(items) <= 1:
        fig, ax = _new_axes(ax, (4.0, 0.6 + 0.4 * max(len(items), 1)))
        draw(ax, items)
        ax.set_title(f"{result.n_fake} generated vs {result.n_real} real", fontsize=9)
        return fig
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.2 * len(items), 1.5), layout="constrained")
    axes = fig.subplots(1, len(items), squeeze=False)[0]
    for a, m in zip(axes, items):
        draw(a, [m])
        a.set_yticks([])
        a.set_title(f"{m.label} ({'higher' if m.higher_is_better else 'lower'} is better)", fontsize=8)
    fig.suptitle(f"{result.n_fake} generated vs {result.n_real} real (D = {result.feature_dim})", fontsize=9)
    return fig


def sample_quality_html(result: SampleQualityResult) -> str:
    """A section: what was compared, the table of metrics with intervals, and the plot."""
    report = HtmlReport("sample quality")
    report.add_heading("sample quality", 3)
    layer = {None: "given features", "": "the feature network's output"}.get(result.layer, f"layer {result.layer}")
    boot = int(result.settings.get("bootstrap", 0) or 0)
    conf = float(result.settings.get("confidence", 0.95) or 0.95)
    text = (
        f"{result.n_fake} generated vs {result.n_real} real samples, {result.feature_dim} features from {layer}; "
        f"{result.seconds:.2f} s ({result.extract_seconds:.2f} s extracting features)."
    )
    if boot:
        text += (
            f" Intervals: {conf:.0%} bootstrap (basic for FID, percentile otherwise) over {boot} resamples of "
            f"both sets; for precision, recall, density and coverage the k-NN balls are held at those of all samples."
        )
    report.add_paragraph(text)
    report.add_table(result.rows())
    report.add_figure(plot_sample_quality(result), caption="Value (dot) and bootstrap interval (bar) of each metric.")
    return report._repr_html_()


def _metric_html(value: MetricValue) -> str:
    report = HtmlReport(value.label)
    report.add_table([value.row()])
    return report._repr_html_()


register_view(SampleQualityResult, plot=plot_sample_quality, html=sample_quality_html)
register_view(MetricValue, html=_metric_html)
