"""Shapley values over the features of a feature mask: Kernel SHAP, permutation sampling
and exact enumeration.

A *coalition* is a binary vector over a sample's features: present features keep the
input's values, absent ones take the baseline's. The value of a coalition is the target
score of that mixed input, so ``v(all) = f(x)`` and ``v(none) = f(baseline)``, and the
Shapley values of every method here add up to ``f(x) - f(baseline)`` (efficiency).

All coalitions of all samples are scored in chunks by
:class:`~seethrough._core.forward.ForwardRunner`. Coalitions are drawn per number of
features from ``seed`` alone, so a sample gets the same coalitions alone or in a batch,
and the results do not depend on the chunk size. A coalition that occurs more than once
is evaluated once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError
from .._core.forward import ForwardRunner
from ._base import Computed
from .baselines import BaselineLike, describe_baseline
from .masks import as_feature_mask, default_feature_mask
from .perturbation import PerturbationAttribution, _baseline

__all__ = ["KernelSHAP", "ShapleyValueSampling", "ExactShapley", "shapley_kernel_weights", "shapley_from_values"]


# -- shared machinery ------------------------------------------------------------------
def _check_int(name: str, value, low: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}; {hint}")


class _Features:
    """Per sample: the global ids of the features present and each element's local id."""

    def __init__(self, x: Tensor, feature_mask: Tensor | None) -> None:
        if feature_mask is None:
            feature_mask = default_feature_mask(x)
        mask, n = as_feature_mask(feature_mask, x)
        self.n_features = n
        flat = mask.reshape(x.shape[0], -1)
        self.present: list[Tensor] = []
        self.local: list[Tensor] = []
        for b in range(x.shape[0]):
            ids, inv = torch.unique(flat[b], return_inverse=True)
            self.present.append(ids)
            self.local.append(inv)

    def counts(self) -> list[int]:
        return [int(p.numel()) for p in self.present]

    def scatter(self, per_sample: Sequence[Tensor], fill: float = 0.0) -> Tensor:
        """Per-sample values over local features -> ``(B, F)`` over global ids."""
        out = torch.full((len(per_sample), self.n_features), fill, dtype=torch.float64)
        for b, v in enumerate(per_sample):
            out[b, self.present[b].cpu()] = v.to(torch.float64).cpu()
        return out

    def spread(self, per_sample: Sequence[Tensor], x: Tensor) -> Tensor:
        """Per-sample values over local features -> the input's shape (each element gets
        its feature's value)."""
        rows = [v.to(device=x.device, dtype=x.dtype)[self.local[b]] for b, v in enumerate(per_sample)]
        return torch.stack(rows).reshape(x.shape)


def _coalition_values(
    runner: ForwardRunner, x: Tensor, base: Tensor, feats: _Features, designs: Sequence[Tensor]
) -> list[Tensor]:
    """Score coalitions: ``designs[b]`` is a ``(K_b, M_b)`` bool tensor of sample ``b``'s
    coalitions over its local features. Returns float64 values ``(K_b,)`` per sample."""
    B = x.shape[0]
    sample_shape = x.shape[1:]
    offsets = [0]
    for d in designs:
        offsets.append(offsets[-1] + int(d.shape[0]))
    values = [torch.empty(int(d.shape[0]), dtype=torch.float64) for d in designs]
    on_device = [d.to(x.device) for d in designs]

    def spans(sl: slice):
        for b in range(B):
            lo, hi = max(sl.start, offsets[b]), min(sl.stop, offsets[b + 1])
            if lo < hi:
                yield b, lo - offsets[b], hi - offsets[b]

    def rows(sl: slice):
        parts, samples = [], []
        for b, lo, hi in spans(sl):
            keep = on_device[b][lo:hi][:, feats.local[b]].reshape((hi - lo,) + sample_shape)
            parts.append(torch.where(keep, x[b], base[b]))
            samples.append(torch.full((hi - lo,), b, dtype=torch.long))
        return torch.cat(parts), torch.cat(samples).to(x.device)

    def consume(sl: slice, scores: Tensor) -> None:
        i = 0
        for b, lo, hi in spans(sl):
            values[b][lo:hi] = scores[i : i + hi - lo].detach().to("cpu", torch.float64)
            i += hi - lo

    runner.run(offsets[-1], rows, consume)
    return values


