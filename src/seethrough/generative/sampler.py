"""Sampling latent codes with conditions, and the quality of what is sampled.

* Priors: :class:`GaussianMixturePrior` (a Gaussian mixture fitted on the aggregate posterior,
  i.e. on the codes of real data; better than N(0, I) for a WAE or an under-regularised VAE)
  and :class:`NormalPrior` (N(0, I)). ``sample(n, seed=...)`` draws from ``seethrough._core.seeds``
  generators: the same seed gives the same codes, and the global RNG is untouched.
* :class:`Condition` (``"amp > 0.8"``, ``"charge in [2, 6]"``, ``"2 <= charge <= 6"``) on a named score.
* :class:`ConditionalSampler`: rejection sampling. Candidates are drawn and scored on ``z`` in
  chunks (bounded memory), and only the accepted codes are decoded and described, so that
  100,000 candidates cost little more than the scorers.
* Quality of sampled sequences (or any hashable items): :func:`validity`, :func:`uniqueness`,
  :func:`novelty` with a fast :func:`levenshtein` (Myers' bit-parallel algorithm, vectorised in
  numpy over many string pairs at once).
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.batching import Batching, as_batching
from .._core.errors import ConfigError, InputError, SeethroughWarning
from .._core.estimator import Estimator
from .._core.result import Result
from .._core.seeds import check_seed, generator
from .latent import Describer, Latent
from .probes import as_codes
from .table import AttributeTable

__all__ = [
    "GaussianMixturePrior",
    "NormalPrior",
    "Condition",
    "ConditionalSampler",
    "SampleSet",
    "validity",
    "uniqueness",
    "novelty",
    "levenshtein",
]

Scorer = Callable[[Tensor], Any]


# ------------------------------------------------------------------------------- priors
class GaussianMixturePrior(Estimator):
    """A Gaussian mixture (scikit-learn ``GaussianMixture``) fitted on codes.

    Fitted attributes: ``weights_`` (K,), ``means_`` (K, Z), ``covariances_`` (as in
    scikit-learn for ``covariance_type``), ``latent_dim_``, ``mixture_`` (the sklearn model)."""

    def __init__(
        self, n_components: int = 10, *, covariance_type: str = "full", reg_covar: float = 1e-6, seed: int = 0
    ) -> None:
        self.n_components, self.covariance_type = n_components, covariance_type
        self.reg_covar, self.seed = reg_covar, seed

    def fit(self, z: Any) -> GaussianMixturePrior:
        from sklearn.mixture import GaussianMixture

        check_seed(self.seed)
        if self.covariance_type not in ("full", "diag", "spherical", "tied"):
            raise ConfigError(f"covariance_type must be full, diag, spherical or tied, got {self.covariance_type!r}")
        x = as_codes(z)
        if x.shape[0] < int(self.n_components):
            raise InputError(
                f"{x.shape[0]} codes for {self.n_components} components; give more codes or fewer components"
            )
        gm = GaussianMixture(
            n_components=int(self.n_components),
            covariance_type=self.covariance_type,
            reg_covar=float(self.reg_covar),
            random_state=int(self.seed) % (2**32),
        ).fit(x)
        self.mixture_ = gm
        self.weights_ = np.asarray(gm.weights_, dtype=np.float64)
        self.means_ = np.asarray(gm.means_, dtype=np.float64)
        self.covariances_ = np.asarray(gm.covariances_, dtype=np.float64)
        self.latent_dim_ = int(x.shape[1])
        d, k = self.latent_dim_, int(self.n_components)
        cov = self.covariances_
        if self.covariance_type == "full":
            full = cov
        elif self.covariance_type == "tied":
            full = np.broadcast_to(cov, (k, d, d))
        elif self.covariance_type == "diag":
            full = np.stack([np.diag(c) for c in cov])
        else:
            full = np.stack([np.eye(d) * c for c in cov])
        self._chol = torch.from_numpy(np.linalg.cholesky(full).astype(np.float64))
        return self

    def sample(self, n: int, seed: int = 0, *, stream: Sequence[int] = ()) -> Tensor:
        """``n`` codes ``(n, Z)`` (float32): a component by its weight, then its Gaussian."""
        self.check_fitted("call fit(z) on codes of real data first")
        check_seed(seed)
        g = generator(seed, *stream) if stream else generator(seed)
        comp = torch.multinomial(torch.from_numpy(self.weights_), int(n), replacement=True, generator=g)
        eps = torch.randn(int(n), self.latent_dim_, generator=g, dtype=torch.float64)
        z = torch.from_numpy(self.means_)[comp] + torch.einsum("nij,nj->ni", self._chol[comp], eps)
        return z.float()

    def log_prob(self, z: Any) -> np.ndarray:
        """Log density of codes under the mixture."""
        self.check_fitted()
        return self.mixture_.score_samples(as_codes(z, width=self.latent_dim_))


class NormalPrior(Estimator):
    """The standard normal N(0, I) in ``latent_dim`` dimensions (``fit`` is not needed)."""

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim
        self.latent_dim_ = int(latent_dim)

    def fit(self, z: Any = None) -> NormalPrior:
        return self

    def sample(self, n: int, seed: int = 0, *, stream: Sequence[int] = ()) -> Tensor:
        check_seed(seed)
        g = generator(seed, *stream) if stream else generator(seed)
        return torch.randn(int(n), self.latent_dim_, generator=g)


# --------------------------------------------------------------------------- conditions
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf"
_NAME = r"[A-Za-z_][\w.]*"
_FORMS = (
    "'name > v', 'name >= v', 'name < v', 'name <= v', 'v < name', 'name in [a, b]', "
    "'a <= name <= b' (or with <), e.g. 'amp > 0.8', 'charge in [2, 6]', '2 <= charge <= 6'"
)
_RE_IN = re.compile(rf"^\s*({_NAME})\s+in\s*\[\s*({_NUM})\s*,\s*({_NUM})\s*\]\s*$")
_RE_RANGE = re.compile(rf"^\s*({_NUM})\s*(<=|<)\s*({_NAME})\s*(<=|<)\s*({_NUM})\s*$")
_RE_CMP = re.compile(rf"^\s*({_NAME})\s*(>=|<=|>|<)\s*({_NUM})\s*$")
_RE_CMP_REV = re.compile(rf"^\s*({_NUM})\s*(>=|<=|>|<)\s*({_NAME})\s*$")


@dataclass(frozen=True)
class Condition:
    """``low (<|<=) values[name] (<|<=) high``; a missing bound is open."""

    name: str
    low: float | None = None
    high: float | None = None
    low_strict: bool = False
    high_strict: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a condition needs the name of the score it bounds")
        if self.low is None and self.high is None:
            raise ConfigError(f"condition on {self.name!r} has neither a lower nor an upper bound")
        if self.low is not None and self.high is not None and float(self.low) > float(self.high):
            raise ConfigError(f"condition on {self.name!r}: lower bound {self.low} is above upper bound {self.high}")

    @classmethod
    def parse(cls, text: str | Condition) -> Condition:
        """A condition from text; the accepted forms: ``name > v``, ``name >= v``, ``name < v``,
        ``name <= v``, ``v < name``, ``name in [a, b]`` (inclusive) and ``a <= name <= b``."""
        if isinstance(text, Condition):
            return text
        if not isinstance(text, str):
            raise ConfigError(f"a condition is a Condition or a text, got {type(text).__name__}")
        m = _RE_IN.match(text)
        if m:
            return cls(m.group(1), float(m.group(2)), float(m.group(3)))
        m = _RE_RANGE.match(text)
        if m:
            return cls(m.group(3), float(m.group(1)), float(m.group(5)), m.group(2) == "<", m.group(4) == "<")
        m = _RE_CMP.match(text)
        if m:
            name, op, v = m.group(1), m.group(2), float(m.group(3))
            if op.startswith(">"):
                return cls(name, low=v, low_strict=op == ">")
            return cls(name, high=v, high_strict=op == "<")
        m = _RE_CMP_REV.match(text)
        if m:
            v, op, name = float(m.group(1)), m.group(2), m.group(3)
            if op.startswith("<"):
                return cls(name, low=v, low_strict=op == "<")
            return cls(name, high=v, high_strict=op == ">")
        raise ConfigError(f"cannot read the condition {text!r}; the accepted forms are {_FORMS}")

    def holds(self, values: Any) -> np.ndarray:
        """Boolean array: where ``values`` meet the condition (NaN never does)."""
        v = np.asarray(values.detach().cpu().numpy() if isinstance(values, Tensor) else values, dtype=np.float64)
        ok = np.isfinite(v) | np.isinf(v)
        if self.low is not None:
            ok &= v > self.low if self.low_strict else v >= self.low
        if self.high is not None:
            ok &= v < self.high if self.high_strict else v <= self.high
        return ok

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            if not self.low_strict and not self.high_strict:
                return f"{self.name} in [{self.low:g}, {self.high:g}]"
            lo, hi = ("<" if self.low_strict else "<="), ("<" if self.high_strict else "<=")
            return f"{self.low:g} {lo} {self.name} {hi} {self.high:g}"
        if self.low is not None:
            return f"{self.name} {'>' if self.low_strict else '>='} {self.low:g}"
        assert self.high is not None
        return f"{self.name} {'<' if self.high_strict else '<='} {self.high:g}"


def _conditions(conditions: Sequence[str | Condition] | str | Condition) -> tuple[Condition, ...]:
    if isinstance(conditions, (str, Condition)):
        conditions = [conditions]
    return tuple(Condition.parse(c) for c in conditions)


# ---------------------------------------------------------------------------- sampling
@dataclass(frozen=True, eq=False)
class SampleSet(Result):
    """Accepted samples of a :class:`ConditionalSampler` run.

    Attributes
    ----------
    z: ``(n, Z)`` accepted codes. outputs: their decoded outputs.
    table: one row per sample: each scorer's value on ``z``, then the ``describe`` columns.
    conditions: the conditions on the scores, as text (empty: an unconditioned run).
    n_candidates: codes drawn and scored. n_accepted_total: of those, how many met the
    conditions (``acceptance_rate = n_accepted_total / n_candidates``; the set keeps the first
    ``n_requested``). complete: whether ``n_requested`` samples were found.
    """

    z: Tensor
    outputs: Tensor
    table: AttributeTable
    conditions: tuple[str, ...] = ()
    n_requested: int = 0
    n_candidates: int = 0
    n_accepted_total: int = 0
    complete: bool = True
    seed: int = 0
    seconds: float = 0.0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.z.shape[0])

    @property
    def acceptance_rate(self) -> float:
        return self.n_accepted_total / self.n_candidates if self.n_candidates else float("nan")

    def check(self, conditions: Sequence[str | Condition] | str | Condition) -> dict[str, float]:
        """Fraction of the samples whose table columns (usually the described, decoded ones)
        meet each condition, and ``"all"`` of them at once."""
        conds = _conditions(conditions)
        if len(self) == 0:
            return {**{str(c): float("nan") for c in conds}, "all": float("nan")}
        every = np.ones(len(self), dtype=bool)
        out: dict[str, float] = {}
        for c in conds:
            if c.name not in self.table:
                raise ConfigError(f"no column {c.name!r} to check; the sample table has {list(self.table.names)}")
            ok = c.holds(self.table.array(c.name))
            out[str(c)] = float(ok.mean())
            every &= ok
        out["all"] = float(every.mean())
        return out

    def __repr__(self) -> str:
        cond = "; ".join(self.conditions) or "unconditioned"
        return (
            f"SampleSet({len(self)} samples, {cond}, {self.n_candidates} candidates, "
            f"acceptance {self.acceptance_rate:.3g})"
        )


class ConditionalSampler:
    """Rejection sampling of codes from ``prior`` whose scores meet ``conditions``.

    Parameters
    ----------
    latent: a :class:`~seethrough.generative.latent.Latent` (decodes the accepted codes).
    prior: anything with ``sample(n, seed, stream=...) -> Tensor (n, Z)`` (a fitted
        :class:`GaussianMixturePrior`, a :class:`NormalPrior`).
    scorers: ``name -> fn(z) -> (n,)`` scores of codes (probes such as a
        :class:`~seethrough.generative.probes.LatentClassifier` are callables).
    conditions: on the scorers' names (text or :class:`Condition`); empty: every candidate
        is accepted (the unconditioned baseline, see :meth:`unconditioned`).
    describe: ``(outputs, z) -> columns`` for the accepted samples.
    """

    def __init__(
        self,
        latent: Latent,
        prior: Any,
        *,
        scorers: Mapping[str, Scorer] | None = None,
        conditions: Sequence[str | Condition] | str | Condition = (),
        describe: Describer | None = None,
        batching: Batching | int | None = None,
    ) -> None:
        if not isinstance(latent, Latent):
            raise ConfigError(f"latent must be a seethrough.generative.Latent, got {type(latent).__name__}")
        if not callable(getattr(prior, "sample", None)):
            raise ConfigError("prior must have a sample(n, seed) method (e.g. a fitted GaussianMixturePrior)")
        self.latent, self.prior = latent, prior
        self.scorers = dict(scorers or {})
        for k, fn in self.scorers.items():
            if not callable(fn):
                raise ConfigError(f"scorer {k!r} is not callable")
        self.conditions = _conditions(conditions)
        missing = [c.name for c in self.conditions if c.name not in self.scorers]
        if missing:
            raise ConfigError(
                f"conditions on {missing} have no scorer; the scorers are {list(self.scorers)} (conditions on "
                f"decoded properties are checked afterwards with SampleSet.check)"
            )
        self.describe = describe
        self.batching = as_batching(batching) if batching is not None else None

    def unconditioned(self) -> ConditionalSampler:
        """The same pipeline (prior, scorers, describer) without conditions: the baseline."""
        return ConditionalSampler(
            self.latent, self.prior, scorers=self.scorers, conditions=(), describe=self.describe, batching=self.batching
        )

    def _score(self, z: Tensor) -> dict[str, np.ndarray]:
        out = {}
        for name, fn in self.scorers.items():
            s = fn(z)
            s = np.asarray(s.detach().cpu().numpy() if isinstance(s, Tensor) else s, dtype=np.float64).reshape(-1)
            if s.shape[0] != z.shape[0]:
                raise InputError(f"scorer {name!r} returned {s.shape[0]} values for {z.shape[0]} codes")
            out[name] = s
        return out

    def sample(self, n_accept: int, *, max_candidates: int = 100_000, seed: int = 0, chunk: int = 8192) -> SampleSet:
        """Draw candidates in chunks of ``chunk`` (chunk ``i`` from stream ``(seed, i)``), keep
        those meeting every condition until ``n_accept`` are found or ``max_candidates`` are
        scored, then decode and describe the accepted ones. Fewer than ``n_accept``: a
        warning and ``complete=False``."""
        check_seed(seed)
        for what, v in (("n_accept", n_accept), ("max_candidates", max_candidates), ("chunk", chunk)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{what} must be a positive int, got {v!r}")
        t0 = time.perf_counter()
        kept_z: list[Tensor] = []
        kept_s: dict[str, list[np.ndarray]] = {k: [] for k in self.scorers}
        n_kept = n_scored = n_ok = 0
        i = 0
        while n_kept < n_accept and n_scored < max_candidates:
            size = min(chunk, max_candidates - n_scored)
            if not self.conditions:
                size = min(size, n_accept - n_kept)
            z = self.prior.sample(size, seed, stream=(i,))
            scores = self._score(z)
            ok = np.ones(size, dtype=bool)
            for c in self.conditions:
                ok &= c.holds(scores[c.name])
            n_scored += size
            n_ok += int(ok.sum())
            idx = np.nonzero(ok)[0][: n_accept - n_kept]
            if idx.size:
                kept_z.append(z[torch.from_numpy(idx)])
                for k in kept_s:
                    kept_s[k].append(scores[k][idx])
                n_kept += int(idx.size)
            i += 1
        complete = n_kept >= n_accept
        if not complete:
            warnings.warn(
                f"only {n_kept} of {n_accept} samples met {[str(c) for c in self.conditions]} in {n_scored} "
                f"candidates; raise max_candidates or loosen the conditions",
                SeethroughWarning,
                stacklevel=2,
            )
        dim = getattr(self.prior, "latent_dim_", None) or self.latent.latent_dim or 0
        z_all = torch.cat(kept_z) if kept_z else torch.zeros(0, int(dim))
        cols: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros(0) for k, v in kept_s.items()}
        if n_kept:
            if self.batching is not None:
                self.latent.batching = self.batching
            outputs = self.latent.decode(z_all).cpu()
            if self.describe is not None:
                extra = dict(self.describe(outputs, z_all))
                clash = [k for k in extra if k in cols]
                if clash:
                    raise InputError(f"describe returned columns {clash} that are scorer names; rename them")
                cols.update(extra)
        else:
            outputs = torch.zeros(0)
        return SampleSet(
            z=z_all,
            outputs=outputs,
            table=AttributeTable(cols),
            conditions=tuple(str(c) for c in self.conditions),
            n_requested=int(n_accept),
            n_candidates=n_scored,
            n_accepted_total=n_ok if self.conditions else n_scored,
            complete=complete,
            seed=int(seed),
            seconds=time.perf_counter() - t0,
            settings={"max_candidates": max_candidates, "chunk": chunk},
        )


# ------------------------------------------------------------------------------ quality
def validity(items: Sequence[Any], is_valid: Callable[[Any], bool]) -> float:
    """Share of ``items`` for which ``is_valid(item)`` is true (NaN for none)."""
    items = list(items)
    return float(np.mean([bool(is_valid(s)) for s in items])) if items else float("nan")


def uniqueness(items: Sequence[Any]) -> float:
    """Share of distinct items among ``items`` (1.0: all different)."""
    items = list(items)
    return len(set(items)) / len(items) if items else float("nan")


def novelty(
    items: Sequence[str],
    reference: Sequence[str],
    *,
    distance: Callable[[Any, Any], Any] | None = None,
    threshold: float = 0,
) -> dict[str, float]:
    """How far the items are from a reference set (e.g. the training sequences).

    Returns ``novelty`` (share of items whose nearest reference is farther than
    ``threshold``; with 0, share not in the reference), ``exact`` (share found verbatim),
    ``mean_min_distance`` and ``median_min_distance``. ``distance(items, reference)`` must
    return the ``(len(items), len(reference))`` matrix; default :func:`levenshtein`."""
    items, reference = list(items), list(reference)
    if not items:
        return {
            "novelty": float("nan"),
            "exact": float("nan"),
            "mean_min_distance": float("nan"),
            "median_min_distance": float("nan"),
        }
    if not reference:
        raise InputError("novelty needs a non-empty reference set")
    ref_set = set(reference)
    uniq = sorted(set(items))
    fn = distance or levenshtein
    mind: dict[str, float] = {}
    todo = [s for s in uniq if s not in ref_set]
    if todo:
        d = np.asarray(fn(todo, reference), dtype=np.float64)
        if d.shape != (len(todo), len(reference)):
            raise InputError(f"distance returned shape {d.shape}; expected ({len(todo)}, {len(reference)})")
        mind.update(zip(todo, d.min(axis=1).tolist()))
    mins = np.array([0.0 if s in ref_set else mind[s] for s in items])
    return {
        "novelty": float((mins > threshold).mean()),
        "exact": float((mins == 0).mean()),
        "mean_min_distance": float(mins.mean()),
        "median_min_distance": float(np.median(mins)),
    }


def _encode_strings(strings: Sequence[str], alphabet: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in strings], dtype=np.int64)
    width = int(lengths.max()) if len(strings) else 0
    pad = len(alphabet)
    codes = np.full((len(strings), max(width, 1)), pad, dtype=np.int64)
    for i, s in enumerate(strings):
        if s:
            codes[i, : len(s)] = [alphabet[c] for c in s]
    return codes, lengths


def _myers(queries: Sequence[str], refs: Sequence[str], alphabet: dict[str, int], max_pairs: int) -> np.ndarray:
    """Edit distances ``(Q, R)`` by Myers' (1999) bit-vector algorithm (Hyyro's formulation for
    global distance), every pair of a chunk of queries x all references advanced together,
    one reference position per step. Queries must have at most 64 characters."""
    qcodes, qlen = _encode_strings(queries, alphabet)
    rcodes, rlen = _encode_strings(refs, alphabet)
    n_sym = len(alphabet) + 1
    one = np.uint64(1)
    # peq[q, c]: bit i set where query q has symbol c at position i (the padding symbol: none)
    peq = np.zeros((len(queries), n_sym), dtype=np.uint64)
    for i in range(qcodes.shape[1]):
        rows = np.nonzero(qlen > i)[0]
        peq[rows, qcodes[rows, i]] |= one << np.uint64(i)
    out = np.empty((len(queries), len(refs)), dtype=np.int64)
    step = max(1, max_pairs // max(1, len(refs)))
    width = rcodes.shape[1]
    for q0 in range(0, len(queries), step):
        sl = slice(q0, q0 + step)
        p = peq[sl]
        m = qlen[sl]
        shift = np.maximum(m - 1, 0).astype(np.uint64)[:, None]
        shape = (p.shape[0], len(refs))
        pv = np.full(shape, np.iinfo(np.uint64).max, dtype=np.uint64)
        mv = np.zeros(shape, dtype=np.uint64)
        xv, xh, ph, mh, tmp = (np.empty(shape, dtype=np.uint64) for _ in range(5))
        score = np.broadcast_to(m[:, None], shape).astype(np.int64)
        res = np.broadcast_to(m[:, None], shape).astype(np.int64)  # an empty reference: the query's length
        for j in range(width):
            eq = np.take(p, rcodes[:, j], axis=1)
            np.bitwise_or(eq, mv, out=xv)
            np.bitwise_and(eq, pv, out=tmp)
            np.add(tmp, pv, out=tmp)
            np.bitwise_xor(tmp, pv, out=tmp)
            np.bitwise_or(tmp, eq, out=xh)
            np.bitwise_or(xh, pv, out=tmp)
            np.invert(tmp, out=tmp)
            np.bitwise_or(tmp, mv, out=ph)
            np.bitwise_and(pv, xh, out=mh)
            # the last row's horizontal delta: +1, -1 or 0
            score += ((ph >> shift) & one).astype(np.int64)
            score -= ((mh >> shift) & one).astype(np.int64)
            ends = np.nonzero(rlen == j + 1)[0]
            if ends.size:
                res[:, ends] = score[:, ends]
            np.left_shift(ph, one, out=ph)
            np.bitwise_or(ph, one, out=ph)
            np.left_shift(mh, one, out=mh)
            np.bitwise_or(xv, ph, out=tmp)
            np.invert(tmp, out=tmp)
            np.bitwise_or(mh, tmp, out=pv)
            np.bitwise_and(ph, xv, out=mv)
        # an empty query: the distance is the reference's length
        res[m == 0] = rlen[None, :]
        out[sl] = res
    return out


def _dp_one(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def levenshtein(a: str | Sequence[str], b: str | Sequence[str], *, max_pairs: int = 1 << 20) -> Any:
    """Edit distance (insertions, deletions, substitutions, each 1).

    Two strings: an int. A string and a sequence: an array ``(len(b),)``. Two sequences: the
    matrix ``(len(a), len(b))``, computed with Myers' bit-parallel algorithm vectorised over
    ``max_pairs`` pairs at a time (1,000 x 5,000 peptides of up to 40 letters take a few
    seconds); strings over 64 characters fall back to the plain dynamic programme."""
    if isinstance(a, str) and isinstance(b, str):
        return _dp_one(a, b)
    qa = [a] if isinstance(a, str) else list(a)
    rb = [b] if isinstance(b, str) else list(b)
    for what, seq in (("a", qa), ("b", rb)):
        if any(not isinstance(s, str) for s in seq):
            raise InputError(
                f"levenshtein compares strings; {what} holds a {type(next(s for s in seq if not isinstance(s, str))).__name__}"
            )
    if not qa or not rb:
        d = np.zeros((len(qa), len(rb)), dtype=np.int64)
    else:
        alphabet: dict[str, int] = {}
        for s in qa + rb:
            for c in s:
                alphabet.setdefault(c, len(alphabet))
        long_q = max(len(s) for s in qa) > 64
        long_r = max(len(s) for s in rb) > 64
        if not long_q:
            d = _myers(qa, rb, alphabet, max_pairs)
        elif not long_r:
            d = _myers(rb, qa, alphabet, max_pairs).T.copy()
        else:
            d = np.array([[_dp_one(x, y) for y in rb] for x in qa], dtype=np.int64)
    if isinstance(a, str):
        return d[0]
    if isinstance(b, str):
        return d[:, 0]
    return d
