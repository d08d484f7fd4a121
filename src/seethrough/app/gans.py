"""GAN studies on the bundled (or the user's) generators: directions scored against the true
factors, dissection with causal intervention, sample quality and latent recovery.

The library parts live in their families (:mod:`seethrough.generative` for directions,
metrics and recovery; :mod:`seethrough.concepts` for dissection); this module composes them
with the bundled data and models: the scenes' factor predictor (``scenes-factors``), their
segmenter (``scenes-segmenter``), the MNIST classifier, and the real images each bundled
generator was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seethrough._core.errors import ConfigError
from seethrough._core.seeds import generator as seeded_generator
from seethrough.concepts import GANDissection, UnitIntervention
from seethrough.generative import (
    Direction,
    FactorResponse,
    GANSpace,
    Generator,
    Latent,
    SampleQuality,
    SeFa,
    SupervisedDirection,
    factor_response,
    memorization_test,
)
from seethrough.generative.metrics import FeatureExtractor

from .generators import feature_model, real_data
from .latents import SCORED_FACTORS, smooth_factors

__all__ = [
    "SceneConcepts",
    "DigitConcepts",
    "concept_segmenter",
    "DEFAULT_LAYERS",
    "DirectionStudy",
    "direction_study",
    "dissection_study",
    "metrics_study",
    "recovery_study",
    "sample_codes",
    "attribute_predictor",
    "SUPERVISED_ATTRIBUTES",
    "recovery_images",
    "plot_walks",
    "write_directions",
    "write_dissection",
    "write_metrics",
    "write_recovery",
]

#: Default layers of the bundled generators: (GANSpace layer, dissected layer).
DEFAULT_LAYERS: dict[str, tuple[str, str]] = {
    "scenes-gan": ("blocks.0", "blocks.1"),
    "mnist-gan": ("blocks.0", "blocks.0"),
    "mnist-gan-memorized": ("blocks.0", "blocks.0"),
}


def sample_codes(n: int, dim: int, seed: int) -> Tensor:
    """``n`` codes ``z ~ N(0, I)`` of size ``dim``, deterministic for ``seed``."""
    return torch.randn(n, dim, generator=seeded_generator(seed, 13))


# ----------------------------------------------------------------------- segmenters
class SceneConcepts(nn.Module):
    """The concepts of a generated scene from the bundled segmenter: ``object`` (any shape),
    each shape (``square``, ...) and each colour (``red``, ...), as bool masks. A module, so
    that a guarded run guards the segmenter inside it."""

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        from seethrough.data.factors import COLOR_NAMES, SHAPE_NAMES

        self.segmenter = segmenter
        self.shapes, self.colors = tuple(SHAPE_NAMES), tuple(COLOR_NAMES)
        self.kinds = {"object": "object", **{s: "shape" for s in self.shapes}, **{c: "color" for c in self.colors}}

    @property
    def concepts(self) -> tuple[str, ...]:
        return ("object", *self.shapes, *self.colors)

    def concept_masks(self, images: Tensor) -> dict[str, Tensor]:
        labels = self.segmenter.segment(images)  # type: ignore[operator]
        shape, color = labels[:, 0], labels[:, 1]
        out = {"object": shape > 0}
        out.update({s: shape == i + 1 for i, s in enumerate(self.shapes)})
        out.update({c: color == j + 1 for j, c in enumerate(self.colors)})
        return out


class DigitConcepts(nn.Module):
    """The concepts of a generated digit: ``stroke`` (pixels above ``threshold``) and, per
    class the bundled MNIST classifier reads, the stroke of the images of that class
    (``digit 3``: the stroke pixels of images classified 3, nothing elsewhere)."""

    def __init__(self, classifier: nn.Module, *, threshold: float = 0.5) -> None:
        super().__init__()
        self.classifier = classifier
        self.threshold = float(threshold)
        self.kinds = {"stroke": "stroke", **{f"digit {d}": "digit" for d in range(10)}}

    @property
    def concepts(self) -> tuple[str, ...]:
        return ("stroke", *(f"digit {d}" for d in range(10)))

    def concept_masks(self, images: Tensor) -> dict[str, Tensor]:
        stroke = images[:, 0] > self.threshold
        with torch.no_grad():
            cls = self.classifier(images).argmax(dim=1)
        out = {"stroke": stroke}
        out.update({f"digit {d}": stroke & (cls == d)[:, None, None] for d in range(10)})
        return out


def concept_segmenter(data: str) -> SceneConcepts | DigitConcepts:
    """The bundled segmenter of generated images of ``data`` (``"scenes"`` or ``"mnist"``)."""
    from seethrough import zoo

    if data == "scenes":
        return SceneConcepts(zoo.load("scenes-segmenter")).eval()
    if data == "mnist":
        return DigitConcepts(zoo.load("mnist-cnn")).eval()
    raise ConfigError(f"no bundled segmenter for {data!r} images; dissection runs on the scenes or MNIST generators")


# ----------------------------------------------------------------------- directions
def _scene_predictor() -> Callable[[Tensor], Tensor]:
    from seethrough import zoo

    predictor = zoo.load("scenes-factors")
    predict: Any = getattr(predictor, "predict")  # noqa: B009 - FactorPredictor.predict, untyped on nn.Module
    return lambda images: smooth_factors(predict(images))


def _digit_predictor() -> Callable[[Tensor], Tensor]:
    """What a digit traversal changes, read off the images: the class the bundled classifier
    reads, the ink (mean intensity) and the stroke's centroid and slant (image moments).
    These are measured attributes, not known factors as the scenes have."""
    from seethrough import zoo

    clf = zoo.load("mnist-cnn")

    def predict(images: Tensor) -> Tensor:
        with torch.no_grad():
            cls = clf(images).argmax(dim=1).float()
        x = images[:, 0].double()
        h, w = x.shape[1:]
        mass = x.sum(dim=(1, 2)).clamp(min=1e-6)
        ys = torch.arange(h, dtype=torch.float64)[None, :, None]
        xs = torch.arange(w, dtype=torch.float64)[None, None, :]
        cy = (x * ys).sum(dim=(1, 2)) / mass
        cx = (x * xs).sum(dim=(1, 2)) / mass
        mu11 = (x * (ys - cy[:, None, None]) * (xs - cx[:, None, None])).sum(dim=(1, 2)) / mass
        mu02 = (x * (ys - cy[:, None, None]) ** 2).sum(dim=(1, 2)) / mass
        slant = mu11 / mu02.clamp(min=1e-6)
        return torch.stack([cls.double(), x.mean(dim=(1, 2)), cx / w, cy / h, slant], dim=1).float()

    return predict


DIGIT_ATTRIBUTES: tuple[str, ...] = ("digit", "ink", "x", "y", "slant")


#: The attributes a supervised direction is fitted for, per bundled data.
SUPERVISED_ATTRIBUTES: dict[str, tuple[str, ...]] = {"scenes": ("scale", "x", "y"), "mnist": ("ink", "slant")}


def attribute_predictor(data: str) -> tuple[Callable[[Tensor], Tensor], tuple[str, ...]]:
    """What generated images of bundled ``data`` show, read off the images by the bundled
    predictor (``(N, A)`` values), and the names of its ``A`` columns."""
    if data == "scenes":
        return _scene_predictor(), SCORED_FACTORS
    if data == "mnist":
        return _digit_predictor(), DIGIT_ATTRIBUTES
    raise ConfigError(f"no bundled attribute predictor for {data!r}; there are ones for scenes and mnist")


def _column(predict: Callable[[Tensor], Tensor], j: int) -> Callable[[Tensor], Tensor]:
    return lambda images: predict(images)[:, j]


@dataclass(frozen=True)
class DirectionStudy:
    """Directions found three ways on one generator, side by side: ``directions`` (name ->
    Direction, grouped by ``method``), their ``response`` table against the factors (or the
    measured attributes of digits), ``walks`` (name -> traversal images ``(S, C, H, W)``) at
    ``strengths``, and the fitted estimators."""

    directions: Mapping[str, Direction]
    method: Mapping[str, str]
    response: FactorResponse
    walks: Mapping[str, Tensor]
    strengths: tuple[float, ...]
    fitted: Mapping[str, Any]
    summary: Mapping[str, Any]


def direction_study(
    gen: Generator,
    *,
    data: str,
    k: int = 5,
    layer: str | None = None,
    n_samples: int = 5000,
    n_reference: int = 200,
    strengths: Sequence[float] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
    seed: int = 0,
    progress: bool = False,
) -> DirectionStudy:
    """SeFa, GANSpace and supervised (InterFaceGAN-like) directions of ``gen``, each scored by
    how much every factor of the generated images changes along it (``factor_response`` with
    the bundled factor predictor; strengths in units of z, whose spread is 1 along any
    direction) and each direction's purity, beside two random directions as the floor;
    traversal grids of one code along each."""
    if data not in ("scenes", "mnist"):
        raise ConfigError(f"the direction study needs bundled data to score against (scenes or mnist), got {data!r}")
    dim = gen.latent_dim
    dirs: dict[str, Direction] = {}
    method: dict[str, str] = {}
    sefa = SeFa(gen, k=min(k, dim)).fit()
    for d in sefa.directions():
        dirs[d.label], method[d.label] = d, "SeFa"
    gs = GANSpace(gen, layer=layer or "blocks.0", n_components=k, n_samples=n_samples, seed=seed, name="GANSpace")
    gs.fit(progress=progress)
    for d in gs.directions():
        dirs[d.label], method[d.label] = d, "GANSpace"
    if data == "scenes":
        predict = _scene_predictor()
        names = SCORED_FACTORS
        categorical: tuple[str, ...] = ("shape", "color")
        supervised: tuple[str, ...] = SUPERVISED_ATTRIBUTES["scenes"]
        real = real_data("scenes", n_train=1, n_heldout=2000)
        scale = smooth_factors(real.heldout_labels).double().std(dim=0)
    else:
        predict = _digit_predictor()
        names = DIGIT_ATTRIBUTES
        categorical = ("digit",)
        supervised = SUPERVISED_ATTRIBUTES["mnist"]
        real = real_data("mnist")
        scale = predict(real.heldout).double().std(dim=0)
    fitted: dict[str, Any] = {"sefa": sefa, "ganspace": gs}
    for f in supervised:
        j = names.index(f)
        sd = SupervisedDirection(gen, _column(predict, j), n_samples=2000, seed=seed, name=f"sup:{f}")
        sd.fit(progress=progress)
        dirs[sd.label], method[sd.label] = sd, "supervised"
        fitted[sd.label] = sd
    if len(supervised) >= 2:  # conditional manipulation: the first attribute with the second held fixed
        a, b = f"sup:{supervised[0]}", f"sup:{supervised[1]}"
        cond = dirs[a].project_out(dirs[b], name=f"{a} | {supervised[1]} fixed")
        dirs[cond.label], method[cond.label] = cond, "supervised (conditional)"
    # the floor: random unit directions, which every factor changes along too when the
    # generator is entangled (or the predictor is unsure of its images)
    rand = torch.randn(2, dim, generator=seeded_generator(seed, 29))
    for i in range(rand.shape[0]):
        d = Direction.from_vector(rand[i], name=f"random{i + 1}")
        dirs[d.label], method[d.label] = d, "random (baseline)"
    latent = Latent(gen)
    z0 = sample_codes(n_reference, dim, seed + 1)
    response = factor_response(
        latent,
        predict,
        z0,
        dirs,
        strengths=(-2.0, -1.0, 1.0, 2.0),
        factor_names=names,
        categorical=categorical,
        scale=scale,
    )
    walks = {n: latent.traverse(z0[0], d, strengths=list(strengths)).outputs for n, d in dirs.items()}
    by_method: dict[str, list[float]] = {}
    for i, n in enumerate(response.directions):
        by_method.setdefault(method[n], []).append(float(response.purity[i]))
    summary = {
        "directions": len(dirs),
        "mean_purity": {m: float(np.nanmean(v)) for m, v in by_method.items()},
        "dominant": dict(zip(response.directions, response.dominant, strict=True)),
        "sefa_eigenvalue_ratio": [float(v) for v in sefa.eigenvalue_ratio_],
        "ganspace_explained_variance_ratio": [float(v) for v in gs.explained_variance_ratio_],
        "supervised_train_score": {n: float(fitted[n].train_score_) for n in dirs if method[n] == "supervised"},
        "factor_unit": "factor's std on real data per unit of z (categorical: share of predictions changed)",
    }
    return DirectionStudy(dirs, method, response, walks, tuple(float(s) for s in strengths), fitted, summary)


# ----------------------------------------------------------------------- dissection
def dissection_study(
    gen: Generator,
    *,
    data: str,
    layer: str,
    n_samples: int = 2000,
    counts: Sequence[int] | None = None,
    n_effect: int = 300,
    random_draws: int = 5,
    concepts: Sequence[str] | None = None,
    threshold: str = "iqr",
    quantile: float = 0.005,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """GAN dissection of ``layer`` (``threshold``: ``"iqr"``, the paper's rule, or
    ``"quantile"``, a per-unit top ``quantile``) on ``n_samples`` generated images, and for each chosen
    concept (default: the ones with an interpretable unit, at most three) the causal effect
    of ablating its top-k units against random units of the same count."""
    seg = concept_segmenter(data)
    # layer names are those of the user's module (as for SeFa and GANSpace); a module that
    # takes codes of another shape (z_shape) runs through the wrapper, under "module."
    model, layer = (gen.module, layer) if gen.z_shape is None else (gen, f"module.{layer}")
    dissection = GANDissection(
        model,
        layer=layer,
        segmenter=seg,
        kinds=seg.kinds,
        threshold=threshold,
        quantile=quantile,
        latent_dim=gen.latent_dim,
    ).dissect(n_samples, seed, progress=progress)
    d = dissection[dissection.layer]
    if concepts is None:
        hit = [d.labels[u] for u in range(d.n_units) if bool(d.interpretable[u])]
        ranked = sorted(set(hit), key=lambda c: -hit.count(c))
        concepts = [c for c in ranked if c != "background"][:3] or list(dissection.concepts[:1])
    unknown = [c for c in concepts if c not in dissection.concepts]
    if unknown:
        raise ConfigError(f"unknown concepts {unknown}; the segmenter gives {', '.join(dissection.concepts)}")
    intervention = UnitIntervention(model, layer=layer, segmenter=seg, latent_dim=gen.latent_dim)
    curves = {
        c: intervention.ace_curve(
            dissection, c, counts=counts, n_samples=n_effect, seed=seed, random_draws=random_draws, progress=progress
        )
        for c in concepts
    }
    return {"dissection": dissection, "curves": curves, "segmenter": seg}


# ----------------------------------------------------------------------- metrics
def metrics_study(
    gen: Generator,
    *,
    data: str,
    n_fake: int = 10_000,
    real: str | Tensor = "heldout",
    features: tuple[nn.Module, str | None] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """FID, KID, precision/recall, density/coverage and (with the bundled classifier) the
    inception score of ``n_fake`` generated samples against the real ``real`` part
    (``"heldout"`` or ``"train"``) of ``data`` or the real images given, with bootstrap
    intervals, on the bundled feature extractor of the data (or ``features = (model, layer)``)."""
    if isinstance(real, Tensor):
        images, which = real, "given"
    elif real in ("heldout", "train"):
        n = 5000 if data == "scenes" else None
        part = real_data(data, n_train=n, n_heldout=n)
        images, which = (part.heldout if real == "heldout" else part.train), str(real)
    else:
        raise ConfigError(f"real must be 'heldout', 'train' or a tensor of real images, got {real!r}")
    model, layer = features if features is not None else feature_model(data)
    extractor = FeatureExtractor(model, layer=layer)
    classifier = _classifier(data) if features is None else None
    fake = Latent(gen).decode(sample_codes(n_fake, gen.latent_dim, seed + 2))
    quality = SampleQuality(extractor, classifier=classifier, bootstrap=bootstrap, seed=seed)
    result = quality.evaluate(images, fake, progress=progress)
    return {"result": result, "n_real": int(images.shape[0]), "n_fake": int(n_fake), "real": which}


def _classifier(data: str) -> nn.Module | None:
    """The bundled classifier whose class probabilities give the inception score."""
    from seethrough import zoo

    if data == "mnist":
        return zoo.load("mnist-cnn")
    if data == "scenes":
        return _ShapeLogits(zoo.load("scenes-factors")).eval()
    return None


class _ShapeLogits(nn.Module):
    """The shape logits of the scenes' factor predictor (IS over the four shapes)."""

    def __init__(self, predictor: nn.Module) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor.split(self.predictor(x))[0]  # type: ignore[operator]


