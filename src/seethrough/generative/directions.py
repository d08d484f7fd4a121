"""Directions in a latent space: unit vectors to move codes along.

:class:`Direction` is the base (an :class:`~seethrough._core.estimator.Estimator` whose
``vector_`` is a unit vector ``(Z,)``): :meth:`~Direction.apply` moves codes, :meth:`~Direction.project`
reads their coordinate, and :meth:`~Direction.project_out` makes a conditional direction that
leaves other attributes alone (the component along them removed, as InterFaceGAN's conditional
manipulation, Shen et al. 2020). Nothing here assumes an autoencoder: the directions of a GAN
generator's latent space (SeFa, GANSpace) are subclasses of the same base.

Subclasses: :class:`ProbeDirection` (the normal of a linear or logistic probe),
:class:`PCADirections` (principal axes of codes), :class:`ClassifierDirection` (the normal of a
fitted :class:`~seethrough.generative.probes.LatentClassifier` or regressor) and
:class:`GradientDirection` (the gradient of a differentiable score at a point).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, GradientError, InputError
from .._core.estimator import Estimator
from .probes import LatentClassifier, LatentRegressor, as_codes

__all__ = [
    "Direction",
    "ProbeDirection",
    "PCADirections",
    "ClassifierDirection",
    "GradientDirection",
    "as_direction",
]

_EPS = 1e-8


def _unit(v: Any, what: str = "vector") -> Tensor:
    t = torch.as_tensor(v.detach().cpu() if isinstance(v, Tensor) else np.asarray(v, dtype=np.float64))
    t = t.double().reshape(-1)
    if t.numel() == 0 or not bool(torch.isfinite(t).all()):
        raise InputError(f"{what} must be a non-empty vector of finite numbers")
    n = float(t.norm())
    if n < _EPS:
        raise InputError(f"{what} is zero; a direction needs a non-zero vector")
    return (t / n).float()


class Direction(Estimator):
    """A unit direction in latent space.

    ``Direction(vector, name=...).fit()`` (or :meth:`from_vector`) makes one from a given
    vector; subclasses learn it in ``fit``.

    Fitted attributes: ``vector_`` (Z,), float32, unit norm.
    """

    def __init__(self, vector: Any = None, *, name: str | None = None) -> None:
        self.vector, self.name = vector, name

    @classmethod
    def from_vector(cls, vector: Any, *, name: str | None = None) -> Direction:
        return Direction(vector, name=name).fit()

    def fit(self, *args: Any, **kwargs: Any) -> Direction:
        if self.vector is None:
            raise ConfigError("Direction() needs a vector; give Direction(vector) or use a subclass that learns one")
        self.vector_ = _unit(self.vector)
        return self

    # -- use --------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """The name, or the class name when there is none."""
        return self.name or type(self).__name__

    def _v(self) -> Tensor:
        self.check_fitted()
        return self.vector_

    @property
    def dim(self) -> int:
        return int(self._v().shape[0])

    def _check_codes(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor):
            z = torch.as_tensor(np.asarray(z, dtype=np.float32))
        if z.shape[-1] != self.dim:
            raise InputError(f"codes have {z.shape[-1]} dimensions but the direction has {self.dim}")
        return z

    def apply(self, z: Any, strength: float | Tensor = 1.0) -> Tensor:
        """``z + strength * vector_`` for codes ``(N, Z)`` or ``(Z,)``; ``strength`` a number
        or one per code ``(N,)``."""
        z = self._check_codes(z)
        v = self._v().to(device=z.device, dtype=z.dtype)
        s = torch.as_tensor(strength, dtype=z.dtype, device=z.device)
        if s.dim() == 1 and z.dim() == 2:
            if s.shape[0] != z.shape[0]:
                raise InputError(f"{s.shape[0]} strengths for {z.shape[0]} codes; give one per code or a number")
            s = s[:, None]
        elif s.dim() > 1:
            raise InputError("strength must be a number or a 1-D tensor with one value per code")
        return z + s * v

    def project(self, z: Any) -> Tensor:
        """The coordinate ``z . vector_`` of each code."""
        z = self._check_codes(z)
        return z @ self._v().to(device=z.device, dtype=z.dtype)

    def cosine(self, other: Direction | Tensor) -> float:
        """Cosine similarity with another direction or vector."""
        u = other._v() if isinstance(other, Direction) else _unit(other, "other")
        return float(self._v().double() @ u.double())

    def project_out(self, *others: Direction | Tensor, name: str | None = None) -> Direction:
        """A new direction: this one with its components along ``others`` removed
        (``n - sum_k (n . e_k) e_k`` over an orthonormal basis ``e`` of the others), normalised.
        Moving along it changes this attribute while leaving the others' linear scores fixed."""
        if not others:
            raise ConfigError("project_out needs at least one other direction")
        n = self._v().double()
        basis: list[Tensor] = []
        for o in others:
            e = (o._v() if isinstance(o, Direction) else _unit(o, "other direction")).double()
            if e.shape != n.shape:
                raise InputError(f"directions have {e.shape[0]} and {n.shape[0]} dimensions")
            for b in basis:
                e = e - (e @ b) * b
            ne = float(e.norm())
            if ne > 1e-6:
                basis.append(e / ne)
        for b in basis:
            n = n - (n @ b) * b
        if float(n.norm()) < 1e-6:
            raise ConfigError(
                f"{self.label} lies in the span of the directions projected out; nothing is left to move along"
            )
        names = ", ".join(o.label if isinstance(o, Direction) else "vector" for o in others)
        return Direction.from_vector(n, name=name or f"{self.label} | {names} fixed")

    def __neg__(self) -> Direction:
        return Direction.from_vector(-self._v(), name=f"-{self.label}")


