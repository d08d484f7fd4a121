"""The demo's language page: the bundled kv-lm on prompts whose evidence is known (every method,
then every method scored against that evidence), its logit lens and causal trace; SmolLM2 on a
factual prompt (token attributions, a contrastive one, the generation step by step, the logit
lens and activation patching); and a MiniLM sentence-similarity explanation. Light settings
keep it to a few minutes; the ``seethrough text`` commands run the full ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from seethrough.report.html import HtmlReport

__all__ = ["language_section", "language_page"]

#: integrated-gradients steps in the demo on SmolLM2 (the library's default is 500; the page
#: reports the completeness delta it leaves)
SMOLLM2_STEPS = 64
#: held-out prompts per task in the demo's evidence study (docs/language-numbers.md: 50)
N_EVIDENCE = 10


def _kv_part(page: HtmlReport, out: Path, say: Callable[[str], None]) -> None:
    from seethrough.app.language import FAST_SETTINGS, evidence_study, explain_prompt
    from seethrough.app.texts import load_text_model
    from seethrough.data.text import make_text_task
    from seethrough.language.lens import logit_lens
    from seethrough.language.patching import causal_trace

    tm = load_text_model("kv-lm")
    page.add_heading("The bundled kv-lm: explanations against known evidence")
    kv = make_text_task("kv", 1, seed=7)
    prompt, answer, evidence = next(iter(kv))
    say("kv-lm: every method on one prompt")
    study = explain_prompt(tm, prompt, methods="all", target=answer, settings=FAST_SETTINGS)
    page.add_paragraph(
        f"kv-lm is a 2-block Llama trained on key-value retrieval and copying (scripts/train_lm.py). Prompt "
        f"{prompt!r} answers {answer!r}; the evidence is token {evidence} ({kv.tokens(0)[evidence]!r}), the value of "
        f"the queried key. Each row is one method's score of every token for the answer."
    )
    for name, r in study.results.items():
        page.add_heading(name, level=3)
        page.add_html(r.to_html())

    say("kv-lm: every method scored against the evidence")
    tasks = [make_text_task("kv", N_EVIDENCE, seed=1000), make_text_task("copy", N_EVIDENCE, seed=1000)]
    rows = evidence_study(tm, tasks, methods="all")
    page.add_heading("Which methods find the evidence", level=3)
    page.add_paragraph(
        f"On {N_EVIDENCE} held-out prompts per task: the share of prompts whose top-scored token (<bos> excluded) is the "
        "evidence, the share of the absolute scores on it, and ERASER comprehensiveness (higher is better) and "
        "sufficiency (lower is better) by deletion. 'random' is the chance level. Command: seethrough text evidence."
    )
    page.add_table(rows)

    say("kv-lm: logit lens and causal trace")
    lens = logit_lens(tm, prompt, target=answer)
    page.add_heading("Logit lens", level=3)
    page.add_html(lens.to_html())
    trace = causal_trace(tm, prompt, answer, corrupt=[evidence], samples=4)
    page.add_heading("Causal trace: noise on the evidence token, one state restored at a time", level=3)
    page.add_paragraph(
        f"Clean probability of {answer!r}: {trace.clean_prob:.3f}; with noise on token {evidence}: "
        f"{trace.corrupted_prob:.3f}."
    )
    page.add_html(trace.to_html())


def _smollm2_part(page: HtmlReport, say: Callable[[str], None]) -> None:
    from seethrough.app.language import explain_prompt
    from seethrough.app.texts import load_text_model
    from seethrough.language.lens import logit_lens
    from seethrough.language.patching import causal_trace

    say("SmolLM2: loading (the first run converts the GGUF once)")
    tm = load_text_model("smollm2")
    prompt = "The capital of France is"
    page.add_heading("SmolLM2-135M-Instruct: a factual prompt")
    say("SmolLM2: token attributions and the generation step by step")
    study = explain_prompt(
        tm,
        prompt,
        methods=("saliency", "input_x_gradient", "integrated_gradients", "atman", "alti"),
        generate=6,
        generation_methods=("saliency", "input_x_gradient"),
        settings={"integrated_gradients": {"steps": SMOLLM2_STEPS}},
    )
    ig = study.results["integrated_gradients"]
    page.add_paragraph(
        f"Prompt {prompt!r}; SmolLM2 continues {next(iter(study.generation.values())).text!r}. Integrated gradients "
        f"at {SMOLLM2_STEPS} steps leave a completeness delta of {getattr(ig, 'delta', float('nan')):+.3g} nats "
        f"(the library default is 500 steps). Command: seethrough text explain --model smollm2."
    )
    for name, r in study.results.items():
        page.add_heading(name, level=3)
        page.add_html(r.to_html())
    for name, g in study.generation.items():
        page.add_heading(f"Generation step by step ({name})", level=3)
        page.add_html(g.to_html())

    say("SmolLM2: contrastive attribution")
    contrast = explain_prompt(tm, prompt, methods=("input_x_gradient",), target=" Paris", foil=" Lyon")
    page.add_heading("Why ' Paris' rather than ' Lyon'", level=3)
    page.add_html(contrast.results["input_x_gradient"].to_html())

    say("SmolLM2: logit lens and activation patching")
    lens = logit_lens(tm, prompt, target=" Paris")
    page.add_heading("Logit lens", level=3)
    page.add_html(lens.to_html())
    france = tm.tokens(tm.encode(prompt)).index(" France")
    trace = causal_trace(tm, prompt, " Paris", corrupt=[france], kinds=("resid",))
    page.add_heading("Causal trace: noise on ' France'", level=3)
    page.add_paragraph(
        f"Clean probability of ' Paris' {trace.clean_prob:.3f}; with ' France' corrupted {trace.corrupted_prob:.3f}. "
        "Each cell restores one residual-stream state. Command: seethrough text patch."
    )
    page.add_html(trace.to_html())


def _minilm_part(page: HtmlReport, say: Callable[[str], None]) -> None:
    from seethrough.app.texts import load_text_model
    from seethrough.language.similarity import SimilarityExplanation

    say("MiniLM: sentence similarity")
    tm = load_text_model("minilm")
    r = SimilarityExplanation(tm, steps=32).attribute("A cat sits on the mat", "A dog sits on the mat")
    page.add_heading("all-MiniLM-L6-v2: why two sentences are similar")
    page.add_paragraph(
        f"Cosine similarity {r.similarity:.3f}. Integrated gradients of the similarity for each sentence's tokens, "
        "and the token x token decomposition. Command: seethrough text similarity."
    )
    page.add_html(r.to_html())


def language_page(out: Path, *, progress: Callable[[str], None] | None = None) -> Path:
    """Write ``language.html`` into ``out``."""
    say = progress or (lambda _s: None)
    t0 = time.perf_counter()
    page = HtmlReport("seethrough demo: language models")
    page.add_heading("Language models", level=1)
    _kv_part(page, out, say)
    _smollm2_part(page, say)
    _minilm_part(page, say)
    page.add_paragraph(f"This page took {time.perf_counter() - t0:.0f} s.")
    out.mkdir(parents=True, exist_ok=True)
    return page.save(out / "language.html")


def language_section(report: HtmlReport, out: Path, *, progress: Callable[[str], None] | None = None) -> Path:
    """Write ``language.html`` and link it from ``report``."""
    path = language_page(out, progress=progress)
    report.add_heading("Language models")
    report.add_html(
        '<p><a href="language.html"><strong>Open the language page</strong></a>: the bundled kv-lm explained by every '
        "method and scored against known evidence, SmolLM2 token attributions, a contrastive attribution, the "
        "generation step by step, logit lens and activation patching, and a MiniLM similarity explanation.</p>"
    )
    return path
