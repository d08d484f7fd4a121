#!/usr/bin/env python
"""Benchmarks of the generative family on this machine.

1. Decoding throughput: ``Latent.decode`` of 8,192 codes (automatic chunks, and an explicit
   batch size) against the floor, the model's own ``decode`` called directly in a loop at
   its best batch size (no guard, no chunking), in the same run. Goal: >= 0.85 of the floor.
2. Rejection sampling of 100,000 candidates from the aggregate-posterior mixture with the
   Peptide Sampler's conditions (``amp > 0.8``, ``charge in [2, 6]``): time and peak memory
   (resident set, reset before the run through /proc/self/clear_refs).

    python bench/bench_generative.py --out docs/bench-generative.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

BATCHES = (64, 256, 1024, 4096)


def _peak_rss_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def decode_rows(names: list[str], n: int, repeat: int) -> list[dict]:
    from seethrough import zoo
    from seethrough.generative import Latent

    rows = []
    for name in names:
        model = zoo.load(name)
        z = torch.randn(n, zoo.info(name).latent_dim, generator=torch.Generator().manual_seed(0))

        def raw(b: int) -> None:
            with torch.inference_mode():
                for i in range(0, n, b):
                    model.decode(z[i : i + b])

        # interleaved: every repeat runs each variant once, so that a busy machine slows all alike
        runs: dict[str, list[float]] = {}

        def timed(key: str, fn) -> None:
            t0 = time.perf_counter()
            fn()
            runs.setdefault(key, []).append(time.perf_counter() - t0)

        for _ in range(repeat):
            for b in BATCHES:
                timed(f"raw{b}", lambda b=b: raw(b))
            timed("auto", lambda: Latent(model).decode(z))
            for b in BATCHES:
                timed(f"latent{b}", lambda b=b: Latent(model, batching=b).decode(z))
        floor = {b: min(runs[f"raw{b}"]) for b in BATCHES}
        best_b = min(floor, key=lambda b: floor[b])
        t_auto = min(runs["auto"])
        t_best = min(runs[f"latent{best_b}"])
        rows.append(
            {
                "model": name,
                "codes": n,
                "floor batch": best_b,
                "floor (codes/s)": n / floor[best_b],
                "Latent.decode auto (codes/s)": n / t_auto,
                "auto / floor": floor[best_b] / t_auto,
                "Latent.decode at the floor batch (codes/s)": n / t_best,
                "batch / floor": floor[best_b] / t_best,
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def sampling_row(candidates: int) -> dict:
    from seethrough.app.peptides import PeptideLab
    from seethrough.generative import Condition

    t0 = time.perf_counter()
    lab = PeptideLab.build("peptide-wae")
    setup = time.perf_counter() - t0
    conds = [Condition.parse("amp > 0.8"), Condition.parse("charge in [2, 6]")]
    sampler = lab.sampler(conds)
    # score every candidate, decode only the accepted: n_accept above what can be accepted
    before = _rss_mb()
    _peak_rss_reset()
    t0 = time.perf_counter()
    s = sampler.sample(candidates + 1, max_candidates=candidates, seed=0)
    dt = time.perf_counter() - t0
    peak = _peak_rss_mb()
    return {
        "candidates": s.n_candidates,
        "accepted": len(s),
        "acceptance": s.acceptance_rate,
        "seconds (score + decode + describe)": dt,
        "candidates/s": s.n_candidates / dt,
        "RSS before (MB)": before,
        "peak RSS during (MB)": peak,
        "peak - before (MB)": peak - before,
        "lab setup (s)": setup,
    }


def _table(rows: list[dict]) -> str:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mnist-vae,scenes-vae,peptide-wae")
    p.add_argument("--codes", type=int, default=8192)
    p.add_argument("--candidates", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    dec = decode_rows([m for m in args.models.split(",") if m], args.codes, args.repeat)
    samp = sampling_row(args.candidates)
    load = os.getloadavg()
    text = "\n".join(
        [
            "# Generative benchmarks",
            "",
            f"`python bench/bench_generative.py {shlex.join(argv)}`".replace(" `", "`"),
            "",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; load average at the end {load[0]:.1f}. Best of {args.repeat}, the variants interleaved.",
            "",
            "## Decoding throughput against the raw decode floor",
            "",
            "The floor calls the model's own `decode` in a loop under `torch.inference_mode()` at each batch size "
            f"of {BATCHES} and keeps the fastest; `Latent.decode` adds the guard (eval mode, frozen parameters, "
            "restored after), input checks and chunking (automatic: sized from one row's largest activation, aiming at "
            "`DECODE_WORKING_SET` = 4 MiB per chunk, within the memory budget).",
            "",
            _table(dec),
            "",
            "## Rejection sampling of 100,000 candidates (Peptide Sampler, peptide-wae)",
            "",
            "Conditions `amp > 0.8` and `charge in [2, 6]`, scored on z by the latent classifier and regressor in "
            "chunks of 8,192; the accepted codes are decoded and described (modlamp descriptors, sequence "
            "classifiers). Peak memory is the process's peak resident set during the call (VmHWM after a reset).",
            "",
            _table([samp]),
            "",
        ]
    )
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
