"""The demo's concept sections: TCAV on the bundled ``stripes-cnn`` and network dissection
of the bundled ``shapes-cnn`` (models loaded from the zoo, data generated here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from seethrough.app.concepts import run_null_check, run_tcav
from seethrough.concepts import TCAV, Dissection, DissectionResult
from seethrough.concepts.views import add_dissection, add_tcav
from seethrough.report.html import HtmlReport

__all__ = ["tcav_section", "dissection_section"]


def tcav_section(report: HtmlReport, *, progress: Callable[[str], None] | None = None) -> None:
    """TCAV on the bundled ``stripes-cnn`` (its class ``striped`` depends on stripes by
    construction, not on dots or red), with the null check of both protocols."""
    from seethrough import zoo
    from seethrough.data.concepts import concept_dataset
    from seethrough.zoo.train import TEST_SEED_OFFSET

    if "stripes-cnn" not in zoo.available():
        return
    try:
        model = zoo.load("stripes-cnn")
    except FileNotFoundError:
        return
    info = zoo.info("stripes-cnn")
    if progress:
        progress("tcav")
    t0 = time.perf_counter()
    x, y = concept_dataset(200, "stripes", seed=TEST_SEED_OFFSET)
    layer = "features.13"
    tcav = TCAV(model, layer=layer, seed=0)
    result = run_tcav(tcav, x, ["stripes", "dots", "red"], labels=y, class_names=info.classes)
    plain: dict[str, Any] = dict(min_effect=0.0, min_accuracy=0.0, seed=0)  # the t-test alone
    nulls = [
        run_null_check(
            TCAV(model, layer=layer, protocol="shared", random_runs=10, **plain), x[:100], labels=y[:100], trials=40
        ),
        run_null_check(TCAV(model, layer=layer, random_runs=10, **plain), x[:100], labels=y[:100], trials=40),
    ]
    report.add_heading("Concepts: TCAV")
    acc = info.metrics.get("test_accuracy")
    report.add_paragraph(
        "Model 'stripes-cnn' calls an image 'striped' exactly when a striped region is drawn on it; "
        "dots, colours and shapes appear equally often in both classes"
        + (f" (held-out accuracy {100 * acc:.1f}%)" if acc is not None else "")
        + ". TCAV should find 'stripes' significant for both classes (positive for 'striped', negative for "
        "'plain') and neither 'dots' nor 'red'. 200 held-out images, generated concept and random images."
    )
    add_tcav(report, result, null=nulls)
    report.add_paragraph(
        "The null check above poses random image sets as concepts (40 trials each, 10 runs, the t-test alone: "
        "no effect or accuracy filter). The paper's per-run t-test ('shared': every run reuses the same "
        "concept examples) calls many of them significant; independent runs ('disjoint', the default) keep "
        f"the rate near the level. Section computed in {time.perf_counter() - t0:.0f} s."
    )


def dissection_section(report: HtmlReport, *, progress: Callable[[str], None] | None = None) -> DissectionResult:
    """Network dissection of the bundled ``shapes-cnn`` on 300 generated scenes; returns the
    result (its ``unit_labels()`` label the demo atlas)."""
    from seethrough import zoo
    from seethrough.data.concepts import concept_scenes

    if progress:
        progress("dissection")
    t0 = time.perf_counter()
    model = zoo.load("shapes-cnn")
    scenes = concept_scenes(300, seed=0)
    layers = ["features.2", "features.9", "features.13", "features.16"]
    result = Dissection(model, layers=layers).dissect(scenes)
    report.add_heading("Concepts: network dissection")
    report.add_paragraph(
        "Each unit of four layers of 'shapes-cnn' is compared with the pixel masks of 13 concepts (colours, "
        "textures, the four shapes) on generated scenes. Early layers hold colour and texture detectors; "
        "the last layer, whose units feed the shape classifier, is dominated by shape detectors."
    )
    add_dissection(report, result, model=model, scenes=scenes, units_per_layer=2, examples=4)
    report.add_paragraph(f"Section computed in {time.perf_counter() - t0:.0f} s.")
    return result
