"""RISE against the floor: the raw forward passes it must do, at the best chunk size.

- ``ours (auto)``: ``RISE`` with default batching (automatic, tuned chunk size) on
  ``--images`` shapes images (64x64) with ``--n-masks`` masks: ``n_masks * images`` rows
  plus ``images`` clean rows; ``ours (best chunk)``: the same with ``batching`` set to the
  floor's best chunk size, which separates RISE's own overhead from the chunk-size choice;
- ``floor``: no-grad forward passes of ready-made rows through the same model, at the
  best chunk size among 16..512 (searched on a sample of rows), extrapolated to the
  same number of rows. It excludes making the masks and the masked inputs, which RISE
  has to do, so ``ours / floor`` is the whole overhead of the method's bookkeeping.

    python bench/bench_rise.py --out docs/bench-rise.md
    python bench/bench_rise.py --quick            # 200 masks, a smoke run
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


def floor_rate(model, x: torch.Tensor, sizes, budget_s: float) -> tuple[float, int, dict[int, float]]:
    """Best rows/s of no-grad forward passes over chunks of each size."""
    rates: dict[int, float] = {}
    g = torch.Generator().manual_seed(0)
    for size in sizes:
        xb = x[torch.arange(size) % len(x)] * torch.rand(size, 1, *x.shape[2:], generator=g)
        with torch.no_grad():
            model(xb)  # warm-up
            n, t0 = 0, time.perf_counter()
            while n < 2 or (time.perf_counter() - t0 < budget_s and n < 8):
                model(xb)
                n += 1
        rates[size] = n * size / (time.perf_counter() - t0)
    best = max(rates, key=rates.get)
    return rates[best], best, rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-masks", type=int, default=2000)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.quick:
        args.n_masks = 200

    import seethrough as st
    from seethrough import zoo
    from seethrough.attribution.rise import RISE

    model = zoo.load("shapes-cnn")
    shapes = st.data.make_shapes(args.images, seed=99)
    x, t = shapes.images, shapes.labels
    rows = args.n_masks * len(x) + len(x)

    sizes = [16, 32, 64, 128, 256, 512]
    rate, best, rates = floor_rate(model, x, sizes, budget_s=0.5 if args.quick else 2.0)
    print(
        f"floor: {rate:.0f} rows/s at chunk {best} ({', '.join(f'{s}: {r:.0f}' for s, r in rates.items())})", flush=True
    )

    masks_s = time.perf_counter()
    RISE(model, n_masks=args.n_masks).masks(args.n_masks, tuple(x.shape[2:]))
    masks_s = time.perf_counter() - masks_s
    RISE(model, n_masks=min(args.n_masks, 64)).attribute(x, t)  # warm-up (fills the chunk cache)

    def run(batching) -> float:
        rise = RISE(model, n_masks=args.n_masks, batching=batching)
        best_s = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = rise.attribute(x, t)
            best_s = min(best_s, time.perf_counter() - t0)
        assert out.n_evaluations == rows
        return best_s

    floor_s = rows / rate
    results = []
    for label, batching in (("auto", None), (f"best chunk ({best})", best)):
        s = run(batching)
        print(f"ours {label}: {s:.2f} s, {s / floor_s:.2f}x the floor", flush=True)
        results.append((label, s))

    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, torch threads {torch.get_num_threads()}; "
        f"shapes-cnn, {len(x)} images of 64x64, {args.n_masks} masks (grid 7, keep 0.5); "
        f"best of {args.repeat} after a warm-up. The machine may be shared: compare ratios, not seconds.\n\n"
        f"Command: `python bench/bench_rise.py {' '.join(sys.argv[1:])}`\n"
    )
    table = (
        [
            "| RISE batching | rows (forward) | ours s | ours rows/s | floor s | floor rows/s (chunk) | ours / floor |",
            "|---|---|---|---|---|---|---|",
        ]
        + [
            f"| {label} | {rows} | {s:.2f} | {rows / s:.0f} | {floor_s:.2f} | {rate:.0f} ({best}) | {s / floor_s:.2f} |"
            for label, s in results
        ]
        + [
            "",
            f"Drawing all {args.n_masks} masks alone: {masks_s:.2f} s (RISE draws each chunk's masks on demand; "
            f"the final weighted sum redraws only the low-resolution grids).",
        ]
    )
    floor_rows = ["| chunk | rows/s |", "|---|---|"] + [f"| {s} | {r:.0f} |" for s, r in rates.items()]
    text = (
        header
        + "\n### RISE vs the forward floor\n\n"
        + "\n".join(table)
        + "\n\n### Floor: no-grad forward throughput per chunk size\n\n"
        + "\n".join(floor_rows)
        + "\n"
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
