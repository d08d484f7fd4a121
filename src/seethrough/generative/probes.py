"""Linear probes on latent codes: what a code says about a property of its decoded output.

:class:`LatentClassifier` (logistic regression) and :class:`LatentRegressor` (ridge) are
fitted on standardised codes like scikit-learn estimators; their weights are mapped back to
the raw latent space (``coef_``, ``intercept_``), so that ``coef_`` is the normal of the
decision boundary in the space the decoder reads, and :meth:`torch_score` is a differentiable
torch twin of ``predict_proba`` / ``predict`` (for gradient directions and steering).
A probe called on codes returns its score per code (the positive-class probability, or the
prediction), so it plugs in directly as a scorer of the conditional sampler.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, InputError
from .._core.estimator import Estimator
from .._core.seeds import check_seed

__all__ = ["LatentClassifier", "LatentRegressor", "as_codes"]


def as_codes(z: Any, what: str = "z", width: int | None = None) -> np.ndarray:
    """Codes as a float64 array ``(N, Z)`` (a single code ``(Z,)`` becomes one row)."""
    if isinstance(z, Tensor):
        z = z.detach().cpu().double().numpy()
    a = np.asarray(z, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise InputError(f"{what} must be latent codes of shape (N, Z), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{what} contain NaN or infinite values")
    if width is not None and a.shape[1] != width:
        raise InputError(f"{what} have {a.shape[1]} dimensions, but the probe was fitted on {width}")
    return a


def _targets(y: Any, n: int, what: str = "y") -> np.ndarray:
    if isinstance(y, Tensor):
        y = y.detach().cpu().numpy()
    a = np.asarray(y).reshape(-1)
    if a.shape[0] != n:
        raise InputError(f"{what} has {a.shape[0]} values for {n} codes; give one per code")
    return a


class _Probe(Estimator):
    standardize: bool

    def _standardise(self, z: np.ndarray) -> np.ndarray:
        if self.standardize:
            mean = z.mean(axis=0)
            scale = z.std(axis=0)
            scale[~(scale > 0)] = 1.0
        else:
            mean, scale = np.zeros(z.shape[1]), np.ones(z.shape[1])
        self.mean_, self.scale_ = mean, scale
        return (z - mean) / scale

    def _raw_weights(self, w: np.ndarray, b: float) -> None:
        coef = w / self.scale_
        self.coef_ = torch.from_numpy(coef.astype(np.float32))
        self.intercept_ = float(b - coef @ self.mean_)
        self._coef64 = coef
        self.n_features_in_ = int(coef.shape[0])

    def _fitted(self) -> None:
        self.check_fitted("call fit(z, y) first")

    def decision_function(self, z: Any) -> np.ndarray:
        """``coef_ . z + intercept_`` per code."""
        self._fitted()
        return as_codes(z, width=self.n_features_in_) @ self._coef64 + self.intercept_

    def _torch_linear(self, z: Tensor) -> Tensor:
        self._fitted()
        if not isinstance(z, Tensor):
            raise InputError("torch_score takes a torch tensor of codes (N, Z)")
        w = self.coef_.to(device=z.device, dtype=z.dtype if z.dtype.is_floating_point else torch.float32)
        zz = z if z.dim() == 2 else z.reshape(1, -1)
        if zz.shape[1] != w.shape[0]:
            raise InputError(f"z has {zz.shape[1]} dimensions, but the probe was fitted on {w.shape[0]}")
        return zz @ w + self.intercept_


class LatentClassifier(_Probe):
    """Logistic regression on standardised codes, for a binary label.

    Parameters
    ----------
    C: inverse L2 strength (on the standardised codes).
    standardize: divide each latent coordinate by its training standard deviation first.
    class_weight: passed to scikit-learn (``"balanced"`` for skewed labels).
    max_iter, seed: as in scikit-learn.

    Fitted attributes: ``coef_`` (Z,) and ``intercept_`` in raw latent units, ``classes_``
    (the two labels; the second is the positive class), ``mean_``, ``scale_``,
    ``train_accuracy_``, ``converged_``; after :meth:`evaluate`, ``score_`` (held-out AUC).
    """

    def __init__(
        self,
        C: float = 1.0,
        *,
        standardize: bool = True,
        class_weight: str | None = None,
        max_iter: int = 1000,
        seed: int = 0,
    ) -> None:
        self.C, self.standardize, self.class_weight = C, standardize, class_weight
        self.max_iter, self.seed = max_iter, seed

    def fit(self, z: Any, y: Any) -> LatentClassifier:
        if not float(self.C) > 0:
            raise ConfigError(f"C must be positive, got {self.C}")
        check_seed(self.seed)
        x = as_codes(z)
        labels = _targets(y, x.shape[0])
        classes = np.unique(labels)
        if classes.shape[0] != 2:
            raise InputError(
                f"LatentClassifier needs exactly two classes in y, got {classes.shape[0]} ({classes[:5].tolist()}); "
                f"for several classes fit one probe per class against the rest"
            )
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        xs = self._standardise(x)
        clf = LogisticRegression(
            C=float(self.C),
            class_weight=self.class_weight,
            max_iter=int(self.max_iter),
            random_state=int(self.seed) % (2**32),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(xs, labels == classes[1])
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.classes_ = classes
        self._raw_weights(np.asarray(clf.coef_, dtype=np.float64).reshape(-1), float(clf.intercept_[0]))
        self.train_accuracy_ = float(((self.decision_function(x) > 0) == (labels == classes[1])).mean())
        return self

    def predict_proba(self, z: Any) -> np.ndarray:
        """``(N, 2)`` probabilities of ``classes_[0]`` and ``classes_[1]``."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(z)))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, z: Any) -> np.ndarray:
        return self.classes_[(self.decision_function(z) > 0).astype(int)]

    def __call__(self, z: Any) -> np.ndarray:
        """The positive-class probability per code ``(N,)`` (a sampler scorer)."""
        return self.predict_proba(z)[:, 1]

    def torch_score(self, z: Tensor) -> Tensor:
        """Differentiable positive-class probability ``(N,)``, equal to ``predict_proba(z)[:, 1]``."""
        return torch.sigmoid(self._torch_linear(z))

    def evaluate(self, z_test: Any, y_test: Any) -> dict[str, float]:
        """Held-out ``auc``, ``accuracy``, ``n`` and ``positive_rate``; stores ``score_`` (the AUC)."""
        from sklearn.metrics import roc_auc_score

        x = as_codes(z_test, "z_test", self.n_features_in_ if self.is_fitted() else None)
        self._fitted()
        y = _targets(y_test, x.shape[0], "y_test")
        unknown = set(np.unique(y).tolist()) - set(self.classes_.tolist())
        if unknown:
            raise InputError(f"y_test has labels {sorted(unknown)} not seen in fit (classes {self.classes_.tolist()})")
        pos = y == self.classes_[1]
        s = self.decision_function(x)
        auc = float(roc_auc_score(pos, s)) if 0 < pos.sum() < len(pos) else float("nan")
        out = {
            "auc": auc,
            "accuracy": float(((s > 0) == pos).mean()),
            "n": int(len(y)),
            "positive_rate": float(pos.mean()),
        }
        self.score_ = auc
        return out


