#!/usr/bin/env python
"""Benchmarks of the sample-quality metrics (seethrough.generative.metrics) on this machine.

FID of 10,000 generated digits against 5,000 real MNIST digits, features from the bundled
``mnist-cnn``'s penultimate layer (``flatten``, 128 features):

1. ``seethrough``: ``FeatureExtractor(model, layer="flatten").extract`` of both sets (guarded,
   chunked, stopped at the layer) and :func:`fid`; against the floor, the same layers called
   directly under ``torch.inference_mode()`` at the fastest of a few batch sizes (no guard, no
   hooks, no chunking logic) with the Fréchet distance left out. Goal: >= 0.9 of the floor's speed.
2. The same FID with torchmetrics (``FrechetInceptionDistance(feature=module)``, batches of the
   floor's size) and with torch-fidelity's metric path (``calculate_metrics(fid=True)`` with the
   network registered as a feature extractor), when they are installed.
3. ``SampleQuality`` (FID, KID, precision, recall, density, coverage and IS, 200 bootstrap
   resamples) on the same images, for the cost of the whole report.

The speed against the floor is measured in one process, floor and seethrough alternated over
``--rounds`` rounds (the ratio of each round is robust to a shared machine whose load changes).
For the comparison with the peers each variant runs in its own subprocess (imports and data
loading are not timed), so that its peak memory is its own: VmHWM after a reset
(/proc/self/clear_refs) just before the timed part, less the resident set at that point; the
variants are interleaved over ``--repeat`` rounds and the fastest round of each is kept.

The generator is ``seethrough.zoo.load("mnist-gan")`` when its weights exist, else an untrained
``DCGANGenerator`` of the same shape (the timing does not depend on what the images show).

    python bench/bench_metrics.py --out docs/bench-metrics.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

BATCHES = (128, 512, 2048)
LAYER = "flatten"
VARIANTS = ("floor", "seethrough", "torchmetrics", "torch-fidelity", "sample-quality")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


# ----------------------------------------------------------------------------- data
def make_data(path: Path, n_fake: int, n_real: int) -> dict:
    from seethrough import zoo
    from seethrough.data.mnist import load_mnist

    x, _ = load_mnist()
    real = x[:n_real].clone()
    try:
        gen = zoo.load("mnist-gan")
        source = "mnist-gan (trained weights)"
    except Exception as e:  # noqa: BLE001 - no weights yet: any failure to load means the fallback
        from seethrough.zoo.gan import DCGANGenerator

        gen = DCGANGenerator(16, 1, 28, seed=0).eval()
        source = f"untrained DCGANGenerator(16, 1, 28) ({type(e).__name__} loading mnist-gan)"
    z = torch.randn(n_fake, int(gen.latent_dim), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fake = torch.cat([gen(z[i : i + 1000]) for i in range(0, n_fake, 1000)])
    torch.save({"real": real, "fake": fake.clone()}, path)
    return {"source": source, "real": tuple(real.shape), "fake": tuple(fake.shape)}


def _load(path: str) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    from seethrough import zoo

    data = torch.load(path)
    return data["real"], data["fake"], zoo.load("mnist-cnn").eval()


class Penultimate(nn.Module):
    """mnist-cnn up to its ``flatten`` layer: the 128 features, for the peers."""

    def __init__(self, model: nn.Module, *, double: bool = False) -> None:
        super().__init__()
        self.model = model
        self.num_features = 128
        self.double_out = double

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        out = m.flatten(m.pool(m.features(x)))
        return out.double() if self.double_out else out


# ----------------------------------------------------------------------------- workers
def worker(name: str, path: str, batch: int) -> dict:
    real, fake, model = _load(path)
    out: dict = {"variant": name}
    if name == "torch-fidelity":
        from seethrough.testing.fidelity import load_torch_fidelity

        if load_torch_fidelity() is None:
            return {"variant": name, "skipped": "torch-fidelity not installed"}
        import torch_fidelity
        from torch.utils.data import Dataset
        from torch_fidelity.feature_extractor_base import FeatureExtractorBase

        class Images(Dataset):
            def __init__(self, x: torch.Tensor) -> None:
                self.x = x

            def __len__(self) -> int:
                return int(self.x.shape[0])

            def __getitem__(self, i: int) -> torch.Tensor:
                return self.x[i]

        net = Penultimate(model)

        class Extractor(FeatureExtractorBase):
            def __init__(self, name: str, features_list: list[str], **kwargs) -> None:
                super().__init__(name, features_list)
                self.net = net

            @staticmethod
            def get_provided_features_list():
                return ("penultimate",)

            @staticmethod
            def get_default_feature_layer_for_metric(metric):
                return "penultimate"

            @staticmethod
            def can_be_compiled():
                return False

            def forward(self, x):
                return (self.net(x),)

        torch_fidelity.register_feature_extractor("seethrough-mnist-cnn", Extractor)
    if name == "torchmetrics":
        from torchmetrics.image.fid import FrechetInceptionDistance
    from seethrough.generative.metrics import FeatureExtractor, SampleQuality, fid  # imports are not timed

    base = _status_mb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    if name == "floor":
        net = Penultimate(model)
        with torch.inference_mode():
            feats = [net(x[i : i + batch]) for x in (real, fake) for i in range(0, x.shape[0], batch)]
        out["value"] = float(sum(float(f.sum()) for f in feats))
    elif name == "seethrough":
        ext = FeatureExtractor(model, layer=LAYER)
        out["value"] = fid(ext.extract(real), ext.extract(fake)).value
    elif name == "torchmetrics":
        metric = FrechetInceptionDistance(feature=Penultimate(model))
        with torch.inference_mode():
            for x, is_real in ((real, True), (fake, False)):
                for i in range(0, x.shape[0], batch):
                    metric.update(x[i : i + batch], real=is_real)
            out["value"] = float(metric.compute())
    elif name == "torch-fidelity":
        import torch_fidelity

        res = torch_fidelity.calculate_metrics(
            input1=Images(fake),
            input2=Images(real),
            fid=True,
            feature_extractor="seethrough-mnist-cnn",
            feature_layer_fid="penultimate",
            cuda=False,
            batch_size=batch,
            save_cpu_ram=True,
            cache=False,
            verbose=False,
        )
        out["value"] = float(res["frechet_inception_distance"])
    elif name == "sample-quality":
        sq = SampleQuality(FeatureExtractor(model, layer=LAYER), classifier=model, bootstrap=200)
        res = sq.evaluate(real, fake)
        out["value"] = res["fid"].value
        out["metrics"] = {k: [m.value, m.low, m.high] for k, m in res.metrics.items()}
        out["extract_seconds"] = res.extract_seconds
    else:
        raise SystemExit(f"unknown variant {name}")
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb"] = _status_mb("VmHWM")
    out["base_mb"] = base
    return out


def ratio_rounds(path: str, batch: int, rounds: int) -> dict:
    """Floor and seethrough's FID interleaved in one process, ``rounds`` times: the per-round
    ratio of their times is robust to a machine whose load changes between rounds."""
    from seethrough.generative.metrics import FeatureExtractor, fid

    real, fake, model = _load(path)
    net = Penultimate(model)

    def floor() -> None:
        with torch.inference_mode():
            for x in (real, fake):
                for i in range(0, x.shape[0], batch):
                    net(x[i : i + batch])

    def ours() -> None:
        ext = FeatureExtractor(model, layer=LAYER)
        fid(ext.extract(real), ext.extract(fake))

    t_floor, t_ours = [], []
    for k in range(rounds):
        for fn, times in ((floor, t_floor), (ours, t_ours)) if k % 2 == 0 else ((ours, t_ours), (floor, t_floor)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    ratios = sorted(f / o for f, o in zip(t_floor, t_ours))
    return {"floor": t_floor, "seethrough": t_ours, "ratios": ratios}


def run_worker(name: str, path: Path, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--data", str(path), "--batch", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"variant": name, "skipped": f"failed: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_floor_batch(path: Path) -> tuple[int, dict[int, float]]:
    real, fake, model = _load(str(path))
    net = Penultimate(model)
    times = {}
    for b in BATCHES:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, fake.shape[0] // 2, b):
                net(fake[i : i + b])
        times[b] = time.perf_counter() - t0
    return min(times, key=lambda b: times[b]), times


def _table(rows: list[dict]) -> str:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fake", type=int, default=10_000)
    p.add_argument("--real", type=int, default=5_000)
    p.add_argument("--repeat", type=int, default=3, help="rounds of the per-variant subprocesses")
    p.add_argument("--rounds", type=int, default=6, help="interleaved floor/seethrough rounds in one process")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=512, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "ratio":
        print(json.dumps(ratio_rounds(args.data, args.batch, args.rounds)))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.batch)))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.pt"
        info = make_data(path, args.fake, args.real)
        batch, probe = best_floor_batch(path)
        print(f"data {info}; floor batch {batch} ({probe})", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--worker", "ratio", "--data", str(path), "--batch", str(batch)]
        proc = subprocess.run([*cmd, "--rounds", str(args.rounds)], capture_output=True, text=True, check=True)
        ratio = json.loads(proc.stdout.strip().splitlines()[-1])
        print(ratio, file=sys.stderr, flush=True)
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(args.repeat):
            for v in variants:
                r = run_worker(v, path, batch)
                print(r, file=sys.stderr, flush=True)
                runs[v].append(r)
    floor = min((r["seconds"] for r in runs.get("floor", []) if "seconds" in r), default=float("nan"))
    rows = []
    for v in variants:
        done = [r for r in runs[v] if "seconds" in r]
        if not done:
            rows.append(
                {
                    "variant": v,
                    "seconds (best)": "-",
                    "images/s": "-",
                    "floor / this": "-",
                    "FID": "-",
                    "peak - start (MB)": "-",
                    "peak RSS (MB)": "-",
                    "note": runs[v][0].get("skipped", ""),
                }
            )
            continue
        best = min(done, key=lambda r: r["seconds"])
        n = args.fake + args.real
        rows.append(
            {
                "variant": v,
                "seconds (best)": best["seconds"],
                "images/s": n / best["seconds"],
                "floor / this": floor / best["seconds"],
                "FID": best["value"] if v != "floor" else "-",
                "peak - start (MB)": min(r["peak_mb"] - r["base_mb"] for r in done),
                "peak RSS (MB)": min(r["peak_mb"] for r in done),
                "note": f"extraction {best['extract_seconds']:.2f} s" if "extract_seconds" in best else "",
            }
        )
    rr = ratio["ratios"]
    ratio_row = {
        "rounds": len(rr),
        "floor best (s)": min(ratio["floor"]),
        "seethrough best (s)": min(ratio["seethrough"]),
        "best / best": min(ratio["floor"]) / min(ratio["seethrough"]),
        "median round ratio": float(rr[len(rr) // 2] if len(rr) % 2 else (rr[len(rr) // 2 - 1] + rr[len(rr) // 2]) / 2),
        "worst round ratio": rr[0],
        "best round ratio": rr[-1],
    }
    sq = [r for r in runs.get("sample-quality", []) if "metrics" in r]
    metric_rows = []
    if sq:
        for k, (value, low, high) in sq[0]["metrics"].items():
            metric_rows.append({"metric": k, "value": value, "low": low, "high": high})
    load = os.getloadavg()
    text = "\n".join(
        [
            "# Sample-quality metric benchmarks",
            "",
            f"`python bench/bench_metrics.py {shlex.join(argv)}`".replace(" `", "`"),
            "",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; load average at the end {load[0]:.1f}. Best of {args.repeat} rounds, "
            "the variants interleaved, each in its own process.",
            "",
            f"Images: {args.fake} generated by {info['source']} and {args.real} real MNIST digits; features: "
            f"mnist-cnn's `{LAYER}` (128). Floor batch size {batch} (fastest of {BATCHES}).",
            "",
            "## FID against the feature-extraction floor (one process, interleaved)",
            "",
            f"Floor and `FeatureExtractor(model, layer='flatten').extract` of both sets + `fid`, alternated {args.rounds} "
            "times in one process (the order swapped every round); a ratio is floor time / seethrough time "
            "(1: as fast as the floor; goal >= 0.9).",
            "",
            _table([ratio_row]),
            "",
            "## FID with the peers, each variant in its own process",
            "",
            "`floor`: the layers up to `flatten` called directly in batches of the floor size under "
            "`torch.inference_mode()`, no distance computed. `seethrough`: `FeatureExtractor(...).extract` of both "
            "sets + `fid`. `torchmetrics`: `FrechetInceptionDistance(feature=module)`, `update` per batch + `compute`. "
            "`torch-fidelity`: `calculate_metrics(fid=True)` with the network registered as its feature extractor "
            "(DataLoader in process, no cache). `sample-quality`: `SampleQuality(..., classifier=model, bootstrap=200)` "
            "(every metric, with intervals). Peak memory: VmHWM after a reset at the start of the timed part, less the "
            "resident set then (the images and the model are loaded before).",
            "",
            _table(rows),
            "",
        ]
        + (["## SampleQuality's metrics on these images", "", _table(metric_rows), ""] if metric_rows else [])
    )
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
