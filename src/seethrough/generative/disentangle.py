"""How well latent directions and coordinates line up with known generative factors.

* :func:`factor_response`: move codes along each direction, decode, and measure with a factor
  predictor how much each true factor changes per unit of strength (direction x factor table,
  and each direction's purity: the share of its response taken by its strongest factor).
* :func:`mig`: the mutual information gap (Chen et al. 2018): codes discretised into bins; for
  each factor, the gap between the two latent coordinates most informative about it, divided by
  the factor's entropy; averaged over factors.
* :func:`dci`: disentanglement, completeness and informativeness (Eastwood & Williams 2018) from
  the feature importances of one tree ensemble per factor (gradient boosting or random forest).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.errors import ConfigError, InputError
from .._core.result import Result
from .._core.seeds import check_seed
from .directions import Direction, as_direction
from .latent import Latent
from .probes import as_codes

__all__ = ["FactorResponse", "factor_response", "MIGResult", "mig", "DCIResult", "dci"]


def _np(x: Any, what: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InputError(f"{what} must be a 2-D array (N, F), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{what} contain NaN or infinite values")
    return a


def _factor_names(names: Sequence[str] | None, n: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"factor{i}" for i in range(n))
    names = tuple(str(s) for s in names)
    if len(names) != n:
        raise InputError(f"{len(names)} factor names for {n} factors")
    return names


def _categorical_mask(categorical: Sequence[str | int], names: tuple[str, ...]) -> np.ndarray:
    mask = np.zeros(len(names), dtype=bool)
    for c in categorical:
        if isinstance(c, str):
            if c not in names:
                raise ConfigError(f"categorical factor {c!r} is not one of {list(names)}")
            mask[names.index(c)] = True
        else:
            mask[int(c)] = True
    return mask


# ------------------------------------------------------------------------ factor response
@dataclass(frozen=True, eq=False)
class FactorResponse(Result):
    """Direction x factor response.

    Attributes
    ----------
    response: ``(D, F)`` mean absolute change of each predicted factor per unit strength,
        divided by the factor's scale; for categorical factors, the share of predictions that
        changed, per unit strength.
    purity: ``(D,)`` the largest share of a direction's total response taken by one factor
        (1: it moves one factor only; 1/F: all equally).
    directions, factor_names, categorical: names. strengths: the strengths used.
    scale: ``(F,)`` what each continuous factor's change was divided by.
    """

    response: Tensor
    purity: Tensor
    directions: tuple[str, ...]
    factor_names: tuple[str, ...]
    strengths: Tensor
    scale: Tensor
    categorical: tuple[str, ...] = ()
    n_codes: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dominant(self) -> tuple[str, ...]:
        """The strongest factor of each direction."""
        return tuple(self.factor_names[int(i)] for i in self.response.argmax(dim=1))

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, d in enumerate(self.directions):
            row: dict[str, Any] = {"direction": d}
            row.update({f: float(self.response[i, j]) for j, f in enumerate(self.factor_names)})
            row["dominant"] = self.dominant[i]
            row["purity"] = float(self.purity[i])
            out.append(row)
        return out

    def __repr__(self) -> str:
        return f"FactorResponse({len(self.directions)} directions x {len(self.factor_names)} factors)"


def factor_response(
    source: Latent | Callable[[Tensor], Tensor],
    predictor: Callable[[Tensor], Any],
    z0: Any,
    directions: Mapping[str, Direction | Tensor | int] | Sequence[Direction | Tensor | int],
    *,
    strengths: Sequence[float] = (-2.0, -1.0, 1.0, 2.0),
    factor_names: Sequence[str] | None = None,
    categorical: Sequence[str | int] = (),
    scale: Any = None,
    spread: Any = None,
) -> FactorResponse:
    """Decode ``z0 + s v`` for every direction ``v`` and strength ``s`` and predict the factors.

    ``source``: a :class:`~seethrough.generative.latent.Latent` (batched, guarded decoding) or a
    decode function. ``predictor(outputs) -> (N, F)``: factor values in their units (category
    indices for categorical factors). ``scale``: ``(F,)`` spread of each factor on real data
    (its standard deviation); default the spread of the predictions at ``z0``. ``spread``:
    codes ``(N, Z)`` of real data; when given, each direction's strengths are in units of the
    codes' standard deviation along it (so a direction the data barely use is not pushed
    far off the data, and directions compare step for step), else in units of ``z``."""
    codes = torch.as_tensor(as_codes(z0, "z0"), dtype=torch.float32)
    s = np.asarray(strengths, dtype=np.float64).reshape(-1)
    if s.size == 0 or (s == 0).any() or not np.isfinite(s).all():
        raise ConfigError("strengths must be non-zero finite numbers (0 is the reference point)")
    items = list(directions.items()) if isinstance(directions, Mapping) else [(None, d) for d in directions]
    if not items:
        raise ConfigError("give at least one direction")
    dirs = [as_direction(d, int(codes.shape[1])) for _, d in items]
    names = tuple(k if k is not None else d.label for (k, _), d in zip(items, dirs))
    decode = source.decode if isinstance(source, Latent) else source

    def predict(z: Tensor) -> np.ndarray:
        out = decode(z)
        return _np(predictor(out), "the predictor's output")

    m = codes.shape[0]
    # one big batch: the reference, then every direction x strength (Latent.decode chunks it)
    unit = np.ones(len(dirs))
    if spread is not None:
        sp = torch.as_tensor(as_codes(spread, "spread", width=int(codes.shape[1])), dtype=torch.float32)
        unit = np.array([float(d.project(sp).std()) for d in dirs])
        if not np.all(unit > 0):
            bad = [names[i] for i in np.flatnonzero(~(unit > 0))]
            raise InputError(f"the spread codes do not vary along {bad}; give more varied codes or spread=None")
    zs = [codes] + [d.apply(codes, float(v) * u) for d, u in zip(dirs, unit, strict=True) for v in s]
    pred = predict(torch.cat(zs))
    ref = pred[:m]
    n_f = ref.shape[1]
    fnames = _factor_names(factor_names, n_f)
    cat = _categorical_mask(categorical, fnames)
    if scale is None:
        sc = ref.std(axis=0)
    else:
        sc = np.asarray(scale.detach().cpu().numpy() if isinstance(scale, Tensor) else scale, dtype=np.float64)
        if sc.shape != (n_f,):
            raise InputError(f"scale must have one value per factor ({n_f}), got shape {sc.shape}")
    sc = np.where(sc > 0, sc, 1.0)
    sc[cat] = 1.0
    moved = pred[m:].reshape(len(dirs), s.size, m, n_f)
    change = np.abs(moved - ref[None, None])
    change[..., cat] = (change[..., cat] > 0.5).astype(np.float64)
    change[..., ~cat] /= sc[~cat]
    response = (change / np.abs(s)[None, :, None, None]).mean(axis=(1, 2))
    total = response.sum(axis=1)
    purity = np.where(total > 0, response.max(axis=1) / np.where(total > 0, total, 1.0), np.nan)
    return FactorResponse(
        response=torch.from_numpy(response).float(),
        purity=torch.from_numpy(purity).float(),
        directions=names,
        factor_names=fnames,
        strengths=torch.from_numpy(s).float(),
        scale=torch.from_numpy(sc).float(),
        categorical=tuple(f for f, c in zip(fnames, cat) if c),
        n_codes=int(m),
        settings={
            "strength_unit": "codes' std along each direction" if spread is not None else "z",
            "unit": unit.tolist(),
        },
    )


# ------------------------------------------------------------------------------- MIG
def _discretise(x: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins per column (as Locatello et al. 2019's histogram discretisation)."""
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        col = x[:, j]
        lo, hi = col.min(), col.max()
        if hi <= lo:
            out[:, j] = 0
            continue
        edges = np.linspace(lo, hi, bins + 1)[1:-1]
        out[:, j] = np.searchsorted(edges, col, side="right")
    return out