def as_direction(direction: Direction | Tensor | int | Any, dim: int) -> Direction:
    """A fitted :class:`Direction` from a Direction, a vector or an int (that coordinate axis)."""
    if isinstance(direction, Direction):
        d = direction
    elif isinstance(direction, (int, np.integer)) and not isinstance(direction, bool):
        k = int(direction)
        if not 0 <= k < dim:
            raise ConfigError(f"latent coordinate {k} is out of range for {dim} dimensions")
        v = torch.zeros(dim)
        v[k] = 1.0
        d = Direction.from_vector(v, name=f"z[{k}]")
    else:
        d = Direction.from_vector(direction, name="vector")
    if d.dim != dim:
        raise InputError(f"the direction has {d.dim} dimensions but the codes have {dim}")
    return d


class ProbeDirection(Direction):
    """The normal of a linear probe fitted on codes: ``kind="linear"`` (ridge regression of
    ``y``, pointing to larger ``y``) or ``"logistic"`` (a binary label, pointing to the
    positive class, the second of the sorted labels). The probe is fitted on the raw codes
    (as InterFaceGAN fits its boundary in z), so the normal is the raw-space solution: a
    coordinate the data barely use (an inactive VAE unit) gets little weight. Standardising
    first would blow such a coordinate's noise up and let it dominate the normal.

    Fitted attributes: ``vector_``, ``probe_`` (the fitted
    :class:`~seethrough.generative.probes.LatentClassifier` / ``LatentRegressor``)."""

    def __init__(self, kind: str = "logistic", *, C: float = 1.0, alpha: float = 1.0, name: str | None = None) -> None:
        self.kind, self.C, self.alpha, self.name = kind, C, alpha, name

    def fit(self, z: Any, y: Any) -> ProbeDirection:
        if self.kind == "logistic":
            self.probe_: LatentClassifier | LatentRegressor = LatentClassifier(C=self.C, standardize=False).fit(z, y)
        elif self.kind == "linear":
            self.probe_ = LatentRegressor(alpha=self.alpha, standardize=False).fit(z, y)
        else:
            raise ConfigError(f"kind must be 'linear' or 'logistic', got {self.kind!r}")
        self.vector_ = _unit(self.probe_.coef_, "the probe's weights")
        return self


class ClassifierDirection(Direction):
    """The normal of an already fitted latent probe (a
    :class:`~seethrough.generative.probes.LatentClassifier`, pointing to its positive class,
    or a ``LatentRegressor``, pointing to larger predictions)."""

    def __init__(self, probe: LatentClassifier | LatentRegressor, *, name: str | None = None) -> None:
        self.probe, self.name = probe, name

    def fit(self, *args: Any, **kwargs: Any) -> ClassifierDirection:
        if not isinstance(self.probe, (LatentClassifier, LatentRegressor)):
            raise ConfigError(f"probe must be a LatentClassifier or LatentRegressor, got {type(self.probe).__name__}")
        self.probe.check_fitted("fit the probe (probe.fit(z, y)) before taking its direction")
        self.vector_ = _unit(self.probe.coef_, "the probe's weights")
        return self


