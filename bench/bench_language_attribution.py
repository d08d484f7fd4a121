"""Token attribution on SmolLM2-135M against Captum's LLMGradientAttribution and Inseq, in one run.

- **Integrated gradients**, a 32-token prompt, the predicted next token, the same steps, rule
  (Gauss-Legendre) and baseline (the unknown token, id 0, at every position) as Captum's
  ``LLMGradientAttribution(LayerIntegratedGradients(model, embed_tokens))``, so the same
  convergence delta: time and peak extra memory beside Captum's, and the time of the floor,
  the ``steps`` forward+backward passes of the prompt at the embedding done by hand at the
  best chunk size of a small search.
- **Per-step attribution of a 10-token greedy generation** (saliency and input x gradient):
  ours (all steps as rows of one batched call) against Inseq's ``attribute`` with the same
  method and generation.
- **Convergence** (``--convergence``): IG's delta against the number of steps on the same prompt.

Every measurement runs in a fresh subprocess (one thread, ``torch.set_num_threads(1)``, for
every library alike: the machine is shared); the peak extra memory is the resident-set peak
(VmHWM) above the resident size after loading the model and a one-token warm-up of the same
method, with glibc returning freed memory at once (``MALLOC_MMAP_THRESHOLD_``), and the time
comes from a second child with the default allocator.

    python bench/bench_language_attribution.py --out docs/bench-language-attribution.md
    python bench/bench_language_attribution.py --quick      # 8 IG steps, 3 generated tokens
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]

TEXT = (
    "The Eiffel Tower was built for the 1889 World's Fair in Paris. It was designed by the engineer Gustave "
    "Eiffel, whose company also worked on the Statue of Liberty. The tower stands in the city of"
)
N_PROMPT = 32


def load():
    from seethrough.language.model import TextModel

    try:
        from seethrough.app.texts import load_text_model

        return load_text_model("smollm2")
    except ImportError:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cache = "/tmp/smol_cache"
        model = AutoModelForCausalLM.from_pretrained(cache).eval()
        return TextModel(model, AutoTokenizer.from_pretrained(cache), name="smollm2")


def prompt_ids(tm):
    ids = tm.encode(TEXT)[:, :N_PROMPT]
    return ids, tm.tokenizer.decode(ids[0].tolist())


def predicted(tm, ids) -> int:
    with torch.no_grad():
        return int(tm.logits(ids)[0, -1].argmax())


# -- tasks, each run in a child -------------------------------------------------------------
def task(name: str, cfg: dict):
    """``(warm-up, run)`` callables for one measurement; ``run()`` returns a dict of facts."""
    tm = load()
    ids, text = prompt_ids(tm)
    tok = predicted(tm, ids)
    steps, n_gen = cfg["steps"], cfg["n_gen"]
    if name == "ig_ours":
        from seethrough.language.attribution import TokenAttributor

        def run(i=ids, s=steps):
            r = TokenAttributor(tm, method="integrated_gradients", steps=s).attribute(i, tok)
            return {"delta": r.delta}

        return (lambda: run(ids[:, -1:], 2)), run
    if name == "ig_captum":
        from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

        llm = LLMGradientAttribution(LayerIntegratedGradients(tm.model, tm.model.get_input_embeddings()), tm.tokenizer)

        def run(t=text, s=steps):
            inp = TextTokenInput(t, tm.tokenizer, baselines=0)
            out = llm.attribute(inp, target=torch.tensor([tok]), n_steps=s)
            return {"n_tokens": len(inp.values), "sum": float(out.seq_attr.sum())}

        return (lambda: run(tm.tokenizer.decode(ids[0, -1:].tolist()), 2)), run
    if name == "floor":
        model = tm.model
        emb = model.get_input_embeddings()(ids).detach()

        def rows(n):
            x = emb.expand(n, -1, -1).clone().requires_grad_(True)
            # the least work a gradient at the embedding needs: the next-token logits only
            out = model(inputs_embeds=x, use_cache=False, logits_to_keep=1).logits[:, -1].log_softmax(-1)[:, tok]
            torch.autograd.grad(out.sum(), x)

        def run():
            for p in model.parameters():
                p.requires_grad_(False)
            best = None
            for size in sorted({1, 4, 8, 16, min(32, steps)}):
                if size > steps:
                    continue
                t0 = time.perf_counter()
                done = 0
                while done < min(steps, max(size, 8)):
                    rows(size)
                    done += size
                rate = done / (time.perf_counter() - t0)
                if best is None or rate > best[0]:
                    best = (rate, size)
            assert best is not None
            return {"seconds_floor": steps / best[0], "chunk": best[1]}

        return (lambda: rows(1)), run
    if name in ("gen_ours_saliency", "gen_ours_input_x_gradient"):
        from seethrough.language.generation import attribute_generation

        method = name.split("gen_ours_")[1]

        def run(n=n_gen):
            r = attribute_generation(tm, ids, n, method=method)
            return {"generated": r.text}

        return (lambda: run(1)), run
    if name in ("gen_inseq_saliency", "gen_inseq_input_x_gradient"):
        sys.path.insert(0, str(ROOT / ".venv" / "peers" / "inseq"))
        import inseq

        method = name.split("gen_inseq_")[1]
        model = inseq.load_model(tm.model, method, tokenizer=tm.tokenizer)

        def run(n=n_gen):
            out = model.attribute(
                text,
                generation_args={"max_new_tokens": n, "do_sample": False},
                attributed_fn="probability",
                attributed_fn_args={"logprob": True},
                show_progress=False,
            )
            seq = out.sequence_attributions[0]
            return {"generated": "".join(t.token for t in seq.target[-n:])}

        return (lambda: run(1)), run
    if name == "convergence":
        from seethrough.language.attribution import TokenAttributor

        def run():
            rows = []
            for s in cfg["sweep"]:
                for rule in ("gausslegendre",):
                    t0 = time.perf_counter()
                    r = TokenAttributor(tm, method="integrated_gradients", steps=s, rule=rule).attribute(ids, tok)
                    gap = r.target_score - (r.baseline_score or 0.0)
                    rows.append({"steps": s, "rule": rule, "delta": r.delta, "gap": gap, "s": time.perf_counter() - t0})
            return {"rows": rows}

        return (lambda: None), run
    raise SystemExit(f"unknown task {name}")


def _rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(name: str, spec: str) -> None:
    torch.set_num_threads(1)
    cfg = json.loads(spec)
    warm, run = task(name, cfg)
    warm()
    before = _rss_mib()
    t0 = time.perf_counter()
    facts = run()
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "extra_mib": _rss_mib("VmHWM") - before, **facts}))


_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_ARENA_MAX": "2"}


def spawn(name: str, cfg: dict, env: dict | None) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, json.dumps(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}


def measure(name: str, cfg: dict, *, memory: bool = True) -> dict:
    timing = spawn(name, cfg, None)
    if memory and "error" not in timing:
        mem = spawn(name, cfg, _MALLOC_ENV)
        timing["extra_mib"] = mem.get("extra_mib", float("nan"))
    print(name, json.dumps(timing), flush=True)
    return timing


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=50, help="IG steps for the Captum comparison (Captum's default)")
    ap.add_argument("--convergence", action="store_true", help="also IG's delta against the number of steps")
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    cfg = {"steps": 8 if args.quick else args.steps, "n_gen": 3 if args.quick else 10, "sweep": [20, 50, 200, 500]}
    load_before = os.getloadavg()
    res = {k: measure(k, cfg) for k in ("ig_ours", "ig_captum")}
    res["floor"] = measure("floor", cfg, memory=False)
    for m in ("saliency", "input_x_gradient"):
        for impl in ("ours", "inseq"):
            res[f"gen_{impl}_{m}"] = measure(f"gen_{impl}_{m}", cfg)
    conv = measure("convergence", cfg, memory=False) if args.convergence else None
    load_after = os.getloadavg()

    o, c, f = res["ig_ours"], res["ig_captum"], res["floor"]
    lines = [
        "# Token attribution on SmolLM2: seethrough against Captum and Inseq",
        "",
        f"Command: `python bench/bench_language_attribution.py{' --convergence' if args.convergence else ''} --out "
        f"docs/bench-language-attribution.md`. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores shared with other jobs, one thread per measurement; load average "
        f"{load_before[0]:.2f} before and {load_after[0]:.2f} after the run (`uptime`). torch {torch.__version__}. "
        "Each number is one run in a fresh process (after a one-token warm-up of the same method); peak memory is "
        "the resident-set peak above the resident size after loading the model (see the script's docstring).",
        "",
        f"## Integrated gradients, {N_PROMPT}-token prompt, {cfg['steps']} steps (Gauss-Legendre), unk-token baseline",
        "",
        "| | time (s) | peak extra memory (MiB) | delta |",
        "|---|---:|---:|---:|",
        f"| seethrough `TokenAttributor` | {o.get('seconds', float('nan')):.2f} | {o.get('extra_mib', float('nan')):.0f} | "
        f"{o.get('delta', float('nan')):+.3f} |",
        f"| Captum `LLMGradientAttribution(LayerIntegratedGradients)` | {c.get('seconds', float('nan')):.2f} | "
        f"{c.get('extra_mib', float('nan')):.0f} | same path and points |",
        f"| floor: {cfg['steps']} forward+backward passes, best chunk {f.get('chunk')} | {f.get('seconds_floor', float('nan')):.2f} | | |",
        "",
        f"Ratios: memory ours / Captum = {o.get('extra_mib', 0) / max(c.get('extra_mib', 1), 1e-9):.3f} (goal <= 0.333); "
        f"time ours / floor = {o.get('seconds', 0) / max(f.get('seconds_floor', 1), 1e-9):.2f} (goal <= 1.2); "
        f"time ours / Captum = {o.get('seconds', 0) / max(c.get('seconds', 1), 1e-9):.2f}.",
        "",
        f"## Per-step attribution of a {cfg['n_gen']}-token greedy generation",
        "",
        "| method | seethrough (s) | Inseq (s) | speed-up | seethrough peak (MiB) | Inseq peak (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in ("saliency", "input_x_gradient"):
        a, b = res[f"gen_ours_{m}"], res[f"gen_inseq_{m}"]
        lines.append(
            f"| {m} | {a.get('seconds', float('nan')):.2f} | {b.get('seconds', float('nan')):.2f} | "
            f"{b.get('seconds', float('nan')) / max(a.get('seconds', 1), 1e-9):.2f}x | {a.get('extra_mib', float('nan')):.0f} | "
            f"{b.get('extra_mib', float('nan')):.0f} |"
        )
    gens = {res[k].get("generated") for k in res if k.startswith("gen_")}
    lines += ["", f"Generated text (both libraries): {sorted(map(repr, gens))}."]
    if conv is not None and "rows" in conv:
        lines += [
            "",
            "## Integrated gradients: convergence delta against steps (same prompt and target)",
            "",
            "| steps | rule | delta | gap f(x) - f(baseline) | time (s) |",
            "|---:|---|---:|---:|---:|",
        ]
        for r in conv["rows"]:
            lines.append(f"| {r['steps']} | {r['rule']} | {r['delta']:+.3f} | {r['gap']:.3f} | {r['s']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
