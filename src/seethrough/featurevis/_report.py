"""Feature visualizations in HTML reports: an image grid, and the demo section."""

from __future__ import annotations

import html as _html
import time
from typing import Callable, Sequence

import torch

from ..report.html import HtmlReport
from ..report.plot import array_to_png, png_data_uri
from .objectives import ClassLogit
from .render import FeatureVisualization, FeatureVisualizer

__all__ = ["image_grid_html", "add_visualization", "featurevis_section"]


def image_grid_html(images: torch.Tensor, captions: Sequence[str], *, src: Sequence[str] | None = None) -> str:
    """A wrapping grid of images (``(K, C, H, W)`` in [0, 1]) with captions. With
    ``src`` the images are linked files (relative paths); otherwise they are embedded."""
    cells = []
    for k, cap in enumerate(captions):
        if src is not None:
            uri = _html.escape(str(src[k]), quote=True)
        else:
            uri = png_data_uri(array_to_png(images[k].detach().cpu().clamp(0, 1), min_size=128))
        text = _html.escape(str(cap))
        cells.append(
            f'<figure class="st-sample"><img class="st-img" src="{uri}" alt="{text}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    return '<div class="st-samples">' + "".join(cells) + "</div>"


def _captions(vis: FeatureVisualization, labels: Sequence[str] | None = None) -> list[str]:
    out = []
    for k in range(len(vis)):
        head = labels[k] if labels is not None else (
            f"channel {vis.channels[k]}" if vis.channels is not None else vis.objectives[k]
        )
        out.append(f"{head} (objective {float(vis.scores[k]):.3g})")
    return out


def add_visualization(
    report: HtmlReport, vis: FeatureVisualization, *, labels: Sequence[str] | None = None,
    src: Sequence[str] | None = None,
) -> HtmlReport:
    """Add ``vis`` as an image grid, captioned by channel (or objective) and final
    objective value, followed by a line of its settings."""
    report.add_html(image_grid_html(vis.images, _captions(vis, labels), src=src))
    s = vis.settings
    first, last = vis.history[0].mean().item(), vis.history[-1].mean().item()
    report.add_paragraph(
        f"{len(vis)} image(s), {s['size'][0]}x{s['size'][1]}, {s['steps']} Adam steps (lr {s['lr']:g}, "
        f"seed {s['seed']}), {s['param']['space']} parameterization, redirected ReLU for the first "
        f"{s['redirect_relu_steps']} steps; mean objective {first:.3g} at the first step, {last:.3g} at "
        f"the last; {vis.seconds:.1f} s."
    )
    return report


def featurevis_section(
    report: HtmlReport, *, progress: Callable[[str], None] | None = None, steps: int = 96
) -> None:
    """Feature visualizations of the bundled ``shapes-cnn``: every channel of the first
    block (``features.5``), the 4 channels of the last layer (``features.16``) that the
    classifier weighs most for each class, and one image per class logit."""
    from .. import zoo

    start = time.perf_counter()
    model = zoo.load("shapes-cnn")
    info = zoo.info("shapes-cnn")
    fv = FeatureVisualizer(model, steps=steps, seed=0)

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

    weights = model.classifier.weight.detach()  # (classes, 128)
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
    vis = fv.render([ClassLogit(c) for c in range(len(info.classes))])
    add_visualization(report, vis, labels=[f"class {n}" for n in info.classes])
    report.add_paragraph(f"Feature visualization section: {time.perf_counter() - start:.1f} s in all.")
