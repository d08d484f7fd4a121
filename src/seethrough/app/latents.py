"""Image latents on the bundled (or the user's) image autoencoders: traversals along named
directions, the direction x factor scores on the factor scenes (with MIG and DCI), and the
files the ``latent`` commands write."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seethrough._core.errors import ConfigError
from seethrough.generative import (
    Direction,
    Latent,
    LatentWalk,
    PCADirections,
    ProbeDirection,
    SampleSet,
    dci,
    factor_response,
    mig,
)

from .data import HELD_OUT_SEED

__all__ = [
    "image_direction",
    "image_traversal",
    "factor_scores",
    "factor_scenes",
    "write_sampling",
    "write_factor_scores",
    "CONTINUOUS_FACTORS",
    "SCORED_FACTORS",
    "smooth_factors",
]

#: the factors of the scenes that a linear probe direction is fitted for
CONTINUOUS_FACTORS: tuple[str, ...] = ("scale", "x", "y", "rotation_cos", "rotation_sin")


#: the factors as scored: rotation as the cosine and sine of (symmetry order x angle), which
#: is smooth and the same for rotations that look alike (a square at 0 and 90 degrees)
SCORED_FACTORS: tuple[str, ...] = ("shape", "color", "scale", "x", "y", "rotation_cos", "rotation_sin")


def smooth_factors(factors: Tensor) -> Tensor:
    """``(N, 6)`` factors (rotation in degrees) -> ``(N, 7)`` :data:`SCORED_FACTORS`."""
    from seethrough.data.factors import SYMMETRY_ORDER

    f = factors.double()
    k = torch.tensor(SYMMETRY_ORDER, dtype=torch.float64)[f[:, 0].long()]
    ang = torch.deg2rad(f[:, 5] * k)
    return torch.cat([f[:, :5], torch.cos(ang)[:, None], torch.sin(ang)[:, None]], dim=1).float()


def factor_scenes(n: int, seed: int = 0) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """``n`` held-out factor scenes: images, their factors as :data:`SCORED_FACTORS`
    (:func:`smooth_factors`), and those names."""
    from seethrough.data.factors import make_factor_scenes

    sc = make_factor_scenes(n, seed=HELD_OUT_SEED + seed)
    return sc.images, smooth_factors(sc.factors), SCORED_FACTORS


def image_direction(model: nn.Module, images: Tensor, name: str, *, seed: int = 0) -> tuple[Direction, Tensor]:
    """A direction by name, with the codes it was fitted on: ``pcN`` (N-th principal axis of
    the codes of ``images``), ``dimN`` (latent coordinate N, from 0), or a continuous factor
    of the scenes (:data:`CONTINUOUS_FACTORS`: a linear probe's normal, fitted on 2,000
    held-out scenes with their true factors)."""
    latent = Latent(model)
    if name in CONTINUOUS_FACTORS:
        x, f, names = factor_scenes(2000, seed)
        z = latent.encode(x).cpu()
        return ProbeDirection(kind="linear", name=f"probe: {name}").fit(z, f[:, names.index(name)]), z
    z = latent.encode(images).cpu()
    low = name.lower()
    if low.startswith("pc") and low[2:].isdigit():
        k = int(low[2:])
        if not 1 <= k <= min(z.shape):
            raise ConfigError(f"principal axis {name!r} out of range: pc1 .. pc{min(z.shape)} for {z.shape[0]} codes")
        return PCADirections(n_components=k).fit(z).direction(k - 1), z
    if low.startswith("dim") and low[3:].isdigit():
        k = int(low[3:])
        if not 0 <= k < z.shape[1]:
            raise ConfigError(f"latent coordinate {name!r} out of range: dim0 .. dim{z.shape[1] - 1}")
        v = torch.zeros(z.shape[1])
        v[k] = 1.0
        return Direction.from_vector(v, name=f"dim{k}"), z
    raise ConfigError(
        f"unknown direction {name!r} for an image autoencoder; give pcN, dimN or a factor of the scenes "
        f"({', '.join(CONTINUOUS_FACTORS)})"
    )


def image_traversal(
    model: nn.Module, images: Tensor, start: Tensor, direction: str, strengths: Sequence[float], *, seed: int = 0
) -> LatentWalk:
    """Decode ``start``'s code moved along ``direction``; ``strengths`` are in units of the
    codes' spread (standard deviation) along it."""
    d, z = image_direction(model, images, direction, seed=seed)
    scale = float(d.project(z).std())
    latent = Latent(model)
    return latent.traverse(latent.encode(start)[0], d, strengths=[s * scale for s in strengths])


