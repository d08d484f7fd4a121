"""``seethrough gan``: open a GAN's latent space and its units, measure its samples, test it
for memorisation.

    seethrough gan directions --model scenes-gan          # SeFa, GANSpace, supervised vs the true factors
    seethrough gan dissect --model scenes-gan --layer blocks.1
    seethrough gan metrics --model mnist-gan              # FID, KID, precision/recall, density/coverage, IS
    seethrough gan recover --model mnist-gan-memorized    # latent recovery: training vs held-out images
    seethrough gan metrics --model mypkg.gen:make --weights g.safetensors --latent-dim 64 \\
        --z-shape 64,1,1 --data mnist                     # your own generator of digits

A user's generator (``package.module:factory`` with ``--weights``) is scored against a
bundled data set (``--data scenes`` or ``mnist``: its factor predictor, segmenter and feature
extractor read the generated images, which must have that data's shape), or, for
``metrics`` and ``recover``, against your own real images (``--real``, ``--train`` and
``--heldout``: folders of images or tensor files). Every command writes its result
(``.safetensors``), a summary (``.json``), figures (``.png``) and a page (``.html``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from torch import Tensor

from seethrough._core.errors import ConfigError
from seethrough.app.generators import GAN_DATA, GeneratorSpec, add_generator_arguments, generator_spec

from .latent import strengths

__all__ = ["register"]


def _ints(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or any(v < 1 for v in out):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return out


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gan",
        help="GANs: latent directions vs the true factors, dissection with causal ablation, sample quality, "
        "latent recovery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gsub = p.add_subparsers(dest="gan_command", metavar="SUBCOMMAND")
    gsub.required = True

    def common(q: Any, name: str, *, data: bool = True) -> None:
        add_generator_arguments(q)
        q.add_argument("--out", default=f"reports/gan-{name}", help=f"output folder (default: reports/gan-{name})")
        q.add_argument("--seed", type=int, default=0, help="seed of the sampled codes (default: 0)")
        if data:
            q.add_argument(
                "--data",
                choices=("scenes", "mnist"),
                help="bundled data whose models score the generated images (default: a bundled generator's own)",
            )

    q = gsub.add_parser("directions", help="SeFa, GANSpace and supervised directions, scored against the factors")
    common(q, "directions")
    q.add_argument("--k", type=int, default=5, help="directions per unsupervised method (default: 5)")
    q.add_argument("--layer", help="GANSpace layer (default: the bundled generator's first block, blocks.0)")
    q.add_argument("--samples", type=int, default=5000, help="codes sampled for GANSpace (default: 5000)")
    q.add_argument(
        "--strengths",
        type=strengths,
        default=strengths("-3:3:7"),
        help="traversal strengths in units of z, FROM:TO:COUNT (write --strengths=-3:3:7) (default: -3:3:7)",
    )
    q.set_defaults(handler=_directions)

    q = gsub.add_parser("dissect", help="GAN dissection of a layer's units, and the causal effect of ablating them")
    common(q, "dissect")
    q.add_argument("--layer", help="a conv layer of the generator (default: the bundled generator's)")
    q.add_argument("--samples", type=int, default=2000, help="generated images to dissect (default: 2000)")
    q.add_argument("--concepts", help="comma-separated concepts for the causal test (default: the most found)")
    q.add_argument("--counts", type=_ints, help="numbers of units to ablate, e.g. 1,2,4,8 (default: 1, 2, 4, ...)")
    q.add_argument("--effect-samples", type=int, default=300, help="codes per causal measurement (default: 300)")
    q.add_argument(
        "--threshold",
        choices=("iqr", "quantile"),
        default="iqr",
        help="unit threshold: iqr (GAN Dissection's rule: per unit and concept, the one that maximises the "
        "information quality ratio on other samples) or quantile (a per-unit top quantile) (default: iqr)",
    )
    q.add_argument("--quantile", type=float, default=0.005, help="top quantile of --threshold quantile (0.005)")
    q.set_defaults(handler=_dissect)

    q = gsub.add_parser("metrics", help="IS, FID, KID, precision/recall, density/coverage with bootstrap intervals")
    common(q, "metrics")
    q.add_argument("--samples", type=int, default=10_000, help="generated samples (default: 10000)")
    q.add_argument(
        "--real", default="heldout", help="real images: heldout or train (bundled data), or a folder / tensor file"
    )
    q.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals (default: 200)")
    q.set_defaults(handler=_metrics)

    q = gsub.add_parser("recover", help="latent recovery of training vs held-out images (memorisation test)")
    common(q, "recover", data=False)
    q.add_argument("--n", type=int, default=64, help="images of each set (default: 64)")
    q.add_argument("--steps", type=int, default=300, help="optimisation steps per restart (default: 300)")
    q.add_argument("--restarts", type=int, default=4, help="random restarts per image (default: 4)")
    q.add_argument("--train", help="the generator's training images (a folder or tensor file; bundled: its own)")
    q.add_argument("--heldout", help="held-out images of the same distribution (a folder or tensor file)")
    q.set_defaults(handler=_recover)


# ---------------------------------------------------------------------------------------- helpers
def _out(args: Any) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _data(args: Any, spec: GeneratorSpec) -> str:
    data = getattr(args, "data", None) or spec.data
    if data is None:
        raise ConfigError(
            f"generator {spec.name!r} is not bundled: say which bundled data score its images with --data scenes "
            f"or --data mnist (its images must have that data's shape: (3, 32, 32) or (1, 28, 28))"
        )
    return str(data)


def _layers(spec: GeneratorSpec, layer: str | None, which: int) -> str:
    from seethrough.app.gans import DEFAULT_LAYERS

    if layer:
        return layer
    if spec.name in DEFAULT_LAYERS:
        return DEFAULT_LAYERS[spec.name][which]
    raise ConfigError(f"generator {spec.name!r} is not bundled: name the layer with --layer")


def _images(path: str, what: str) -> Tensor:
    from seethrough.app.data import DataSpec

    return DataSpec(path).load().images


def _say(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)


# ---------------------------------------------------------------------------------------- commands
def _directions(args: Any) -> int:
    from seethrough.app.gans import direction_study, write_directions

    spec = generator_spec(args)
    gen = spec.load()
    study = direction_study(
        gen,
        data=_data(args, spec),
        k=args.k,
        layer=_layers(spec, args.layer, 0) if spec.bundled or args.layer else None,
        n_samples=args.samples,
        strengths=args.strengths,
        seed=args.seed,
        progress=True,
    )
    page = write_directions(_out(args), study, title=f"Latent directions of {spec.name}")
    _say(f"wrote {page}")
    print(json.dumps(study.summary, indent=2))
    return 0


def _dissect(args: Any) -> int:
    from seethrough.app.gans import dissection_study, write_dissection

    spec = generator_spec(args)
    gen = spec.load()
    concepts = [c.strip() for c in args.concepts.split(",")] if args.concepts else None
    study = dissection_study(
        gen,
        data=_data(args, spec),
        layer=_layers(spec, args.layer, 1),
        n_samples=args.samples,
        counts=args.counts,
        n_effect=args.effect_samples,
        concepts=concepts,
        threshold=args.threshold,
        quantile=args.quantile,
        seed=args.seed,
        progress=True,
    )
    page = write_dissection(_out(args), study, title=f"GAN dissection of {spec.name}")
    _say(f"wrote {page}")
    print(study["dissection"].to_text())
    for concept, curve in study["curves"].items():
        print(f"causal effect on {concept!r}:")
        for row in curve.rows():
            print("  " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return 0


def _metrics(args: Any) -> int:
    from seethrough.app.gans import metrics_study, write_metrics

    spec = generator_spec(args)
    gen = spec.load()
    data = _data(args, spec)
    real: Any = args.real
    if real not in ("heldout", "train"):
        real = _images(real, "--real")
    study = metrics_study(
        gen, data=data, n_fake=args.samples, real=real, bootstrap=args.bootstrap, seed=args.seed, progress=True
    )
    page = write_metrics(_out(args), study, title=f"Sample quality of {spec.name}")
    _say(f"wrote {page}")
    for row in study["result"].rows():
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return 0


def _recover(args: Any) -> int:
    from seethrough.app.gans import recovery_images, recovery_study, write_recovery

    spec = generator_spec(args)
    gen = spec.load()
    if args.train or args.heldout:
        if not (args.train and args.heldout):
            raise ConfigError("give both --train and --heldout images (or neither, for a bundled generator)")
        train, heldout = _images(args.train, "--train")[: args.n], _images(args.heldout, "--heldout")[: args.n]
    elif spec.name in GAN_DATA:
        train, heldout = recovery_images(spec.name, args.n)
    else:
        raise ConfigError(f"generator {spec.name!r} is not bundled: give its --train and --heldout images")
    result = recovery_study(
        gen, train=train, heldout=heldout, steps=args.steps, restarts=args.restarts, seed=args.seed, progress=True
    )
    page = write_recovery(_out(args), result, title=f"Latent recovery of {spec.name}")
    _say(f"wrote {page}")
    print(json.dumps(result.summary(), indent=2))
    for row in result.rows():
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return 0
