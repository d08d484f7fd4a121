"""Creative decoding and activation subset scanning on an image autoencoder, as one study:
the ``creative`` command and the demo run it.

1. Codes of real training images give the decoder's activation statistics; the units of
   ``layer`` that are rarely active are set high while decoding prior samples (creative),
   beside normal decoding and a control that sets as many random units of the layer.
2. A subset scanner fitted on a detector's activations over real training images scores
   held-out real images, normal samples, creative samples, control samples and noise
   images: empirical p-values per node, Berk-Jones over the most anomalous subset of nodes.
3. Detection AUC of each group against the held-out real images, and the size of the
   anomalous subset per group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seethrough._core.errors import ConfigError
from seethrough._core.seeds import generator
from seethrough.generative import CreativeDecoder, CreativeSamples, Latent, ScanResult, SubsetScanner, detection_auc

__all__ = ["CreativeStudy", "creative_study", "bundled_study", "write_creative", "DEFAULTS"]

#: the bundled set-ups: autoencoder -> (its real data, decoder layer, detector, detector layer, reduce)
DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist-vae": {
        "data": "mnist",
        "layer": "decoder.fc2",
        "detector": "mnist-cnn",
        "detector_layer": "features.6",
        "reduce": None,
    },
    "scenes-vae": {
        "data": "scenes",
        "layer": "decoder.fc2",
        "detector": "scenes-factors",
        "detector_layer": "features.4",
        "reduce": None,
    },
}


@dataclass
class CreativeStudy:
    """What :func:`creative_study` found (see the module doc)."""

    samples: CreativeSamples
    scan: ScanResult
    groups: list[str]
    auc: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        rows = self.scan.group_summary(self.groups)
        sizes = {r["group"]: {"mean": r["mean size"], "median": r["median size"]} for r in rows}
        scores = {r["group"]: r["mean score"] for r in rows}
        return {
            "settings": self.settings,
            "detection_auc_vs_real": self.auc,
            "mean_score": scores,
            "subset_size": sizes,
            "low_active_units": self.settings.get("low_active_units"),
            "creative_change": float(self.samples.creative_change.mean()),
            "control_change": float(self.samples.control_change.mean()),
        }


def _real(data: str, n_train: int, n_test: int) -> tuple[Tensor, Tensor]:
    if data == "mnist":
        from seethrough.data.mnist import mnist_split

        s = mnist_split(seed=0)
        return s.x_train[:n_train], s.x_test[:n_test]
    if data == "scenes":
        from seethrough.data.factors import make_factor_scenes

        from .data import HELD_OUT_SEED

        return make_factor_scenes(n_train, seed=0).images, make_factor_scenes(n_test, seed=HELD_OUT_SEED).images
    raise ConfigError(f"no real data called {data!r} for the creative study; use mnist or scenes")


def creative_study(
    model: nn.Module,
    detector: nn.Module,
    *,
    train_images: Tensor,
    test_images: Tensor,
    layer: str,
    detector_layer: str | None,
    reduce: str | None = "mean",
    n: int = 200,
    strength: float = 3.0,
    n_units: int = 10,
    alpha_max: float = 0.5,
    seed: int = 0,
) -> CreativeStudy:
    """Run the study on ``model`` (an image autoencoder) with ``detector`` (any image model
    whose ``detector_layer`` activations are scanned; None: the detector's output)."""
    latent = Latent(model)
    z_train = latent.encode(train_images)
    cd = CreativeDecoder(model, layer=layer).fit(z_train)
    if len(cd.low_active_units_) == 0:
        raise ConfigError(
            f"layer {layer!r} has no low-active units on the training codes; choose another decoder layer"
        )
    z = torch.randn(n, z_train.shape[1], generator=generator(seed, 1))
    samples = cd.compare(z, strength=strength, n_units=min(n_units, len(cd.low_active_units_)), seed=seed)
    noise = torch.rand((n, *test_images.shape[1:]), generator=generator(seed, 2))
    scanner = SubsetScanner(detector, layer=detector_layer, reduce=reduce, alpha_max=alpha_max).fit(train_images)
    groups = {
        "real (held out)": test_images[:n],
        "generated": samples.normal,
        "creative": samples.creative,
        "control (random units)": samples.control,
        "noise": noise,
    }
    scan = scanner.scan(torch.cat([x.float() for x in groups.values()]))
    labels = [g for g, x in groups.items() for _ in range(len(x))]
    by = {g: torch.tensor([i for i, lab in enumerate(labels) if lab == g]) for g in groups}
    real = scan.scores[by["real (held out)"]]
    auc = {g: float(detection_auc(real, scan.scores[i])) for g, i in by.items() if g != "real (held out)"}
    settings = {
        "layer": layer,
        "detector_layer": detector_layer,
        "reduce": reduce,
        "n": n,
        "strength": strength,
        "n_units": n_units,
        "alpha_max": alpha_max,
        "seed": seed,
        "n_background": int(train_images.shape[0]),
        "nodes": int(np.prod(scan.node_shape)),
        "low_active_units": int(len(cd.low_active_units_)),
        "units_in_layer": int(cd.n_units_),
    }
    return CreativeStudy(samples, scan, labels, auc, settings)


def bundled_study(
    name: str = "mnist-vae",
    *,
    n: int = 200,
    n_train: int = 1000,
    strength: float = 3.0,
    n_units: int = 10,
    alpha_max: float = 0.5,
    seed: int = 0,
    **overrides: Any,
) -> CreativeStudy:
    """:func:`creative_study` on a bundled autoencoder with its :data:`DEFAULTS`;
    ``overrides`` replace entries of them (``layer``, ``detector_layer``, ``reduce``)."""
    from seethrough import zoo

    if name not in DEFAULTS:
        raise ConfigError(f"no bundled creative set-up for {name!r}; choose from {', '.join(DEFAULTS)}")
    unknown = sorted(set(overrides) - {"layer", "detector_layer", "reduce"})
    if unknown:
        raise ConfigError(f"unknown settings {unknown}; the bundled set-up takes layer, detector_layer and reduce")
    d = {**DEFAULTS[name], **overrides}
    train, test = _real(d["data"], n_train, n)
    return creative_study(
        zoo.load(name),
        zoo.load(d["detector"]),
        train_images=train,
        test_images=test,
        layer=d["layer"],
        detector_layer=d["detector_layer"],
        reduce=d["reduce"],
        n=n,
        strength=strength,
        n_units=n_units,
        alpha_max=alpha_max,
        seed=seed,
    )


def write_creative(out: Path, study: CreativeStudy, *, title: str) -> Path:
    """``creative.png``, ``scan.png``, ``summary.json`` and ``creative.html``."""
    from seethrough.report.html import HtmlReport

    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(study.summary(), indent=2) + "\n")
    study.samples.save(out / "creative.safetensors")
    fig = study.samples.plot()
    fig.savefig(out / "creative.png", dpi=100, bbox_inches="tight")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_paragraph(
        f"Decoder layer {study.settings['layer']}: {study.settings['low_active_units']} of "
        f"{study.settings['units_in_layer']} units are low-active on the training codes; creative samples set "
        f"{study.settings['n_units']} of them to strength {study.settings['strength']} x their high reference value."
    )
    report.add_html(study.samples.to_html())
    report.add_table(
        [{"group": g, "AUC vs real": a} for g, a in study.auc.items()],
        caption=f"Subset scanning of the detector's {study.settings['detector_layer'] or 'output'} "
        f"({study.settings['nodes']} nodes): detection AUC of each group against held-out real images",
    )
    add_scan_figures(report, study)
    report.add_html(study.scan.to_html(groups=study.groups))
    return report.save(out / "creative.html")


def add_scan_figures(report: Any, study: CreativeStudy) -> None:
    """The score and the anomalous subset's size per group, as two figures."""
    from seethrough.generative import plot_scan

    report.add_figure(plot_scan(study.scan, groups=study.groups), caption="Berk-Jones score per group")
    report.add_figure(
        plot_scan(study.scan, groups=study.groups, what="size"), caption="size of the most anomalous subset per group"
    )
