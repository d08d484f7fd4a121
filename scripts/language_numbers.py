"""Measure the numbers of docs/language.md and write docs/language-numbers.md.

    python scripts/language_numbers.py [--n 50] [--out docs/language-numbers.md]

1. Every token method of the registry on the bundled kv-lm, scored against the known evidence
   of held-out key-value and copy prompts (top token, mass, ERASER), with the chance level.
2. On SmolLM2: integrated gradients' completeness delta against the number of steps (the
   gap it must close is log p(target | prompt) - log p(target | baseline)), and what each
   method ranks first on a factual prompt.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from seethrough.app.language import evidence_study, evidence_table, top_tokens
from seethrough.app.texts import load_text_model
from seethrough.data.text import make_text_task
from seethrough.language.registry import explain_tokens


def ig_convergence(tm, prompt: str, steps: list[int]) -> str:
    lines = ["| steps | delta (nats) | target log p | baseline log p | seconds |", "|---|---|---|---|---|"]
    for s in steps:
        r = explain_tokens(tm, prompt, method="integrated_gradients", steps=s)
        lines.append(
            f"| {s} | {r.delta:+.4f} | {r.target_score:.3f} | {r.baseline_score:.3f} | {r.seconds:.1f} |"  # type: ignore[attr-defined]
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50, help="prompts per task (default: 50)")
    p.add_argument("--out", default="docs/language-numbers.md")
    p.add_argument("--skip-smollm2", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    parts = [
        "# Language numbers\n",
        f"Written by `python scripts/language_numbers.py --n {args.n}` on {platform.machine()} "
        f"({torch.get_num_threads()} threads).\n",
    ]
    kv = load_text_model("kv-lm")
    tasks = [make_text_task("kv", args.n, seed=1000), make_text_task("copy", args.n, seed=1000)]
    rows = evidence_study(kv, tasks, methods="all")
    parts += [
        "## Methods against known evidence (kv-lm)\n",
        f"{args.n} held-out prompts per task (seed 1000). 'top is evidence': share of prompts whose highest-scored "
        "token (<bos> excluded) is the evidence (kv: the queried value; copy: the earlier occurrence of the answer); "
        "'top in support': is any evidence position (kv: the queried key or value); 'mass on evidence': share of "
        "the absolute scores; ERASER comprehensiveness (higher is better) and sufficiency (lower is better) by "
        "deletion, <bos> kept, averaged over the bins 1, 5, 10, 20, 50 %. IG runs 64 steps and KernelSHAP 200 "
        "coalitions here. rollout and ALTI do not look at the target.\n",
        evidence_table(rows),
    ]
    if not args.skip_smollm2:
        tm = load_text_model("smollm2")
        prompt = "The capital of France is"
        parts += [
            "\n## Integrated gradients on SmolLM2: completeness against steps\n",
            f"Prompt {prompt!r}, target its next token, baseline the unknown token at every position, "
            "Gauss-Legendre points.\n",
            ig_convergence(tm, prompt, [20, 64, 128, 256, 500]),
        ]
        lines = ["| method | top 3 tokens |", "|---|---|"]
        for m in ("saliency", "input_x_gradient", "integrated_gradients", "occlusion", "atman", "alti"):
            r = explain_tokens(tm, prompt, method=m, **({"steps": 128} if m == "integrated_gradients" else {}))
            lines.append(f"| {m} | " + ", ".join(f"{t['token']!r} {t['score']:+.3g}" for t in top_tokens(r, 3)) + " |")
        parts += [f"\n## SmolLM2: what each method ranks first ({prompt!r})\n", "\n".join(lines) + "\n"]
    parts.append(f"\nTotal {time.perf_counter() - t0:.0f} s.\n")
    Path(args.out).write_text("\n".join(parts))
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
