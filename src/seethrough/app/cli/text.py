"""``seethrough text``: explain language models, token by token and layer by layer.

    seethrough text explain --model smollm2 --prompt "The capital of France is" --generate 8 \\
        --methods saliency,integrated_gradients,atman,alti
    seethrough text explain --model smollm2 --prompt "The capital of France is" --target " Paris" --foil " Lyon"
    seethrough text lens --model smollm2 --prompt "The capital of France is"
    seethrough text patch --model smollm2 --prompt "The Eiffel Tower is in the city of" --corrupt 1,2,3,4
    seethrough text similarity --model minilm --a "A cat sits on the mat" --b "A dog sits on the mat"
    seethrough text evidence --model kv-lm            # every method scored against known evidence
    seethrough text models

``--model`` is a bundled name (``kv-lm``, ``smollm2``, ``minilm``) or a local directory
holding a transformers model (``config.json``, weights, tokenizer). ``--target`` is the token
to explain (default: the model's next token); a text of several tokens is explained as its
sequence log-probability (and the page says so). Every command writes the results with their
tokens (``.safetensors``), a summary (``.json``), figures (``.png``) and a page (``.html``)
into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seethrough._core.errors import ConfigError

__all__ = ["register"]


def _int_list(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    return out


def register(sub: Any) -> None:
    from seethrough.app.language import DEFAULT_TEXT_METHODS
    from seethrough.language.registry import TEXT_METHODS

    p = sub.add_parser(
        "text",
        help="language models: token attributions, generation step by step, AtMan, ALTI, logit lens, "
        "activation patching, sentence similarity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = p.add_subparsers(dest="text_command", metavar="SUBCOMMAND")
    tsub.required = True

    def common(q: Any, name: str, *, default_model: str = "kv-lm") -> None:
        q.add_argument(
            "--model",
            default=default_model,
            help=f"kv-lm, smollm2, minilm, or a local transformers model directory (default: {default_model})",
        )
        q.add_argument("--out", default=f"reports/text-{name}", help=f"output folder (default: reports/text-{name})")

    q = tsub.add_parser("explain", help="token attributions of the next token (or a generation, step by step)")
    common(q, "explain")
    q.add_argument("--prompt", required=True, help="the prompt to explain")
    q.add_argument(
        "--methods",
        default=",".join(DEFAULT_TEXT_METHODS),
        help=f"comma-separated methods or 'all' (of: {', '.join(TEXT_METHODS)}) "
        f"(default: {','.join(DEFAULT_TEXT_METHODS)})",
    )
    q.add_argument("--target", help="the token to explain (default: the model's next token); several tokens: "
                   "their sequence log-probability")  # fmt: skip
    q.add_argument("--foil", help="contrastive: explain --target rather than this one token")
    q.add_argument("--generate", type=int, default=0, help="generate N tokens and attribute each (default: 0)")
    q.add_argument("--steps", type=int, help="integrated-gradients steps (default: the method's, 500)")
    q.set_defaults(handler=_explain)

    q = tsub.add_parser("lens", help="logit lens: the target's probability and rank after every layer")
    common(q, "lens")
    q.add_argument("--prompt", required=True, help="the prompt")
    q.add_argument("--target", help="the token to follow (default: the model's prediction)")
    q.add_argument("--position", type=int, default=-1, help="the position that predicts it (default: -1, the last)")
    q.set_defaults(handler=_lens)

    q = tsub.add_parser("patch", help="activation patching (causal tracing) of every (layer, position) state")
    common(q, "patch")
    q.add_argument("--prompt", required=True, help="the clean prompt")
    q.add_argument("--target", help="the token whose probability is restored (default: the clean prediction)")
    q.add_argument(
        "--corrupt", type=_int_list, help="token positions to corrupt with noise (default: all but the last)"
    )
    q.add_argument("--counterfactual", help="corrupt with this prompt (same number of tokens) instead of noise")
    q.add_argument("--noise", type=float, default=3.0, help="noise scale in embedding standard deviations (3)")
    q.add_argument("--samples", type=int, default=1, help="noise draws averaged (default: 1)")
    q.add_argument(
        "--states", default="resid,attn,mlp", help="states to restore: resid, attn, mlp (default: all three)"
    )
    q.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    q.set_defaults(handler=_patch)

    q = tsub.add_parser("similarity", help="which tokens make two sentences similar (an encoder such as minilm)")
    common(q, "similarity", default_model="minilm")
    q.add_argument("--a", required=True, help="the first sentence")
    q.add_argument("--b", required=True, help="the second sentence")
    q.add_argument("--steps", type=int, default=32, help="integration steps (default: 32)")
    q.set_defaults(handler=_similarity)

    q = tsub.add_parser("evidence", help="score every method against the known evidence of the bundled tasks")
    common(q, "evidence")
    q.add_argument("--methods", default="all", help=f"comma-separated methods or 'all' (of: {', '.join(TEXT_METHODS)})")
    q.add_argument("--n", type=int, default=50, help="prompts per task (default: 50)")
    q.add_argument("--seed", type=int, default=1000, help="seed of the prompts (default: 1000)")
    q.add_argument("--no-eraser", action="store_true", help="skip comprehensiveness and sufficiency")
    q.set_defaults(handler=_evidence)

    q = tsub.add_parser("models", help="list the bundled language models")
    q.set_defaults(handler=_models)


def _load(args: Any) -> Any:
    from seethrough.app.texts import load_text_model

    return load_text_model(args.model)


def _done(page: Path) -> int:
    print(f"wrote {page}")
    return 0


def _explain(args: Any) -> int:
    from seethrough.app.language import explain_prompt, top_tokens, write_explain

    if args.generate < 0:
        raise ConfigError(f"--generate must be >= 0, got {args.generate}")
    tm = _load(args)
    settings: dict[str, dict[str, Any]] = {}
    if args.steps is not None:
        settings["integrated_gradients"] = {"steps": args.steps}
    study = explain_prompt(
        tm,
        args.prompt,
        methods=args.methods,
        target=args.target,
        foil=args.foil,
        generate=args.generate,
        settings=settings,
    )
    for name, r in study.results.items():
        top = top_tokens(r, 3)
        shown = ", ".join(f"{t['token']!r} {t['score']:+.3g}" for t in top)
        print(f"{name:22s} top: {shown}")
    if study.generation:
        print(f"generated: {next(iter(study.generation.values())).text!r}")
    return _done(write_explain(args.out, study))


def _lens(args: Any) -> int:
    from seethrough.app.language import write_lens
    from seethrough.language.lens import logit_lens

    tm = _load(args)
    lens = logit_lens(tm, args.prompt, target=args.target, position=args.position)
    print(
        f"{lens.target_token!r}: probability by layer "
        + ", ".join(f"{n} {float(p):.3g}" for n, p in zip(lens.layers, lens.prob))
    )
    return _done(write_lens(args.out, lens, prompt=args.prompt, model=tm.name))


def _patch(args: Any) -> int:
    from seethrough.app.language import write_patch
    from seethrough.language.patching import causal_trace

    tm = _load(args)
    kinds = [k.strip() for k in args.states.split(",") if k.strip()]
    trace = causal_trace(
        tm,
        args.prompt,
        args.target,
        corrupt=args.corrupt,
        counterfactual=args.counterfactual,
        noise=args.noise,
        samples=args.samples,
        seed=args.seed,
        kinds=kinds,
    )
    print(
        f"{trace.target_token!r}: clean p {trace.clean_prob:.3g}, corrupted p {trace.corrupted_prob:.3g}; best "
        + ", ".join(f"{k} {float(v.max()):.3g}" for k, v in trace.restored.items())
    )
    return _done(write_patch(args.out, trace, prompt=args.prompt, model=tm.name))


def _similarity(args: Any) -> int:
    from seethrough.app.language import write_similarity
    from seethrough.language.similarity import SimilarityExplanation

    tm = _load(args)
    if tm.kind != "encoder":
        raise ConfigError(
            f"{tm.name} is a causal LM; similarity explanations need a sentence encoder (e.g. --model minilm)"
        )
    result = SimilarityExplanation(tm, steps=args.steps).attribute(args.a, args.b)
    print(f"similarity {result.similarity:.3f}; top pairs: " + ", ".join(f"{a}~{b}" for a, b, _ in result.top_pairs(3)))
    return _done(write_similarity(args.out, result, model=tm.name))


def _evidence(args: Any) -> int:
    from seethrough.app.language import evidence_study, evidence_table, write_evidence
    from seethrough.data.text import make_text_task

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    tm = _load(args)
    tasks = [make_text_task(name, args.n, seed=args.seed) for name in ("kv", "copy")]
    rows = evidence_study(tm, tasks, methods=args.methods, eraser=not args.no_eraser)
    sys.stdout.write(evidence_table(rows))
    return _done(write_evidence(args.out, rows, title=f"Methods against known evidence: {tm.name}"))


def _models(args: Any) -> int:
    from seethrough.app.texts import TEXT_MODELS

    for name, text in TEXT_MODELS.items():
        print(f"{name:10s} {text}")
    print("or a local directory with a transformers model (config.json, weights, tokenizer)")
    return 0
