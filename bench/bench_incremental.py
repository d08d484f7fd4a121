"""Incremental occlusion against full occlusion (seethrough and Captum 0.9), in one run.

For each model, window and batch:

- ``occlusion``: :class:`seethrough.attribution.perturbation.Occlusion`, full
  re-evaluation of the model for every window (automatic chunking);
- ``incremental``: :class:`seethrough.attribution.incremental.IncrementalOcclusion`
  with its automatic split;
- ``captum ppe=1``: Captum's ``Occlusion`` with its default ``perturbations_per_eval=1``;
- ``captum best``: Captum with the fastest ``perturbations_per_eval`` of a sweep.

Times are the best of ``--repeats`` runs, wall clock and process CPU time. Each case
also reports the maximum difference to full occlusion, and a breakdown of where the
incremental time goes: per row, the recomputed regions (the local part up to the
split), the rest of the network from the split on, and a plain forward pass of the
whole model (NCHW, and with channels-last input: the incremental path computes in
channels-last memory, which by itself is faster on CPU, so the memory format's share of
the speed-up is shown separately).

    python bench/bench_incremental.py --out docs/bench-incremental.md
    python bench/bench_incremental.py --out docs/bench-incremental.md --threads 2 --skip-resnet --append
    python bench/bench_incremental.py --quick        # small sizes, a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def timed(fn, repeats: int):
    """Best wall time and best CPU time over ``repeats`` runs, and the last result."""
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu, out


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def breakdown(model, x, window, strides, rows: int) -> dict:
    """Per-row milliseconds: recomputed regions, suffix, full forward (NCHW / channels last)."""
    from seethrough.attribution import incremental as inc_mod

    inc = inc_mod.IncrementalOcclusion(model, window=window, strides=strides)
    win, st, counts = inc.geometry(tuple(x.shape[1:]))
    positions = list(itertools.product(*[range(c) for c in counts]))
    traced = inc._trace(())
    with torch.no_grad():
        an = inc_mod._analyse(traced["gm"], x[:1], ())
    geo = inc_mod._geometry(an, positions, win, st, tuple(x.shape[1:]))
    costs = inc_mod._costs(an, geo)
    split = min(an.cuts, key=lambda v: costs[v])
    before = set()
    for v in [an.input] + an.order:
        before.add(v)
        if v is split:
            break
    suffix = inc._suffix(an.gm, split, before)
    engine = inc_mod._Engine(an, geo, inc_mod._ancestors(split, an), split, torch.zeros_like(x[:1]))
    K = len(positions)
    rows = min(rows, K)
    ks = torch.arange(max(0, K // 2 - rows // 2), max(0, K // 2 - rows // 2) + rows)
    bs = torch.zeros_like(ks)
    with torch.no_grad():
        _, t_prefix, act = timed(lambda: engine.rows(ks, bs), 2)
        _, t_suffix, _ = timed(lambda: suffix(act.clone()), 2)
        xs = x[:1].expand(rows, *x.shape[1:]).clone()
        _, t_full, _ = timed(lambda: model(xs.clone()), 2)
        xcl = xs.contiguous(memory_format=torch.channels_last)
        _, t_cl, _ = timed(lambda: model(xcl.clone()), 2)
    # multiply-adds per row of the local part: all of it, and what incremental does
    anc = set(inc_mod._ancestors(split, an))
    full_macs = inc_macs = 0.0
    for v in an.order:
        op = an.ops[v]
        per = op.macs if op.kind == "window" else 0.0
        e_full = an.channels(v) * math.prod(an.n(v))
        e_reg = an.channels(v) * math.prod(geo.sizes[v])
        full_macs += e_full * per
        inc_macs += (e_reg if v in anc else e_full) * per
    ms = lambda t: 1000 * t / rows  # noqa: E731
    return {
        "full_macs": full_macs,
        "inc_macs": inc_macs,
        "split": inc_mod._display(split, an.gm),
        "prefix": ms(t_prefix),
        "suffix": ms(t_suffix),
        "full": ms(t_full),
        "full_cl": ms(t_cl),
        "rows": rows,
    }


def run_case(
    model,
    x,
    target,
    window,
    strides,
    *,
    repeats: int,
    captum_repeats: int,
    ppe_sweep,
    sweep_by_throughput: bool = False,
) -> dict:
    import captum.attr as ca

    from seethrough.attribution.incremental import IncrementalOcclusion
    from seethrough.attribution.perturbation import Occlusion

    full_window = (x.shape[1],) + tuple(window)
    res = {}
    res["occlusion"] = timed(lambda: Occlusion(model, window=window, strides=strides).attribute(x, target), repeats)
    inc = IncrementalOcclusion(model, window=window, strides=strides)
    res["incremental"] = timed(lambda: inc.attribute(x, target), repeats)
    res["split"] = inc.split_used
    ref, out = res["occlusion"][2], res["incremental"][2]
    res["max_diff"] = float((out.attributions - ref.attributions).abs().max())
    res["max_attr"] = float(ref.attributions.abs().max())
    res["max_score"] = float(ref.scores.abs().max())

    occ = ca.Occlusion(model)
    tgt = ref.target_indices
    full_strides = (1,) + ((strides,) * len(window) if isinstance(strides, int) else tuple(strides))

    def captum(ppe, xx=x, ss=full_strides, tt=tgt):
        with torch.no_grad():
            return occ.attribute(
                xx, sliding_window_shapes=full_window, strides=ss, baselines=0.0, target=tt, perturbations_per_eval=ppe
            )

    res["captum ppe=1"] = timed(lambda: captum(1), captum_repeats)
    cap = res["captum ppe=1"][2]
    res["captum_diff"] = float((cap - ref.attributions).abs().max())
    # sweep perturbations_per_eval, keep the fastest: full runs, or (where a full run takes
    # minutes) the model's forward time per row at a batch of ppe * len(x) rows
    sweep = {}
    for ppe in ppe_sweep:
        if sweep_by_throughput:
            rows = x.repeat(ppe, *([1] * (x.dim() - 1)))
            with torch.no_grad():
                sweep[ppe] = timed(lambda: model(rows), 2)[0] / rows.shape[0]
        else:
            sweep[ppe] = timed(lambda: captum(ppe), 1)[0]
    best = min(sweep, key=sweep.get)
    res["captum_best_ppe"] = best
    res["captum_sweep"] = sweep
    res["captum best"] = timed(lambda: captum(best), captum_repeats)
    return res


def fmt_s(t: float) -> str:
    return f"{t:.2f}" if t < 100 else f"{t:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write a markdown report here")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs (shapes-cnn)")
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--append", action="store_true", help="append the report to --out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import captum

    import seethrough as st
    from seethrough import zoo

    load_start = os.getloadavg()
    t_start = time.perf_counter()
    reps = 1 if args.quick else args.repeats
    cases = []

    try:
        shapes = zoo.load("shapes-cnn")
        shapes_name = "shapes-cnn (trained)"
    except FileNotFoundError:
        shapes = zoo.ShapesCNN(seed=0).eval()
        shapes_name = "ShapesCNN (random weights: shapes-cnn not trained)"
    images = st.data.make_shapes(8, seed=99).images
    settings = [((4, 4), 2), ((8, 8), 4)] if not args.quick else [((8, 8), 4)]
    batches = [1, 8] if not args.quick else [1]
    for (window, strides), n in itertools.product(settings, batches):
        x = images[:n]
        print(f"shapes-cnn {window} stride {strides}, {n} image(s)", file=sys.stderr, flush=True)
        res = run_case(
            shapes,
            x,
            None,
            window,
            strides,
            repeats=reps,
            captum_repeats=reps,
            ppe_sweep=[16, 64, 256] if n == 1 else [8, 32, 128],
        )
        cases.append((shapes_name, "3x64x64", window, strides, n, res))
        print({k: (v[:2] if isinstance(v, tuple) else v) for k, v in res.items()}, file=sys.stderr, flush=True)
    breaks = [(shapes_name, "4x4 stride 2", breakdown(shapes, images[:1], (4, 4), 2, 256))]

    if not args.skip_resnet:
        size = 64 if args.quick else 224
        resnet = zoo.ResNet18(seed=0).eval()
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
        window, strides = ((16, 16), 8) if not args.quick else ((8, 8), 8)
        print(f"resnet18 {size} {window} stride {strides}, 1 image", file=sys.stderr, flush=True)
        res = run_case(
            resnet,
            x,
            None,
            window,
            strides,
            repeats=1,
            captum_repeats=1,
            ppe_sweep=[4, 16, 64],
            sweep_by_throughput=not args.quick,
        )
        cases.append(("ResNet18 (random weights, seed 0)", f"3x{size}x{size}", window, strides, 1, res))
        breaks.append(
            (
                f"ResNet18 {size}x{size}",
                f"{window[0]}x{window[1]} stride {strides}",
                breakdown(resnet, x, window, strides, 32 if not args.quick else 16),
            )
        )

    total = time.perf_counter() - t_start
    load_end = os.getloadavg()

    lines = []
    cmd = "python bench/bench_incremental.py " + " ".join(sys.argv[1:])
    if args.append:
        lines.append(f"\n## Run with {torch.get_num_threads()} intra-op thread(s)\n")
    else:
        lines.append("# Incremental occlusion: benchmark\n")
    lines.append(f"Command: `{cmd.strip()}` (took {total / 60:.1f} min).\n")
    lines.append(
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs shared with other processes "
        f"(load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end), "
        f"torch {torch.__version__} with {torch.get_num_threads()} intra-op thread(s), "
        f"captum {captum.__version__}, Python {platform.python_version()}.\n"
    )
    lines.append(
        "Times in seconds: best of "
        f"{reps} runs on shapes-cnn, a single run on ResNet18 (one image; its full "
        "occlusion takes about a minute per method). `wall` is elapsed time, `cpu` the "
        "process CPU time of the same best run (more stable on a shared machine). Speed-ups "
        "are relative to seethrough's full `Occlusion`, on wall (cpu) time. `diff` is the "
        "largest absolute difference of the attributions to full occlusion, `|attr|` the "
        "largest attribution and `|score|` the largest clean score: the attributions are "
        "score differences, equal up to float rounding of the scores.\n"
    )
    lines.append(
        "Summary: `IncrementalOcclusion` against full `Occlusion` (wall clock): "
        + "; ".join(
            f"{name.split(' (')[0]} {shape.split('x', 1)[1]}, {window[0]}x{window[1]} windows stride {strides}, "
            f"{n} image(s): {res['occlusion'][0] / res['incremental'][0]:.2f}x"
            for name, shape, window, strides, n, res in cases
        )
        + ".\n"
    )
    lines.append(
        "| model | input | window | stride | images | method | wall | cpu | speed-up |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for name, shape, window, strides, n, res in cases:  # noqa: B007 (shape is read after the loop)
        base_w, base_c = res["occlusion"][0], res["occlusion"][1]
        for method in ["occlusion", "incremental", "captum ppe=1", "captum best"]:
            w, c = res[method][0], res[method][1]
            label = method
            if method == "incremental":
                label = f"incremental (split `{res['split']}`)"
            if method == "captum best":
                label = f"captum ppe={res['captum_best_ppe']}"
            lines.append(
                f"| {name} | {shape} | {window[0]}x{window[1]} | {strides} | {n} | {label} | "
                f"{fmt_s(w)} | {fmt_s(c)} | {base_w / w:.2f}x ({base_c / c:.2f}x) |"
            )
    lines.append("")
    lines.append("Exactness (incremental vs full occlusion; Captum vs full occlusion):\n")
    lines.append(
        "| model | window | stride | images | diff | captum diff | \\|attr\\| | \\|score\\| |\n|---|---|---|---|---|---|---|---|"
    )
    for name, _shape, window, strides, n, res in cases:
        lines.append(
            f"| {name} | {window[0]}x{window[1]} | {strides} | {n} | {res['max_diff']:.1e} | "
            f"{res['captum_diff']:.1e} | {res['max_attr']:.3g} | {res['max_score']:.3g} |"
        )
    lines.append("")
    lines.append(
        "Captum `perturbations_per_eval` sweeps (seconds for the whole run, one run each; "
        "on ResNet18 224, where one run takes minutes, milliseconds of forward time per row "
        "at a batch of ppe rows instead):\n"
    )
    for name, shape, window, strides, n, res in cases:
        big = "224" in shape
        sw = ", ".join(
            f"{k}: {1000 * v:.1f} ms/row" if big else f"{k}: {v:.2f}" for k, v in res["captum_sweep"].items()
        )
        lines.append(f"- {name}, {window[0]}x{window[1]} stride {strides}, {n} image(s): {sw}")
    lines.append("")
    lines.append(
        "Where the incremental time goes (milliseconds per perturbed row, CPU time, rows "
        "from the middle of the window grid):\n"
    )
    lines.append(
        "| model | window | split | regions up to split | rest of network | incremental total | "
        "full forward (NCHW) | full forward (channels-last input) |\n|---|---|---|---|---|---|---|---|"
    )
    for name, wdesc, br in breaks:
        lines.append(
            f"| {name} | {wdesc} | `{br['split']}` | {br['prefix']:.3f} | {br['suffix']:.3f} | "
            f"{br['prefix'] + br['suffix']:.3f} | {br['full']:.3f} | {br['full_cl']:.3f} |"
        )
    lines.append("")
    lines.append(
        "Reading the breakdown: the memory format alone (full forward NCHW / channels-last) "
        "accounts for part of the gain on this CPU; the rest is the work saved by "
        "recomputing regions (full forward channels-last / incremental). The convolution "
        "multiply-adds per row give the ceiling of the region recomputation: the layers "
        "from the split on run in full, and where a window's receptive-field cone already "
        "spans most of a map, recomputing a region saves little.\n"
    )
    lines.append(
        "| model | memory format share | region recomputation share | total vs NCHW forward | "
        "conv MACs per row: full / incremental (ratio) |\n|---|---|---|---|---|"
    )
    for name, wdesc, br in breaks:
        inc_t = br["prefix"] + br["suffix"]
        lines.append(
            f"| {name}, {wdesc} | {br['full'] / br['full_cl']:.2f}x | {br['full_cl'] / inc_t:.2f}x | "
            f"{br['full'] / inc_t:.2f}x | {br['full_macs'] / 1e6:.0f}M / {br['inc_macs'] / 1e6:.0f}M "
            f"({br['full_macs'] / br['inc_macs']:.2f}x) |"
        )
    lines.append("")
    lines.append(
        "Why not more: recomputing regions is exact, so it can only skip the multiply-adds "
        "outside each window's receptive-field cone. The cone widens with depth (in ResNet18 "
        "at 224 a 16x16 window reaches most of layer3 and all of layer4, which hold about "
        "half of the network's multiply-adds; in shapes-cnn the last two 8x8 convolutions "
        "see 39 and 55 input pixels), and from the split on the network runs in full, so the "
        "multiply-add ratio above is the ceiling of the saving. Measured speed-ups beat it "
        "somewhat because the skipped early layers (few input channels, large maps, "
        "memory-bound batch norm and pooling) run at a lower rate per multiply-add than the "
        "deep ones, and the regions are computed in channels-last memory. On small problems "
        "(one 64x64 image, a few hundred windows) fixed per-call costs (the clean pass, "
        "first-touch allocations) weigh too. Going further would take approximations "
        "(Nakandala et al.'s projective-field thresholding), which this method does not make.\n"
    )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a" if args.append else "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