# ----------------------------------------------------------------------- recovery
def recovery_study(
    gen: Generator,
    *,
    train: Tensor,
    heldout: Tensor,
    steps: int = 300,
    restarts: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> Any:
    """The memorisation test of ``gen``: latent recovery of training vs held-out images."""
    return memorization_test(gen, train, heldout, steps=steps, restarts=restarts, seed=seed, progress=progress)


def recovery_images(name: str, n: int) -> tuple[Tensor, Tensor]:
    """``n`` training and ``n`` held-out real images of a bundled generator: for the
    memorising GAN, the digits it was trained on (its card lists them)."""
    from seethrough import zoo

    info = zoo.info(name)
    data = {"scenes-gan": "scenes"}.get(name, "mnist")
    if data == "scenes":
        part = real_data("scenes", n_train=n, n_heldout=n)
        return part.train, part.heldout
    part = real_data("mnist")
    idx = info.metrics.get("train_indices")
    train = part.train[torch.as_tensor(idx[:n])] if idx is not None else part.train[:n]
    return train, part.heldout[:n]


# ----------------------------------------------------------------------- pages
def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def plot_walks(study: DirectionStudy, *, ax: Any = None) -> Any:
    """One row of traversal images per direction (columns: the strengths)."""
    import matplotlib.pyplot as plt

    from seethrough.report.plot import image_for_display

    names = list(study.walks)
    cols = len(study.strengths)
    fig, axes = plt.subplots(len(names), cols, figsize=(0.9 * cols + 1.6, 0.9 * len(names) + 0.4), squeeze=False)
    for i, n in enumerate(names):
        imgs = study.walks[n]
        for j in range(cols):
            a = axes[i][j]
            a.imshow(image_for_display(imgs[j]), cmap="gray" if imgs.shape[1] == 1 else None, vmin=0, vmax=1)
            a.set_xticks([])
            a.set_yticks([])
            if i == 0:
                a.set_title(f"{study.strengths[j]:+g}", fontsize=7)
        axes[i][0].set_ylabel(f"{n}\n({study.method[n]})", fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2)
    return fig


def write_directions(out: Any, study: DirectionStudy, *, title: str) -> Any:
    """``directions.json``, ``response.safetensors``, ``response.png``, ``traversals.png`` and
    ``directions.html``."""
    from pathlib import Path

    from seethrough.report.html import HtmlReport

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "directions.json").write_text(json.dumps(_jsonable(dict(study.summary)), indent=2) + "\n")
    study.response.save(out / "response.safetensors")
    study.response.plot().savefig(out / "response.png", dpi=100, bbox_inches="tight")
    grid = plot_walks(study)
    grid.savefig(out / "traversals.png", dpi=100, bbox_inches="tight")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_paragraph(
        "Each row moves one code along one direction (strengths in units of z). The table says how much each factor "
        "of the generated images changes per unit of strength (read by the bundled factor predictor; continuous "
        "factors in units of their spread on real data, categorical ones as the share of predictions that change) "
        "and each direction's purity (the share of its response taken by its strongest factor)."
    )
    report.add_table(
        [{"method": m, "mean purity": v} for m, v in study.summary["mean_purity"].items()],
        caption="Mean purity per method",
    )
    report.add_figure(grid, caption="Traversals: one row per direction")
    report.add_html(study.response.to_html())
    return report.save(out / "directions.html")


