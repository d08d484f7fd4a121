"""``seethrough latent``: walk, sample and score the latent space of an autoencoder.

    seethrough latent interpolate --model peptide-wae --a GLFDIVKKVVGALGSL --b KWKLFKKIEKVGQNIRDG
    seethrough latent sample --model peptide-wae --condition "amp > 0.8" --condition "charge in [2, 6]"
    seethrough latent traverse --model peptide-wae --start GLFDIVKKVVGALGSL --direction charge
    seethrough latent interpolate --model mnist-vae --a 0 --b 7          # indices into --data
    seethrough latent traverse --model scenes-vae --start 0 --direction pc1
    seethrough latent factors --model scenes-vae                         # directions vs the true factors

Peptide models (``tokens``/``sequences``) take sequences and get the Peptide Sampler's
descriptor tables; image autoencoders take indices into ``--data`` (the bundled model's
own data by default) and get image grids. Every command writes into ``--out``: the result
(``.safetensors``), its table (``.csv``), a figure (``.png``) and a page (``.html``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from torch import Tensor

from seethrough._core.errors import ConfigError, InputError
from seethrough.app.autoencoders import AutoencoderSpec, add_autoencoder_arguments, autoencoder_spec
from seethrough.app.specs import add_data_arguments, data_spec

__all__ = ["register", "strengths"]

_DEFAULT_DATA = {"mnist-vae": "mnist", "scenes-vae": "scenes"}


def strengths(text: str) -> list[float]:
    """``"-3:3:7"`` (from, to, count) or ``"-2,-1,0,1,2"``."""
    try:
        if ":" in text:
            a, b, n = text.split(":")
            k = int(n)
            if k < 2:
                raise ValueError
            return [float(a) + (float(b) - float(a)) * i / (k - 1) for i in range(k)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"strengths must be FROM:TO:COUNT (COUNT >= 2) or comma-separated numbers, got {text!r}"
        ) from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "latent",
        help="latent spaces of autoencoders: interpolate, conditioned sampling, traversals, factor scores",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lsub = p.add_subparsers(dest="latent_command", metavar="SUBCOMMAND")
    lsub.required = True

    def common(q: Any, default_out: str) -> None:
        add_autoencoder_arguments(q, default="peptide-wae")
        q.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
        q.add_argument("--seed", type=int, default=0, help="seed of the probes, priors and samples (default: 0)")

    q = lsub.add_parser("interpolate", help="decode N steps between two inputs (linear or spherical)")
    common(q, "reports/latent-interpolate")
    q.add_argument("--a", required=True, help="first input: a peptide sequence, or an index into --data")
    q.add_argument("--b", required=True, help="second input: a peptide sequence, or an index into --data")
    q.add_argument("--steps", type=int, default=8, help="steps including both ends (default: 8)")
    q.add_argument("--method", choices=("linear", "slerp"), default="slerp", help="path (default: slerp)")
    add_data_arguments(q, required=False, labels=False)
    q.set_defaults(handler=_interpolate)

    q = lsub.add_parser(
        "sample", help="attribute-conditioned sampling (CLaSS): rejection sampling from the aggregate posterior"
    )
    common(q, "reports/latent-sample")
    q.add_argument(
        "--condition",
        action="append",
        default=[],
        help="a condition on a latent score, e.g. 'amp > 0.8', 'charge in [2, 6]', '2 <= charge <= 6' (repeatable)",
    )
    q.add_argument("--n", type=int, default=100, help="samples to accept (default: 100)")
    q.add_argument("--max-candidates", type=int, default=100_000, help="candidates at most (default: 100000)")
    q.add_argument("--no-baseline", action="store_true", help="skip the unconditioned comparison")
    q.set_defaults(handler=_sample)

    q = lsub.add_parser(
        "traverse", help="decode along a direction (a probe's normal, a regressor's gradient, a principal axis)"
    )
    common(q, "reports/latent-traverse")
    q.add_argument("--start", required=True, help="start: a peptide sequence, or an index into --data")
    q.add_argument(
        "--direction",
        required=True,
        help="peptides: amp, acp, a descriptor (charge, hydrophobic_moment, ...) or pcN; images: pcN, dimN (a "
        "latent coordinate) or a factor of the scenes (scale, x, y, ...: a linear probe's normal)",
    )
    q.add_argument(
        "--strengths",
        type=strengths,
        default=strengths("-3:3:7"),
        help="FROM:TO:COUNT (write --strengths=-3:3:7 when FROM is negative) in units of the codes' spread (default: -3:3:7)",
    )
    add_data_arguments(q, required=False, labels=False)
    q.set_defaults(handler=_traverse)

    q = lsub.add_parser(
        "factors", help="score PCA and probe directions against the true factors of the scenes; MIG and DCI"
    )
    add_autoencoder_arguments(q, default="scenes-vae")
    q.add_argument("--out", default="reports/latent-factors", help="output folder (default: reports/latent-factors)")
    q.add_argument("--n", type=int, default=2000, help="scenes to encode (default: 2000)")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(handler=_factors)


# ---------------------------------------------------------------------------------------- helpers


def _is_peptide(model: Any) -> bool:
    return callable(getattr(model, "tokens", None)) and callable(getattr(model, "sequences", None))


def _out(args: Any) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _images(args: Any, spec: AutoencoderSpec) -> Tensor:
    if getattr(args, "data", None) is None:
        default = _DEFAULT_DATA.get(spec.name or "")
        if default is None:
            raise ConfigError(f"model {spec.label} takes images: give --data (a folder, image files or a tensor file)")
        args.data = [default]
    return data_spec(args).load(default_n=64).images


def _pick(images: Tensor, text: str, what: str) -> Tensor:
    try:
        i = int(text)
    except ValueError:
        raise ConfigError(f"--{what} must be an index into --data for an image model, got {text!r}") from None
    if not 0 <= i < len(images):
        raise InputError(f"--{what} {i} is out of range: --data has {len(images)} samples (use --n for more)")
    return images[i : i + 1]


def _write_walk(walk: Any, out: Path, name: str, title: str, lines: list[str]) -> None:
    from seethrough.report.html import HtmlReport

    walk.save(out / f"{name}.safetensors")
    walk.table.to_csv(out / f"{name}.csv")
    fig = walk.plot()
    fig.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
    report = HtmlReport(title)
    report.add_heading(title, level=1)
    for line in lines:
        report.add_paragraph(line)
    report.add_html(walk.to_html())
    report.save(out / f"{name}.html")
    print(f"wrote {out / (name + '.html')}, {name}.csv, {name}.png, {name}.safetensors", file=sys.stderr)


def _print_table(table: Any, columns: list[str]) -> None:
    cols = [c for c in columns if c in table]
    print("\t".join(cols))
    for row in table.rows():
        print("\t".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols))


_SHOW = ["alpha", "strength", "sequence", "valid", "charge", "hydrophobic_moment", "amp_z", "amp_seq", "acp_z"]


# ---------------------------------------------------------------------------------------- commands


def _interpolate(args: Any) -> int:
    from seethrough.app.peptides import PeptideLab
    from seethrough.generative import Latent

    spec = autoencoder_spec(args)
    out = _out(args)
    model = spec.load()
    if _is_peptide(model):
        lab = PeptideLab.build(spec, seed=args.seed, model=model)
        walk = lab.interpolate(args.a, args.b, steps=args.steps, method=args.method)
    else:
        images = _images(args, spec)
        walk = Latent(model).interpolate(
            _pick(images, args.a, "a"), _pick(images, args.b, "b"), steps=args.steps, method=args.method
        )
    _write_walk(
        walk, out, "interpolation", f"Latent interpolation ({args.method}, {args.steps} steps) with {spec.label}", []
    )
    _print_table(walk.table, _SHOW)
    return 0


def _traverse(args: Any) -> int:
    from seethrough.app.peptides import PeptideLab

    spec = autoencoder_spec(args)
    out = _out(args)
    model = spec.load()
    if _is_peptide(model):
        lab = PeptideLab.build(spec, seed=args.seed, model=model)
        walk = lab.traverse(args.start, args.direction, strengths=args.strengths)
    else:
        from seethrough.app.latents import image_traversal

        images = _images(args, spec)
        walk = image_traversal(
            model, images, _pick(images, args.start, "start"), args.direction, args.strengths, seed=args.seed
        )
    _write_walk(walk, out, "traversal", f"Latent traversal along {args.direction} with {spec.label}", [])
    _print_table(walk.table, _SHOW)
    return 0


def _sample(args: Any) -> int:
    from seethrough.app.peptides import PeptideLab
    from seethrough.generative import Condition

    spec = autoencoder_spec(args)
    out = _out(args)
    conditions = [Condition.parse(c) for c in args.condition]
    model = spec.load()
    if not _is_peptide(model):
        raise ConfigError(
            "conditioned sampling needs a peptide model (its attribute classifiers come from modlamp's labels); "
            f"{spec.label} is not one"
        )
    lab = PeptideLab.build(spec, seed=args.seed, model=model)
    samples, summary = lab.sample(conditions, n=args.n, max_candidates=args.max_candidates, seed=args.seed)
    result: dict[str, Any] = {"probes": lab.metrics, "conditioned": summary}
    if conditions and not args.no_baseline:
        base, base_summary = lab.sample([], n=args.n, max_candidates=args.n, seed=args.seed + 1)
        # the unconditioned samples, checked against the same conditions
        base_summary["decoded_meets"] = {
            k: float(v) for k, v in dict(base.check([lab.decoded_condition(c) for c in conditions])).items()
        }
        result["unconditioned"] = base_summary
    from seethrough.app.latents import write_sampling

    write_sampling(out, samples, result, title=f"Conditioned sampling with {spec.label}")
    print(json.dumps(result, indent=2))
    return 0


def _factors(args: Any) -> int:
    from seethrough.app.latents import factor_scores, write_factor_scores

    spec = autoencoder_spec(args)
    out = _out(args)
    scores = factor_scores(spec.load(), n=args.n, seed=args.seed)
    write_factor_scores(out, scores, title=f"Latent directions of {spec.label} against the true factors")
    print(json.dumps(scores["summary"], indent=2))
    return 0
