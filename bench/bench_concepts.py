"""Concept methods: the false-positive rate of TCAV's test, its power, and run time
against floors.

Parts (``--part``, default all):

- ``null``: :func:`tcav_null_check` on the bundled ``stripes-cnn`` (2 classes) and
  ``shapes-cnn`` (4 classes) at ``features.13``: random image sets posed as concepts,
  ``--trials`` trials per configuration, for the paper's per-run t-test (``shared``) and
  the default ``disjoint`` protocol, with 10 and 20 runs. "t-test" is the decision by the
  Bonferroni-corrected p-value alone; "full rule" adds the default minimum effect (0.05)
  and minimum CAV accuracy (0.6), applied to the same trials.
- ``power``: TCAV on ``stripes-cnn`` (its class depends on stripes by construction) over
  ``--seeds`` seeds: how often each concept is called significant, with 10 and 20 runs;
  and how well the 20 CAVs of ``stripes`` agree (mean pairwise cosine) for C = 1 and 0.1.
- ``speed``: TCAV (3 concepts, 200 inputs, defaults) against its floor: the model passes
  it needs (no-grad forward passes of every concept and random image, forward + backward
  of the inputs per class), done in plain torch in chunks of 256; data generation is
  timed apart. Dissection (``shapes-cnn``, 500 scenes, 4 layers) against two no-grad
  forward passes over the scenes (it streams the data twice).

    python bench/bench_concepts.py --out docs/bench-concepts.md
    python bench/bench_concepts.py --quick       # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


def _inputs(name: str, n: int):
    from seethrough.data.concepts import concept_dataset
    from seethrough.data.shapes import make_shapes
    from seethrough.zoo.train import TEST_SEED_OFFSET

    if name == "stripes-cnn":
        return concept_dataset(n, "stripes", seed=TEST_SEED_OFFSET)
    d = make_shapes(n, seed=TEST_SEED_OFFSET)
    return d.images, d.labels


def part_null(trials: int, out: list[str]) -> None:
    from seethrough import zoo
    from seethrough.app.concepts import run_null_check
    from seethrough.concepts import TCAV

    out += [
        "## False-positive rate (null check)",
        "",
        f"Random image sets posed as concepts, {trials} trials per row, layer `features.13`, 20 examples per set, "
        "100 held-out inputs; a trial is a false positive when the random concept is called significant for any "
        "class (Bonferroni over the classes, level 0.05). 95% Clopper-Pearson interval in brackets.",
        "",
        "| model (classes) | protocol | runs | t-test | full rule | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("stripes-cnn", "shapes-cnn"):
        model = zoo.load(name)
        x, y = _inputs(name, 100)
        for protocol, runs in (("shared", 10), ("shared", 20), ("disjoint", 10), ("disjoint", 20)):
            tcav = TCAV(
                model,
                layer="features.13",
                protocol=protocol,
                random_runs=runs,
                min_effect=0.0,
                min_accuracy=0.0,
                seed=0,
            )
            t0 = time.perf_counter()
            res = run_null_check(tcav, x, labels=y, trials=trials)
            secs = time.perf_counter() - t0
            full = ((res.p_values < 0.05) & (res.effects.abs() >= 0.05) & (res.accuracy[:, None] >= 0.6)).any(dim=1)
            k_full = int(full.sum())
            from seethrough.concepts.tcav import _clopper_pearson

            lo, hi = res.interval
            flo, fhi = _clopper_pearson(k_full, trials)
            n_classes = y.unique().numel()
            out.append(
                f"| {name} ({n_classes}) | {protocol} | {runs} | {res.false_positive_rate:.3f} [{lo:.3f}, {hi:.3f}] "
                f"| {k_full / trials:.3f} [{flo:.3f}, {fhi:.3f}] | {secs:.0f} |"
            )
            print(out[-1], file=sys.stderr, flush=True)
    out.append("")


def part_power(seeds: int, out: list[str]) -> None:
    from seethrough import zoo
    from seethrough.app.concepts import run_tcav
    from seethrough.concepts import TCAV

    model = zoo.load("stripes-cnn")
    x, y = _inputs("stripes-cnn", 200)
    concepts = ["stripes", "dots", "checkerboard", "red", "circle"]
    out += [
        "## Power on a model with known concept dependence",
        "",
        f"`stripes-cnn` at `features.13`, 200 held-out inputs, concepts {', '.join(concepts)} "
        f"(10 tests, Bonferroni), seeds 0..{seeds - 1}: share of seeds in which each (concept, class) is "
        "called significant (default rule). By construction only stripes decide the class.",
        "",
        "| protocol | runs | "
        + " | ".join(f"{c} plain / striped" for c in concepts)
        + " | mean CAV accuracy (stripes) |",
        "|---|---|" + "---|" * len(concepts) + "---|",
    ]
    for protocol, runs in (("disjoint", 10), ("disjoint", 20), ("shared", 20)):
        hits = np.zeros((len(concepts), 2))
        acc = []
        for seed in range(seeds):
            r = run_tcav(
                TCAV(model, layer="features.13", protocol=protocol, random_runs=runs, seed=seed), x, concepts, labels=y
            )
            hits += r.significant.numpy()
            acc.append(float(r.cav_accuracy[0].mean()))
        cells = [f"{hits[i, 0] / seeds:.1f} / {hits[i, 1] / seeds:.1f}" for i in range(len(concepts))]
        out.append(f"| {protocol} | {runs} | " + " | ".join(cells) + f" | {np.mean(acc):.3f} |")
        print(out[-1], file=sys.stderr, flush=True)
    out += [
        "",
        "Agreement of the 20 `stripes` CAVs (seed 0, mean pairwise cosine) by the classifier's C:",
        "",
        "| C | mean pairwise cosine | mean held-out accuracy |",
        "|---|---|---|",
    ]
    for c in (1.0, 0.1):
        r = run_tcav(TCAV(model, layer="features.13", C=c, seed=0), x, ["stripes"], labels=y)
        v = r.cavs["stripes"].double()
        cos = v @ v.T
        n = cos.shape[0]
        mean_cos = float((cos.sum() - n) / (n * (n - 1)))
        out.append(f"| {c:g} | {mean_cos:.3f} | {float(r.cav_accuracy[0].mean()):.3f} |")
    out.append("")


def _timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def part_speed(out: list[str], quick: bool) -> None:
    from seethrough import zoo
    from seethrough.app.concepts import run_tcav
    from seethrough.concepts import TCAV, Dissection
    from seethrough.data.concepts import concept_images, concept_scenes, random_images

    model = zoo.load("stripes-cnn")
    x, y = _inputs("stripes-cnn", 200)
    concepts = ["stripes", "dots", "red"]
    tcav = TCAV(model, layer="features.13", seed=0)
    n_c = tcav.random_runs * tcav.n_examples
    t_gen = _timed(lambda: ([concept_images(c, n_c, seed=0) for c in concepts], random_images(2 * n_c, seed=0)))
    t_tcav = _timed(lambda: run_tcav(tcav, x, concepts, labels=y))
    imgs = torch.cat([concept_images(c, n_c, seed=0) for c in concepts] + [random_images(2 * n_c, seed=0)])

    def floor_tcav():
        with torch.no_grad():
            for i in range(0, len(imgs), 256):
                model(imgs[i : i + 256])
        for k in (0, 1):
            xk = x[y == k].clone().requires_grad_(True)
            for i in range(0, len(xk), 256):
                model(xk[i : i + 256])[:, k].sum().backward()

    t_floor = _timed(floor_tcav)
    out += [
        "## Run time",
        "",
        "| job | ours (s) | floor (s) | ours / floor | data generation (s, apart) |",
        "|---|---|---|---|---|",
        f"| TCAV, stripes-cnn, 3 concepts x 2 classes, 20 runs of 20 | {t_tcav - t_gen:.2f} | {t_floor:.2f} | "
        f"{(t_tcav - t_gen) / t_floor:.1f} | {t_gen:.2f} |",
    ]
    print(out[-1], file=sys.stderr, flush=True)
    shapes = zoo.load("shapes-cnn")
    n = 100 if quick else 500
    t0 = time.perf_counter()
    scenes = concept_scenes(n, seed=0)
    t_gen = time.perf_counter() - t0
    layers = ["features.2", "features.9", "features.13", "features.16"]
    t_dis = _timed(lambda: Dissection(shapes, layers=layers).dissect(scenes))

    def floor_dis():
        with torch.no_grad():
            for _ in range(2):
                for i in range(0, n, 256):
                    shapes(scenes.images[i : i + 256])

    t_floor = _timed(floor_dis)
    out.append(
        f"| Dissection, shapes-cnn, {n} scenes, 4 layers (160 + 192 units at 8-32 px) | {t_dis:.2f} | "
        f"{t_floor:.2f} | {t_dis / t_floor:.1f} | {t_gen:.2f} |"
    )
    out.append("")
    print(out[-1], file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("null", "power", "speed", "all"), default="all")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.seeds = 5, 1
    torch.set_num_threads(args.threads)
    out = [
        "# Concept methods: measurements",
        "",
        f"`python bench/bench_concepts.py {' '.join(sys.argv[1:])}` on {platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs shared with other jobs "
        "(timings are contended).",
        "",
    ]
    if args.part in ("null", "all"):
        part_null(args.trials, out)
    if args.part in ("power", "all"):
        part_power(args.seeds, out)
    if args.part in ("speed", "all"):
        part_speed(out, args.quick)
    text = "\n".join(out) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