def write_dissection(out: Any, study: Mapping[str, Any], *, title: str) -> Any:
    """``dissection.safetensors``, ``dissection.json``, ``ace-<concept>.png`` and ``dissection.html``."""
    from pathlib import Path

    from seethrough.report.html import HtmlReport

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dissection = study["dissection"]
    dissection.save(out / "dissection.safetensors")
    summary = {
        "summary": dissection.summary(),
        "units": dissection.table(interpretable_only=True),
        "curves": {c: curve.rows() for c, curve in study["curves"].items()},
    }
    (out / "dissection.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_html(dissection.to_html())
    for concept, curve in study["curves"].items():
        slug = "".join(ch if ch.isalnum() else "-" for ch in concept)
        curve.plot().savefig(out / f"ace-{slug}.png", dpi=100, bbox_inches="tight")
        report.add_html(curve.to_html())
    return report.save(out / "dissection.html")


def write_metrics(out: Any, study: Mapping[str, Any], *, title: str) -> Any:
    """``metrics.json``, ``metrics.safetensors`` and ``metrics.html``."""
    from pathlib import Path

    from seethrough.report.html import HtmlReport

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = study["result"]
    result.save(out / "metrics.safetensors")
    info = {"n_real": study["n_real"], "n_fake": study["n_fake"], "real": study["real"], "metrics": result.rows()}
    (out / "metrics.json").write_text(json.dumps(_jsonable(info), indent=2) + "\n")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_paragraph(
        f"{study['n_fake']} generated samples against {study['n_real']} real ({study['real']}) samples; intervals "
        "from bootstrap resamples of both sets."
    )
    report.add_html(result.to_html())
    return report.save(out / "metrics.html")


def write_recovery(out: Any, result: Any, *, title: str) -> Any:
    """``recovery.json``, ``recovery.safetensors``, ``recovery.png`` and ``recovery.html``."""
    from pathlib import Path

    from seethrough.report.html import HtmlReport

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "recovery.safetensors")
    info = {"test": result.summary(), "sets": result.rows()}
    (out / "recovery.json").write_text(json.dumps(_jsonable(info), indent=2) + "\n")
    result.plot().savefig(out / "recovery.png", dpi=100, bbox_inches="tight")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_html(result.to_html())
    return report.save(out / "recovery.html")
