"""Feature visualization: batched rendering, and the cost of a step against its floor.

For each model (a random-weight ``SmallVGG`` and the bundled ``shapes-cnn``) and a
64-channel layer, every channel rendered with the default settings:

- whole renders: all 64 channels in one batch (``batch_size=64``), in automatic chunks
  (``Batching``), and one channel per call (``batch_size=1``; timed on ``--single``
  channels and scaled to 64);
- one optimisation step (after the redirected-ReLU steps), exactly as the render runs
  it, for 64 images and for one, against the ``floor``: forward and backward of a batch
  of the same shape through the model, stopped at the layer as the render is,
  differentiating the layer's sum with respect to the input. Steps and floors are timed
  alternately (so that both see the same load on a shared machine) and the fastest of
  ``--rounds`` is kept. ``step / floor`` is the overhead of the parameterization,
  transforms, objective and optimiser; ``64 x step(1) / step(64)`` the speedup of
  batching per step, and ``64 x floor(1) / floor(64)`` the most that batching the model
  itself gains on this machine;
- the parts of one 64-image step: image parameterization, transforms, model with the
  objective, Adam;
- agreement: an image rendered alone uses the same random draws as in a batch, but the
  convolutions round differently at another batch size and the optimisation amplifies
  it; the script reports the pixel correlation between the image of a channel rendered
  alone and in the batch, next to that between two seeds.

    python bench/bench_featurevis.py            # the tables in docs/featurevis.md
    python bench/bench_featurevis.py --quick
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def best_of(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.flatten().double()
    b = b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


class _Stepper:
    """Optimisation steps of one batch, exactly as ``FeatureVisualizer._optimise`` runs them."""

    def __init__(self, fv, plan, rows, setup) -> None:
        self.fv, self.plan, self.rows, self.setup = fv, plan, rows, setup
        self.built = setup.param.build((setup.channels, *setup.hw), rows.tolist(), seed=0)
        self.opt = torch.optim.Adam(self.built.params, lr=0.05)
        self.step = fv.redirect_relu_steps

    def __call__(self) -> None:
        with torch.enable_grad():
            loss, _ = self.fv._step_loss(self.plan, self.built, self.rows, len(self.rows), self.setup, step=self.step)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.step += 1


def bench_model(label, model, layer, size, args) -> dict:
    from seethrough._core.state import model_guard
    from seethrough.featurevis import FeatureVisualizer, channel
    from seethrough.featurevis.objectives import _Plan
    from seethrough.featurevis.render import _forward
    from seethrough.featurevis.transforms import StepRandom

    n = 64
    row = {"model": label, "layer": layer, "size": size}
    fv = FeatureVisualizer(model, steps=args.steps, size=size)
    setup = fv._setup()
    print(f"{label}: whole renders", flush=True)

    # -- whole renders ------------------------------------------------------------------
    t0 = time.perf_counter()
    batched = fv.visualize_channels(layer, batching=n)
    row["batched_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    auto = fv.visualize_channels(layer)
    row["auto_s"] = time.perf_counter() - t0
    row["auto_chunk"] = auto.settings["batch_size"]
    picks = list(range(0, n, n // args.single))[: args.single]
    t0 = time.perf_counter()
    single = [fv.visualize_channels(layer, [c], batching=1) for c in picks]
    row["single_s"] = (time.perf_counter() - t0) * n / len(picks)
    other_seed = FeatureVisualizer(model, steps=args.steps, size=size, seed=1).visualize_channels(
        layer, picks, batching=len(picks)
    )
    row["corr_alone"] = statistics.median(corr(s.images[0], batched.images[c]) for s, c in zip(single, picks))
    row["corr_seed"] = statistics.median(corr(o, batched.images[c]) for o, c in zip(other_seed.images, picks))
    row["max_diff"] = max(float((s.images[0] - batched.images[c]).abs().max()) for s, c in zip(single, picks))
    row["speedup"] = row["single_s"] / row["batched_s"]
    row["auto_speedup"] = row["single_s"] / row["auto_s"]

    # -- one step against the floor, timed alternately ------------------------------------
    print(f"{label}: steps and floors", flush=True)
    plan64 = _Plan(model, [channel(layer, c) for c in range(n)])
    plan1 = _Plan(model, [channel(layer, 0)])
    name = plan64.groups[0].name
    with model_guard(model):
        step64 = _Stepper(fv, plan64, torch.arange(n), setup)
        step1 = _Stepper(fv, plan1, torch.arange(1), setup)
        x64 = torch.rand(n, setup.channels, *setup.hw)

        def floor(x):
            def fn():
                with torch.enable_grad():
                    xx = x.clone().requires_grad_(True)
                    acts, _ = _forward(model, xx, plan64)
                    acts[name].sum().backward()

            return fn

        floor64, floor1 = floor(x64), floor(x64[:1])
        times = {"step64": [], "floor64": [], "step1": [], "floor1": []}
        fns = {"step64": step64, "floor64": floor64, "step1": step1, "floor1": floor1}
        for fn in fns.values():  # warm-up
            fn()
        for _ in range(args.rounds):
            for key, fn in fns.items():
                reps = 1 if key.endswith("64") else 8
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                times[key].append((time.perf_counter() - t0) / reps)
        for key, ts in times.items():
            row[key] = min(ts)
            row[key + "_med"] = statistics.median(ts)

        # -- the parts of one 64-image step -------------------------------------------------
        rows = torch.arange(n)
        built = setup.param.build((setup.channels, *setup.hw), rows.tolist(), seed=0)

        def param():
            with torch.enable_grad():
                built.image().sum().backward()

        u = built.image().detach().requires_grad_(True)

        def transforms():
            with torch.enable_grad():
                setup.transform(u, StepRandom(0, 1, rows, n)).sum().backward()

        def model_obj():
            with torch.enable_grad():
                x = x64.clone().requires_grad_(True)
                acts, out = _forward(model, x, plan64)
                plan64.evaluate(acts, out, u).sum().backward()

        opt = torch.optim.Adam(built.params, lr=0.05)
        for p in built.params:
            p.grad = torch.zeros_like(p)
        r = args.repeat
        row["param_s"] = best_of(param, r)
        row["transforms_s"] = best_of(transforms, r)
        row["model_obj_s"] = best_of(model_obj, r)
        row["adam_s"] = best_of(opt.step, r)
    row["ratio64"] = row["step64"] / row["floor64"]
    row["ratio1"] = row["step1"] / row["floor1"]
    row["step_speedup"] = n * row["step1"] / row["step64"]
    row["floor_speedup"] = n * row["floor1"] / row["floor64"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=64, help="steps of the whole renders")
    ap.add_argument("--single", type=int, default=8, help="channels rendered one at a time (scaled to 64)")
    ap.add_argument("--rounds", type=int, default=12, help="alternating rounds of step and floor timings")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.single, args.rounds, args.repeat = 8, 2, 3, 2
    torch.set_num_threads(1)

    from seethrough import zoo
    from seethrough.zoo.models import SmallVGG

    rows = [
        bench_model("SmallVGG (random weights)", SmallVGG(seed=0).eval(), "features.8", 64, args),
        bench_model("shapes-cnn", zoo.load("shapes-cnn"), "features.9", 64, args),
    ]
    lines = [
        f"Measured with `python bench/bench_featurevis.py{' --quick' if args.quick else ''}` on "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, on a "
        f"machine shared with other jobs (timings are contended and vary between runs). Every "
        f"channel of a 64-channel layer, 64x64 images.",
        "",
        f"One optimisation step against its floor (fastest of {args.rounds} alternating rounds; median in brackets):",
        "",
        "| model | step, 64 images | floor, 64 | step / floor | step, 1 image | floor, 1 | step / floor "
        "| batching speedup per step | attainable (floor) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} `{r['layer']}` | {r['step64'] * 1000:.0f} ms ({r['step64_med'] * 1000:.0f}) | "
            f"{r['floor64'] * 1000:.0f} ms ({r['floor64_med'] * 1000:.0f}) | {r['ratio64']:.2f} | "
            f"{r['step1'] * 1000:.1f} ms ({r['step1_med'] * 1000:.1f}) | {r['floor1'] * 1000:.1f} ms "
            f"({r['floor1_med'] * 1000:.1f}) | {r['ratio1']:.2f} | {r['step_speedup']:.1f}x | {r['floor_speedup']:.1f}x |"
        )
    lines += [
        "",
        f"Whole renders, {args.steps} steps per image (seconds; speedup against one channel per call, "
        f"which was timed on {args.single} channels and scaled to 64):",
        "",
        "| model | one at a time | 64 in one batch | automatic chunks |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['single_s']:.1f} | {r['batched_s']:.1f} ({r['speedup']:.1f}x) | "
            f"{r['auto_s']:.1f} ({r['auto_speedup']:.1f}x, chunks of {r['auto_chunk']}) |"
        )
    lines += [
        "",
        "Agreement of an image rendered alone with the same channel's image in the batch "
        f"(median pixel correlation over {args.single} channels; max absolute pixel difference), "
        "against the correlation between two seeds:",
        "",
        "| model | alone vs batch | max pixel diff | seed 0 vs seed 1 |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['corr_alone']:.3f} | {r['max_diff']:.2f} | {r['corr_seed']:.3f} |")
    lines += [
        "",
        f"The parts of one 64-image step, forward and backward of each (fastest of {args.repeat}):",
        "",
        "| model | image parameterization | transforms | model + objective | Adam | floor |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['param_s'] * 1000:.0f} ms | {r['transforms_s'] * 1000:.0f} ms | "
            f"{r['model_obj_s'] * 1000:.0f} ms | {r['adam_s'] * 1000:.1f} ms | {r['floor64'] * 1000:.0f} ms |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