def _factor_codes(f: np.ndarray, cat: np.ndarray, bins: int) -> np.ndarray:
    out = np.empty(f.shape, dtype=np.int64)
    for j in range(f.shape[1]):
        col = f[:, j]
        values = np.unique(col)
        if cat[j] or values.size <= bins:
            out[:, j] = np.searchsorted(values, col)
        else:
            out[:, j] = _discretise(col[:, None], bins)[:, 0]
    return out


def _mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (nats) between two discrete label arrays."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    joint = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(joint, (ia, ib), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def _entropy(a: np.ndarray) -> float:
    _, counts = np.unique(a, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


@dataclass(frozen=True, eq=False)
class MIGResult(Result):
    """Mutual information gap. ``score``: the mean over factors of ``gap``; ``gap`` ``(F,)``;
    ``mutual_information`` ``(Z, F)`` in nats; ``entropy`` ``(F,)`` of each discretised factor."""

    score: float
    gap: Tensor
    mutual_information: Tensor
    entropy: Tensor
    factor_names: tuple[str, ...]
    bins: int = 20

    def __repr__(self) -> str:
        return f"MIGResult(score={self.score:.3f}, factors={self.factor_names})"


def mig(
    z: Any,
    factors: Any,
    *,
    categorical: Sequence[str | int] = (),
    bins: int = 20,
    factor_names: Sequence[str] | None = None,
) -> MIGResult:
    """MIG of codes ``(N, Z)`` against known factors ``(N, F)``. Each latent coordinate is cut
    into ``bins`` equal-width bins; a continuous factor with more than ``bins`` distinct values
    too (categorical factors and factors on a grid keep their values). Needs ``Z >= 2``."""
    x = _np(z, "z")
    f = _np(factors, "factors")
    if x.shape[0] != f.shape[0]:
        raise InputError(f"{x.shape[0]} codes and {f.shape[0]} factor rows; give one row of factors per code")
    if x.shape[1] < 2:
        raise InputError("MIG compares the two most informative coordinates; it needs at least two")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ConfigError(f"bins must be an int >= 2, got {bins!r}")
    names = _factor_names(factor_names, f.shape[1])
    cat = _categorical_mask(categorical, names)
    zd = _discretise(x, bins)
    fd = _factor_codes(f, cat, bins)
    mi = np.array([[_mutual_info(zd[:, i], fd[:, j]) for j in range(f.shape[1])] for i in range(x.shape[1])])
    ent = np.array([_entropy(fd[:, j]) for j in range(f.shape[1])])
    top = np.sort(mi, axis=0)[::-1]
    gap = np.where(ent > 0, (top[0] - top[1]) / np.where(ent > 0, ent, 1.0), 0.0)
    return MIGResult(
        score=float(gap.mean()),
        gap=torch.from_numpy(gap).float(),
        mutual_information=torch.from_numpy(mi).float(),
        entropy=torch.from_numpy(ent).float(),
        factor_names=names,
        bins=int(bins),
    )


# ------------------------------------------------------------------------------- DCI
@dataclass(frozen=True, eq=False)
class DCIResult(Result):
    """Eastwood & Williams (2018) scores.

    Attributes
    ----------
    disentanglement: ``sum_i rho_i (1 - H_F(P_i))``, ``P_i`` code ``i``'s importances over the
        factors normalised, ``rho_i`` its share of all importance.
    completeness: mean over factors of ``1 - H_Z(P~_j)``, each factor's importances over codes.
    informativeness: mean held-out score of the per-factor predictors (accuracy for categorical
        factors, R^2 for continuous ones), ``informativeness_per_factor`` ``(F,)``.
    importance: ``(Z, F)``; ``code_disentanglement`` ``(Z,)``, ``factor_completeness`` ``(F,)``.
    """

    disentanglement: float
    completeness: float
    informativeness: float
    importance: Tensor
    code_disentanglement: Tensor
    factor_completeness: Tensor
    informativeness_per_factor: Tensor
    factor_names: tuple[str, ...]
    model: str = "gbt"

    def __repr__(self) -> str:
        return (
            f"DCIResult(D={self.disentanglement:.3f}, C={self.completeness:.3f}, "
            f"I={self.informativeness:.3f}, model={self.model!r})"
        )


def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=axis) / np.log(base)