class PCADirections(Direction):
    """Principal axes of a set of codes (directions of largest variance), e.g. of the
    aggregate posterior or of a generator's intermediate codes (GANSpace).

    ``components_`` equal scikit-learn's ``PCA`` up to sign; the sign is fixed so that each
    component's largest-magnitude entry is positive. ``vector_`` is the first component;
    :meth:`direction` gives any of them as a :class:`Direction`.

    Fitted attributes: ``components_`` (K, Z), ``explained_variance_`` (K,),
    ``explained_variance_ratio_`` (K,), ``mean_`` (Z,), ``vector_``."""

    def __init__(self, n_components: int | None = None, *, name: str = "PC") -> None:
        self.n_components, self.name = n_components, name

    def fit(self, z: Any, *args: Any) -> PCADirections:
        x = as_codes(z)
        n, d = x.shape
        k = min(n, d) if self.n_components is None else int(self.n_components)
        if not 1 <= k <= min(n, d):
            raise ConfigError(f"n_components must be between 1 and min(n_codes, Z) = {min(n, d)}, got {k}")
        if n < 2:
            raise InputError("PCA needs at least two codes")
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
        signs[signs == 0] = 1.0
        vt = vt * signs[:, None]
        var = s**2 / (n - 1)
        total = var.sum()
        self.components_ = torch.from_numpy(vt[:k].astype(np.float32))
        self.explained_variance_ = torch.from_numpy(var[:k].astype(np.float32))
        self.explained_variance_ratio_ = torch.from_numpy(
            (var[:k] / total if total > 0 else var[:k]).astype(np.float32)
        )
        self.mean_ = torch.from_numpy(mean.astype(np.float32))
        self.vector_ = _unit(self.components_[0])
        return self

    def direction(self, i: int) -> Direction:
        """Component ``i`` (0-based) as a fitted :class:`Direction` named ``"PC{i+1}"``."""
        self.check_fitted()
        k = self.components_.shape[0]
        if not -k <= i < k:
            raise ConfigError(f"component {i} does not exist; {k} were fitted")
        return Direction.from_vector(self.components_[i], name=f"{self.name}{i % k + 1}")

    def directions(self) -> list[Direction]:
        self.check_fitted()
        return [self.direction(i) for i in range(self.components_.shape[0])]


class GradientDirection(Direction):
    """The direction of steepest ascent of a differentiable score ``fn(z) -> (N,)`` (or a
    scalar) at the codes given to ``fit``: the gradient of the summed score, normalised. A
    local direction: it holds near those codes (refit it along a path, or take many codes for
    their average gradient).

    Fitted attributes: ``vector_``, ``gradient_`` (the raw gradient), ``norm_``."""

    def __init__(self, fn: Callable[[Tensor], Tensor], *, name: str | None = None) -> None:
        self.fn, self.name = fn, name

    def fit(self, z: Any, *args: Any) -> GradientDirection:
        if not callable(self.fn):
            raise ConfigError("fn must be a callable z -> score (a torch function of the codes)")
        codes = torch.as_tensor(as_codes(z), dtype=torch.float32).requires_grad_(True)
        with torch.enable_grad():
            out = self.fn(codes)
            if not isinstance(out, Tensor):
                raise GradientError(f"fn returned {type(out).__name__}; it must return a torch tensor of scores")
            if not out.requires_grad:
                raise GradientError("fn's score does not depend on z through torch operations; it has no gradient")
            (grad,) = torch.autograd.grad(out.sum(), codes, allow_unused=True)
        if grad is None:
            raise GradientError("fn's score does not depend on z; it has no gradient")
        g = grad.sum(dim=0).double()
        norm = float(g.norm())
        if not np.isfinite(norm) or norm < 1e-12:
            raise GradientError("the gradient of fn is zero (or not finite) at these codes; no direction to take")
        self.gradient_ = g.float()
        self.norm_ = norm
        self.vector_ = (g / norm).float()
        return self
