"""The main jobs behind the CLI: the demo report and explaining a user's model."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .._core.errors import ConfigError
from .._core.result import Explanation
from .._core.targets import TargetLike
from ..attribution.registry import METHODS, build_method, get_method
from .html import HtmlReport

__all__ = ["run_methods", "demo_report", "explain_report", "save_maps"]


def run_methods(
    model: nn.Module,
    inputs: Tensor,
    methods: Sequence[str],
    *,
    target: TargetLike = None,
    layer=None,
    settings: dict[str, dict] | None = None,
    feature_mask: Tensor | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Explanation]:
    """Run registered methods by name on the same inputs and target. Mask-based methods
    get ``feature_mask`` (default: :func:`~seethrough.attribution.masks.default_feature_mask`)."""
    from ..attribution.masks import default_feature_mask

    settings = settings or {}
    out: dict[str, Explanation] = {}
    for name in methods:
        spec = get_method(name)
        if progress:
            progress(spec.name)
        method = build_method(spec.name, model, layer=layer, **settings.get(spec.name, {}))
        kwargs = {}
        if spec.takes_feature_mask:
            kwargs["feature_mask"] = feature_mask if feature_mask is not None else default_feature_mask(inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            out[spec.name] = method.attribute(inputs, target=target, **kwargs)
    return out


def save_maps(explanations: dict[str, Explanation], path: str | Path) -> Path:
    """Write every method's attributions to one ``.safetensors`` file, or a folder of
    ``<method>.npy`` files when ``path`` has no ``.safetensors`` suffix."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: e.attributions.detach().cpu().contiguous() for k, e in explanations.items()}, str(path))
        return path
    import numpy as np

    path.mkdir(parents=True, exist_ok=True)
    for k, e in explanations.items():
        np.save(path / f"{k}.npy", e.attributions.detach().cpu().numpy())
    return path


def _timing_rows(explanations: dict[str, Explanation]) -> list[dict]:
    rows = []
    for name, e in explanations.items():
        row = {
            "method": name,
            "seconds": f"{e.seconds:.3f}",
            "model evaluations": e.n_evaluations,
            "settings": ", ".join(f"{k}={v}" for k, v in e.settings.items()),
        }
        if e.delta is not None:
            gap = (e.scores - e.extras["baseline_scores"]).abs().clamp(min=1e-12)
            row["completeness |delta| / |F(x)-F(x')|"] = f"{float((e.delta.abs() / gap).max()):.2e} (max)"
        rows.append(row)
    return rows


