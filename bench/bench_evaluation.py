"""Faithfulness and robustness metrics on the bundled shapes model: cost and discrimination.

``--part speed``: the deletion curve against Quantus's ``PixelFlipping`` and against the
floor, at equal model evaluations (``--images`` shapes images, ``--steps`` steps; Quantus
does one model call per step with the whole batch):

- ``ours``: :func:`seethrough.evaluation.faithfulness.deletion` with automatic batching
  (``images * (steps + 1)`` rows plus one clean pass);
- ``quantus``: ``quantus.PixelFlipping`` with the same baseline (0), number of steps and
  softmax (``images * steps`` rows). Quantus counts steps in elements of the broadcast
  map and needs a step size that divides ``H * W``, so on 3-channel 64 x 64 images it
  removes ``3 * 4096 / steps`` elements per step (a third of a pixel's channels at a time
  for some pixels); the curves are compared exactly in the tests, on sizes where whole
  pixels can be removed;
- ``floor``: no-grad forward passes of ready-made rows at the best chunk size among
  16..512, extrapolated to our row count.

Each is timed as rows per second; the table gives the ratios measured in the same run.

``--part table``: every metric with its defaults for integrated gradients, saliency,
Grad-CAM and a uniformly random map on ``--images`` held-out images (``make_shapes`` seed
``--data-seed``, 4242 by default), plus deletion with three baselines, infidelity at three
noise levels and the sensitivities of three methods (``--sens-images`` images).

    python bench/bench_evaluation.py --part speed --images 16 --steps 48
    python bench/bench_evaluation.py --part table --images 32
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


def floor_rate(model, x: torch.Tensor, sizes, budget_s: float) -> tuple[float, int]:
    rates = {}
    g = torch.Generator().manual_seed(0)
    for size in sizes:
        xb = x[torch.arange(size) % len(x)] * torch.rand(size, 1, *x.shape[2:], generator=g)
        with torch.no_grad():
            model(xb)
            n, t0 = 0, time.perf_counter()
            while n < 2 or (time.perf_counter() - t0 < budget_s and n < 8):
                model(xb)
                n += 1
        rates[size] = n * size / (time.perf_counter() - t0)
    best = max(rates, key=rates.get)
    return rates[best], best


def speed(args) -> list[str]:
    import quantus

    from seethrough import zoo
    from seethrough.attribution import IntegratedGradients
    from seethrough.data import make_shapes
    from seethrough.evaluation.faithfulness import deletion

    model = zoo.load("shapes-cnn")
    data = make_shapes(args.images, seed=4242)
    x = data.images
    with torch.no_grad():
        y = model(x).argmax(1)
    maps = IntegratedGradients(model, steps=16).attribute(x, y).attributions.sum(1, keepdim=True)
    P = x.shape[2] * x.shape[3]
    rate_floor, best = floor_rate(model, x, [16, 32, 64, 128, 256, 512], 1.0)

    deletion(model, x[:2], maps[:2], target=y[:2], steps=args.steps)  # warm-up, fills the chunk cache
    ours_s = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = deletion(model, x, maps, target=y, steps=args.steps)
        ours_s = min(ours_s, time.perf_counter() - t0)
    ours_rows = res.n_evaluations

    q = quantus.PixelFlipping(
        features_in_step=x.shape[1] * P // args.steps,
        normalise=False,
        abs=False,
        perturb_baseline=0.0,
        disable_warnings=True,
    )
    q_s = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        out = np.array(
            q(
                model=model,
                x_batch=x.numpy(),
                y_batch=y.numpy(),
                a_batch=maps.numpy(),
                channel_first=True,
                softmax=True,
                device="cpu",
                batch_size=len(x),
            )
        )
        q_s = min(q_s, time.perf_counter() - t0)
    q_rows = len(x) * out.shape[1]

    r_ours, r_q = ours_rows / ours_s, q_rows / q_s
    lines = [
        f"`python bench/bench_evaluation.py --part speed --images {args.images} --steps {args.steps}` "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); best of {args.repeat})",
        "",
        "| | rows | seconds | rows/s | vs floor |",
        "|---|---:|---:|---:|---:|",
        f"| floor (no-grad forward, chunk {best}) | {ours_rows} | {ours_rows / rate_floor:.2f} | {rate_floor:.0f} | 1.00 |",
        f"| ours: `deletion` | {ours_rows} | {ours_s:.2f} | {r_ours:.0f} | {r_ours / rate_floor:.2f} |",
        f"| Quantus `PixelFlipping` | {q_rows} | {q_s:.2f} | {r_q:.0f} | {r_q / rate_floor:.2f} |",
        "",
        f"ours / Quantus throughput: {r_ours / r_q:.2f}.",
    ]
    return lines


def table(args) -> list[str]:
    from seethrough import zoo
    from seethrough.attribution import GradCAM, IntegratedGradients, Saliency
    from seethrough.data import make_shapes
    from seethrough.evaluation import faithfulness as F
    from seethrough.evaluation import robustness as R

    model = zoo.load("shapes-cnn")
    data = make_shapes(args.images, seed=args.data_seed)
    x = data.images
    methods = {
        "integrated_gradients": IntegratedGradients(model),
        "saliency": Saliency(model),
        "gradcam": GradCAM(model, layer="features.16"),
    }
    maps = {k: m.attribute(x) for k, m in methods.items()}
    maps["random"] = torch.rand(len(x), 64, 64, generator=torch.Generator().manual_seed(0))
    cols = list(maps)
    out = [
        f"`python bench/bench_evaluation.py --part table --images {args.images} --sens-images {args.sens_images}"
        + (f" --data-seed {args.data_seed}" if args.data_seed != 4242 else "")
        + (f" --rows {args.rows}" if args.rows else "")
        + f"` (held-out `make_shapes({args.images}, seed={args.data_seed})`, bundled `shapes-cnn`; mean over images)",
        "",
        "| metric (direction) | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    t_all = time.perf_counter()

    def row(label, fn, **kw):
        if args.rows and not any(label.startswith(r) for r in args.rows.split(",")):
            return
        vals = []
        for k in cols:
            r = fn(model, x, maps[k], **kw)
            vals.append(f"{r.mean:.3g}")
        arrow = "higher" if fn.higher_is_better else "lower"
        out.append(f"| {label} ({arrow}) | " + " | ".join(vals) + " |")
        print(out[-1], flush=True)

    row("deletion, black baseline (default)", F.deletion)
    row("deletion, baseline='blur'", F.deletion, baseline="blur")
    row("deletion, baseline='mean'", F.deletion, baseline="mean")
    row("insertion (blurred start)", F.insertion)
    row("region_perturbation: AOPC MoRF - LeRF", F.region_perturbation)
    row("road: area LeRF - MoRF", F.road)
    row("infidelity, noise_std=0.01 (default)", F.infidelity)
    row("infidelity, noise_std=0.003", F.infidelity, noise_std=0.003)
    row("infidelity, noise_std=0.2", F.infidelity, noise_std=0.2)
    row("infidelity, square removal", F.infidelity, perturbation="square")
    row("faithfulness_correlation (subset_size=0.05, default)", F.faithfulness_correlation)
    row("faithfulness_correlation, subset_size=0.01", F.faithfulness_correlation, subset_size=0.01)
    row("faithfulness_correlation, subset_size=0.2", F.faithfulness_correlation, subset_size=0.2)
    out.append("")
    if args.sens_images == 0:
        return out
    xs = x[: args.sens_images]
    out.append(f"Sensitivities on the first {args.sens_images} images (radius 0.2, 50 samples, the defaults):")
    out.append("")
    out.append("| metric (lower is better) | " + " | ".join(methods) + " |")
    out.append("|---|" + "---:|" * len(methods))
    sens = {k: R.max_sensitivity(model, xs, m) for k, m in methods.items()}
    out.append("| max_sensitivity | " + " | ".join(f"{r.mean:.3g}" for r in sens.values()) + " |")
    out.append(
        "| avg_sensitivity | " + " | ".join(f"{float(r.extras['mean'].mean()):.3g}" for r in sens.values()) + " |"
    )
    out.append("")
    out.append(f"Total {time.perf_counter() - t_all:.0f} s.")
    print("\n".join(out[-6:]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("speed", "table"), default="speed")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--sens-images", type=int, default=4, help="images for the sensitivities (0: skip them)")
    ap.add_argument("--data-seed", type=int, default=4242, help="seed of the held-out shapes images")
    ap.add_argument("--rows", default="", help="comma-separated prefixes of the table rows to compute (default: all)")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = speed(args) if args.part == "speed" else table(args)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
