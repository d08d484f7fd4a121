"""The demo's trust section: trust reports of the bundled shapes model (ground truth: the
object) and of its planted-shortcut variant (ground truth: the mark), linked from the demo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from seethrough.evaluation.trust import trust_report

__all__ = ["trust_section", "DEMO_METHODS", "DEMO_SETTINGS"]

#: Methods of the demo's trust reports (integrated gradients with 16 Gauss-Legendre steps:
#: the sanity check and the sensitivities re-explain it hundreds of times).
DEMO_METHODS = ("saliency", "guided_backprop", "integrated_gradients:16", "gradcam")
#: Fewer re-explanations than the paper's 50 keep the demo near a minute; stated in the page.
DEMO_SETTINGS = {"max_sensitivity": {"n_samples": 10}, "avg_sensitivity": {"n_samples": 10}}


def _demo_method(spec):
    """``"name:steps"`` builds integrated gradients with fewer steps; other names pass through."""
    if isinstance(spec, str) and spec.startswith("integrated_gradients:"):
        from seethrough.attribution import IntegratedGradients

        steps = int(spec.split(":", 1)[1])
        return lambda m: IntegratedGradients(m, steps=steps)
    return spec


def _label(spec) -> str:
    return spec.replace(":", " with ") + " steps" if isinstance(spec, str) and ":" in spec else str(spec)


def trust_section(
    report,
    out_dir: str | Path,
    *,
    n_images: int = 6,
    seed: int = 0,
    methods=DEMO_METHODS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write ``trust.html`` (shapes-cnn, object masks, with the data randomization check) and
    ``trust-shortcut.html`` (shapes-cnn-shortcut on marked images, mark masks) into
    ``out_dir``; add a summary with links to ``report``. Returns the written paths."""
    from seethrough import zoo
    from seethrough.data.shapes import make_shapes

    out = Path(out_dir)
    say = progress or (lambda _s: None)
    methods = [_demo_method(m) for m in methods]
    info = zoo.info("shapes-cnn")
    written: dict[str, Path] = {}
    settings = {k: dict(v) for k, v in DEMO_SETTINGS.items()}

    data = make_shapes(n_images, seed=10_000 + seed)
    rl = zoo.load("shapes-cnn-random-labels") if "shapes-cnn-random-labels" in zoo.available() else None
    say("trust report: shapes-cnn")
    clean = trust_report(
        zoo.load("shapes-cnn"),
        data.images,
        list(methods),
        masks=data.masks,
        layer=info.default_cam_layer,
        metric_settings=settings,
        random_label_model=rl,
        class_names=list(data.classes),
        seed=seed,
        progress=lambda s: say(f"trust: {s}"),
        title="Trust report: shapes-cnn (ground truth: the object)",
    )
    written["shapes-cnn"] = clean.save(out / "trust.html")

    short = None
    if "shapes-cnn-shortcut" in zoo.available():
        sdata = make_shapes(n_images, seed=20_000 + seed, shortcut=True)
        say("trust report: shapes-cnn-shortcut")
        short = trust_report(
            zoo.load("shapes-cnn-shortcut"),
            sdata.images,
            list(methods),
            masks=sdata.shortcut_masks,
            layer=info.default_cam_layer,
            families=("localization", "complexity"),
            randomization=False,
            class_names=list(sdata.classes),
            seed=seed,
            progress=lambda s: say(f"trust: {s}"),
            title="Trust report: shapes-cnn-shortcut (ground truth: the planted mark)",
        )
        written["shapes-cnn-shortcut"] = short.save(out / "trust-shortcut.html")

    report.add_heading("Can these maps be trusted?")
    report.add_paragraph(
        f"Every metric of seethrough.evaluation for {', '.join(_label(m) for m in methods)} on {n_images} "
        f"held-out images of shapes-cnn: "
        f"sanity checks (model and data randomization), faithfulness, robustness (sensitivity with "
        f"{DEMO_SETTINGS['max_sensitivity']['n_samples']} perturbations per image instead of the paper's 50, "
        f"to keep the demo short), localization against the ground truth, and complexity. For the "
        f"planted-shortcut model, localization against the mark it relies on: a trustworthy map points "
        f"at the mark, not at the object. `seethrough trust` runs the full protocol."
    )
    report.add_html(
        '<p><a href="trust.html">Full trust report: shapes-cnn, ground truth = the object</a>'
        + (' · <a href="trust-shortcut.html">shapes-cnn-shortcut, ground truth = the planted mark</a>' if short else "")
        + "</p>"
    )
    rows = []
    for label, rep in (("shapes-cnn", clean), ("shapes-cnn-shortcut", short)):
        if rep is None:
            continue
        for m in rep.methods:
            row: dict[str, object] = {"model": label, "method": m}
            for fam, ranks in rep.rankings.items():
                row[f"{fam} rank"] = ranks[m]
            if "relevance_mass_accuracy" in rep.results.get(m, {}):
                row["relevance mass in ground truth"] = rep.value(m, "relevance_mass_accuracy")
            if m in rep.sanity:
                row["randomization verdict"] = "PASS" if rep.sanity[m].passed else "FAIL"
            rows.append(row)
    report.add_table(rows, caption="mean rank per metric family (1 = best) and the cascading-randomization verdict")
    return written
