"""The demo's feature-visualization section: the bundled ``shapes-cnn``'s channels and
class logits, rendered with :mod:`seethrough.featurevis`."""

from __future__ import annotations

import time
from collections.abc import Callable

from torch import nn

from seethrough.featurevis import FeatureVisualizer, class_logit
from seethrough.featurevis.views import add_visualization
from seethrough.report.html import HtmlReport

__all__ = ["featurevis_section"]


def featurevis_section(report: HtmlReport, *, progress: Callable[[str], None] | None = None, steps: int = 96) -> None:
    """Feature visualizations of the bundled ``shapes-cnn``: every channel of the first
    block (``features.5``), the 4 channels of the last layer (``features.16``) that the
    classifier weighs most for each class, and one image per class logit."""
    from seethrough import zoo

    start = time.perf_counter()
    model = zoo.load("shapes-cnn")
    info = zoo.info("shapes-cnn")
    fv = FeatureVisualizer(
        model,
        steps=steps,
        seed=0,
        input_shape=(info.input_shape[0], info.input_shape[1], info.input_shape[2]),
        mean=info.mean,
        std=info.std,
    )

    report.add_heading("Feature visualization")
    report.add_paragraph(
        "Images optimised to excite one unit of the bundled shapes model: a Fourier "
        "parameterization with decorrelated colour, random jitter, scaling and rotation at "
        "every step, and Adam on the unit's mean activation (seethrough.featurevis). Each "
        "caption gives the objective the final image reaches."
    )

    report.add_heading("First block: every channel of features.5", level=3)
    vis = fv.visualize_channels("features.5", progress=progress)
    add_visualization(report, vis)

    classifier = model.classifier
    assert isinstance(classifier, nn.Linear)  # shapes-cnn ends in one linear layer
    weights = classifier.weight.detach()  # (classes, 128)
    picks: list[int] = []
    labels: list[str] = []
    for c, name in enumerate(info.classes):
        taken = 0
        for ch in weights[c].argsort(descending=True).tolist():
            if ch in picks:
                continue
            picks.append(ch)
            labels.append(f"channel {ch}: {name} (+{float(weights[c, ch]):.2f})")
            taken += 1
            if taken == 4:
                break
    report.add_heading("Last layer: the channels each class relies on (features.16)", level=3)
    report.add_paragraph(
        "For each class, the 4 channels of the last convolutional layer with the largest "
        "positive weight in the classifier (weight in brackets)."
    )
    vis = fv.visualize_channels("features.16", picks, progress=progress)
    add_visualization(report, vis, labels=labels)

    report.add_heading("Class logits", level=3)
    if progress is not None:
        progress("featurevis: class logits")
    vis = fv.render([class_logit(c) for c in range(len(info.classes))])
    add_visualization(report, vis, labels=[f"class {n}" for n in info.classes])
    report.add_paragraph(f"Feature visualization section: {time.perf_counter() - start:.1f} s in all.")