def _rng(seed: int, n_features: int, salt: int) -> np.random.Generator:
    # coalitions depend on the seed and the number of features only
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(n_features), salt])


def shapley_kernel_weights(n_features: int) -> np.ndarray:
    """Total Shapley-kernel mass of each coalition size ``1..M-1`` (normalised to sum to
    1): ``(M - 1) / (s (M - s))``; each coalition of size ``s`` carries ``mass[s] / C(M, s)``."""
    M = n_features
    s = np.arange(1, M, dtype=np.float64)
    w = (M - 1) / (s * (M - s))
    return w / w.sum()


def _all_coalitions(M: int) -> np.ndarray:
    """All ``2^M`` coalitions as rows of bits (row ``i`` is the binary expansion of i)."""
    ints = np.arange(2**M, dtype=np.int64)
    return ((ints[:, None] >> np.arange(M)) & 1).astype(bool)


# -- Kernel SHAP -----------------------------------------------------------------------
class _KernelDesign:
    """The coalitions of one feature count, their weights, and how to resample them.

    ``z`` (K, M) excludes the empty and the full coalition. ``fixed`` (K,) is the weight
    from fully enumerated sizes; the Monte Carlo part is described by ``draws``
    (n_draws, 1 or 2) indices into ``z`` (a draw and its complement when paired), each
    draw carrying ``mc_mass / n_draws``.
    """

    def __init__(self, M: int, budget: int, paired: bool, rng: np.random.Generator) -> None:
        self.M = M
        mid = budget - 2  # the empty and the full coalition are always evaluated
        if M <= 1:
            self._set(np.zeros((0, M), bool), np.zeros(0), np.zeros((0, 1), np.int64), 0.0)
            return
        mass = shapley_kernel_weights(M)  # index s-1
        if M < 63 and 2**M - 2 <= mid:
            z = _all_coalitions(M)[1:-1]
            s = z.sum(1)
            comb = np.array([math.comb(M, int(k)) for k in range(M + 1)], dtype=np.float64)
            self._set(z, mass[s - 1] / comb[s], np.zeros((0, 1), np.int64), 0.0)
            return
        rows: list[np.ndarray] = []
        fixed: list[float] = []
        # sizes in complementary pairs (s, M - s), heaviest first: enumerate a pair
        # completely while its share of the remaining budget covers all its coalitions
        pairs = [(s, M - s) if s != M - s else (s,) for s in range(1, M // 2 + 1)]
        remaining, left = mid, 1.0
        first_sampled = len(pairs)
        for i, sizes in enumerate(pairs):
            pmass = sum(mass[s - 1] for s in sizes)
            count = sum(math.comb(M, s) for s in sizes)
            if left <= 0 or remaining * pmass / left < count or count > remaining:
                first_sampled = i
                break
            for s in sizes:
                for combo in itertools.combinations(range(M), s):
                    r = np.zeros(M, bool)
                    r[list(combo)] = True
                    rows.append(r)
                    fixed.append(mass[s - 1] / math.comb(M, s))
            remaining -= count
            left -= pmass
        sampled = pairs[first_sampled:]
        index = {r.tobytes(): k for k, r in enumerate(rows)}
        draws: list[list[int]] = []
        if sampled and remaining > 0:
            sampled_sizes = np.array([s for p in sampled for s in p])
            p = mass[sampled_sizes - 1] / mass[sampled_sizes - 1].sum()
            cap = 50 * remaining + 1000  # guarantees termination; rarely reached
            n_new = 0
            while n_new < remaining and len(draws) < cap:
                n = max(16, 2 * (remaining - n_new))
                ks = rng.choice(sampled_sizes, size=n, p=p)
                order = np.argsort(rng.random((n, M)), axis=1)
                batch = np.zeros((n, M), bool)
                for j in range(n):
                    batch[j, order[j, : ks[j]]] = True
                stop = False
                for r in batch:
                    members = [r, ~r] if paired else [r]
                    keys = [m.tobytes() for m in members]
                    new = [k for k in dict.fromkeys(keys) if k not in index]
                    if n_new + len(new) > remaining:
                        stop = True
                        break
                    for m, k in zip(members, keys):
                        if k not in index:
                            index[k] = len(rows)
                            rows.append(m.copy())
                            fixed.append(0.0)
                            n_new += 1
                    draws.append([index[k] for k in keys])
                    if n_new >= remaining or len(draws) >= cap:
                        stop = True
                        break
                if stop:
                    break
        z = np.stack(rows) if rows else np.zeros((0, M), bool)
        width = 2 if paired else 1
        d = np.array(draws, dtype=np.int64).reshape(-1, width)
        self._set(z, np.array(fixed, dtype=np.float64), d, max(left, 0.0) if len(d) else 0.0)

    def _set(self, z: np.ndarray, fixed: np.ndarray, draws: np.ndarray, mc_mass: float) -> None:
        self.z = z
        self.fixed = fixed
        self.draws = draws
        self.mc_mass = mc_mass

    def weights(self, counts: Tensor | None = None) -> Tensor:
        """Weights ``(R, K)`` for draw multiplicities ``counts`` (R, n_draws); the design's
        own weights (one row) when ``counts`` is None."""
        K, nd = self.z.shape[0], self.draws.shape[0]
        fixed = torch.from_numpy(self.fixed)
        if counts is None:
            counts = torch.ones(1, nd, dtype=torch.float64)
        w = fixed.expand(counts.shape[0], K).clone()
        if nd:
            # every draw is an equally likely sample of the sampled sizes' kernel mass
            per = self.mc_mass / (nd * self.draws.shape[1])
            idx = torch.from_numpy(self.draws)
            for c in range(idx.shape[1]):
                w.scatter_add_(1, idx[:, c].expand(counts.shape[0], nd), counts * per)
        return w


def _constrained_wls(z: Tensor, w: Tensor, y: Tensor, delta: Tensor) -> Tensor:
    """Minimise ``sum_k w_k (y_k - z_k . phi)^2`` subject to ``sum(phi) = delta``.

    ``z`` (K, M), ``w`` (R, K) weight sets, ``y`` (K, S) and ``delta`` (S,) for S value
    vectors sharing the coalitions. Returns ``(R, S, M)``.

    The normal matrix ``A = Z' W Z`` is scaled to unit diagonal (the kernel weights span
    orders of magnitude). Where it is well conditioned, a Cholesky solve with a Lagrange
    multiplier: ``phi = A^-1 (r - lam 1)`` with ``lam`` chosen so that ``sum(phi) = delta``.
    Elsewhere (fewer coalitions than features, or a degenerate resample) the KKT system
    goes to a least-squares solver, which gives the minimum-norm solution."""
    R, M, S = w.shape[0], z.shape[1], y.shape[1]
    A = torch.einsum("rk,ki,kj->rij", w, z, z)
    r = torch.einsum("rk,ki,ks->ris", w, z, y)
    diag = A.diagonal(dim1=1, dim2=2)
    d = torch.where(diag > 0, diag.clamp(min=1e-300).rsqrt(), torch.ones_like(diag))  # (R, M)
    As = A * d[:, :, None] * d[:, None, :]
    rs = r * d[:, :, None]
    # in scaled coordinates phi = D u: As u = rs - lam d, and d . u = delta
    L, info = torch.linalg.cholesky_ex(As)
    ok = (info == 0) & (L.diagonal(dim1=1, dim2=2).amin(dim=1) > 1e-6) if M else info == 0
    u = torch.empty(R, M, S, dtype=torch.float64)
    if bool(ok.any()):
        Lk, dk = L[ok], d[ok]
        a = torch.cholesky_solve(rs[ok], Lk)  # (R', M, S)
        b = torch.cholesky_solve(dk[:, :, None], Lk)  # (R', M, 1)
        lam = ((dk[:, None, :] @ a) - delta) / (dk[:, None, :] @ b)  # (R', 1, S)
        u[ok] = a - b * lam
    bad = ~ok
    if bool(bad.any()):
        n = int(bad.sum())
        kkt = torch.zeros(n, M + 1, M + 1, dtype=torch.float64)
        kkt[:, :M, :M] = As[bad]
        kkt[:, :M, M] = d[bad]
        kkt[:, M, :M] = d[bad]
        rhs = torch.empty(n, M + 1, S, dtype=torch.float64)
        rhs[:, :M] = rs[bad]
        rhs[:, M] = delta
        u[bad] = torch.linalg.lstsq(kkt, rhs, driver="gelsd").solution[:, :M]
    return (u * d[:, :, None]).transpose(1, 2)


class KernelSHAP(PerturbationAttribution):
    """Kernel SHAP (Lundberg and Lee, 2017) over the features of a feature mask.

    Shapley values are the solution of a weighted least-squares fit of the coalition
    values with the Shapley kernel as weights, constrained to ``phi_0 = f(baseline)`` and
    ``sum(phi) = f(x) - f(baseline)``: the constraint is enforced exactly, so the
    attributions of every sample add up to ``f(x) - f(baseline)`` up to float error.

    Coalitions: the sizes ``s`` and ``M - s`` with the most kernel weight (the smallest
    and largest coalitions) are enumerated completely while their share of the budget
    covers them; the other sizes are sampled from the kernel distribution, with each
    coalition ``z`` followed by its complement ``1 - z`` when ``paired``. A coalition
    drawn again is not evaluated again: its weight grows instead. When ``n_samples``
    covers all ``2^M`` coalitions they are all enumerated and the result is the exact
    Shapley values.

    Parameters
    ----------
    n_samples:
        Model evaluations per sample, counting the full input and the baseline; None for
        ``min(2^M, 2 M + 2048)`` with ``M`` features.
    baseline:
        What absent features take: a value, ``"blur"``, ``"mean"``, a Baseline or a tensor.
    seed:
        Seed of the coalition draws and the bootstrap.
    paired:
        Sample coalitions in complementary pairs (antithetic sampling).
    n_bootstrap:
        Bootstrap replicates over the sampled coalitions for ``extras["stderr"]`` (0:
        skip; the standard error is then NaN where coalitions were sampled).

    ``attribute(inputs, target, feature_mask=None)``; without a mask: an 8x8 grid of
    patches for images, every element its own feature otherwise
    (:func:`~seethrough.attribution.masks.default_feature_mask`). ``extras``: ``"shapley_values"`` ``(B, F)``, ``"stderr"`` ``(B, F)``
    (bootstrap standard error; 0 for features of fully enumerated samples) and
    ``"base_value"`` ``(B,)``, the score of the baseline.
    """

    name = "kernel_shap"

    def __init__(
        self,
        model,
        *,
        n_samples: int | None = None,
        baseline: BaselineLike = 0.0,
        seed: int = 0,
        paired: bool = True,
        n_bootstrap: int = 64,
        batching=None,
        progress=None,
    ):
        super().__init__(model, batching=batching, progress=progress)
        self.n_samples = n_samples
        self.baseline = baseline
        self.seed = seed
        self.paired = paired
        self.n_bootstrap = n_bootstrap

    def settings(self):
        return {
            "n_samples": "auto" if self.n_samples is None else int(self.n_samples),
            "baseline": describe_baseline(self.baseline),
            "seed": int(self.seed),
            "paired": bool(self.paired),
            "n_bootstrap": int(self.n_bootstrap),
        }

    def _check_settings(self):
        if self.n_samples is not None:
            _check_int(
                "n_samples",
                self.n_samples,
                3,
                "it counts model evaluations per sample, including the full input and the baseline "
                "(None picks 2 * n_features + 2048)",
            )
        _check_int("seed", self.seed, 0, "use a non-negative int")
        _check_int("n_bootstrap", self.n_bootstrap, 0, "use 0 to skip the standard error")

    def budget(self, n_features: int) -> int:
        if self.n_samples is not None:
            return int(self.n_samples)
        return min(2**n_features, 2 * n_features + 2048) if n_features < 62 else 2 * n_features + 2048

    def design(self, n_features: int) -> _KernelDesign:
        """The coalitions and weights used for samples with ``n_features`` features."""
        return _KernelDesign(n_features, self.budget(n_features), bool(self.paired), _rng(self.seed, n_features, 1))

    def _attribute(self, x, target, batching, feature_mask: Tensor | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"KernelSHAP.attribute() got unexpected arguments {sorted(kwargs)}")
        feats = _Features(x, feature_mask)
        base = _baseline(self.baseline, x)
        runner = self._runner(target, batching)
        f_x = self._scores(runner, x)
        designs = {M: self.design(M) for M in sorted(set(feats.counts()))}
        # row 0 of every sample: the empty coalition (the baseline)
        evaluated = {}
        for M, d in designs.items():
            evaluated[M] = torch.from_numpy(np.concatenate([np.zeros((1, M), bool), d.z]))
        values = _coalition_values(runner, x, base, feats, [evaluated[M] for M in feats.counts()])
        fx = f_x.detach().to("cpu", torch.float64)
        phi: list[Tensor] = [None] * x.shape[0]  # type: ignore[list-item]
        err: list[Tensor] = [None] * x.shape[0]  # type: ignore[list-item]
        for M, d in designs.items():
            g = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + M)  # per feature count, like the draws
            members = [b for b, m in enumerate(feats.counts()) if m == M]
            f0 = torch.stack([values[b][0] for b in members])
            y = torch.stack([values[b][1:] for b in members], dim=1) - f0  # (K, S)
            delta = fx[members] - f0
            z = torch.from_numpy(d.z).to(torch.float64)
            est = _constrained_wls(z, d.weights(), y, delta)[0]  # (S, M)
            se = self._bootstrap(d, z, y, delta, g)
            for i, b in enumerate(members):
                phi[b], err[b] = est[i], se[i]
        base_value = torch.stack([v[0] for v in values])
        extras = {
            "shapley_values": feats.scatter(phi).to(device=x.device, dtype=x.dtype),
            "stderr": feats.scatter(err).to(device=x.device, dtype=x.dtype),
            "base_value": base_value.to(device=x.device, dtype=x.dtype),
        }
        return Computed(feats.spread(phi, x), runner.n_evaluations, scores=f_x, extras=extras)

    def _bootstrap(self, d: _KernelDesign, z: Tensor, y: Tensor, delta: Tensor, g: torch.Generator) -> Tensor:
        S, M = y.shape[1], d.M
        nd = d.draws.shape[0]
        if nd == 0:
            return torch.zeros(S, M, dtype=torch.float64)
        if self.n_bootstrap < 2:
            return torch.full((S, M), float("nan"), dtype=torch.float64)
        # resample the draws with replacement; enumerated coalitions keep their weight
        picks = torch.randint(nd, (self.n_bootstrap, nd), generator=g)
        counts = torch.zeros(self.n_bootstrap, nd, dtype=torch.float64)
        counts.scatter_add_(1, picks, torch.ones_like(picks, dtype=torch.float64))
        per_chunk = max(1, int(2**27 // (8 * (M + 1) * (M + 1 + z.shape[0]))))
        reps = []
        for start in range(0, self.n_bootstrap, per_chunk):
            w = d.weights(counts[start : start + per_chunk])
            reps.append(_constrained_wls(z, w, y, delta))
        return torch.cat(reps).std(dim=0)


# -- permutation sampling --------------------------------------------------------------
class ShapleyValueSampling(PerturbationAttribution):
    """Shapley values by permutation sampling (Strumbelj and Kononenko, 2010; Castro et
    al., 2009).

    For each random permutation of the features, the features are added one by one to
    the baseline and each gets its marginal contribution; the estimate is the mean over
    permutations. Per permutation the contributions add up to ``f(x) - f(baseline)``, so
    the estimate does too. With ``antithetic`` every permutation is followed by its
    reverse (the pair is one unit for the standard error). Coalitions shared by several
    permutations are evaluated once. When ``n_permutations`` is at least ``M!`` (for
    ``M <= 9``) all permutations are enumerated once each: the result is exact and the
    standard error 0.

    ``extras``: ``"shapley_values"`` ``(B, F)``, ``"stderr"`` ``(B, F)`` (standard error
    of the mean over independent units; NaN with a single unit) and ``"base_value"``.
    """

    name = "shapley_sampling"

    def __init__(
        self,
        model,
        *,
        n_permutations: int = 32,
        baseline: BaselineLike = 0.0,
        seed: int = 0,
        antithetic: bool = True,
        batching=None,
        progress=None,
    ):
        super().__init__(model, batching=batching, progress=progress)
        self.n_permutations = n_permutations
        self.baseline = baseline
        self.seed = seed
        self.antithetic = antithetic

    def settings(self):
        return {
            "n_permutations": int(self.n_permutations),
            "baseline": describe_baseline(self.baseline),
            "seed": int(self.seed),
            "antithetic": bool(self.antithetic),
        }

    def _check_settings(self):
        _check_int("n_permutations", self.n_permutations, 1, "use at least 1 permutation (more for a standard error)")
        _check_int("seed", self.seed, 0, "use a non-negative int")
        if self.antithetic and self.n_permutations % 2:
            raise ConfigError(
                f"antithetic sampling uses permutations in pairs (each with its reverse); "
                f"n_permutations={self.n_permutations} is odd: use an even number or antithetic=False"
            )

    def permutations(self, n_features: int) -> tuple[np.ndarray, int]:
        """``(P, M)`` permutations for samples with ``n_features`` features and the number
        of permutations per independent unit (2 when antithetic, 1 otherwise, 0 when all
        permutations are enumerated)."""
        M, P = n_features, int(self.n_permutations)
        if M <= 1:
            return np.zeros((1, M), np.int64), 0
        if M <= 9 and P >= math.factorial(M):
            return np.array(list(itertools.permutations(range(M))), dtype=np.int64), 0
        rng = _rng(self.seed, M, 2)
        if self.antithetic:
            half = np.argsort(rng.random((P // 2, M)), axis=1)
            perms = np.stack([half, half[:, ::-1]], axis=1).reshape(P, M)
            return perms, 2
        return np.argsort(rng.random((P, M)), axis=1), 1

    def _attribute(self, x, target, batching, feature_mask: Tensor | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"ShapleyValueSampling.attribute() got unexpected arguments {sorted(kwargs)}")
        feats = _Features(x, feature_mask)
        base = _baseline(self.baseline, x)
        runner = self._runner(target, batching)
        f_x = self._scores(runner, x)
        plans = {}
        for M in sorted(set(feats.counts())):
            perms, unit = self.permutations(M)
            P = perms.shape[0]
            rank = np.argsort(perms, axis=1)  # position of each feature in each permutation
            steps = np.arange(M + 1)
            prefixes = rank[:, None, :] < steps[None, :, None]  # (P, M+1, M): first i features
            inner = prefixes[:, 1:M].reshape(-1, M)  # sizes 1..M-1; size 0 and M are known
            rows = np.concatenate([np.zeros((1, M), bool), inner])
            uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
            plans[M] = (perms, unit, torch.from_numpy(uniq), torch.from_numpy(inverse.reshape(-1)))
        values = _coalition_values(runner, x, base, feats, [plans[M][2] for M in feats.counts()])
        fx = f_x.detach().to("cpu", torch.float64)
        phi, err = [], []
        for b, M in enumerate(feats.counts()):
            perms, unit, _, row_of = plans[M]
            P = perms.shape[0]
            v_rows = values[b][row_of]
            v = torch.empty(P, M + 1, dtype=torch.float64)
            v[:, 0] = v_rows[0]
            v[:, 1:M] = v_rows[1:].reshape(P, max(M - 1, 0))
            v[:, M] = fx[b]
            marg = torch.zeros(P, M, dtype=torch.float64)
            marg.scatter_(1, torch.from_numpy(perms), v[:, 1:] - v[:, :-1])
            phi.append(marg.mean(0))
            if unit == 0:
                err.append(torch.zeros(M, dtype=torch.float64))
            else:
                units = marg.reshape(P // unit, unit, M).mean(1)
                n = units.shape[0]
                err.append(
                    units.std(0) / math.sqrt(n) if n > 1 else torch.full((M,), float("nan"), dtype=torch.float64)
                )
        extras = {
            "shapley_values": feats.scatter(phi).to(device=x.device, dtype=x.dtype),
            "stderr": feats.scatter(err).to(device=x.device, dtype=x.dtype),
            "base_value": torch.stack([v[0] for v in values]).to(device=x.device, dtype=x.dtype),
        }
        return Computed(feats.spread(phi, x), runner.n_evaluations, scores=f_x, extras=extras)


# -- exact -------------------------------------------------------------------------------
def shapley_from_values(v: Tensor, M: int) -> Tensor:
    """Exact Shapley values from the values of all ``2^M`` coalitions, ``v[..., i]`` the
    value of the coalition whose bits are ``i``: ``phi_j = sum_S |S|! (M-|S|-1)! / M!
    (v(S + j) - v(S))`` over the coalitions ``S`` without ``j``."""
    ints = torch.arange(2**M)
    size = torch.zeros(2**M, dtype=torch.long)
    for j in range(M):
        size += (ints >> j) & 1
    fact = [math.factorial(k) for k in range(M + 1)]
    w = torch.tensor([fact[s] * fact[M - s - 1] / fact[M] if s < M else 0.0 for s in range(M + 1)], dtype=torch.float64)
    out = []
    for j in range(M):
        without = ints[((ints >> j) & 1) == 0]
        out.append(((v[..., without | (1 << j)] - v[..., without]) * w[size[without]]).sum(-1))
    return torch.stack(out, dim=-1)


class ExactShapley(PerturbationAttribution):
    """Exact Shapley values: every coalition of the mask's features is evaluated
    (``2^M - 1`` rows per sample besides the input itself) and weighted by
    ``|S|! (M - |S| - 1)! / M!``. Refuses masks with more than ``max_features`` features.

    ``extras``: ``"shapley_values"`` ``(B, F)`` and ``"base_value"`` ``(B,)``.
    """

    name = "exact_shapley"

    def __init__(self, model, *, baseline: BaselineLike = 0.0, max_features: int = 14, batching=None, progress=None):
        super().__init__(model, batching=batching, progress=progress)
        self.baseline = baseline
        self.max_features = max_features

    def settings(self):
        return {"baseline": describe_baseline(self.baseline), "max_features": int(self.max_features)}

    def _check_settings(self):
        _check_int("max_features", self.max_features, 1, "it caps the 2^max_features evaluations per sample")

    def _attribute(self, x, target, batching, feature_mask: Tensor | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"ExactShapley.attribute() got unexpected arguments {sorted(kwargs)}")
        feats = _Features(x, feature_mask)
        M_max = max(feats.counts())
        if M_max > self.max_features:
            raise ConfigError(
                f"exact Shapley values of {M_max} features need 2^{M_max} = {2**M_max:,} model evaluations "
                f"per sample, above max_features={self.max_features}; use a coarser feature mask, raise "
                f"max_features, or estimate them with KernelSHAP or ShapleyValueSampling"
            )
        base = _baseline(self.baseline, x)
        runner = self._runner(target, batching)
        f_x = self._scores(runner, x)
        designs = {M: torch.from_numpy(_all_coalitions(M)[:-1]) for M in set(feats.counts())}
        values = _coalition_values(runner, x, base, feats, [designs[M] for M in feats.counts()])
        fx = f_x.detach().to("cpu", torch.float64)
        phi = [
            shapley_from_values(torch.cat([v, fx[b : b + 1]]), M)
            for b, (v, M) in enumerate(zip(values, feats.counts()))
        ]
        extras = {
            "shapley_values": feats.scatter(phi).to(device=x.device, dtype=x.dtype),
            "base_value": torch.stack([v[0] for v in values]).to(device=x.device, dtype=x.dtype),
        }
        return Computed(feats.spread(phi, x), runner.n_evaluations, scores=f_x, extras=extras)
