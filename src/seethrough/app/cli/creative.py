"""``seethrough creative``: creative decoding of low-active decoder units, checked by
activation subset scanning.

    seethrough creative                                  # mnist-vae, scanned by mnist-cnn
    seethrough creative --model scenes-vae --strength 2
    seethrough creative --model pkg.mod:make_vae --weights vae.safetensors --layer decoder.3 \\
        --data train.safetensors --detector pkg.mod:make_cnn --detector-weights cnn.safetensors --detector-layer features.2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from seethrough._core.errors import ConfigError
from seethrough.app.autoencoders import add_autoencoder_arguments, autoencoder_spec
from seethrough.app.specs import add_data_arguments, data_spec

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "creative",
        help="creative decoding (low-active decoder units set high) and subset scanning of the samples",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_autoencoder_arguments(p, default="mnist-vae")
    p.add_argument("--layer", help="decoder layer whose low-active units are set (bundled models: decoder.fc2)")
    p.add_argument("--strength", type=float, default=3.0, help="x the units' high reference value (default: 3)")
    p.add_argument("--units", type=int, default=10, help="low-active units set per sample (default: 10)")
    p.add_argument("--samples", type=int, default=200, help="samples per group (default: 200)")
    p.add_argument("--n-train", type=int, default=1000, help="real training images for the statistics (default: 1000)")
    p.add_argument("--detector", help="image model whose activations are scanned (bundled models: their own)")
    p.add_argument("--detector-weights", help="weights of a factory --detector")
    p.add_argument("--detector-layer", help="its layer (default: the bundled set-up's; none: the output)")
    p.add_argument("--reduce", choices=("none", "mean", "max"), help="pool each channel over space before scanning")
    p.add_argument("--alpha-max", type=float, default=0.5, help="largest p-value threshold of the scan (default: 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/creative", help="output folder (default: reports/creative)")
    add_data_arguments(p, required=False, labels=False)
    p.set_defaults(handler=_run)


def _run(args: Any) -> int:
    from seethrough.app.creative import DEFAULTS, bundled_study, creative_study, write_creative
    from seethrough.app.models import load_model

    spec = autoencoder_spec(args)
    reduce = None if args.reduce == "none" else args.reduce
    if spec.name in DEFAULTS and args.data is None and args.detector is None:
        given: dict[str, Any] = {"layer": args.layer, "detector_layer": args.detector_layer}
        overrides = {k: v for k, v in given.items() if v is not None}
        if args.reduce is not None:
            overrides["reduce"] = reduce
        study = bundled_study(
            spec.name,
            n=args.samples,
            n_train=args.n_train,
            strength=args.strength,
            n_units=args.units,
            alpha_max=args.alpha_max,
            seed=args.seed,
            **overrides,
        )
    else:
        if args.data is None or args.detector is None or args.layer is None:
            raise ConfigError(
                "for your own autoencoder give --layer, --data (real images) and --detector (and --detector-layer)"
            )
        images = data_spec(args).load(default_n=args.n_train + args.samples).images
        if len(images) < args.samples + 10:
            raise ConfigError(
                f"--data has {len(images)} images; the study needs more than --samples ({args.samples}) plus a background"
            )
        test, train = images[: args.samples], images[args.samples :]
        study = creative_study(
            spec.load(),
            load_model(args.detector, args.detector_weights),
            train_images=train,
            test_images=test,
            layer=args.layer,
            detector_layer=args.detector_layer,
            reduce=reduce,
            n=args.samples,
            strength=args.strength,
            n_units=args.units,
            alpha_max=args.alpha_max,
            seed=args.seed,
        )
    out = Path(args.out)
    path = write_creative(out, study, title=f"Creative decoding and subset scanning with {spec.label}")
    print(json.dumps(study.summary(), indent=2))
    print(f"wrote {path}")
    return 0
