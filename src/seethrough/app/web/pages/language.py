"""The language page: a prompt in; token heatmaps of every method, the generation matrix
(each generated token attributed over the prompt and the tokens before it), the logit lens
and activation patching out.

Each view calls what ``seethrough text`` calls (:func:`seethrough.app.language.explain_prompt`,
:func:`seethrough.language.lens.logit_lens`, :func:`seethrough.language.patching.causal_trace`)
on the shared model, behind its lock, and returns the library's own HTML view (tokens are
escaped there).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import HTMLResponse

from seethrough._core.errors import ConfigError, InputError

from ..layout import esc, jsonable, options, page
from ..security import TooLarge
from .jobs import _int

__all__ = ["register"]

MAX_PROMPT = 2000
DEFAULT_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "atman")


def _prompt(body: dict[str, Any]) -> str:
    p = body.get("prompt")
    if not isinstance(p, str) or not p.strip():
        raise InputError("give a prompt (text)")
    if len(p) > MAX_PROMPT:
        raise TooLarge(f"the prompt has {len(p)} characters; the limit is {MAX_PROMPT}")
    return p


def _target(body: dict[str, Any]) -> str | None:
    t = body.get("target")
    if t in (None, ""):
        return None
    if not isinstance(t, str):
        raise InputError("target must be text (a token or a continuation)")
    return t


def explain(ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
    from seethrough.app.language import explain_prompt, top_tokens
    from seethrough.language.registry import TEXT_METHODS

    key = ctx.text_choice(body.get("model", "kv-lm"))
    prompt = _prompt(body)
    methods = body.get("methods") or list(DEFAULT_METHODS)
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise ConfigError(f"methods must be a list of names of: {', '.join(TEXT_METHODS)}")
    generate = _int(body, "generate", 0, 0, 16)
    steps = _int(body, "steps", 64, 2, 1000)
    slot = ctx.text_model(key)
    with slot.lock:
        tm = slot.get()
        study = explain_prompt(
            tm,
            prompt,
            methods=methods,
            target=_target(body),
            generate=generate,
            settings={"integrated_gradients": {"steps": steps}},
        )
    parts = []
    for name, r in study.results.items():
        parts.append(f"<h3>{esc(name)}</h3>{r.to_html()}")
    gen_html = ""
    if study.generation:
        for name, g in study.generation.items():
            gen_html += f"<h3>{esc(name)}</h3>{g.to_html()}"
    text = next(iter(study.generation.values())).text if study.generation else None
    return {
        "model": key,
        "target": study.target,
        "html": "".join(parts),
        "generation_html": gen_html,
        "generated": text,
        "top": {n: jsonable(top_tokens(r, 3)) for n, r in study.results.items()},
    }


def lens(ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
    from seethrough.language.lens import logit_lens

    key = ctx.text_choice(body.get("model", "kv-lm"))
    slot = ctx.text_model(key)
    with slot.lock:
        tm = slot.get()
        if tm.kind != "causal":
            raise ConfigError(f"the logit lens reads a causal LM's predictions; {key} is an encoder")
        result = logit_lens(tm, _prompt(body), target=_target(body))
    return {
        "model": key,
        "target": result.target_token,
        "probability": jsonable(result.prob),
        "layers": list(result.layers),
        "html": result.to_html(),
    }


def patch(ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
    from seethrough.language.patching import causal_trace

    key = ctx.text_choice(body.get("model", "kv-lm"))
    samples = _int(body, "samples", 1, 1, 16)
    slot = ctx.text_model(key)
    with slot.lock:
        tm = slot.get()
        if tm.kind != "causal":
            raise ConfigError(f"activation patching restores a causal LM's prediction; {key} is an encoder")
        trace = causal_trace(tm, _prompt(body), _target(body), samples=samples, seed=0)
    return {
        "model": key,
        "target": trace.target_token,
        "clean_prob": float(trace.clean_prob),
        "corrupted_prob": float(trace.corrupted_prob),
        "html": trace.to_html(),
    }


def register(ctx: Any) -> Any:

    from seethrough.language.registry import TEXT_METHODS

    r = APIRouter()

    @r.post("/api/language/explain")
    def api_explain(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return explain(ctx, body)

    @r.post("/api/language/lens")
    def api_lens(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return lens(ctx, body)

    @r.post("/api/language/patch")
    def api_patch(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return patch(ctx, body)

    @r.get("/language", response_class=HTMLResponse)
    def language_page() -> str:
        from seethrough.data.text import make_text_task

        example = make_text_task("kv", 1, seed=7).prompts[0]
        methods = "".join(
            f'<label class="check"><input type="checkbox" name="methods" value="{esc(n)}"'
            f"{' checked' if n in DEFAULT_METHODS else ''}> {esc(n)}</label>"
            for n in TEXT_METHODS
        )
        body = (
            '<form id="language-form"><div class="row">'
            f'<label>model <select name="model">{options(ctx.text_choices, "kv-lm")}</select></label>'
            f'<label class="wide">prompt <input name="prompt" value="{esc(example)}" size="60"></label>'
            '<label>target <input name="target" placeholder="the next token" size="10"></label>'
            '<label>generate <input name="generate" type="number" value="0" min="0" max="16"></label>'
            "</div>"
            f'<details open><summary>methods</summary><div class="methods">{methods}</div></details>'
            '<div class="row"><button type="submit" data-view="explain">Token heatmaps</button>'
            '<button type="button" data-view="lens">Logit lens</button>'
            '<button type="button" data-view="patch">Activation patching</button></div></form>'
            '<p class="status" id="language-status"></p><div id="language-result"></div>'
            "<p class=note>kv-lm is the bundled key-value model whose evidence is known (the value follows its "
            "key); smollm2 is SmolLM2-135M-Instruct, converted once from the GGUF its package ships.</p>"
            f'<script type="application/json" id="language-methods">{esc(json.dumps(list(TEXT_METHODS)))}</script>'
        )
        return page("Language", body, active="/language", page_id="language")

    return r
