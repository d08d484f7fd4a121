"""Concept activation vectors (Kim et al. 2018): the direction, in one layer's activation
space, that separates a concept's examples from random ones."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, InputError
from .._core.estimator import Estimator
from .._core.seeds import check_seed

__all__ = ["CAV", "MIN_EXAMPLES"]

#: Fewest examples a concept (and each random set) needs: a third is held out to measure
#: the CAV's accuracy, and fewer than ten leave that measurement meaningless.
MIN_EXAMPLES = 10

_CLASSIFIERS = ("logistic", "sgd")


def _as_2d(x: Any, what: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim < 2:
        raise InputError(f"{what} must be a batch of activations (N, ...), got shape {x.shape}")
    x = x.reshape(x.shape[0], -1).astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise InputError(f"{what} contain NaN or infinite values; check the model and the examples")
    return x


def _check_width(x: np.ndarray, n: int, what: str, reference: str, hint: str = "") -> None:
    if x.shape[1] != n:
        raise InputError(f"{what} have {x.shape[1]} features, but {reference} has {n}{hint}")


class CAV(Estimator):
    """A concept activation vector, fitted like a scikit-learn estimator.

    Parameters
    ----------
    classifier:
        ``"logistic"`` (scikit-learn ``LogisticRegression``, L2, liblinear solver; the
        default, fast and deterministic for the seed) or ``"sgd"`` (``SGDClassifier`` with
        hinge loss, as in the TCAV paper's code; several times slower).
    C:
        Inverse L2 strength of the logistic classifier (default 0.1: on 20 + 20 examples
        of 128 channels it gives CAVs whose directions agree across runs far better than
        1.0 does, see ``docs/concepts.md``). The activations are divided by
        one number, their standard deviation over all training features (``scale_``),
        before fitting, so that ``C`` and ``alpha`` mean the same at every layer; the
        fitted weights are mapped back to the raw activations.
    alpha:
        L2 strength of the SGD classifier.
    test_fraction:
        Share of each side (concept, random) held out to measure ``accuracy_``.
    seed:
        Seeds the held-out split and the SGD classifier: the same data and seed give the
        identical vector.

    Fitted attributes
    -----------------
    coef_ : Tensor ``(D,)``, the classifier's weights (positive side: the concept).
    intercept_ : float.
    vector_ : Tensor ``(D,)``, ``coef_`` scaled to unit length: the CAV.
    accuracy_ : float, accuracy on the held-out examples.
    train_accuracy_ : float.
    scale_ : float, the standard deviation the activations were divided by.
    converged_ : bool, whether the classifier converged.
    n_features_in_, n_concept_, n_random_ : ints.
    """

    def __init__(
        self,
        *,
        classifier: str = "logistic",
        C: float = 0.1,
        alpha: float = 0.01,
        test_fraction: float = 0.33,
        seed: int = 0,
    ) -> None:
        self.classifier, self.C, self.alpha = classifier, C, alpha  # checked by fit()
        self.test_fraction, self.seed = test_fraction, seed

    def _check(self) -> None:
        if self.classifier not in _CLASSIFIERS:
            raise ConfigError(f"classifier must be one of {_CLASSIFIERS}, got {self.classifier!r}")
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise ConfigError(f"test_fraction must be strictly between 0 and 1, got {self.test_fraction}")
        if self.C <= 0 or self.alpha <= 0:
            raise ConfigError("C and alpha must be positive")
        check_seed(self.seed)

    def _split(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(n)
        k = min(n - 2, max(1, int(round(self.test_fraction * n))))
        return order[k:], order[:k]

    def fit(self, concept: Any, random: Any) -> CAV:
        """Fit on the concept's activations ``(n_c, ...)`` against random ones ``(n_r, ...)``
        (flattened per example); returns ``self``."""
        self._check()
        pos = _as_2d(concept, "concept activations")
        neg = _as_2d(random, "random activations")
        for what, arr in (("concept", pos), ("random set", neg)):
            if arr.shape[0] < MIN_EXAMPLES:
                raise InputError(
                    f"the {what} has {arr.shape[0]} examples; a CAV needs at least {MIN_EXAMPLES} "
                    f"(a third is held out to measure its accuracy). Give more examples."
                )
        _check_width(neg, pos.shape[1], "random activations", "the concept set", "; take both from the same layer")
        rng = np.random.default_rng(self.seed)  # seeds are mixed by the caller (seethrough._core.seeds)
        tr_p, te_p = self._split(pos.shape[0], rng)
        tr_n, te_n = self._split(neg.shape[0], rng)
        x_tr = np.concatenate([pos[tr_p], neg[tr_n]])
        y_tr = np.concatenate([np.ones(len(tr_p)), np.zeros(len(tr_n))])
        x_te = np.concatenate([pos[te_p], neg[te_n]])
        y_te = np.concatenate([np.ones(len(te_p)), np.zeros(len(te_n))])

        from sklearn.exceptions import ConvergenceWarning

        if self.classifier == "logistic":
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(
                C=float(self.C), solver="liblinear", max_iter=1000, random_state=int(self.seed) % (2**32)
            )
        else:
            from sklearn.linear_model import SGDClassifier

            clf = SGDClassifier(alpha=float(self.alpha), max_iter=1000, tol=1e-3, random_state=int(self.seed) % (2**32))
        # One global scale (not per feature, which would change the geometry): the
        # regularisation then means the same at every layer, whatever its activations' size.
        scale = float(x_tr.std())
        scale = scale if np.isfinite(scale) and scale > 0 else 1.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(x_tr / scale, y_tr)
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.scale_ = scale
        coef = np.asarray(clf.coef_, dtype=np.float64).reshape(-1) / scale
        norm = float(np.linalg.norm(coef))
        self.coef_ = torch.from_numpy(coef.astype(np.float32))
        self.intercept_ = float(np.asarray(clf.intercept_).reshape(-1)[0])
        self.vector_ = torch.from_numpy((coef / norm if norm > 0 else coef).astype(np.float32))
        self.accuracy_ = float(((x_te @ coef + self.intercept_ > 0) == (y_te > 0.5)).mean())
        self.train_accuracy_ = float(((x_tr @ coef + self.intercept_ > 0) == (y_tr > 0.5)).mean())
        self.n_features_in_ = int(pos.shape[1])
        self.n_concept_ = int(pos.shape[0])
        self.n_random_ = int(neg.shape[0])
        return self

    def _fitted(self) -> None:
        self.check_fitted("call fit(concept_activations, random_activations) first")

    def decision_function(self, activations: Any) -> Tensor:
        """Signed distance-like score (``coef_ . a + intercept_``) per example; positive
        means the concept side."""
        self._fitted()
        a = _as_2d(activations, "activations")
        _check_width(a, self.n_features_in_, "activations", "the fitted CAV")
        return torch.from_numpy(a @ self.coef_.double().numpy() + self.intercept_).float()

    def directional_derivatives(self, gradients: Any) -> Tensor:
        """``gradient . vector_`` per example: how the explained quantity changes when the
        layer's activation moves toward the concept."""
        self._fitted()
        g = _as_2d(gradients, "gradients")
        _check_width(g, self.n_features_in_, "gradients", "the fitted CAV")
        return torch.from_numpy(g @ self.vector_.double().numpy()).float()