class LatentRegressor(_Probe):
    """Ridge regression of a number on standardised codes.

    Fitted attributes: ``coef_`` (Z,), ``intercept_`` (raw latent units), ``mean_``, ``scale_``,
    ``train_r2_``; after :meth:`evaluate`, ``score_`` (held-out R^2)."""

    def __init__(self, alpha: float = 1.0, *, standardize: bool = True) -> None:
        self.alpha, self.standardize = alpha, standardize

    def fit(self, z: Any, y: Any) -> LatentRegressor:
        if not float(self.alpha) >= 0:
            raise ConfigError(f"alpha must be >= 0, got {self.alpha}")
        x = as_codes(z)
        t = _targets(y, x.shape[0]).astype(np.float64)
        if not np.isfinite(t).all():
            raise InputError("y contains NaN or infinite values")
        from sklearn.linear_model import Ridge

        reg = Ridge(alpha=float(self.alpha)).fit(self._standardise(x), t)
        self._raw_weights(np.asarray(reg.coef_, dtype=np.float64).reshape(-1), float(reg.intercept_))
        self.train_r2_ = _r2(t, self.predict(x))
        return self

    def predict(self, z: Any) -> np.ndarray:
        return self.decision_function(z)

    def __call__(self, z: Any) -> np.ndarray:
        return self.predict(z)

    def torch_score(self, z: Tensor) -> Tensor:
        """Differentiable prediction ``(N,)``, equal to :meth:`predict`."""
        return self._torch_linear(z)

    def evaluate(self, z_test: Any, y_test: Any) -> dict[str, float]:
        """Held-out ``r2``, ``mae``, ``rmse``, ``pearson`` and ``n``; stores ``score_`` (R^2)."""
        self._fitted()
        x = as_codes(z_test, "z_test", self.n_features_in_)
        y = _targets(y_test, x.shape[0], "y_test").astype(np.float64)
        p = self.predict(x)
        r = float(np.corrcoef(y, p)[0, 1]) if len(y) > 1 and y.std() > 0 and p.std() > 0 else float("nan")
        out = {
            "r2": _r2(y, p),
            "mae": float(np.abs(y - p).mean()),
            "rmse": float(np.sqrt(((y - p) ** 2).mean())),
            "pearson": r,
            "n": int(len(y)),
        }
        self.score_ = out["r2"]
        return out


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - p) ** 2).sum()) / ss if ss > 0 else float("nan")