def demo_report(
    out_dir: str | Path = "reports/demo",
    *,
    n_images: int = 6,
    methods: Sequence[str] | None = None,
    seed: int = 12345,
    progress: Callable[[str], None] | None = None,
    model_sections: bool = True,
) -> Path:
    """Explain held-out images of the bundled shapes model with every method; write
    ``index.html`` into ``out_dir`` and return its path. ``model_sections`` adds the trust
    reports (linked), feature visualization, the atlas (linked), influence and concepts."""
    from .. import zoo
    from ..data.shapes import make_shapes

    if n_images < 1:
        raise ConfigError("n_images must be at least 1")
    methods = list(methods or METHODS)
    info = zoo.info("shapes-cnn")
    model = zoo.load("shapes-cnn")
    data = make_shapes(n_images, seed=seed)
    with torch.no_grad():
        logits = model(data.images)
    layer = info.default_cam_layer
    explanations = run_methods(model, data.images, methods, target=None, layer=layer, progress=progress)

    report = HtmlReport("seethrough demo: the bundled shapes model")
    acc = info.metrics.get("test_accuracy")
    report.add_paragraph(
        f"Model 'shapes-cnn' ({info.architecture}), trained on synthetic images whose class is "
        f"decided only by the object's shape"
        + (f"; held-out accuracy {100 * acc:.1f}%." if acc is not None else ".")
        + f" {n_images} held-out images (seed {seed}), each with its ground-truth evidence mask. "
        f"Every map explains the predicted class's logit. Grad-CAM-family maps use layer "
        f"{layer!r}."
    )
    report.add_heading("Maps per method")
    report.add_method_grid(
        data.images,
        explanations,
        masks=data.masks,
        predictions=logits,
        labels=data.labels,
        class_names=list(data.classes),
    )
    report.add_heading("Run time and settings")
    report.add_table(_timing_rows(explanations))

    shortcut_section(report, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model_sections:
        _model_sections(report, out, progress=progress)
    return report.save(out / "index.html")


def _model_sections(report: HtmlReport, out: Path, *, progress=None) -> None:
    """The demo beyond single maps: the trust reports, then the model itself (feature
    visualization, the atlas, influence, concepts)."""
    from ..atlas._report import atlas_section
    from ..concepts._report import dissection_section, tcav_section
    from ..evaluation._report import trust_section
    from ..featurevis._report import featurevis_section
    from ..influence._report import influence_section

    say = progress or (lambda _s: None)
    trust_section(report, out, progress=say)
    say("feature visualization")
    featurevis_section(report, progress=say)
    say("influence")
    influence_section(report, progress=say)
    say("TCAV")
    tcav_section(report, progress=say)
    say("network dissection")
    dissection = dissection_section(report, progress=say)
    say("atlas")
    # The atlas covers the dissected (post-ReLU) layers and shows their labels.
    atlas_section(report, out, progress=say, layers=list(dissection.layers), unit_labels=dissection.unit_labels())


def shortcut_section(report: HtmlReport, *, n_images: int = 4, seed: int = 777, progress=None) -> None:
    """The planted-shortcut model on marked test images: what explanations are for."""
    from .. import zoo
    from ..data.shapes import make_shapes

    if "shapes-cnn-shortcut" not in zoo.available():
        return
    info = zoo.info("shapes-cnn-shortcut")
    model = zoo.load("shapes-cnn-shortcut")
    data = make_shapes(n_images, seed=seed, shortcut=True)
    with torch.no_grad():
        logits = model(data.images)
    expl = run_methods(
        model, data.images, ["integrated_gradients", "gradcam"], layer=info.default_cam_layer, progress=progress
    )
    report.add_heading("A planted shortcut")
    m = info.metrics
    report.add_paragraph(
        "Model 'shapes-cnn-shortcut' was trained on images carrying a small class-specific "
        "mark away from the object. "
        + (
            f"On clean test images it reaches {100 * m['test_accuracy_clean']:.1f}%, on marked "
            f"ones {100 * m['test_accuracy_marked']:.1f}%: it reads the mark. "
            if "test_accuracy_clean" in m and "test_accuracy_marked" in m
            else ""
        )
        + "A trustworthy explanation must point at the mark (outlined), not at the object."
    )
    report.add_method_grid(
        data.images,
        expl,
        masks=data.shortcut_masks,
        predictions=logits,
        labels=data.labels,
        class_names=list(data.classes),
    )


def explain_report(
    model: nn.Module,
    inputs: Tensor,
    methods: Sequence[str],
    *,
    target: TargetLike = None,
    layer=None,
    class_names: Sequence[str] | None = None,
    title: str = "seethrough explanation",
    html: str | Path | None = None,
    maps: str | Path | None = None,
    feature_mask: Tensor | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Explanation]:
    """Explain ``inputs`` with ``methods``; write an HTML report and/or the raw maps."""
    start = time.perf_counter()
    explanations = run_methods(
        model, inputs, methods, target=target, layer=layer, feature_mask=feature_mask, progress=progress
    )
    if html is not None:
        with torch.no_grad():
            logits = model(inputs)
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        report = HtmlReport(title)
        report.add_paragraph(
            f"{inputs.shape[0]} input(s) of shape {tuple(inputs.shape[1:])}; target: "
            f"{next(iter(explanations.values())).target}; total time "
            f"{time.perf_counter() - start:.2f} s."
        )
        report.add_method_grid(
            inputs, explanations, predictions=logits if logits.dim() == 2 else None,
            class_names=list(class_names) if class_names else None,
        )
        report.add_heading("Run time and settings")
        report.add_table(_timing_rows(explanations))
        Path(html).parent.mkdir(parents=True, exist_ok=True)
        report.save(html)
    if maps is not None:
        save_maps(explanations, maps)
    return explanations
