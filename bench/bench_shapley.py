"""Kernel SHAP sample efficiency and LIME / Kernel SHAP speed against Captum 0.9, shap and lime.

Accuracy: shapes-cnn on 64x64 images with a grid of 4 x 3 cells (16 x 22 pixels, the last
column 20) = 12 features, so the exact Shapley values (2^12 = 4,096 evaluations per
image, seethrough's ExactShapley) are the reference. At each budget of model evaluations
per image, the error is ``mean_j |phi_j - phi*_j| / mean_j |phi*_j|`` averaged over
images and seeds, for

- seethrough ``KernelSHAP(n_samples=budget)`` (the budget counts the input and baseline);
- Captum ``KernelShap``, ``n_samples=budget``, same baseline (0) and feature mask;
- ``shap.KernelExplainer`` on a function mapping binary coalitions to masked images and
  model scores, background = the all-absent coalition (the baseline), ``nsamples =
  budget - 2`` (shap evaluates the input and the background besides), ``l1_reg=False``
  (plain Kernel SHAP; shap's default ``num_features(10)`` keeps only 10 of 12 features).

Time: 8 images of 64x64, a 4 x 4 grid of 16x16 cells (16 features), 200 perturbations
per image, best of ``--repeat``: seethrough ``Lime`` vs Captum ``Lime`` (default
``perturbations_per_eval=1`` and the best of a few) vs ``lime_image.LimeImageExplainer``
(``num_samples=200``, a ``segmentation_fn`` returning our fixed grid so the work is the
same, default ``batch_size``), and seethrough ``KernelSHAP`` vs Captum ``KernelShap`` vs
``shap.KernelExplainer``.

    python bench/bench_shapley.py --out docs/bench-shapley.md
    python bench/bench_shapley.py --quick          # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


def grid(h_cells: int, w_cells: int, size: int = 64) -> torch.Tensor:
    """(1, H, W) ids of an ``h_cells`` x ``w_cells`` grid."""
    from seethrough.attribution.masks import grid_mask

    return grid_mask((1, size, size), (-(-size // h_cells), -(-size // w_cells)))


def per_feature(attr: torch.Tensor, mask2d: torch.Tensor) -> torch.Tensor:
    """(B, M) feature values from input-shaped attributions (one element per feature)."""
    M = int(mask2d.max()) + 1
    first = torch.stack([(mask2d.flatten() == j).nonzero()[0, 0] for j in range(M)])
    return attr[:, 0].flatten(1)[:, first]


def masked_scores(model, x1: torch.Tensor, mask2d: torch.Tensor, t: int, chunk: int = 100):
    """A numpy function of binary coalitions (n, M) -> scores (n,), for shap."""
    flat = mask2d.flatten()

    def f(z: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(np.asarray(z) > 0.5)
        out = []
        with torch.no_grad():
            for s in range(0, z.shape[0], chunk):
                keep = z[s : s + chunk][:, flat].reshape(-1, 1, *mask2d.shape)
                out.append(model(torch.where(keep, x1, torch.zeros_like(x1)))[:, t])
        return torch.cat(out).numpy().astype(np.float64)

    return f


# -- accuracy ----------------------------------------------------------------------------
def accuracy(model, x, t, budgets, seeds):
    import captum.attr as ca
    import shap

    from seethrough.attribution.shapley import ExactShapley, KernelSHAP

    mask = grid(4, 3)
    M = int(mask.max()) + 1
    t0 = time.perf_counter()
    exact = ExactShapley(model, max_features=M).attribute(x, t, feature_mask=mask).extras["shapley_values"].double()
    print(f"exact Shapley values: {time.perf_counter() - t0:.1f} s for {len(x)} images x 2^{M}", flush=True)

    def nmae(est: torch.Tensor) -> float:
        err = (est.double() - exact).abs().mean(1) / exact.abs().mean(1)
        return float(err.mean())

    rows = []
    for budget in budgets:
        res = {"ours": [], "captum": [], "shap": []}
        evals = {"ours": [], "captum": [], "shap": []}
        for seed in seeds:
            e = KernelSHAP(model, n_samples=budget, seed=seed).attribute(x, t, feature_mask=mask)
            res["ours"].append(nmae(e.extras["shapley_values"]))
            evals["ours"].append(e.n_evaluations / len(x))

            torch.manual_seed(seed)
            a = ca.KernelShap(model).attribute(
                x,
                baselines=0.0,
                target=t,
                feature_mask=mask.unsqueeze(0).expand(1, 3, 64, 64),
                n_samples=budget,
                perturbations_per_eval=64,
            )
            res["captum"].append(nmae(per_feature(a, mask[0])))
            evals["captum"].append(budget)

            vals, n_calls = [], 0
            for i in range(len(x)):
                f = masked_scores(model, x[i : i + 1], mask[0], int(t[i]))
                count = [0]

                def counted(z, f=f, count=count):
                    count[0] += len(z)
                    return f(z)

                np.random.seed(seed)
                ex = shap.KernelExplainer(counted, np.zeros((1, M)))
                phi = ex.shap_values(np.ones((1, M)), nsamples=budget - 2, l1_reg=False, silent=True)
                vals.append(torch.as_tensor(np.asarray(phi).reshape(-1)))
                n_calls += count[0]
            res["shap"].append(nmae(torch.stack(vals)))
            evals["shap"].append(n_calls / len(x))
        row = {k: (float(np.mean(v)), float(np.mean(evals[k]))) for k, v in res.items()}
        rows.append((budget, row))
        print(budget, {k: f"{v[0]:.4f} ({v[1]:.0f} evals)" for k, v in row.items()}, flush=True)
    return rows, M


# -- time --------------------------------------------------------------------------------
def timings(model, x, t, n_samples: int, repeat: int, ppe_grid):
    """Best-of-``repeat`` seconds per configuration; the repeats go round-robin over the
    configurations, so a change of load on a shared machine hits all of them alike."""
    import captum.attr as ca
    import shap
    from lime import lime_image

    from seethrough import Batching
    from seethrough.attribution.shapley import KernelSHAP
    from seethrough.attribution.surrogate import Lime

    mask = grid(4, 4)
    M = int(mask.max()) + 1
    mask3 = mask.unsqueeze(0).expand(1, 3, 64, 64)
    seg = mask[0].numpy()
    B = len(x)
    configs = []  # (method, library, settings, fn, evaluations, runs)

    def ours(method, make, settings):
        m = make()
        n = m.attribute(x, t, feature_mask=mask).n_evaluations  # warm-up: chunk-size tuning, cached per model
        configs.append((method, "seethrough", settings, lambda: m.attribute(x, t, feature_mask=mask), n, repeat))

    def captum(method, cls):
        for ppe in [1] + list(ppe_grid):
            configs.append(
                (
                    method,
                    "captum",
                    f"n_samples={n_samples}, perturbations_per_eval={ppe}",
                    lambda ppe=ppe: cls(model).attribute(
                        x, target=t, feature_mask=mask3, n_samples=n_samples, baselines=0.0, perturbations_per_eval=ppe
                    ),
                    B * n_samples,
                    1 if ppe == 1 else repeat,  # one row per model call: many times slower, one run is enough
                )
            )

    # LIME
    ours("LIME", lambda: Lime(model, n_samples=n_samples), f"n_samples={n_samples}")
    ours(
        "LIME",
        lambda: Lime(model, n_samples=n_samples, batching=Batching(batch_size=64)),
        f"n_samples={n_samples}, batching=64",
    )
    captum("LIME", ca.Lime)

    def classifier(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            batch = torch.as_tensor(images, dtype=torch.float32).permute(0, 3, 1, 2)
            return model(batch).numpy()

    explainer = lime_image.LimeImageExplainer(random_state=0)
    hwc = [x[i].permute(1, 2, 0).double().numpy() for i in range(B)]

    def run_lime():
        with contextlib.redirect_stderr(io.StringIO()):  # lime's progress bars
            for i in range(B):
                explainer.explain_instance(
                    hwc[i],
                    classifier,
                    labels=(int(t[i]),),
                    top_labels=None,
                    hide_color=0,
                    num_samples=n_samples,
                    segmentation_fn=lambda img: seg,
                    random_seed=0,
                )

    configs.append(
        ("LIME", "lime", f"num_samples={n_samples}, batch_size=10 (default)", run_lime, B * n_samples, repeat)
    )

    # Kernel SHAP
    ours("KernelSHAP", lambda: KernelSHAP(model, n_samples=n_samples), f"n_samples={n_samples}")
    ours(
        "KernelSHAP",
        lambda: KernelSHAP(model, n_samples=n_samples, batching=Batching(batch_size=64)),
        f"n_samples={n_samples}, batching=64",
    )
    captum("KernelSHAP", ca.KernelShap)
    fns = [masked_scores(model, x[i : i + 1], mask[0], int(t[i])) for i in range(B)]

    def run_shap():
        for i in range(B):
            ex = shap.KernelExplainer(fns[i], np.zeros((1, M)))
            ex.shap_values(np.ones((1, M)), nsamples=n_samples - 2, l1_reg=False, silent=True)

    configs.append(
        ("KernelSHAP", "shap", f"nsamples={n_samples - 2} (+ input and background)", run_shap, B * n_samples, repeat)
    )

    best = [float("inf")] * len(configs)
    for r in range(repeat):
        for i, (method, lib, settings, fn, _n, runs) in enumerate(configs):
            if r >= runs:
                continue
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
            print(f"round {r}: {method:10s} {lib:10s} {settings:44s} {time.perf_counter() - t0:7.2f} s", flush=True)
    return [
        (method, lib, settings + ("" if runs == repeat else " (1 run)"), best[i], n)
        for i, (method, lib, settings, _fn, n, runs) in enumerate(configs)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="64,128,256,512,1024")
    ap.add_argument("--images", type=int, default=3, help="images for the accuracy part")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=200, help="perturbations per image in the timing part")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: robust timings on a shared machine)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import seethrough as st
    from seethrough import zoo

    model = zoo.load("shapes-cnn")
    budgets = [int(b) for b in args.budgets.split(",")]
    if args.quick:
        budgets, args.images, args.seeds, args.n_samples, args.repeat = budgets[:2], 1, 1, 50, 1
    start = time.perf_counter()

    data = st.data.make_shapes(max(args.images, 8), seed=7)
    x_acc = data.images[: args.images]
    with torch.no_grad():
        t_acc = model(x_acc).argmax(1)
    rows, M = accuracy(model, x_acc, t_acc, budgets, list(range(args.seeds)))

    x_time = data.images[:8]
    with torch.no_grad():
        t_time = model(x_time).argmax(1)
    ppe_grid = [50] if args.quick else [64, args.n_samples]
    times = timings(model, x_time, t_time, args.n_samples, args.repeat, ppe_grid)

    acc_lines = [
        "| evaluations / image | seethrough KernelSHAP | Captum KernelShap | shap KernelExplainer |",
        "|---|---|---|---|",
    ]
    for budget, row in rows:
        cells = [
            f"{row[k][0]:.4f}" + ("" if abs(row[k][1] - budget) < 0.5 else f" ({row[k][1]:.0f})")
            for k in ("ours", "captum", "shap")
        ]
        acc_lines.append(f"| {budget} | " + " | ".join(cells) + " |")

    ours = {}
    for m, lib, _, s, _ in times:
        if lib == "seethrough":
            ours.setdefault(m, s)  # the default settings come first
    time_lines = [
        "| method | library | settings | seconds | model evaluations | time / seethrough |",
        "|---|---|---|---|---|---|",
    ]
    for method, lib, config, s, n in times:
        time_lines.append(f"| {method} | {lib} | {config} | {s:.2f} | {n} | {s / ours[method]:.1f}x |")

    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores (shared with other work), torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}; shapes-cnn (zoo), images from "
        f"`make_shapes(seed=7)`, target the predicted class, baseline 0. Total run "
        f"{time.perf_counter() - start:.0f} s.\n\n"
        f"Command: `python bench/bench_shapley.py {' '.join(sys.argv[1:])}`\n"
    )
    text = (
        header
        + f"\n### Kernel SHAP error against exact Shapley values ({M} features)\n\n"
        + f"Normalised mean absolute error `mean|phi - phi*| / mean|phi*|`, averaged over {args.images} "
        + f"images and {args.seeds} seeds; lower is better. A number in brackets is the evaluations "
        + "actually used when it differs from the budget (seethrough evaluates a repeated coalition once).\n\n"
        + "\n".join(acc_lines)
        + f"\n\n### Time for 8 images, {args.n_samples} perturbations each (16 features), best of {args.repeat}\n\n"
        + "Captum's `perturbations_per_eval` is its number of perturbations per model call (default 1); "
        + "seethrough sizes its chunks itself. seethrough runs once before timing (chunk-size tuning, "
        + "cached per model and input shape); the others need no warm-up (the model is warm). "
        + "`batching=64` fixes seethrough's chunk at 64 rows instead of the automatic size. Repeats go "
        + "round-robin over the rows of the table, so load changes on the shared machine hit all alike.\n\n"
        + "\n".join(time_lines)
        + "\n"
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
