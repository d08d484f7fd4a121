#!/usr/bin/env python
"""Measure the generative family's held-out numbers and write them as markdown.

    python scripts/generative_numbers.py --out docs/generative-numbers.md

Every table is computed here, in this run, from the shipped weights and the bundled data:
the peptide probes (held-out AUC and R²), conditioned vs unconditioned sampling (acceptance,
validity, uniqueness, novelty and the fraction of decoded sequences that meet the
conditions), the scenes-vae directions against the true factors (direction x factor table,
purity, MIG, DCI), the creative-decoding / subset-scanning detection AUCs, and the planted
check of the scanner.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if not np.isfinite(v) else f"{v:.3g}"
    return str(v)


def _table(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def peptides(lines: list[str], model: str, n: int, candidates: int) -> None:
    from seethrough.app.peptides import PeptideLab
    from seethrough.generative import Condition

    t0 = time.perf_counter()
    lab = PeptideLab.build(model)
    lines += [
        f"## Peptide probes ({model})",
        "",
        _table([{"measure": k, "value": v} for k, v in lab.metrics.items()]),
        "",
    ]
    sets = [
        ["amp > 0.8"],
        ["charge in [2, 6]"],
        ["amp > 0.8", "charge in [2, 6]"],
        ["acp > 0.7"],
        ["amp > 0.8", "hydrophobic_moment > 0.4"],
    ]
    rows = []
    for texts in sets:
        conds = [Condition.parse(t) for t in texts]
        s, rep = lab.sample(conds, n=n, max_candidates=candidates, seed=0)
        base = lab.sample([], n=n, seed=1)[0]
        base_meets = base.check([lab.decoded_condition(c) for c in conds])
        rows.append(
            {
                "conditions (on z)": " and ".join(texts),
                "accepted": rep["accepted"],
                "candidates": rep["candidates"],
                "acceptance": rep["acceptance_rate"],
                "validity": rep["validity"],
                "uniqueness": rep["uniqueness"],
                "novel (not in train)": rep["novelty"]["novelty"],
                "mean edit distance to train": rep["novelty"]["mean_min_distance"],
                "decoded meets all: conditioned": rep["decoded_meets"]["all"],
                "decoded meets all: unconditioned": base_meets["all"],
            }
        )
    lines += [
        f"## Conditioned sampling ({model}, {n} accepted samples, at most {candidates} candidates)",
        "",
        "Conditions are scored on z by the latent classifiers / regressors; 'decoded meets' checks the decoded "
        "sequences with the independent sequence classifiers (activities) and modlamp (descriptors). The "
        f"unconditioned row draws {n} samples from the same mixture with no condition.",
        "",
        _table(rows),
        "",
        f"({time.perf_counter() - t0:.0f} s)",
        "",
    ]


def factors(lines: list[str], n: int) -> None:
    from seethrough import zoo
    from seethrough.app.latents import factor_scores

    t0 = time.perf_counter()
    sc = factor_scores(zoo.load("scenes-vae"), n=n)
    resp = sc["response"]
    rows = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in resp.rows()]
    s = sc["summary"]
    lines += [
        f"## scenes-vae directions against the true factors ({n} held-out scenes)",
        "",
        "Response: mean change of each factor as read by `scenes-factors` from the decoded images, per step of "
        "one standard deviation of the codes along the direction (strengths ±1, ±2), divided by the factor's "
        "standard deviation on real scenes (categorical factors: the share of samples whose predicted class "
        "changed). Purity: the largest share of a direction's total response.",
        "",
        _table(rows),
        "",
        _table(
            [
                {
                    "mean purity (PCA)": s["mean_purity_pca"],
                    "mean purity (probes)": s["mean_purity_probe"],
                    "MIG": s["mig"],
                    **{f"DCI {k}": v for k, v in s["dci"].items()},
                }
            ]
        ),
        "",
        _table([{"factor": k, "MIG gap": v} for k, v in s["mig_per_factor"].items()]),
        "",
        f"({time.perf_counter() - t0:.0f} s)",
        "",
    ]


def creative(lines: list[str], n: int) -> None:
    from seethrough.app.creative import bundled_study
    from seethrough.generative import planted_check

    t0 = time.perf_counter()
    rows = []
    for name in ("mnist-vae", "scenes-vae"):
        study = bundled_study(name, n=n, n_train=1000)
        st = study.settings
        row: dict[str, Any] = {
            "autoencoder": name,
            "creative layer": st["layer"],
            "low-active units": f"{st['low_active_units']} / {st['units_in_layer']}",
            "detector layer": st["detector_layer"],
            "nodes": st["nodes"],
        }
        row.update({f"AUC {g}": a for g, a in study.auc.items()})
        sizes = study.summary()["subset_size"]
        row.update({f"subset size {g}": v["mean"] for g, v in sizes.items()})
        rows.append(row)
    pc = planted_check()
    lines += [
        f"## Creative decoding and subset scanning ({n} samples per group, 1,000 real training images as background)",
        "",
        "AUC: detection of each group against held-out real images by the Berk-Jones score of the most anomalous "
        "subset of the detector's nodes (right tail, alpha_max 0.5). Creative: 10 low-active units set to 3 x the "
        "layer's 0.99 quantile; control: 10 random units of the layer set to the same values.",
        "",
        _table(rows),
        "",
        "Planted check (`planted_check()`: 64 nodes, 8 of them shifted in 200 test samples):",
        "",
        _table(
            [
                {
                    "precision": pc.precision,
                    "recall": pc.recall,
                    "AUC": pc.auc,
                    "null AUC": pc.null_auc,
                    "passed": pc.passed,
                }
            ]
        ),
        "",
        f"({time.perf_counter() - t0:.0f} s)",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None)
    p.add_argument("--peptide-model", default="peptide-wae")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--candidates", type=int, default=100_000)
    p.add_argument("--scenes", type=int, default=2000)
    p.add_argument("--only", choices=("peptides", "factors", "creative"), action="append")
    args = p.parse_args(argv)
    lines = [
        "# Generative models: measured numbers",
        "",
        f"Written by `{' '.join(['python scripts/generative_numbers.py', *map(shlex.quote, argv)])}` from the "
        "shipped weights, on this machine (2 CPU cores).",
        "",
    ]
    only = set(args.only or ("peptides", "factors", "creative"))
    if "peptides" in only:
        peptides(lines, args.peptide_model, args.samples, args.candidates)
    if "factors" in only:
        factors(lines, args.scenes)
    if "creative" in only:
        creative(lines, args.samples)
    text = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
