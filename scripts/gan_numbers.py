#!/usr/bin/env python
"""Measure the GAN numbers of the docs and write them as markdown.

    python scripts/gan_numbers.py --out docs/gan-numbers.md

Every table is computed here, in this run, from the shipped weights and the bundled data:
the segmenter's held-out IoUs (from its card), the direction x factor table of SeFa, GANSpace
and supervised directions of scenes-gan with each direction's purity, the dissection of one
scenes-gan layer and the causal effect of ablating its labelled units against random units,
the sample quality of every bundled GAN with bootstrap intervals, and the latent-recovery
memorisation test of the normal and the memorising MNIST GANs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generative_numbers import _table  # noqa: E402  (the scripts' shared markdown table)


def directions(lines: list[str], n_samples: int) -> None:
    from seethrough.app.gans import direction_study
    from seethrough.app.generators import GeneratorSpec

    t0 = time.perf_counter()
    study = direction_study(GeneratorSpec("scenes-gan").load(), data="scenes", k=5, n_samples=n_samples, seed=0)
    rows = []
    for row in study.response.rows():
        rows.append({"method": study.method[row["direction"]], **row})
    lines += [
        "## Directions of scenes-gan against the true factors",
        "",
        "Change of each factor per unit of z along each direction, read by `scenes-factors` on the generated "
        "scenes (continuous factors in units of their standard deviation on real scenes; shape and colour: the "
        "share of predictions that changed), and each direction's purity (largest share of its row).",
        "",
        _table(rows),
        "",
        _table([{"method": m, "mean purity": v} for m, v in study.summary["mean_purity"].items()]),
        "",
        f"SeFa eigenvalue shares: {', '.join(f'{v:.3f}' for v in study.summary['sefa_eigenvalue_ratio'])}; "
        f"GANSpace explained variance shares: "
        f"{', '.join(f'{v:.3f}' for v in study.summary['ganspace_explained_variance_ratio'])}; "
        f"supervised boundaries' training accuracy: "
        f"{', '.join(f'{k} {v:.3f}' for k, v in study.summary['supervised_train_score'].items())}.",
        f"({time.perf_counter() - t0:.0f} s)",
        "",
    ]


def dissection(lines: list[str], n_samples: int, layer: str) -> None:
    from seethrough.app.gans import dissection_study
    from seethrough.app.generators import GeneratorSpec

    t0 = time.perf_counter()
    study = dissection_study(
        GeneratorSpec("scenes-gan").load(), data="scenes", layer=layer, n_samples=n_samples, n_effect=300, seed=0
    )
    d = study["dissection"]
    lines += [
        f"## Dissection of scenes-gan `{layer}` ({n_samples} generated scenes)",
        "",
        f"Threshold rule: {d.describe_threshold()}",
        "",
        _table(d.summary()),
        "",
        "Interpretable units (best concept, IoU):",
        "",
        _table([{k: r[k] for k in ("unit", "concept", "IoU", "runner-up")} for r in d.table(interpretable_only=True)]),
        "",
    ]
    for concept, curve in study["curves"].items():
        lines += [
            f"Causal effect of ablating the top-k `{concept}` units vs k random units (change of the share of pixels "
            "the segmenter labels with the concept; random: mean and std over draws):",
            "",
            _table(curve.rows()),
            "",
        ]
    lines += [f"({time.perf_counter() - t0:.0f} s)", ""]


def _card(name: str, study: dict) -> None:
    """Write the held-out FID and KID (with their intervals) into the generator's card."""
    import json

    from seethrough import zoo

    path = zoo.WEIGHTS_DIR / f"{name}.json"
    card = json.loads(path.read_text())
    res = study["result"]
    for key in ("fid", "kid"):
        v = res[key]
        card["metrics"][f"heldout_{key}"] = round(float(v.value), 5)
        card["metrics"][f"heldout_{key}_ci95"] = [round(float(v.low), 5), round(float(v.high), 5)]
    card["metrics"]["heldout_metrics_setting"] = (
        f"{study['n_fake']} samples vs {study['n_real']} held-out real images, features of the bundled classifier's "
        "penultimate layer (scripts/gan_numbers.py --cards)"
    )
    path.write_text(json.dumps(card, indent=2) + "\n")


def metrics(lines: list[str], n_fake: int, bootstrap: int, cards: bool = False) -> None:
    from seethrough.app.gans import metrics_study
    from seethrough.app.generators import GeneratorSpec

    t0 = time.perf_counter()
    rows = []
    for name, data in (("mnist-gan", "mnist"), ("mnist-gan-memorized", "mnist"), ("scenes-gan", "scenes")):
        study = metrics_study(GeneratorSpec(name).load(), data=data, n_fake=n_fake, bootstrap=bootstrap, seed=0)
        if cards:
            _card(name, study)
        rows += [{"generator": name, "real": study["n_real"], **r} for r in study["result"].rows()]
    lines += [
        f"## Sample quality ({n_fake} generated vs the held-out real images, {bootstrap} bootstrap resamples)",
        "",
        "Features: the penultimate layer of the bundled classifier of the data (`mnist-cnn`, `scenes-factors`).",
        "",
        _table(rows),
        f"({time.perf_counter() - t0:.0f} s)",
        "",
    ]


def recovery(lines: list[str], n: int, steps: int, restarts: int) -> None:
    from seethrough.app.gans import recovery_images, recovery_study
    from seethrough.app.generators import GeneratorSpec

    t0 = time.perf_counter()
    rows = []
    for name in ("mnist-gan", "mnist-gan-memorized", "scenes-gan"):
        train, heldout = recovery_images(name, n)
        result = recovery_study(
            GeneratorSpec(name).load(), train=train, heldout=heldout, steps=steps, restarts=restarts, seed=0
        )
        rows.append({"generator": name, **result.summary()})
    lines += [
        f"## Latent recovery ({n} training and {n} held-out images, {restarts} restarts x {steps} Adam steps)",
        "",
        _table(rows),
        f"({time.perf_counter() - t0:.0f} s)",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/gan-numbers.md")
    p.add_argument("--ganspace-samples", type=int, default=3000)
    p.add_argument("--dissect-samples", type=int, default=2000)
    p.add_argument("--layer", default="blocks.1")
    p.add_argument("--fake", type=int, default=5000)
    p.add_argument("--bootstrap", type=int, default=100)
    p.add_argument("--recover", type=int, default=48)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--cards", action="store_true", help="also write the held-out FID and KID into the GANs' cards")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    lines = [
        "# GAN numbers",
        "",
        f"Written by `python {' '.join(shlex.quote(a) for a in ['scripts/gan_numbers.py', *(argv or sys.argv[1:])])}`"
        " from the shipped weights and the bundled data.",
        "",
    ]
    from seethrough import zoo

    seg = zoo.info("scenes-segmenter").metrics
    lines += [
        "## The scenes segmenter on held-out real scenes",
        "",
        _table([{"measure": k, "value": v} for k, v in seg.items() if isinstance(v, (int, float))]),
        "",
    ]
    directions(lines, args.ganspace_samples)
    dissection(lines, args.dissect_samples, args.layer)
    metrics(lines, args.fake, args.bootstrap, args.cards)
    recovery(lines, args.recover, args.steps, args.restarts)
    lines.append(f"Total: {time.perf_counter() - t0:.0f} s on 2 CPU cores.")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
