"""Gradient-family methods against Captum 0.9 and against the floor, in one run.

For each model and method:

- ``ours``: seethrough with default settings (automatic chunking, no tuned batch size);
- ``captum``: Captum's default settings for the same method, target and work;
- ``floor``: the raw forward+backward passes the method must do (input gradients only,
  parameters frozen), at the best chunk size for this machine, found by a search over
  chunk sizes on a sample of rows and extrapolated to all rows.

Integrated gradients is timed, and its peak extra memory (RSS above the level after
loading model and inputs) measured, in a fresh subprocess per library with an
address-space cap, so that an out-of-memory run (Captum's default builds all
steps x batch rows at once) fails cleanly instead of taking the machine down. Its time
there is a single run after a one-sample warm-up, for both libraries alike.

    python bench/bench_gradient.py --out docs/bench-gradient.md
    python bench/bench_gradient.py --quick         # small sizes, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")


# -- models ------------------------------------------------------------------------------
def make_model(name: str, quick: bool):
    import seethrough as st

    torch.manual_seed(0)
    if name == "resnet18":
        from seethrough.zoo import ResNet18

        size = 64 if quick else 224
        model = ResNet18(num_classes=1000).eval()
        return model, torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(1)), "layer4"
    if name == "shapes-cnn":
        from seethrough import zoo

        model = zoo.load("shapes-cnn")
        x = st.data.make_shapes(8, seed=99).images
        return model, x, zoo.info("shapes-cnn").default_cam_layer
    raise SystemExit(f"unknown model {name}")


def targets_for(model, x):
    """One class per sample, cycling through the model's classes."""
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    return torch.arange(len(x)) % n_classes


# -- method runners ----------------------------------------------------------------------
def ours(method: str, model, x, t, layer, n_samples: int):
    import seethrough as st

    m = {
        "saliency": lambda: st.Saliency(model),
        "input_x_gradient": lambda: st.InputXGradient(model),
        "guided_backprop": lambda: st.GuidedBackprop(model),
        "deconvolution": lambda: st.Deconvolution(model),
        "integrated_gradients": lambda: st.IntegratedGradients(model, steps=50),
        "smoothgrad": lambda: st.SmoothGrad(model, n_samples=n_samples, noise_level=0.15),
        "gradcam": lambda: st.GradCAM(model, layer=layer),
        "gradcam_pp": lambda: st.GradCAMPlusPlus(model, layer=layer),
        "guided_gradcam": lambda: st.GuidedGradCAM(model, layer=layer),
        "layer_gradient_x_activation": lambda: st.LayerGradientXActivation(model, layer=layer),
    }[method]()
    return lambda: m.attribute(x, t)


def captum(method: str, model, x, t, layer, n_samples: int):
    import captum.attr as ca

    mod = dict(model.named_modules())[layer]
    span = float((x.reshape(len(x), -1).max(1).values - x.reshape(len(x), -1).min(1).values).mean())
    fns = {
        "saliency": lambda: ca.Saliency(model).attribute(x, target=t),
        "input_x_gradient": lambda: ca.InputXGradient(model).attribute(x, target=t),
        "guided_backprop": lambda: ca.GuidedBackprop(model).attribute(x, target=t),
        "deconvolution": lambda: ca.Deconvolution(model).attribute(x, target=t),
        "integrated_gradients": lambda: ca.IntegratedGradients(model).attribute(x, target=t, n_steps=50),
        "smoothgrad": lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=n_samples, stdevs=0.15 * span, target=t
        ),
        "gradcam": lambda: ca.LayerAttribution.interpolate(
            ca.LayerGradCam(model, mod).attribute(x, target=t, relu_attributions=True), x.shape[2:], "bilinear"
        ),
        "guided_gradcam": lambda: ca.GuidedGradCam(model, mod).attribute(x, target=t),
        "layer_gradient_x_activation": lambda: ca.LayerGradientXActivation(model, mod).attribute(x, target=t),
    }
    return fns.get(method)


