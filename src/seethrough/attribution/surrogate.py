"""Local surrogate models: LIME (Ribeiro et al., 2016) over the features of a feature mask.

The interpretable representation of a sample is a binary vector over its features: 1
keeps the feature's input values, 0 replaces them with the baseline. Random binary
vectors around the all-ones vector are scored by the model (all samples' perturbations
in chunks by :class:`~seethrough._core.forward.ForwardRunner`), weighted by their
proximity to the all-ones vector, and a weighted linear model (scikit-learn ``Ridge``
or ``Lasso``) is fitted to them; its coefficients are the attributions.

Feature masks cover images (superpixels from :func:`~seethrough.attribution.masks.superpixel_mask`
or a :func:`~seethrough.attribution.masks.grid_mask`), token sequences (an embedded
``(B, T, E)`` input with one id per token, e.g. ``torch.arange(T)[:, None]``) and tabular
``(B, D)`` inputs (one id per column, the default for non-image inputs).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError
from ._base import Computed
from .baselines import BaselineLike, describe_baseline
from .perturbation import PerturbationAttribution, _baseline
from .shapley import _check_int, _coalition_values, _Features, _rng

__all__ = ["Lime", "lime_kernel"]

_DISTANCES = ("cosine", "euclidean")
_SURROGATES = ("ridge", "lasso")
_DEFAULT_ALPHA = {"ridge": 1.0, "lasso": 0.01}


def lime_kernel(z: np.ndarray, *, distance: str = "cosine", kernel_width: float = 0.25) -> np.ndarray:
    """Proximity weights ``exp(-d^2 / width^2)`` of binary vectors ``z`` (N, M) to the
    all-ones vector. ``"cosine"``: ``1 - cos(z, 1) = 1 - sqrt(|z| / M)`` (1 for the empty
    vector); ``"euclidean"``: ``||z - 1|| / sqrt(M)``, scaled to ``[0, 1]`` like the
    cosine distance so one kernel width suits both."""
    z = np.asarray(z, dtype=bool)
    M = max(z.shape[1], 1)
    k = z.sum(1).astype(np.float64)
    if distance == "cosine":
        d = 1.0 - np.sqrt(k / M)
    elif distance == "euclidean":
        d = np.sqrt((M - k) / M)
    else:
        raise ConfigError(f"unknown distance {distance!r}; use one of {_DISTANCES}")
    return np.exp(-(d**2) / kernel_width**2)


class Lime(PerturbationAttribution):
    """LIME: a weighted linear surrogate of the model around each sample.

    Parameters
    ----------
    n_samples:
        Perturbations per sample; the first is the unperturbed sample. Repeated binary
        vectors are evaluated once (``n_evaluations`` counts the rows really run).
    kernel_width:
        Width of the proximity kernel ``exp(-d^2 / width^2)``.
    distance:
        ``"cosine"`` or ``"euclidean"`` distance to the all-ones vector (see :func:`lime_kernel`).
    surrogate:
        ``"ridge"`` or ``"lasso"`` (scikit-learn, with an intercept and sample weights).
    alpha:
        Regularisation strength; None for 1.0 (ridge, as lime) or 0.01 (lasso).
    keep_prob:
        Probability that a feature is kept in a perturbation.
    top_k:
        Number of feature ids in ``extras["top_features"]``.
    baseline:
        What removed features take: a value, ``"blur"``, ``"mean"``, a Baseline or a tensor.
    seed:
        Seed of the perturbations (they depend on the seed and the feature count only).

    ``attribute(inputs, target, feature_mask=None)``: each element gets its feature's
    coefficient. Without a mask: an 8x8 grid of patches for images, every element its own
    feature otherwise (:func:`~seethrough.attribution.masks.default_feature_mask`). ``extras``: ``"coefficients"`` ``(B, F)``, ``"intercept"`` ``(B,)``,
    ``"r2"`` ``(B,)`` (weighted R² of the surrogate on its samples) and
    ``"top_features"`` ``(B, min(top_k, F))`` feature ids by decreasing ``|coefficient|``
    (-1 where a sample has fewer features).
    """

    name = "lime"

    def __init__(
        self,
        model,
        *,
        n_samples: int = 1000,
        kernel_width: float = 0.25,
        distance: str = "cosine",
        surrogate: str = "ridge",
        alpha: float | None = None,
        keep_prob: float = 0.5,
        top_k: int = 5,
        baseline: BaselineLike = 0.0,
        seed: int = 0,
        batching=None,
        progress=None,
    ):
        super().__init__(model, batching=batching, progress=progress)
        self.n_samples = n_samples
        self.kernel_width = kernel_width
        self.distance = distance
        self.surrogate = surrogate
        self.alpha = alpha
        self.keep_prob = keep_prob
        self.top_k = top_k
        self.baseline = baseline
        self.seed = seed

    def settings(self):
        return {
            "n_samples": int(self.n_samples),
            "kernel_width": float(self.kernel_width),
            "distance": self.distance,
            "surrogate": self.surrogate,
            "alpha": float(self._alpha()) if self.surrogate in _SURROGATES else self.alpha,
            "keep_prob": float(self.keep_prob),
            "top_k": int(self.top_k),
            "baseline": describe_baseline(self.baseline),
            "seed": int(self.seed),
        }

    def _alpha(self) -> float:
        return _DEFAULT_ALPHA[self.surrogate] if self.alpha is None else float(self.alpha)

    def _check_settings(self):
        _check_int("n_samples", self.n_samples, 2, "LIME fits a surrogate to n_samples perturbations (default 1000)")
        _check_int("top_k", self.top_k, 1, "it is the number of top features reported")
        _check_int("seed", self.seed, 0, "use a non-negative int")
        if self.distance not in _DISTANCES:
            raise ConfigError(f"unknown distance {self.distance!r}; use one of {_DISTANCES}")
        if self.surrogate not in _SURROGATES:
            raise ConfigError(f"unknown surrogate {self.surrogate!r}; use one of {_SURROGATES}")
        if not isinstance(self.kernel_width, (int, float)) or not self.kernel_width > 0:
            raise ConfigError(f"kernel_width must be a positive number, got {self.kernel_width!r}")
        if not isinstance(self.keep_prob, (int, float)) or not 0 < self.keep_prob < 1:
            raise ConfigError(f"keep_prob must lie strictly between 0 and 1, got {self.keep_prob!r}")
        if self.alpha is not None and (not isinstance(self.alpha, (int, float)) or self.alpha < 0):
            raise ConfigError(
                f"alpha must be a non-negative number or None (default per surrogate), got {self.alpha!r}"
            )

    def perturbations(self, n_features: int) -> np.ndarray:
        """The ``(n_samples, M)`` binary vectors used for samples with ``n_features``
        features; row 0 is all ones (the unperturbed sample)."""
        rng = _rng(self.seed, n_features, 3)
        z = rng.random((int(self.n_samples), n_features)) < self.keep_prob
        z[0] = True
        return z

    def _fit(self, z: np.ndarray, y: np.ndarray, w: np.ndarray):
        from sklearn.linear_model import Lasso, Ridge

        if self.surrogate == "ridge":
            model = Ridge(alpha=self._alpha(), fit_intercept=True)
        else:
            model = Lasso(alpha=self._alpha(), fit_intercept=True, max_iter=10_000)
        X = z.astype(np.float64)
        model.fit(X, y, sample_weight=w)
        r2 = float(model.score(X, y, sample_weight=w))
        return np.asarray(model.coef_, dtype=np.float64).reshape(-1), float(model.intercept_), r2

    def _attribute(self, x, target, batching, feature_mask: Tensor | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"Lime.attribute() got unexpected arguments {sorted(kwargs)}")
        feats = _Features(x, feature_mask)
        base = _baseline(self.baseline, x)
        runner = self._runner(target, batching)
        plans = {}
        for M in sorted(set(feats.counts())):
            z = self.perturbations(M)
            uniq, inverse = np.unique(z, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            plans[M] = (z, torch.from_numpy(uniq), inverse, int(inverse[0]))  # row 0: all ones
        values = _coalition_values(runner, x, base, feats, [plans[M][1] for M in feats.counts()])
        B = x.shape[0]
        coefs, intercept, r2, scores = [], torch.empty(B, dtype=torch.float64), torch.empty(B, dtype=torch.float64), []
        for b, M in enumerate(feats.counts()):
            z, _, inverse, full = plans[M]
            y = values[b].numpy()[inverse]
            w = lime_kernel(z, distance=self.distance, kernel_width=float(self.kernel_width))
            c, i0, r = self._fit(z, y, w)
            coefs.append(torch.from_numpy(c))
            intercept[b], r2[b] = i0, r
            scores.append(values[b][full])
        table = feats.scatter(coefs)
        k = min(int(self.top_k), feats.n_features)
        top = torch.full((B, k), -1, dtype=torch.long)
        for b in range(B):
            present = feats.present[b].cpu()
            order = torch.argsort(-coefs[b].abs(), stable=True)[:k]
            top[b, : order.numel()] = present[order]
        extras = {
            "coefficients": table.to(device=x.device, dtype=x.dtype),
            "intercept": intercept.to(device=x.device, dtype=x.dtype),
            "r2": r2.to(device=x.device, dtype=x.dtype),
            "top_features": top.to(x.device),
        }
        f_x = torch.stack(scores).to(device=x.device, dtype=x.dtype)
        return Computed(feats.spread(coefs, x), runner.n_evaluations, scores=f_x, extras=extras)
