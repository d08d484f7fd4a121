"""Subset scanning: run time and memory of the fast scan, and how it grows with nodes.

For 1,000 test samples against a background of 1,000 samples:

- ``synthetic``: ReLU activations (``relu(N(0, 1))``, half the values tied at zero, so
  ranged p-values) and continuous ones (``N(0, 1)``, no ties), for 256 .. 4096 nodes;
  the p-values (:func:`empirical_pvalues`) and the scan (:func:`subset_scan`, default
  grid of at most 64 alphas) are timed apart. The growth exponent is the slope of
  log(time) on log(nodes).
- ``model``: :class:`SubsetScanner` on a random conv layer (``Conv2d(3, 16)`` + ReLU on
  16 x 16 inputs, no reduce: 4,096 nodes; and ``reduce="mean"``: 16 nodes), fit and scan
  timed (the forward passes included).

Peak memory: the peak resident set size (``resource.getrusage``, which covers torch's
allocator) of a fresh process doing the p-values and the scan, minus its resident size
once the inputs exist (``tracemalloc`` is not used: it does not see torch's tensors).

    python bench/bench_scanning.py --out docs/bench-scanning.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import time

import numpy as np
import torch
from torch import nn

from seethrough.generative.scanning import SubsetScanner, empirical_pvalues, subset_scan


def _status_mib(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> float:
    """Reset the peak resident set (VmHWM, Linux: /proc/self/clear_refs) and return the
    current resident set, the base the next peak is measured from."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mib("VmRSS")


def _peak_mib() -> float:
    return _status_mib("VmHWM")


def _child(args) -> tuple[float, float]:
    kind, j, n_bg, n_test, work = args
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(j)
    bg, test = torch.randn(n_bg, j, generator=g), torch.randn(n_test, j, generator=g)
    if kind == "relu":
        bg, test = torch.relu(bg), torch.relu(test)
    base = _reset_peak()
    if work:
        lo, hi = empirical_pvalues(bg, test)
        subset_scan(lo, hi)
    return base, _peak_mib()


def _fresh_peak(kind: str, j: int, n_bg: int, n_test: int) -> float:
    """Peak resident memory of p-values + scan in a fresh process, above the same process's
    resident memory once the inputs exist."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        base, peak = pool.map(_child, [(kind, j, n_bg, n_test, True)])[0]
    return peak - base


def _time(fn, repeats: int):
    best = float("inf")
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def synthetic(nodes_list, n_bg: int, n_test: int, repeats: int, out: list[str]) -> None:
    out += [
        "## Synthetic activations",
        "",
        f"{n_test} test samples, {n_bg} background samples; best of {repeats} runs; "
        "`relu`: half the values tied at 0 (ranged p-values); `gauss`: no ties.",
        "",
        "| data | nodes | p-values (s) | scan (s) | total (s) | alphas | peak RSS above the inputs (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    slopes = {}
    for kind in ("relu", "gauss"):
        times = []
        for j in nodes_list:
            g = torch.Generator().manual_seed(j)
            bg = torch.randn(n_bg, j, generator=g)
            test = torch.randn(n_test, j, generator=g)
            if kind == "relu":
                bg, test = torch.relu(bg), torch.relu(test)
            tp, (lo, hi) = _time(lambda: empirical_pvalues(bg, test), repeats)
            ts, r = _time(lambda: subset_scan(lo, hi), repeats)
            peak = _fresh_peak(kind, j, n_bg, n_test)
            times.append(tp + ts)
            out.append(f"| {kind} | {j} | {tp:.3f} | {ts:.3f} | {tp + ts:.3f} | {r.alpha_grid.numel()} | {peak:.1f} |")
            print(out[-1], flush=True)
        slopes[kind] = float(np.polyfit(np.log(nodes_list), np.log(times), 1)[0])
    out += [
        "",
        "Growth of the total time with nodes (slope of log time on log nodes): "
        + ", ".join(f"{k}: {v:.2f}" for k, v in slopes.items())
        + " (1 = linear).",
        "",
    ]


def model_part(n_bg: int, n_test: int, out: list[str]) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    g = torch.Generator().manual_seed(1)
    real = torch.rand(n_bg, 3, 16, 16, generator=g)
    test = torch.rand(n_test, 3, 16, 16, generator=g)
    out += [
        "## A model layer",
        "",
        f"`SubsetScanner` on a random `Conv2d(3, 16, 3)` + ReLU (layer `1`) with 16 x 16 inputs: {n_bg} background "
        f"and {n_test} test inputs (uniform noise images), forward passes included.",
        "",
        "| reduce | nodes | fit (s) | scan (s) | peak RSS above the start (MiB) |",
        "|---|---|---|---|---|",
    ]
    for reduce in (None, "mean"):
        rss0 = _reset_peak()
        t0 = time.perf_counter()
        scanner = SubsetScanner(model, layer="1", reduce=reduce).fit(real)
        t1 = time.perf_counter()
        r = scanner.scan(test)
        t2 = time.perf_counter()
        out.append(f"| {reduce or 'none'} | {r.n_nodes} | {t1 - t0:.3f} | {t2 - t1:.3f} | {_peak_mib() - rss0:.0f} |")
        print(out[-1], flush=True)
    out.append("")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    nodes = [256, 512, 1024] if args.quick else [256, 512, 1024, 2048, 4096]
    n = 200 if args.quick else 1000
    load = os.getloadavg()
    out = [
        "# Subset scanning: measurements",
        "",
        f"Produced by `bench/bench_scanning.py` on {platform.machine()}, torch {torch.__version__}, 1 thread, "
        f"{os.cpu_count()} CPUs (load average at start {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}; above about 1, "
        "other jobs shared the cores and the timings are contended):",
        "",
        "    python bench/bench_scanning.py --out docs/bench-scanning.md",
        "",
    ]
    synthetic(nodes, n, n, args.repeats, out)
    model_part(n, n, out)
    out += [
        "Memory: the peak resident set (VmHWM, which counts torch's allocations) during the p-values and the",
        "scan (synthetic: in a fresh process; model layer: fit and scan), after resetting the peak through",
        "/proc/self/clear_refs, minus the resident set just before. The scan works in chunks of samples sized so",
        "that a (samples x nodes) working array holds at most 2^24 elements (64 MiB in float32).",
        "",
    ]
    text = "\n".join(out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