def rows_needed(method: str, batch: int, n_samples: int) -> int:
    return {"integrated_gradients": 50 * batch, "smoothgrad": n_samples * batch, "guided_gradcam": 2 * batch}.get(
        method, batch
    )


# -- timing ------------------------------------------------------------------------------
def timed(fn, repeat: int, min_total: float = 1.0, max_runs: int = 30) -> float:
    """Best of at least ``repeat`` runs, repeated until ``min_total`` seconds have passed
    (at most ``max_runs``): millisecond calls need many runs on a shared CPU."""
    best, total, runs = float("inf"), 0.0, 0
    while runs < repeat or (total < min_total and runs < max_runs):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    return best


def floor_throughput(model, x, t, max_rows: int, budget_s: float) -> tuple[float, int]:
    """Best rows/s of raw forward+backward (input gradient, frozen parameters)."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        best, best_size = 0.0, 1
        sizes = [s for s in (4, 8, 16, 32, 64, 128, 256, 400) if s <= max(max_rows, 4)]
        for size in sizes:
            xb = x[torch.arange(size) % len(x)].clone()
            tb = t[torch.arange(size) % len(t)]

            def step():
                xr = xb.detach().requires_grad_(True)
                out = model(xr)
                torch.autograd.grad(out[torch.arange(size), tb].sum(), xr)

            step()  # warm-up
            n, t0 = 0, time.perf_counter()
            while n < 2 or (time.perf_counter() - t0 < budget_s and n < 4):
                step()
                n += 1
            rate = n * size / (time.perf_counter() - t0)
            if rate > best:
                best, best_size = rate, size
            elif rate < 0.85 * best and size >= 4 * best_size:
                break  # past the peak
        return best, best_size
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


# -- memory (subprocess) -------------------------------------------------------------------
def _rss_mib(field: str = "VmRSS") -> float:
    """Resident size (VmRSS) or its peak (VmHWM) of this process, in MiB. VmHWM is the
    peak of this process's own address space; ``getrusage``'s ``ru_maxrss`` is not usable
    in a child: Linux carries the parent's peak over at fork/exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(spec: str) -> None:
    cfg = json.loads(spec)
    cap = int(cfg["cap_gib"] * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    model, x, layer = make_model(cfg["model"], cfg["quick"])
    t = targets_for(model, x)
    make = ours if cfg["impl"] == "ours" else captum
    fn = make(cfg["method"], model, x, t, layer, cfg["n_samples"])
    # the same warm-up for both libraries: the method itself on one sample (autograd
    # engine, allocator, code paths), then the peak of the real call is measured
    make(cfg["method"], model, x[:1], t[:1], layer, cfg["n_samples"])()
    before = _rss_mib()
    try:
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        peak = _rss_mib("VmHWM")
        print(json.dumps({"extra_mib": peak - before, "seconds": seconds}))
    except (MemoryError, RuntimeError) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {str(e)[:80]}"}))


# Large allocations straight from mmap and freed memory returned at once: the resident
# size then follows live tensors, instead of glibc's arenas keeping freed blocks (which
# made the same run's peak vary between 100 and 500 MiB). It slows allocation, so the
# time comes from a separate child with the default allocator.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_ARENA_MAX": "2"}


def _child(spec: str, env: dict | None) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--memory-child", spec],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}


def measure_memory(model: str, method: str, impl: str, quick: bool, n_samples: int, cap_gib: float) -> dict:
    spec = json.dumps(dict(model=model, method=method, impl=impl, quick=quick, n_samples=n_samples, cap_gib=cap_gib))
    timing = _child(spec, None)
    memory = _child(spec, _MALLOC_ENV)
    out = {k: v for k, v in memory.items() if k != "seconds"}
    if "seconds" in timing:
        out["seconds"] = timing["seconds"]
    elif "error" in timing:
        out["error"] = timing["error"]
    return out


# -- main -------------------------------------------------------------------------------
METHODS = [
    "saliency",
    "input_x_gradient",
    "guided_backprop",
    "deconvolution",
    "integrated_gradients",
    "smoothgrad",
    "gradcam",
    "gradcam_pp",
    "guided_gradcam",
    "layer_gradient_x_activation",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="shapes-cnn,resnet18")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--n-samples", type=int, default=10, help="SmoothGrad noise samples (both libraries)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cap-gib", type=float, default=16.0, help="address-space cap of memory subprocesses")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    lines = [
        "| model | method | rows (fwd+bwd) | ours s | captum s | ours / captum | floor s | ours / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    mem_lines = ["| model | ours extra MiB | captum extra MiB | ours / captum |", "|---|---|---|---|"]
    for model_name in args.models.split(","):
        model, x, layer = make_model(model_name, args.quick)
        t = targets_for(model, x)
        methods = args.methods.split(",")
        max_rows = max(rows_needed(m, len(x), args.n_samples) for m in methods)
        rate, best_size = floor_throughput(model, x, t, max_rows, budget_s=3.0 if not args.quick else 0.5)
        print(f"[{model_name}] floor: {rate:.1f} rows/s at chunk {best_size}", flush=True)
        mem = {}
        if "integrated_gradients" in methods:
            for impl in ("ours", "captum"):
                mem[impl] = measure_memory(
                    model_name, "integrated_gradients", impl, args.quick, args.n_samples, args.cap_gib
                )
                print(f"  IG {impl}: {mem[impl]}", flush=True)
        for method in methods:
            if method == "integrated_gradients":
                rows = rows_needed(method, len(x), args.n_samples)
                tf = rows / rate
                to = mem["ours"].get("seconds", float("nan"))
                tc = mem["captum"].get("seconds", float("nan"))
                cs = (
                    f"{tc:.3f} | {to / tc:.2f}"
                    if "seconds" in mem["captum"]
                    else f"{mem['captum'].get('error', 'failed')} | n/a"
                )
                line = f"| {model_name} | {method} | {rows} | {to:.3f} | {cs} | {tf:.3f} | {to / tf:.2f} |"
                print(line, flush=True)
                lines.append(line)
                continue
            # warm-up on two samples (code paths, allocator, the per-sample-shape chunk cache)
            ours(method, model, x[:2], t[:2], layer, args.n_samples)()
            o = ours(method, model, x, t, layer, args.n_samples)
            to = timed(o, args.repeat)
            c = captum(method, model, x, t, layer, args.n_samples)
            if c:
                captum(method, model, x[:2], t[:2], layer, args.n_samples)()
            tc = timed(c, args.repeat) if c else float("nan")
            rows = rows_needed(method, len(x), args.n_samples)
            tf = rows / rate
            line = (
                f"| {model_name} | {method} | {rows} | {to:.3f} | "
                + (f"{tc:.3f} | {to / tc:.2f}" if c else "n/a | n/a")
                + f" | {tf:.3f} | {to / tf:.2f} |"
            )
            print(line, flush=True)
            lines.append(line)
        if "integrated_gradients" in methods:
            mo, mc = mem["ours"], mem["captum"]
            fo = f"{mo['extra_mib']:.0f}" if "extra_mib" in mo else mo["error"]
            fc = f"{mc['extra_mib']:.0f}" if "extra_mib" in mc else mc["error"]
            ratio = f"{mo['extra_mib'] / mc['extra_mib']:.2f}" if "extra_mib" in mo and "extra_mib" in mc else "n/a"
            line = f"| {model_name} | {fo} | {fc} | {ratio} |"
            print(line, flush=True)
            mem_lines.append(line)

    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, torch threads {torch.get_num_threads()}; "
        f"batch 8; ResNet-18 at {'64' if args.quick else '224'}x{'64' if args.quick else '224'}, "
        f"shapes-cnn at 64x64; best of at least {args.repeat} runs (more, up to 30, until 1 s has passed) after a two-sample warm-up; SmoothGrad with {args.n_samples} samples.\n\n"
        f"Command: `python bench/bench_gradient.py {' '.join(sys.argv[1:])}`\n"
    )
    text = (
        header
        + "\n### Time\n\n"
        + "\n".join(lines)
        + "\n\n### Integrated gradients (50 steps), peak extra memory\n\n"
        + "\n".join(mem_lines)
        + "\n"
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
