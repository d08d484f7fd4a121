"""The demo's generative page (``generative.html``, linked from the index): the Peptide
Sampler on the bundled peptide WAE and modlamp's real peptides, image latents of the
bundled VAEs scored against the true factors of the scenes, and creative decoding checked
by subset scanning, and the GAN section (:mod:`seethrough.app.demo.gan`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seethrough.report.html import HtmlReport

__all__ = ["generative_section", "generative_page"]

#: two antimicrobial peptides of the held-out split that the demo interpolates between
_PEPTIDE_A = "GLFDIVKKVVGALGSL"
_PEPTIDE_B = "KWKLFKKIEKVGQNIRDG"


def _rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"measure": k, "value": v} for k, v in d.items() if not isinstance(v, (dict, list))]


def peptide_section(report: HtmlReport, *, say: Callable[[str], None]) -> None:
    from seethrough import zoo
    from seethrough.app.peptides import PeptideLab
    from seethrough.generative import Condition

    if "peptide-wae" not in zoo.available() or not (zoo.WEIGHTS_DIR / "peptide-wae.safetensors").is_file():
        return
    say("peptide sampler")
    t0 = time.perf_counter()
    lab = PeptideLab.build("peptide-wae")
    report.add_heading("The Peptide Sampler (peptide-wae, real peptides from modlamp)")
    card = zoo.info("peptide-wae").metrics
    report.add_paragraph(
        f"A GRU Wasserstein autoencoder (latent {zoo.info('peptide-wae').latent_dim}) trained on "
        f"{lab.metrics['n_train']} of modlamp's {lab.metrics['n_sequences']} peptides (length <= 40); held-out "
        f"per-token reconstruction accuracy {card.get('test_token_accuracy', float('nan')):.3f}. The latent "
        "classifiers (amp_z, acp_z) and descriptor regressors (charge_z, ...) read z; the sequence classifiers "
        "(amp_seq, acp_seq) read the decoded sequence only, and modlamp computes the descriptors."
    )
    report.add_table(
        _rows(lab.metrics), caption="Held-out scores of the probes (AUC for activities, R² for descriptors)"
    )
    walk = lab.interpolate(_PEPTIDE_A, _PEPTIDE_B, steps=8, method="slerp")
    report.add_heading("Interpolation (spherical, 8 steps)", level=3)
    report.add_html(walk.to_html())
    report.add_heading("Traversal along the charge regressor's direction", level=3)
    report.add_html(lab.traverse(_PEPTIDE_A, "charge", strengths=[-2, -1, 0, 1, 2]).to_html())
    conds = [Condition.parse("amp > 0.8"), Condition.parse("charge in [2, 6]")]
    samples, cond = lab.sample(conds, n=100, max_candidates=20_000, seed=0)
    base, uncond = lab.sample([], n=100, seed=1)
    uncond["decoded_meets"] = dict(base.check([lab.decoded_condition(c) for c in conds]))
    rows = []
    for name, s in (("conditioned (amp > 0.8, charge in [2, 6])", cond), ("unconditioned", uncond)):
        rows.append(
            {
                "run": name,
                "accepted": s["accepted"],
                "acceptance": s["acceptance_rate"],
                "validity": s["validity"],
                "uniqueness": s["uniqueness"],
                "novel": s["novelty"]["novelty"],
                **{f"decoded {k}": v for k, v in s["decoded_meets"].items()},
            }
        )
    report.add_heading("Attribute-conditioned sampling (CLaSS)", level=3)
    report.add_paragraph(
        "Candidates drawn from a 10-component Gaussian mixture of the aggregate posterior, accepted when the latent "
        "scores meet the conditions; the decisive columns check the decoded sequences with the independent "
        "sequence classifier and modlamp's charge."
    )
    report.add_table(rows)
    report.add_html(samples.table.take(list(range(min(12, len(samples))))).to_html())
    report.add_paragraph(f"Section computed in {time.perf_counter() - t0:.0f} s.")


def image_section(report: HtmlReport, *, say: Callable[[str], None]) -> None:
    from seethrough import zoo
    from seethrough.app.latents import factor_scores, image_traversal
    from seethrough.data.mnist import mnist_split
    from seethrough.generative import Latent

    if not (zoo.WEIGHTS_DIR / "scenes-vae.safetensors").is_file():
        return
    say("image latents")
    t0 = time.perf_counter()
    report.add_heading("Image latents (mnist-vae, scenes-vae)")
    mnist = zoo.load("mnist-vae")
    x = mnist_split(seed=0).x_test
    walk = Latent(mnist).interpolate(x[0:1], x[1:2], steps=8, method="slerp")
    report.add_figure(walk.plot(), caption="mnist-vae: spherical interpolation between two held-out digits")
    latent_attribution_table(report, mnist, x[:4])
    scenes = zoo.load("scenes-vae")
    from seethrough.app.latents import factor_scenes

    imgs, _, _ = factor_scenes(200)
    for d in ("pc1", "x", "scale"):
        t = image_traversal(scenes, imgs, imgs[0:1], d, [-2, -1, 0, 1, 2])
        report.add_figure(t.plot(), caption=f"scenes-vae: traversal along {d} (strengths in the codes' std along it)")
    scores = factor_scores(scenes, n=1000)
    report.add_paragraph(
        "Every principal axis and every linear-probe direction of the scenes-vae codes, moved by -2..2 of the codes' "
        "spread along it; the bundled scenes-factors CNN reads the factors of the decoded images. A row that "
        "moves one factor only has purity 1."
    )
    report.add_html(scores["response"].to_html())
    s = scores["summary"]
    report.add_table(
        [{"MIG": s["mig"], **{f"DCI {k}": v for k, v in s["dci"].items()}}],
        caption="Disentanglement of the scenes-vae codes against the known factors (1000 held-out scenes)",
    )
    report.add_paragraph(f"Section computed in {time.perf_counter() - t0:.0f} s.")


def latent_attribution_table(report: HtmlReport, model: Any, images: Any) -> None:
    """IG through the decoder: which latent dimensions make the top half of each decoded
    digit bright, with the completeness delta."""
    import torch

    from seethrough import Region
    from seethrough.generative import Latent, LatentAttribution

    z = Latent(model).encode(images)
    mask = torch.zeros(1, 28, 28, dtype=torch.bool)
    mask[:, :14] = True
    e = LatentAttribution(model, method="integrated_gradients", steps=64).attribute(z, target=Region(mask))
    a = e.attributions
    rows = []
    for i in range(a.shape[0]):
        top = a[i].abs().argsort(descending=True)[:3].tolist()
        rows.append(
            {
                "digit": i,
                "top dimensions (|IG|)": ", ".join(f"z{k} ({float(a[i, k]):+.3f})" for k in top),
                "sum of attributions": float(a[i].sum()),
                "completeness delta": float(e.delta[i]) if e.delta is not None else float("nan"),
            }
        )
    report.add_table(
        rows,
        caption="Integrated gradients through the decoder (64 steps, zero code as baseline): the latent dimensions "
        "that drive the mean brightness of the top half of each decoded held-out digit",
    )


def creative_section(report: HtmlReport, *, say: Callable[[str], None]) -> None:
    from seethrough import zoo
    from seethrough.app.creative import add_scan_figures, bundled_study

    if not (zoo.WEIGHTS_DIR / "mnist-vae.safetensors").is_file():
        return
    say("creative decoding and subset scanning")
    t0 = time.perf_counter()
    study = bundled_study("mnist-vae", n=100, n_train=500)
    st = study.settings
    report.add_heading("Creative decoding and subset scanning (mnist-vae, scanned by mnist-cnn)")
    report.add_paragraph(
        f"{st['low_active_units']} of the {st['units_in_layer']} units of {st['layer']} are active on at most 10% "
        f"of the training codes; creative samples set {st['n_units']} of them to {st['strength']} x the layer's "
        f"high activation. Subset scanning of mnist-cnn's {st['detector_layer']} ({st['nodes']} nodes) against "
        f"{st['n_background']} real training digits gives each sample a Berk-Jones score."
    )
    report.add_figure(study.samples.plot(), caption="normal, control (random units) and creative decodings")
    report.add_table([{"group": g, "AUC vs held-out real": a} for g, a in study.auc.items()])
    add_scan_figures(report, study)
    report.add_paragraph(f"Section computed in {time.perf_counter() - t0:.0f} s.")


def generative_page(out: Path, *, progress: Callable[[str], None] | None = None) -> Path:
    say = progress or (lambda _s: None)
    page = HtmlReport("seethrough demo: generative models")
    peptide_section(page, say=say)
    image_section(page, say=say)
    creative_section(page, say=say)
    from .gan import gan_section

    gan_section(page, say=say)
    return page.save(out / "generative.html")


def generative_section(report: HtmlReport, out: Path, *, progress: Callable[[str], None] | None = None) -> Path:
    """Write ``generative.html`` and link it from ``report``."""
    path = generative_page(out, progress=progress)
    report.add_heading("Generative models")
    report.add_html(
        '<p><a href="generative.html"><strong>Open the generative page</strong></a>: the Peptide Sampler '
        "(interpolation table, conditioned sampling), image latents scored against known factors, creative "
        "decoding and subset scanning, and GANs: directions scored against the true factors, dissection with causal "
        "ablation, sample quality and latent recovery.</p>"
    )
    return path