def dci(
    z: Any,
    factors: Any,
    *,
    categorical: Sequence[str | int] = (),
    factor_names: Sequence[str] | None = None,
    model: str = "gbt",
    n_estimators: int = 50,
    max_depth: int | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> DCIResult:
    """DCI of codes ``(N, Z)`` against known factors ``(N, F)``.

    One predictor per factor from all codes: ``model="gbt"`` (scikit-learn gradient boosting,
    depth 3 by default) or ``"forest"`` (random forest); its impurity-based
    ``feature_importances_`` form the importance matrix. Fitted on a seeded split, scored on the
    held-out ``test_fraction``."""
    x = _np(z, "z")
    f = _np(factors, "factors")
    if x.shape[0] != f.shape[0]:
        raise InputError(f"{x.shape[0]} codes and {f.shape[0]} factor rows; give one row of factors per code")
    if x.shape[1] < 2:
        raise InputError("DCI needs at least two latent coordinates")
    if model not in ("gbt", "forest"):
        raise ConfigError(f"model must be 'gbt' or 'forest', got {model!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    check_seed(seed)
    names = _factor_names(factor_names, f.shape[1])
    cat = _categorical_mask(categorical, names)
    rng = np.random.default_rng(seed)
    order = rng.permutation(x.shape[0])
    k = max(1, int(round(test_fraction * x.shape[0])))
    te, tr = order[:k], order[k:]
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    rs = int(seed) % (2**32)
    imp = np.zeros((x.shape[1], f.shape[1]))
    info = np.zeros(f.shape[1])
    for j in range(f.shape[1]):
        y = f[:, j]
        est: Any
        if cat[j]:
            y = np.searchsorted(np.unique(y), y)
            if model == "gbt":
                est = GradientBoostingClassifier(n_estimators=n_estimators, max_depth=max_depth or 3, random_state=rs)
            else:
                est = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, random_state=rs, n_jobs=1)
        elif model == "gbt":
            est = GradientBoostingRegressor(n_estimators=n_estimators, max_depth=max_depth or 3, random_state=rs)
        else:
            est = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth, random_state=rs, n_jobs=1)
        est.fit(x[tr], y[tr])
        imp[:, j] = np.abs(est.feature_importances_)
        info[j] = float(est.score(x[te], y[te]))  # accuracy (classifier) or R^2 (regressor)
    n_z, n_f = imp.shape
    row = imp.sum(axis=1)
    p_code = imp / np.where(row > 0, row, 1.0)[:, None]
    d_code = np.where(row > 0, 1.0 - _entropy_base(p_code, max(n_f, 2), axis=1), 0.0) if n_f > 1 else np.ones(n_z)
    rho = row / row.sum() if row.sum() > 0 else np.full(n_z, 1.0 / n_z)
    col = imp.sum(axis=0)
    p_factor = imp / np.where(col > 0, col, 1.0)[None, :]
    c_factor = np.where(col > 0, 1.0 - _entropy_base(p_factor, n_z, axis=0), 0.0)
    return DCIResult(
        disentanglement=float((rho * d_code).sum()),
        completeness=float(c_factor.mean()),
        informativeness=float(info.mean()),
        importance=torch.from_numpy(imp).float(),
        code_disentanglement=torch.from_numpy(d_code).float(),
        factor_completeness=torch.from_numpy(c_factor).float(),
        informativeness_per_factor=torch.from_numpy(info).float(),
        factor_names=names,
        model=model,
    )
