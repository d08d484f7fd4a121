"""``seethrough demo``: the bundled model explained by every method, with the trust,
feature-visualization, atlas, influence and concept sections, as one offline HTML report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from seethrough._core.errors import ConfigError
from seethrough.app.runs import run_methods, timing_rows
from seethrough.attribution.registry import METHODS
from seethrough.report.html import HtmlReport

__all__ = ["demo_report"]


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
    reports (linked), feature visualization, the atlas (linked), influence, concepts and the
    generative page (linked)."""
    from seethrough import zoo
    from seethrough.data.shapes import make_shapes

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
    report.add_table(timing_rows(explanations))

    shortcut_section(report, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model_sections:
        _model_sections(report, out, progress=progress)
    return report.save(out / "index.html")


def _model_sections(report: HtmlReport, out: Path, *, progress=None) -> None:
    """The demo beyond single maps: the trust reports, then the model itself (feature
    visualization, the atlas, influence, concepts)."""
    from seethrough.app.demo.atlas import atlas_section
    from seethrough.app.demo.concepts import dissection_section, tcav_section
    from seethrough.app.demo.featurevis import featurevis_section
    from seethrough.app.demo.generative import generative_section
    from seethrough.app.demo.influence import influence_section
    from seethrough.app.demo.text import language_section
    from seethrough.app.demo.trust import trust_section

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
    say("generative models")
    generative_section(report, out, progress=say)
    say("language models")
    language_section(report, out, progress=say)


def shortcut_section(report: HtmlReport, *, n_images: int = 4, seed: int = 777, progress=None) -> None:
    """The planted-shortcut model on marked test images: what explanations are for."""
    from seethrough import zoo
    from seethrough.data.shapes import make_shapes

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
