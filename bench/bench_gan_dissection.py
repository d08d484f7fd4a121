#!/usr/bin/env python
"""GAN dissection: time and peak memory of dissecting every unit of a generator layer.

Generator: the bundled ``scenes-gan`` when its weights exist (``--zoo``), else the zoo's
``DCGANGenerator`` architecture untrained (32 px RGB, latent 16), whose width sets the
number of units of the dissected layer ``blocks.1`` (``2 x width`` channels at 16 x 16).
Segmenter: a fixed colour segmenter of the generated images (per pixel: ``bright``, ``dark``,
``red``, ``green``, ``blue``, ``grey``; cheap, so that the dissection itself is measured),
and once the zoo's ``ScenesSegmenter`` architecture (untrained; 9 concepts) to show what a
learned segmenter adds.

- ``units``: 2,000 samples, width 8 .. 64 (16 .. 128 units);
- ``samples``: 32 units, 500 .. 4,000 samples;
- both threshold rules: ``iqr`` (GAN Dissection's, the default: thresholds chosen on as many
  other samples, so three passes, two of them generating and segmenting) and ``quantile``
  (Network Dissection's exact top quantile: two passes, one generating and segmenting).

``floor``: one pass that only generates and segments the same images in the same chunks,
the work no dissection can avoid; the ``iqr`` rule makes two such passes (plus one stopped
at the layer), the ``quantile`` rule one. The growth exponent is the slope of log(time) on
log(units) or log(samples). Every measurement runs in a fresh process (spawn): peak memory
is its peak resident set (VmHWM, which counts torch's allocations) minus its resident set
once the generator is built, the peak reset through /proc/self/clear_refs first.

    python bench/bench_gan_dissection.py --out docs/bench-gan-dissection.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

LAYER = "blocks.1"


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak() -> float:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_mib("VmRSS")


def colour_segmenter(images: torch.Tensor) -> dict[str, torch.Tensor]:
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    lum = images.mean(dim=1)
    spread = images.amax(dim=1) - images.amin(dim=1)
    return {
        "bright": lum > 0.6,
        "dark": lum < 0.3,
        "red": (r > g + 0.1) & (r > b + 0.1),
        "green": (g > r + 0.1) & (g > b + 0.1),
        "blue": (b > r + 0.1) & (b > g + 0.1),
        "grey": spread < 0.05,
    }


def _generator(width: int, use_zoo: bool):
    from seethrough import zoo
    from seethrough.zoo.gan import DCGANGenerator

    if use_zoo:
        return zoo.load("scenes-gan").eval(), "scenes-gan"
    return DCGANGenerator(16, 3, 32, width=width, seed=0).eval(), f"DCGANGenerator(16, 3, 32, width={width}), untrained"


def _child(args) -> dict:
    width, n, rule, seg_kind, use_zoo = args
    torch.set_num_threads(1)
    from seethrough._core.batching import Batching
    from seethrough.concepts.gan import GANDissection
    from seethrough.zoo.gan import ScenesSegmenter

    gen, label = _generator(width, use_zoo)
    seg = colour_segmenter if seg_kind == "colour" else ScenesSegmenter(seed=0).eval()
    batching = Batching(batch_size=100)
    base = _reset_peak()
    t0 = time.perf_counter()
    r = GANDissection(gen, layer=LAYER, segmenter=seg, threshold=rule, batching=batching).dissect(n, seed=0)
    seconds = time.perf_counter() - t0
    peak = _status_mib("VmHWM") - base
    # the floor: generate and segment the same images in the same chunks, nothing else
    z = torch.randn(n, 16, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    with torch.no_grad():
        for sl in Batching.chunks(n, 100):
            images = gen(z[sl])
            seg.concept_masks(images) if hasattr(seg, "concept_masks") else seg(images)
    floor = time.perf_counter() - t0
    d = r[LAYER]
    return {
        "generator": label,
        "units": d.n_units,
        "samples": n,
        "rule": rule,
        "segmenter": seg_kind,
        "seconds": seconds,
        "floor": floor,
        "peak": peak,
        "interpretable": d.n_interpretable,
    }


def _run(args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.map(_child, [args])[0]


def _row(m: dict) -> str:
    passes = 2 if m["rule"] == "iqr" else 1
    return (
        f"| {m['rule']} | {m['segmenter']} | {m['units']} | {m['samples']} | {m['seconds']:.2f} | {m['floor']:.2f} | "
        f"{m['seconds'] / max(passes * m['floor'], 1e-9):.2f} | {m['peak']:.0f} | {m['interpretable']} |"
    )


HEADER = [
    "| rule | segmenter | units | samples | time (s) | floor: one generate+segment pass (s) "
    "| time / (floor x full passes) | peak RSS above the start (MiB) | interpretable units |",
    "|---|---|---|---|---|---|---|---|---|",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="fewer, smaller configurations")
    ap.add_argument("--zoo", action="store_true", help="also dissect the bundled scenes-gan (needs its weights)")
    args = ap.parse_args()
    widths = [8, 16, 32] if args.quick else [8, 16, 32, 64]
    samples = [250, 500, 1000] if args.quick else [500, 1000, 2000, 4000]
    n_units_run = 1000 if args.quick else 2000
    load = os.getloadavg()
    out = [
        "# GAN dissection: measurements",
        "",
        f"Produced by `bench/bench_gan_dissection.py` on {platform.machine()}, torch {torch.__version__}, 1 thread, "
        f"{os.cpu_count()} CPUs (load average at start {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}; above about 1, "
        "other jobs shared the cores and the timings are contended), batches of 100 codes:",
        "",
        "    python bench/bench_gan_dissection.py" + (" --quick" if args.quick else ""),
        "",
        f"Layer `{LAYER}` (post-ReLU block output, 16 x 16 maps) of an untrained DCGAN-style generator; every unit "
        "against every concept.",
        "",
    ]
    for title, configs, key in (
        (f"Growth with units ({n_units_run} samples)", [(w, n_units_run) for w in widths], "units"),
        ("Growth with samples (32 units)", [(16, n) for n in samples], "samples"),
    ):
        out += [f"## {title}", "", *HEADER]
        slopes = {}
        for rule in ("iqr", "quantile"):
            ms = []
            for width, n in configs:
                m = _run((width, n, rule, "colour", False))
                ms.append(m)
                out.append(_row(m))
                print(out[-1], flush=True)
            x = np.log([m[key] for m in ms])
            slopes[rule] = float(np.polyfit(x, np.log([m["seconds"] for m in ms]), 1)[0])
            over = [m["seconds"] - (2 if rule == "iqr" else 1) * m["floor"] for m in ms]
            if all(o > 0 for o in over):
                slopes[rule + " (time above the floor)"] = float(np.polyfit(x, np.log(over), 1)[0])
        out += [
            "",
            f"Growth of the time with {key} (slope of log time on log {key}; 1 = linear): "
            + ", ".join(f"{k}: {v:.2f}" for k, v in slopes.items())
            + ".",
            "",
        ]
    out += ["## A learned segmenter's share", "", *HEADER]
    for rule in ("iqr", "quantile"):
        m = _run((16, n_units_run, rule, "ScenesSegmenter", False))
        out.append(_row(m))
        print(out[-1], flush=True)
    out.append("")
    if args.zoo:
        out += ["## The bundled scenes-gan", "", *HEADER]
        for rule in ("iqr", "quantile"):
            m = _run((0, 2000, rule, "colour", True))
            out.append(_row(m))
            print(out[-1], flush=True)
        out.append("")
    out += [
        "Memory: what the dissection keeps is bounded by the chunk (the upsampled maps, bin indices and masks of",
        "100 images) plus, for `iqr`, the histograms (units x 129 bins x concepts counts, independent of the",
        "samples) and, for `quantile`, the running top-k (0.5% of every unit's activations at layer resolution).",
        "",
    ]
    text = "\n".join(out)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
