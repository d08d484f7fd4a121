"""The demo's sanity-check section."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from seethrough.evaluation.randomization import ModelRandomizationCheck, data_randomization_check
from seethrough.evaluation.views import plot_randomization_curves, plot_randomization_examples

__all__ = ["sanity_section"]


def sanity_section(
    report,
    *,
    n_images: int = 8,
    seed: int = 4242,
    methods: Sequence[str] = ("saliency", "guided_backprop", "gradcam"),
    progress: Callable[[str], None] | None = None,
) -> None:
    """Add the sanity checks of the bundled shapes model to an :class:`~seethrough.report.html.HtmlReport`:
    cascading model randomization of each method (curves, example maps, verdicts), and the
    data randomization check when the zoo has ``shapes-cnn-random-labels``."""
    from seethrough import zoo
    from seethrough.data.shapes import make_shapes

    info = zoo.info("shapes-cnn")
    model = zoo.load("shapes-cnn")
    data = make_shapes(n_images, seed=seed)
    layer = info.default_cam_layer
    report.add_heading("Sanity checks: does the explanation depend on the model?")
    report.add_paragraph(
        f"Adebayo et al. (2018): the layers of a copy of 'shapes-cnn' are re-initialised from the output "
        f"layer back to the input (cascading), and each method re-explains the predicted class of the "
        f"original model on {n_images} held-out images (seed {seed}). A map that stays similar to the "
        f"original while the network is destroyed does not show what the model learned. PASS: the mean "
        f"similarity after full randomization is below the threshold."
    )
    rows = []
    for name in methods:
        if progress is not None:
            progress(f"sanity check: {name}")
        settings = {"layer": layer} if name in ("gradcam", "guided_gradcam", "gradcam_pp") else None
        res = ModelRandomizationCheck(name, method_settings=settings, n_examples=3).run(model, data.images)
        for r in res.table():
            rows.append({"method": name, "check": "cascading", **r})
        report.add_figure(plot_randomization_curves(res), caption=f"{name}: similarity after each stage")
        report.add_figure(plot_randomization_examples(res, max_stages=6), caption=f"{name}: example maps")
    if "shapes-cnn-random-labels" in zoo.available():
        try:
            random_model = zoo.load("shapes-cnn-random-labels")
        except FileNotFoundError:
            random_model = None
        if random_model is not None:
            for name in methods:
                settings = {"layer": layer} if name in ("gradcam", "guided_gradcam", "gradcam_pp") else None
                res = data_randomization_check(name, model, random_model, data.images, method_settings=settings)
                for r in res.table():
                    rows.append({"method": name, "check": "data (random labels)", **r})
    report.add_table(rows, caption="Similarity after randomization (lower: the map depends more on the model)")
