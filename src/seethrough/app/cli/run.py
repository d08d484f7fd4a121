"""``seethrough run``: a dataset-scale job, in this process or on Ray (seethrough.app.jobs)."""

from __future__ import annotations

import json
import sys

from seethrough.app.specs import add_model_arguments

_TASK_HELP = {
    "explain": "attribution maps of every sample with a registered method (--method, --set)",
    "atlas": "the dataset-examples pass: each unit's maximum (and its position) per sample",
    "trust": "per-sample faithfulness scores of one attribution method (--method, --metrics)",
    "metrics": "feature vectors of every sample for FID / KID (--layer)",
    "sample": "rejection sampling of peptide codes (--n candidates, --condition)",
}


def _value(text: str):
    """``--set k=v``: v as JSON when it parses (numbers, lists, true/false), else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a dataset-scale job (explain, atlas, trust, metrics, sample) locally or on Ray",
        description="Run one task over a whole data set and write sharded safetensors with a JSON manifest into "
        "--out. A stopped job resumes from its last finished shard when run again with the same arguments.",
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True
    for name, text in _TASK_HELP.items():
        t = tasks.add_parser(name, help=text, description=text)
        # every worker rebuilds the model from these (a factory's weights file must be readable by each)
        add_model_arguments(t, default="peptide-wae" if name == "sample" else "shapes-cnn")
        if name != "sample":
            d = t.add_argument_group("data")
            d.add_argument(
                "--data",
                nargs="+",
                default=["shapes"],
                help="bundled data, a folder of images or of tensor shards, image files, or tensor files (default: shapes)",
            )
            d.add_argument("--tensor-key", help="tensor name inside .safetensors data files")
            d.add_argument("--data-seed", type=int, help="seed of generated bundled data")
        t.add_argument(
            "--n",
            type=int,
            required=name == "sample",
            help="how many candidates" if name == "sample" else "the first N samples (generated data: how many)",
        )
        if name in ("explain", "trust"):
            t.add_argument(
                "--method",
                default="integrated_gradients" if name == "explain" else "saliency",
                help="attribution method (see 'seethrough methods')",
            )
            t.add_argument("--target", help="class index (default: the predicted class)")
        if name in ("explain", "trust", "metrics"):
            t.add_argument("--layer", help="layer (layer methods; metrics: the feature layer, default the output)")
        if name == "trust":
            t.add_argument("--metrics", default="deletion,insertion", help="comma-separated metrics")
        if name == "atlas":
            t.add_argument("--layers", default="conv", help="'conv', 'all' or comma-separated layer names")
        if name == "sample":
            t.add_argument(
                "--condition", action="append", default=[], help="e.g. 'charge>=3' (repeatable; descriptors' names)"
            )
        t.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a setting of the task or method, e.g. --set steps=64 (repeatable; values parsed as JSON)",
        )
        t.add_argument("--batch-size", type=int, help="rows per model call (default: sized from memory)")
        t.add_argument("--shard-size", type=int, default=256, help="samples per output shard (default: 256)")
        t.add_argument("--seed", type=int, default=0, help="job seed; sample i's seed derives from (seed, i)")
        t.add_argument("--out", required=True, help="output directory (new, or this job's own to resume)")
        e = t.add_argument_group("engine")
        e.add_argument("--engine", choices=("local", "ray"), default="local", help="where to run (default: local)")
        e.add_argument("--address", help="Ray: address of an existing cluster (default: start a local one)")
        e.add_argument("--workers", type=int, help="Ray: actor pool size (default: the cluster's CPUs)")
        t.set_defaults(handler=_run)


def _settings(args) -> dict:
    from seethrough._core.errors import ConfigError

    s: dict = {}
    for key in ("method", "layer", "layers", "batch_size"):
        v = getattr(args, key, None)
        if v is not None:
            s[key] = v
    if getattr(args, "target", None) is not None:
        try:
            s["target"] = int(args.target)
        except ValueError:
            raise ConfigError(f"--target must be a class index, got {args.target!r}") from None
    if getattr(args, "metrics", None):
        s["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.task == "atlas" and s.get("layers") not in (None, "conv", "all"):
        s["layers"] = [m.strip() for m in s["layers"].split(",") if m.strip()]
    if getattr(args, "condition", None):
        s["conditions"] = list(args.condition)
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        if args.task == "trust" and key.strip() not in ("metrics", "batch_size"):
            s.setdefault("method_settings", {})[key.strip()] = _value(value)
        else:
            s[key.strip()] = _value(value)
    return s


def _run(args) -> int:
    from seethrough.app.jobs import JobSpec, load_outputs, run_job

    spec = JobSpec(
        task=args.task,
        model=args.model,
        data=tuple(args.data) if getattr(args, "data", None) else None,
        out=args.out,
        settings=_settings(args),
        n=args.n,
        shard_size=args.shard_size,
        seed=args.seed,
        weights=args.weights,
        size=args.size,
        channels=args.channels,
        mean=tuple(args.mean) if args.mean else None,
        std=tuple(args.std) if args.std else None,
        data_seed=getattr(args, "data_seed", None),
        tensor_key=getattr(args, "tensor_key", None),
    )
    print(f"  {spec.describe()} -> {spec.out} ({args.engine} engine) ...", file=sys.stderr, flush=True)
    m = run_job(spec, engine=args.engine, address=args.address, workers=args.workers, show_progress=True)
    outputs = load_outputs(spec.out)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(outputs.items()))
    print(f"{m.n_shards} shard(s), {m.n_items} item(s) in {m.seconds:.1f} s: {shapes}")
    print(f"Manifest written to {(m.out / 'manifest.json').resolve()}")
    return 0
