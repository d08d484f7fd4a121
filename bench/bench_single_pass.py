"""Single-pass attribution methods against Captum 0.9 and the plain-torch floor.

For each model (a random-weight ``SmallVGG`` at 64x64 and the bundled ``shapes-cnn``),
batch size (1 and 8) and single-pass method, three callables are timed on the same
model, inputs and targets (one class per sample):

- ``ours``: seethrough with default settings (``bench_gradient.ours``);
- ``captum``: Captum's same method (``bench_gradient.captum``; Grad-CAM is
  ``LayerGradCam(relu_attributions=True)`` upsampled to the input, as seethrough returns);
- ``floor``: the forward+backward passes the method needs, in plain torch with frozen
  parameters: to the input for input-gradient methods, to the layer's output (captured
  as a leaf, the input not requiring grad) for layer methods, both for Guided Grad-CAM.

Calls are interleaved (ours, captum, floor, in rotating order, in one process) after a
warm-up, and the table gives medians over ``--repeat`` rounds. ``ours / captum`` and
``ours / floor`` are medians of the per-round ratios (the calls of one round run within
milliseconds of each other, so a burst of load from other processes slows both sides
of a ratio alike); ``spread`` is the interquartile range of the per-round ``ours / captum``,
the measurement noise on this machine.

    python bench/bench_single_pass.py --out docs/bench-single-pass.md
    python bench/bench_single_pass.py --repeat 5 --models shapes-cnn   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_gradient import captum, ours, targets_for  # noqa: E402
from bench_perturbation import make  # noqa: E402

warnings.filterwarnings("ignore")

METHODS = [
    "saliency",
    "input_x_gradient",
    "guided_backprop",
    "deconvolution",
    "gradcam",
    "gradcam_pp",
    "guided_gradcam",
    "layer_gradient_x_activation",
]
LAYER_METHODS = {"gradcam", "gradcam_pp", "guided_gradcam", "layer_gradient_x_activation"}


def cam_layer(model_name: str) -> str:
    from seethrough import zoo

    return zoo.SmallVGG.default_cam_layer if model_name == "small-vgg" else zoo.info(model_name).default_cam_layer


# -- floor ---------------------------------------------------------------------------------
def _input_pass(model: nn.Module, x: Tensor, t: Tensor) -> None:
    xr = x.detach().requires_grad_(True)
    out = model(xr.clone())
    torch.autograd.grad(out[torch.arange(len(x)), t].sum(), xr)


def _layer_pass(model: nn.Module, module: nn.Module, x: Tensor, t: Tensor) -> None:
    store: dict = {}

    def hook(_m: nn.Module, _i: object, out: Tensor) -> Tensor:
        store["a"] = out.detach().requires_grad_(True)
        return store["a"].clone()

    handle = module.register_forward_hook(hook)
    try:
        out = model(x)
    finally:
        handle.remove()
    torch.autograd.grad(out[torch.arange(len(x)), t].sum(), store["a"])


def floor(method: str, model: nn.Module, x: Tensor, t: Tensor, layer: str) -> Callable[[], None]:
    """The raw passes ``method`` needs (parameters frozen inside the call, as seethrough does)."""
    module = dict(model.named_modules())[layer]
    params = list(model.parameters())

    def run() -> None:
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            if method in LAYER_METHODS:
                _layer_pass(model, module, x, t)
            if method not in LAYER_METHODS or method == "guided_gradcam":
                _input_pass(model, x, t)
        finally:
            for p, f in zip(params, flags):
                p.requires_grad_(f)

    return run


# -- timing --------------------------------------------------------------------------------
def interleaved(fns: dict[str, Callable[[], object]], repeat: int, warmup: int = 3) -> dict[str, list[float]]:
    """Per-call seconds of each callable, alternating them round by round (rotating order)."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeat):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="small-vgg,shapes-cnn")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeat", type=int, default=41, help="interleaved rounds per row")
    ap.add_argument("--out")
    args = ap.parse_args()

    lines = [
        "| model | batch | method | ours ms | captum ms | floor ms | ours / captum | spread (IQR) | ours / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model_name in args.models.split(","):
        model, x_all = make(model_name)
        layer = cam_layer(model_name)
        for batch in (int(b) for b in args.batches.split(",")):
            x = x_all[:batch].contiguous()
            t = targets_for(model, x_all)[:batch]
            for method in args.methods.split(","):
                fns: dict[str, Callable[[], object]] = {"ours": ours(method, model, x, t, layer, 0)}
                c = captum(method, model, x, t, layer, 0)
                if c is not None:
                    fns["captum"] = c
                fns["floor"] = floor(method, model, x, t, layer)
                times = interleaved(fns, args.repeat)
                med = {n: statistics.median(v) for n, v in times.items()}
                if "captum" in med:
                    paired = [o / c for o, c in zip(times["ours"], times["captum"])]
                    lo, hi = quartiles(paired)
                    vs_captum = f"{statistics.median(paired):.2f}"
                    spread = f"{lo:.2f}-{hi:.2f}"
                    cms = f"{1e3 * med['captum']:.2f}"
                else:
                    vs_captum, spread, cms = "n/a", "n/a", "n/a"
                vs_floor = statistics.median(o / f for o, f in zip(times["ours"], times["floor"]))
                line = (
                    f"| {model_name} | {batch} | {method} | {1e3 * med['ours']:.2f} | {cms} | "
                    f"{1e3 * med['floor']:.2f} | {vs_captum} | {spread} | {vs_floor:.2f} |"
                )
                print(line, flush=True)
                lines.append(line)

    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, torch threads {torch.get_num_threads()}. "
        f"SmallVGG (random weights, layer `{cam_layer('small-vgg')}`) and shapes-cnn "
        f"(layer `{cam_layer('shapes-cnn')}`) at 64x64, one class target per sample. Medians of "
        f"{args.repeat} interleaved rounds (seethrough, Captum and the floor alternating in one process, "
        f"after 3 warm-up calls each); ratios: medians of the per-round ratios; spread: their interquartile range. On a shared machine compare the ratios, not the times, and "
        f"rerun for the run-to-run spread.\n\n"
        f"Command: `python bench/bench_single_pass.py {' '.join(sys.argv[1:])}`\n"
    )
    text = header + "\n" + "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