def factor_scores(model: nn.Module, *, n: int = 2000, seed: int = 0, n_reference: int = 200) -> dict[str, Any]:
    """Every principal axis and every probe direction of ``model``'s codes scored against the
    true factors of the scenes: a direction x factor response table (how much each factor,
    read by the bundled ``scenes-factors`` predictor, changes per unit strength) with each
    direction's purity, and the MIG and DCI of the codes against the factors."""
    from seethrough import zoo

    predictor = zoo.load("scenes-factors")
    predict: Any = getattr(predictor, "predict")  # noqa: B009 - FactorPredictor.predict, untyped on nn.Module
    x, f, names = factor_scenes(n, seed)
    latent = Latent(model)
    z = latent.encode(x).cpu()
    dirs: dict[str, Direction] = {}
    pca = PCADirections(n_components=min(z.shape[1], 6)).fit(z)
    for i in range(pca.components_.shape[0]):
        dirs[f"pc{i + 1}"] = pca.direction(i)
    for name in CONTINUOUS_FACTORS:
        dirs[f"probe:{name}"] = ProbeDirection(kind="linear", name=f"probe: {name}").fit(z, f[:, names.index(name)])
    scale = f.double().std(dim=0)
    # strengths in units of the codes' spread along each direction
    resp = factor_response(
        latent,
        lambda imgs: smooth_factors(predict(imgs)),
        z[:n_reference],
        dirs,
        strengths=(-2.0, -1.0, 1.0, 2.0),
        factor_names=names,
        categorical=("shape", "color"),
        scale=scale,
        spread=z,
    )
    m = mig(z, f, categorical=("shape", "color"), factor_names=names)
    d = dci(z, f, categorical=("shape", "color"), factor_names=names, seed=seed)
    summary = {
        "n_scenes": n,
        "mean_purity_pca": float(
            np.nanmean([float(resp.purity[i]) for i, k in enumerate(resp.directions) if k.startswith("pc")])
        ),
        "mean_purity_probe": float(
            np.nanmean([float(resp.purity[i]) for i, k in enumerate(resp.directions) if k.startswith("probe")])
        ),
        "dominant": dict(zip(resp.directions, resp.dominant, strict=True)),
        "mig": float(m.score),
        "mig_per_factor": dict(zip(m.factor_names, [float(g) for g in m.gap], strict=True)),
        "dci": {
            "disentanglement": float(d.disentanglement),
            "completeness": float(d.completeness),
            "informativeness": float(d.informativeness),
        },
    }
    return {"response": resp, "mig": m, "dci": d, "summary": summary}


def _to_jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _to_jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_jsonable(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def write_sampling(out: Path, samples: SampleSet, result: dict[str, Any], *, title: str) -> Path:
    """``samples.safetensors``, ``samples.csv``, ``summary.json`` and ``samples.html``."""
    from seethrough.report.html import HtmlReport

    out.mkdir(parents=True, exist_ok=True)
    samples.save(out / "samples.safetensors")
    samples.table.to_csv(out / "samples.csv")
    (out / "summary.json").write_text(json.dumps(_to_jsonable(result), indent=2) + "\n")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    rows = []
    for key in ("conditioned", "unconditioned"):
        s = result.get(key)
        if s is None:
            continue
        row: dict[str, Any] = {
            "run": key,
            "accepted": s["accepted"],
            "candidates": s["candidates"],
            "acceptance": s["acceptance_rate"],
            "validity": s["validity"],
            "uniqueness": s["uniqueness"],
            "novel": s["novelty"]["novelty"],
        }
        row.update({f"decoded: {k}": v for k, v in s["decoded_meets"].items()})
        rows.append(row)
    report.add_table(
        rows, caption="Conditioned vs unconditioned samples: the fraction whose decoded sequence meets each condition"
    )
    probes = result.get("probes", {})
    report.add_table([{"probe": k, "value": v} for k, v in probes.items()], caption="Held-out scores of the probes")
    report.add_html(samples.table.to_html())
    return report.save(out / "samples.html")


def write_factor_scores(out: Path, scores: dict[str, Any], *, title: str) -> Path:
    """``factors.json``, ``response.png`` and ``factors.html``."""
    from seethrough.report.html import HtmlReport

    out.mkdir(parents=True, exist_ok=True)
    (out / "factors.json").write_text(json.dumps(_to_jsonable(scores["summary"]), indent=2) + "\n")
    resp = scores["response"]
    resp.save(out / "response.safetensors")
    fig = resp.plot()
    fig.savefig(out / "response.png", dpi=100, bbox_inches="tight")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_html(resp.to_html())
    s = scores["summary"]
    report.add_table(
        [{"MIG": s["mig"], **{f"DCI {k}": v for k, v in s["dci"].items()}}], caption="Disentanglement of the codes"
    )
    return report.save(out / "factors.html")
