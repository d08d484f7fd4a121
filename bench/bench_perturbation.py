"""Perturbation methods against the forward-pass floor and Captum, in one run.

The floor is the raw no-grad forward throughput (rows/s) of the model at the best batch
size for this machine (searched over 8..1024). For each method we time seethrough with
default settings (automatic chunking) and report its evaluated rows per second as a
fraction of the floor, for a single image and for a batch of 8. Captum's Occlusion and
FeatureAblation are timed with their default (``perturbations_per_eval=1``) and their
best ``perturbations_per_eval`` on the same windows, masks and baselines.

    python bench/bench_perturbation.py --out docs/bench-perturbation.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def make(model_name: str):
    import seethrough as st
    from seethrough import zoo

    if model_name == "shapes-cnn":
        return zoo.load("shapes-cnn"), st.data.make_shapes(8, seed=5).images
    if model_name == "small-vgg":
        return zoo.SmallVGG(num_classes=10, seed=0).eval(), torch.rand(
            8, 3, 64, 64, generator=torch.Generator().manual_seed(0)
        )
    raise SystemExit(f"unknown model {model_name}")


def floor_rate(model, x) -> tuple[float, int]:
    best, best_b = 0.0, 0
    with torch.no_grad():
        for b in (8, 16, 32, 64, 128, 256, 512, 1024):
            xb = x[torch.arange(b) % len(x)].clone()
            model(xb)
            n, t0 = 0, time.perf_counter()
            while n < 2 or time.perf_counter() - t0 < 1.0:
                model(xb)
                n += 1
            rate = n * b / (time.perf_counter() - t0)
            if rate > best:
                best, best_b = rate, b
    return best, best_b


def methods(model, x):
    """name -> (seethrough callable returning an Explanation, captum callables or None)."""
    from seethrough.attribution.masks import grid_mask
    from seethrough.attribution.perturbation import FeatureAblation, Occlusion

    fm = grid_mask(tuple(x.shape[1:]), 8)
    out = {
        "occlusion 8x8 s4": (
            lambda xx: Occlusion(model, window=(3, 8, 8), strides=(1, 4, 4)).attribute(xx, 0),
            lambda xx, ppe: (
                __import__("captum.attr", fromlist=["Occlusion"])
                .Occlusion(model)
                .attribute(
                    xx,
                    sliding_window_shapes=(3, 8, 8),
                    strides=(1, 4, 4),
                    baselines=0.0,
                    target=0,
                    perturbations_per_eval=ppe,
                )
            ),
        ),
        "feature ablation 64 cells": (
            lambda xx: FeatureAblation(model).attribute(xx, 0, feature_mask=fm),
            lambda xx, ppe: (
                __import__("captum.attr", fromlist=["FeatureAblation"])
                .FeatureAblation(model)
                .attribute(xx, baselines=0.0, target=0, feature_mask=fm.unsqueeze(0), perturbations_per_eval=ppe)
            ),
        ),
    }
    optional = [
        ("rise 2000 masks", "seethrough.attribution.rise", "RISE", dict(n_masks=2000), {}),
        ("lime 200 samples", "seethrough.attribution.surrogate", "Lime", dict(n_samples=200), {"feature_mask": fm}),
        (
            "kernelshap 200 samples",
            "seethrough.attribution.shapley",
            "KernelSHAP",
            dict(n_samples=200),
            {"feature_mask": fm},
        ),
        (
            "shapley sampling 4 perms",
            "seethrough.attribution.shapley",
            "ShapleyValueSampling",
            dict(n_permutations=4),
            {"feature_mask": fm},
        ),
    ]
    for name, mod, cls, init, kw in optional:
        try:
            C = getattr(__import__(mod, fromlist=[cls]), cls)
        except (ImportError, AttributeError):
            continue
        out[name] = ((lambda C=C, init=init, kw=kw: lambda xx: C(model, **init).attribute(xx, 0, **kw))(), None)
    return out


def best_of(fn, repeat=2):
    best, res = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="shapes-cnn,small-vgg")
    ap.add_argument("--out")
    args = ap.parse_args()
    lines = [
        "| model | method | images | rows | ours s | ours rows/s | / floor | captum default s | captum best s (ppe) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model_name in args.models.split(","):
        model, x = make(model_name)
        rate, fb = floor_rate(model, x)
        print(f"[{model_name}] floor {rate:.0f} rows/s at batch {fb}", flush=True)
        for name, (ours, capt) in methods(model, x).items():
            for n_img in (1, 8):
                xx = x[:n_img]
                ours(xx)  # warm-up, fills the chunk-size cache
                t, e = best_of(lambda: ours(xx))
                rows = e.n_evaluations
                cd = cb = "n/a"
                if capt is not None:
                    td, _ = best_of(lambda: capt(xx, 1), repeat=1)
                    cd = f"{td:.2f}"
                    best = min((best_of(lambda p=p: capt(xx, p), repeat=1)[0], p) for p in (16, 64, 256))
                    cb = f"{best[0]:.2f} ({best[1]})"
                line = (
                    f"| {model_name} | {name} | {n_img} | {rows} | {t:.2f} | {rows / t:.0f} | "
                    f"{rows / t / rate:.2f} | {cd} | {cb} |"
                )
                print(line, flush=True)
                lines.append(line)
        lines.append(f"| {model_name} | *floor* | | | | {rate:.0f} (batch {fb}) | 1.00 | | |")
    text = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of 2 after a warm-up.\n\n"
        f"Command: `python bench/bench_perturbation.py {' '.join(sys.argv[1:])}`\n\n" + "\n".join(lines) + "\n"
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
