"""Language-model studies for the CLI and the demo: explain a prompt with several methods,
score every method against the bundled tasks' known evidence, and write the pages.

- :func:`explain_prompt`: the registry's methods on one prompt (and, with ``generate``, the
  per-step attribution of a greedy continuation); :func:`write_explain` writes it.
- :func:`evidence_study`: on the bundled ``kv-lm`` and its synthetic tasks
  (:mod:`seethrough.data.text`), for each method, the share of prompts whose top-scored token
  is the evidence, the share of the scores' mass on it, and ERASER comprehensiveness and
  sufficiency (:mod:`seethrough.evaluation.tokens`).
- :func:`write_lens`, :func:`write_patch`, :func:`write_similarity`: the pages of the other
  commands.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seethrough._core.errors import ConfigError
from seethrough._core.result import Result
from seethrough.data.text import TextTask
from seethrough.language import TextModel
from seethrough.language.generation import GENERATION_METHODS, GenerationAttribution, attribute_generation
from seethrough.language.registry import TEXT_METHODS, get_text_method, token_scores

__all__ = [
    "DEFAULT_TEXT_METHODS",
    "FAST_SETTINGS",
    "ExplainStudy",
    "explain_prompt",
    "top_tokens",
    "write_explain",
    "evidence_study",
    "evidence_table",
    "write_evidence",
    "write_lens",
    "write_patch",
    "write_similarity",
]

#: The methods ``seethrough text explain`` runs by default.
DEFAULT_TEXT_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "occlusion", "atman", "alti")

#: Lighter settings for the study on the tiny LM and the demo (every method keeps its code path).
FAST_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    "integrated_gradients": {"steps": 64},
    "kernel_shap": {"n_samples": 200},
}


@dataclass(frozen=True)
class ExplainStudy:
    """One prompt explained by several methods (``results``) and, optionally, the per-step
    attributions of a generated continuation (``generation``: method -> result)."""

    model: str
    prompt: str
    results: Mapping[str, Result]
    generation: Mapping[str, GenerationAttribution]
    target: str | None
    foil: str | None


def _methods(names: Sequence[str] | str) -> list[str]:
    if isinstance(names, str):
        names = list(TEXT_METHODS) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    out = [get_text_method(n).name for n in names]
    if not out:
        raise ConfigError(f"no method given; choose from {', '.join(TEXT_METHODS)} or 'all'")
    return out


def explain_prompt(
    tm: TextModel,
    prompt: str,
    *,
    methods: Sequence[str] | str = DEFAULT_TEXT_METHODS,
    target: str | int | None = None,
    foil: str | int | None = None,
    generate: int = 0,
    generation_methods: Sequence[str] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> ExplainStudy:
    """Every method on ``prompt`` for ``target`` (default: the model's next token; a text of
    several tokens is attributed as its sequence log-probability) or, with ``foil``, for
    ``target`` rather than ``foil``. With ``generate`` > 0 the gradient methods among
    ``methods`` (or ``generation_methods``) also attribute each of ``generate`` greedily
    generated tokens."""
    names = _methods(methods)
    settings = settings or {}
    if foil is not None:
        if target is None:
            raise ConfigError("a contrastive explanation needs both --target and --foil (why target rather than foil)")
        skipped = [n for n in names if not TEXT_METHODS[n].contrastive]
        names = [n for n in names if TEXT_METHODS[n].contrastive]
        if not names:
            raise ConfigError(f"none of the methods takes a foil ({', '.join(skipped)}); use e.g. saliency")
    results = {n: get_text_method(n).explain(tm, prompt, target, foil=foil, **settings.get(n, {})) for n in names}
    generation: dict[str, GenerationAttribution] = {}
    if generate:
        if generation_methods is not None:
            bad = [n for n in generation_methods if n not in GENERATION_METHODS]
            if bad:
                raise ConfigError(f"the generation is attributed by {', '.join(GENERATION_METHODS)}, not {bad}")
        gen_methods = list(generation_methods or [n for n in names if n in GENERATION_METHODS] or ["saliency"])
        continuation = None
        for n in gen_methods:
            g = attribute_generation(tm, prompt, generate, method=n, generated=continuation, **settings.get(n, {}))
            continuation = g.ids[g.n_prompt :]
            generation[n] = g
    return ExplainStudy(
        model=tm.name,
        prompt=prompt,
        results=results,
        generation=generation,
        target=None if target is None else str(target),
        foil=None if foil is None else str(foil),
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Tensor):
        return _jsonable(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def top_tokens(result: Result, k: int = 5) -> list[dict[str, Any]]:
    s = token_scores(result)
    tokens = result.tokens  # type: ignore[attr-defined]
    order = torch.argsort(s, descending=True)[:k].tolist()
    return [{"position": i, "token": tokens[i], "score": float(s[i])} for i in order]


def _summary(study: ExplainStudy) -> dict[str, Any]:
    out: dict[str, Any] = {"model": study.model, "prompt": study.prompt, "target": study.target, "foil": study.foil}
    methods = {}
    for name, r in study.results.items():
        row: dict[str, Any] = {"top": top_tokens(r), "tokens": list(r.tokens)}  # type: ignore[attr-defined]
        for key in ("target", "target_kind", "delta", "note", "seconds"):
            v = getattr(r, key, None)
            if v is not None and not callable(v):
                row[key] = v
        methods[name] = row
    out["methods"] = methods
    if study.generation:
        first = next(iter(study.generation.values()))
        out["generated"] = first.text
        out["generation"] = {
            n: {"matrix": g.matrix, "probabilities": g.probabilities, "tokens": list(g.tokens)}
            for n, g in study.generation.items()
        }
    return _jsonable(out)


def write_explain(out: Path | str, study: ExplainStudy, *, title: str | None = None) -> Path:
    """``<method>.safetensors`` per method (results with their tokens), ``generation-<method>
    .safetensors``, ``explain.json``, ``tokens.png`` (a row per method), ``generation.png`` and
    ``explain.html``. Returns the page's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seethrough.language.views import plot_tokens
    from seethrough.report.html import HtmlReport

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, r in study.results.items():
        r.save(out / f"{name}.safetensors")
    for name, g in study.generation.items():
        g.save(out / f"generation-{name}.safetensors")
    (out / "explain.json").write_text(json.dumps(_summary(study), indent=2) + "\n")

    n = len(study.results)
    fig = plt.figure(figsize=(10, 1.3 * n + 0.5))
    subs: Any = fig.subfigures(n, 1) if n > 1 else [fig]
    for sub, (name, r) in zip(subs, study.results.items()):
        scores = token_scores(r).numpy()  # the prompt's tokens (a continuation target's own are left out)
        plot_tokens(list(r.tokens)[: len(scores)], scores, ax=sub.add_subplot(1, 1, 1), title=name)  # type: ignore[attr-defined]
    fig.savefig(out / "tokens.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    if study.generation:
        g = next(iter(study.generation.values()))
        gfig = g.plot()
        gfig.savefig(out / "generation.png", dpi=100, bbox_inches="tight")
        plt.close(gfig)

    title = title or f"Why {study.model} continues the prompt as it does"
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_paragraph(f"Prompt: {study.prompt!r}")
    first = next(iter(study.results.values()))
    note = getattr(first, "note", None)
    if note:
        report.add_paragraph(str(note))
    report.add_paragraph(
        "Each row colours the prompt's tokens by one method's score for the target (diverging: red for evidence for "
        "it, blue against; hover a token for its value). rollout and ALTI score each token's share in the last "
        "position's representation instead (they do not depend on the target)."
    )
    report.add_heading("Token attributions", level=2)
    for name, r in study.results.items():
        report.add_heading(name, level=3)
        report.add_html(r.to_html())
    if study.generation:
        report.add_heading("Generation, step by step", level=2)
        report.add_paragraph(
            "Row j: the attribution of generated token j over the prompt and the tokens generated before it "
            "(blank beyond the causal diagonal)."
        )
        for name, g in study.generation.items():
            report.add_heading(name, level=3)
            report.add_html(g.to_html())
    return report.save(out / "explain.html")


# -- the evidence study -----------------------------------------------------------------------
def _evidence_row(
    tm: TextModel,
    task: TextTask,
    method: str,
    settings: Mapping[str, Any],
    eraser: bool,
) -> dict[str, Any]:
    from seethrough.evaluation.tokens import comprehensiveness, sufficiency

    hits = support_hits = 0
    mass = []
    comp, suff = [], []
    seconds = 0.0
    for i, (prompt, answer, evidence) in enumerate(task):
        if i == 0 and tm.tokens(tm.encode(prompt)) != task.tokens(0):
            raise ConfigError(
                f"{tm.name} does not tokenize the {task.name} prompts one word per token as the bundled tasks need "
                f"(got {tm.tokens(tm.encode(prompt))[:8]}...); the evidence study runs on the bundled kv-lm"
            )
        r = get_text_method(method).explain(tm, prompt, answer, **settings)
        seconds += float(getattr(r, "seconds", 0.0) or 0.0)
        s = token_scores(r).float().clone()
        s[: task.offset] = float("-inf")  # <bos> is never the evidence
        top = int(s.argmax())
        hits += top == evidence
        support_hits += top in task.support[i]
        a = token_scores(r).float().abs()[task.offset :]
        total = float(a.sum())
        mass.append(float(a[evidence - task.offset]) / total if total > 0 else 0.0)
        if eraser:
            ids = tm.encode(prompt)
            keep = torch.zeros(ids.shape[1], dtype=torch.bool)
            keep[: task.offset] = True
            maps = token_scores(r).float().reshape(1, -1)
            tid = tm.token_id(answer)
            comp.append(float(comprehensiveness(tm.model, ids, maps, target=tid, keep=keep).values.mean()))
            suff.append(float(sufficiency(tm.model, ids, maps, target=tid, keep=keep).values.mean()))
    n = len(task)
    row: dict[str, Any] = {
        "task": task.name,
        "method": method,
        "top is evidence": hits / n,
        "top in support": support_hits / n,
        "mass on evidence": sum(mass) / n,
    }
    if eraser:
        row["comprehensiveness"] = sum(comp) / n
        row["sufficiency"] = sum(suff) / n
    row["prompts"] = n
    return row


def _random_eraser(tm: TextModel, task: TextTask, seed: int = 0) -> dict[str, float]:
    """ERASER of a random ranking (seeded): the floor the methods' values are read against."""
    from seethrough.evaluation.tokens import comprehensiveness, sufficiency

    g = torch.Generator().manual_seed(seed)
    comp, suff = [], []
    for prompt, answer, _ in task:
        ids = tm.encode(prompt)
        keep = torch.zeros(ids.shape[1], dtype=torch.bool)
        keep[: task.offset] = True
        maps = torch.rand(1, ids.shape[1], generator=g)
        tid = tm.token_id(answer)
        comp.append(float(comprehensiveness(tm.model, ids, maps, target=tid, keep=keep).values.mean()))
        suff.append(float(sufficiency(tm.model, ids, maps, target=tid, keep=keep).values.mean()))
    return {"comprehensiveness": sum(comp) / len(comp), "sufficiency": sum(suff) / len(suff)}


def evidence_study(
    tm: TextModel,
    tasks: Sequence[TextTask],
    *,
    methods: Sequence[str] | str = "all",
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    eraser: bool = True,
) -> list[dict[str, Any]]:
    """For each task and method: ``top is evidence`` (share of prompts whose highest-scored
    token, ``<bos>`` excluded, is the evidence), ``top in support`` (is any evidence position:
    the queried key or value; the copied token or the earlier occurrence), ``mass on
    evidence`` (its share of the absolute scores), and ERASER ``comprehensiveness`` (higher
    is better) and ``sufficiency`` (lower is better), by deletion, ``<bos>`` kept. A random
    ranking finds the evidence in about one prompt in ``T`` (reported as the ``random`` row,
    with the ERASER values of random scores)."""
    names = _methods(methods)
    settings = {**FAST_SETTINGS, **(settings or {})}
    rows = []
    for task in tasks:
        for m in names:
            rows.append(_evidence_row(tm, task, m, settings.get(m, {}), eraser))
        chance = sum(1.0 / (task.n_tokens(i) - task.offset) for i in range(len(task))) / len(task)
        support = sum(len(task.support[i]) / (task.n_tokens(i) - task.offset) for i in range(len(task))) / len(task)
        row: dict[str, Any] = {
            "task": task.name,
            "method": "random",
            "top is evidence": chance,
            "top in support": support,
            "mass on evidence": chance,
        }
        if eraser:
            row.update(_random_eraser(tm, task))
        row["prompts"] = len(task)
        rows.append(row)
    return rows


def evidence_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The study as a markdown table."""
    cols = ["task", "method", "top is evidence", "top in support", "mass on evidence"]
    if any("comprehensiveness" in r for r in rows):
        cols += ["comprehensiveness", "sufficiency"]
    cols.append("prompts")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_evidence(out: Path | str, rows: Sequence[Mapping[str, Any]], *, title: str) -> Path:
    """``evidence.json`` and ``evidence.html``."""
    from seethrough.report.html import HtmlReport

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evidence.json").write_text(json.dumps(_jsonable(list(rows)), indent=2) + "\n")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_paragraph(
        "Each method explains the bundled kv-lm's answer on prompts whose evidence is known: the value of the queried "
        "key (kv), or the token after the earlier occurrence of the current one (copy). 'top is evidence': share of "
        "prompts whose highest-scored token is the evidence; 'mass on evidence': its share of the absolute scores; "
        "ERASER comprehensiveness (higher is better) and sufficiency (lower is better) by deletion."
    )
    report.add_table(list(rows))
    return report.save(out / "evidence.html")


# -- the other pages --------------------------------------------------------------------------
def _page(out: Path, stem: str, result: Result, title: str, text: str, summary: Mapping[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seethrough.report.html import HtmlReport

    out.mkdir(parents=True, exist_ok=True)
    result.save(out / f"{stem}.safetensors")
    (out / f"{stem}.json").write_text(json.dumps(_jsonable(dict(summary)), indent=2) + "\n")
    fig = result.plot()
    fig.savefig(out / f"{stem}.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    report.add_paragraph(text)
    report.add_html(result.to_html())
    return report.save(out / f"{stem}.html")


def write_lens(out: Path | str, lens: Any, *, prompt: str, model: str) -> Path:
    """``lens.safetensors``, ``lens.json`` (the target's probability and rank per layer),
    ``lens.png`` and ``lens.html``."""
    summary = {
        "model": model,
        "prompt": prompt,
        "target": lens.target_token,
        "position": lens.position,
        "layers": list(lens.layers),
        "probability": lens.prob,
        "rank": lens.rank,
    }
    text = (
        f"Prompt {prompt!r}: the probability and rank of {lens.target_token!r} read out after every layer through the "
        f"final norm and the unembedding, and the top token at every layer and position."
    )
    return _page(Path(out), "lens", lens, f"Logit lens of {model}", text, summary)


def write_patch(out: Path | str, trace: Any, *, prompt: str, model: str) -> Path:
    """``patch.safetensors``, ``patch.json``, ``patch.png`` and ``patch.html``."""
    summary = {
        "model": model,
        "prompt": prompt,
        "target": trace.target_token,
        "clean_prob": trace.clean_prob,
        "corrupted_prob": trace.corrupted_prob,
        "corrupted": list(trace.corrupted),
        "counterfactual": list(trace.counterfactual_tokens),
        "best": {
            k: {
                "layer": int(v.argmax()) // v.shape[1],
                "position": int(v.argmax()) % v.shape[1],
                "restored_prob": float(v.max()),
            }
            for k, v in trace.restored.items()
        },
    }
    what = (
        f"the counterfactual prompt {''.join(trace.counterfactual_tokens)!r}"
        if trace.counterfactual_ids is not None
        else f"noise on the embeddings at positions {list(trace.corrupted)}"
    )
    text = (
        f"Prompt {prompt!r}, target {trace.target_token!r}: clean probability {trace.clean_prob:.3g}; corrupted by "
        f"{what}: {trace.corrupted_prob:.3g}. Each cell restores one state (layer, position) from the clean run in "
        f"the corrupted one and shows the target's probability."
    )
    return _page(Path(out), "patch", trace, f"Activation patching of {model}", text, summary)


def write_similarity(out: Path | str, result: Any, *, model: str) -> Path:
    """``similarity.safetensors``, ``similarity.json``, ``similarity.png`` and ``similarity.html``."""
    summary = {"model": model, "similarity": result.similarity, "top_pairs": result.top_pairs(10)}
    text = (
        "Integrated gradients of the cosine similarity of the two sentence embeddings: each sentence's tokens, and "
        "the token x token matrix of the pairwise decomposition."
    )
    return _page(Path(out), "similarity", result, f"Why {model} finds the two sentences similar", text, summary)
