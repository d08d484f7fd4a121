"""The demo's GAN section (on the generative page): directions of the bundled scenes GAN
found three ways and scored against the true factors, dissection of one of its layers with
the causal effect of ablating the labelled units, the sample quality of the bundled GANs,
and latent recovery of the normal and the memorising MNIST GANs. Small sample counts keep it
to about a minute; the ``seethrough gan`` commands run the full sizes."""

from __future__ import annotations

import time
from collections.abc import Callable

from seethrough.report.html import HtmlReport

__all__ = ["gan_section"]


def gan_section(report: HtmlReport, *, say: Callable[[str], None]) -> None:
    from seethrough.app.gans import (
        DEFAULT_LAYERS,
        direction_study,
        dissection_study,
        metrics_study,
        plot_walks,
        recovery_images,
        recovery_study,
    )
    from seethrough.app.generators import GeneratorSpec

    t0 = time.perf_counter()
    report.add_heading("GANs: directions, dissection, sample quality and memorisation")
    scenes = GeneratorSpec("scenes-gan").load()

    say("GAN directions (SeFa, GANSpace, supervised) vs the true factors")
    study = direction_study(scenes, data="scenes", k=4, n_samples=2000, n_reference=100, seed=0)
    report.add_paragraph(
        "Directions of the bundled scenes GAN found three ways: SeFa (eigenvectors of the first layer's weight), "
        "GANSpace (principal components of the first block's activations carried back to z) and supervised "
        "boundaries in z (InterFaceGAN) for the scale and position read by the bundled factor predictor. The table "
        "says how much each true factor changes along each direction (per unit of z; categorical factors: the "
        "share of predictions that change) and each direction's purity. Command: seethrough gan directions."
    )
    report.add_table(
        [{"method": m, "mean purity": v} for m, v in study.summary["mean_purity"].items()],
        caption="Mean purity per method (1: a direction moves one factor only)",
    )
    report.add_figure(plot_walks(study), caption="Traversals of one code, one row per direction (strength in z)")
    report.add_html(study.response.to_html())

    say("GAN dissection and causal ablation")
    layer = DEFAULT_LAYERS["scenes-gan"][1]
    dissection = dissection_study(
        scenes, data="scenes", layer=layer, n_samples=1000, counts=(1, 2, 4, 8), n_effect=150, random_draws=3, seed=0
    )
    report.add_paragraph(
        f"Units of {layer!r} labelled with the concept (from the bundled segmenter of the generated scenes) "
        "whose pixels their strongest activations overlap, then the causal test: ablating the top-k labelled units "
        "against k random units. Command: seethrough gan dissect."
    )
    report.add_html(dissection["dissection"].to_html())
    for curve in dissection["curves"].values():
        report.add_html(curve.to_html())

    say("sample quality of the bundled GANs")
    rows = []
    for name, data in (("mnist-gan", "mnist"), ("mnist-gan-memorized", "mnist"), ("scenes-gan", "scenes")):
        gen = GeneratorSpec(name).load()
        res = metrics_study(gen, data=data, n_fake=2000, bootstrap=50, seed=0)["result"]
        for row in res.rows():
            rows.append({"generator": name, **row})
    report.add_table(rows, caption="Sample quality (2,000 generated vs the held-out real images; 95% bootstrap CI)")

    say("latent recovery: normal vs memorising GAN")
    for name in ("mnist-gan", "mnist-gan-memorized"):
        train, heldout = recovery_images(name, 32)
        result = recovery_study(GeneratorSpec(name).load(), train=train, heldout=heldout, steps=150, restarts=2)
        report.add_heading(f"Latent recovery of {name}", level=3)
        report.add_html(result.to_html())
    report.add_paragraph(f"Section computed in {time.perf_counter() - t0:.0f} s.")
