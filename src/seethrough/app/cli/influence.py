"""``seethrough influence``: influence-directed explanations from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor

from seethrough._core.errors import ConfigError, InputError
from seethrough.app.specs import add_model_arguments, model_spec

__all__ = ["register", "load_data", "parse_class", "CliData"]


_HELP = "influence-directed explanations: influential neurons of a layer, comparative maps, essence"
_DESCRIPTION = (
    "Internal influence (Leino et al. 2018) of every neuron of --layer for class --class (or --class rather "
    "than --vs), over a distribution of interest; the top neurons, their input attributions, and optionally the "
    "essence experiment (keep the top-k neurons, classify class vs rest)."
)


def register(sub: Any) -> None:
    """Add the ``influence`` command to the subparsers ``sub``."""
    p = sub.add_parser("influence", help=_HELP, description=_DESCRIPTION)
    add_model_arguments(p)
    p.add_argument("--layer", required=True, help="the slice: a dotted layer name (see seethrough.layer_names)")
    p.add_argument("--class", dest="cls", required=True, help="class index or name: the quantity of interest")
    p.add_argument("--vs", help="contrast class (index or name): the quantity becomes class - vs")
    p.add_argument(
        "--distribution",
        choices=("point", "class", "path"),
        default="class",
        help="point: one instance (--index); class: every instance of --class in the data (default); "
        "path: the straight path from a zero baseline to the instance",
    )
    p.add_argument(
        "--data",
        default="shapes",
        help="shapes (synthetic, generated), mnist (held-out digits), a tensor file of inputs "
        "(.npy, .safetensors, torch) or a folder of images (read at the model's input size)",
    )
    p.add_argument(
        "--labels", help="labels for a tensor file or folder --data (tensor file); default: the model's predictions"
    )
    p.add_argument("--n", type=int, help="number of inputs (shapes: generated, default 400; others: first N)")
    p.add_argument("--index", type=int, help="the instance for point/path (default: the first of --class)")
    p.add_argument("--top", type=int, default=5, help="neurons to list and visualise per sign (default: 5)")
    p.add_argument(
        "--reduce", choices=("max", "mean"), default="max", help="channel influence over positions (default: max)"
    )
    p.add_argument("--steps", type=int, default=50, help="points on the path (path distribution; default: 50)")
    p.add_argument(
        "--method",
        default="integrated_gradients",
        help="input attribution of a neuron's activation: integrated_gradients (default) or saliency",
    )
    p.add_argument("--essence", help="comma-separated k: run the essence experiment keeping k neurons")
    p.add_argument("--random-draws", type=int, default=10, help="random k-neuron draws per k (default: 10)")
    p.add_argument(
        "--select",
        choices=("positive", "absolute"),
        default="positive",
        help="essence: keep the k neurons of largest influence (positive, default) or largest |influence|",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data and the random draws")
    p.add_argument("--html", help="write an HTML report here")
    p.set_defaults(handler=_run)


def _say(text: str) -> None:
    print(f"  {text} ...", file=sys.stderr, flush=True)


def parse_class(text: str, names: list[str] | None, what: str = "--class") -> int:
    """A class index from an index or a class name."""
    t = str(text).strip()
    try:
        c = int(t)
    except ValueError:
        if names and t in names:
            return names.index(t)
        known = f"one of {names}" if names else "an integer class index"
        raise InputError(f"cannot read {what} {text!r}: give {known}") from None
    if names and not 0 <= c < len(names):
        raise InputError(
            f"{what} {c} is out of range for the {len(names)} classes {names} (valid: 0..{len(names) - 1})"
        )
    return c


def _ks(text: str) -> list[int]:
    try:
        ks = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"cannot read --essence {text!r}: give comma-separated positive ints, e.g. 1,5,10") from None
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"--essence needs positive ints (neurons to keep), got {text!r}")
    return ks


class CliData(NamedTuple):
    """Inputs and labels for the influence (``x``, ``y``) and the essence experiment's
    training and test splits."""

    x: Tensor
    y: Tensor
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    names: list[str] | None
    note: str


def load_data(
    data: str, n: int | None, *, seed: int, model=None, labels_path: str | None = None, size: int = 64, spec=None
) -> CliData:
    """The data named by ``--data``: ``shapes`` (generated), ``mnist``, a tensor file or a
    folder of images (read through :class:`~seethrough.app.data.DataSpec` at the input size,
    channels and normalisation of the model ``spec``)."""
    import torch

    from seethrough._core.seeds import generator

    if n is not None and n < 2:
        raise ConfigError(f"--n must be at least 2, got {n}")
    if data == "shapes":
        from seethrough.data.shapes import CLASSES, make_shapes

        n = n or 400
        a = make_shapes(n, seed=10_000 + seed, size=size)
        b = make_shapes(n, seed=20_000 + seed, size=size)
        note = f"{n} synthetic shapes (seed {10_000 + seed}); essence test split: {n} more (seed {20_000 + seed})"
        return CliData(a.images, a.labels, a.images, a.labels, b.images, b.labels, list(CLASSES), note)
    if data == "mnist":
        from seethrough.data.mnist import mnist_split

        s = mnist_split(seed=0)
        m = n or len(s.x_test)
        xtr, ytr, xte, yte = s.x_train[:m], s.y_train[:m], s.x_test[:m], s.y_test[:m]
        note = (
            f"MNIST (mnist_split(seed=0)): influence over {len(xtr)} training digits; essence scored on "
            f"{len(xte)} held-out digits"
        )
        return CliData(xtr, ytr, xtr, ytr, xte, yte, [str(d) for d in range(10)], note)
    from seethrough.app.data import DataSpec

    if not Path(data).exists():
        raise InputError(
            f"--data {data!r} is neither 'shapes', 'mnist' nor an existing tensor file or folder of images"
        )
    shape = spec.input_shape() if spec is not None else None
    mean, std = spec.normalization if spec is not None else (None, None)
    loaded = DataSpec(
        data,
        n=n,
        size=shape[1] if shape else None,
        channels=shape[0] if shape else None,
        mean=mean,
        std=std,
        labels=labels_path,
    ).load()
    x, y = loaded.images, loaded.labels
    if y is not None:
        src = f"labels from {labels_path}"
    else:
        from seethrough._core.state import model_guard

        with model_guard(model), torch.no_grad():
            y = model(x.clone()).argmax(dim=1)
        src = "labels = the model's predictions (no --labels given)"
    perm = torch.randperm(x.shape[0], generator=generator(seed))
    tr, te = perm[: x.shape[0] // 2], perm[x.shape[0] // 2 :]
    note = f"{x.shape[0]} inputs from {data}; {src}; essence: random halves (seed {seed})"
    return CliData(x, y, x[tr], y[tr], x[te], y[te], None, note)


def _run(args) -> int:
    import torch

    from seethrough._core.targets import Class, ClassDifference
    from seethrough.influence import (
        ClassInfluence,
        EssenceExperiment,
        InternalInfluence,
        NeuronVisualization,
        select_class,
        views,
    )
    from seethrough.report.html import HtmlReport

    spec = model_spec(args)
    model = spec.load()
    shape = spec.input_shape()
    d = load_data(
        args.data,
        args.n,
        seed=args.seed,
        model=model,
        labels_path=args.labels,
        size=shape[1] if shape else 64,
        spec=spec,
    )
    x, y, names, note = d.x, d.y, d.names, d.note
    if spec.classes is not None:
        names = spec.classes
    cls = parse_class(args.cls, names)
    vs = parse_class(args.vs, names, "--vs") if args.vs is not None else None
    if vs == cls:
        raise ConfigError("--vs must differ from --class")
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    ks = _ks(args.essence) if args.essence else None
    cname = names[cls] if names else str(cls)
    of_cls = select_class(y, cls, what=f"inputs of --data {args.data}")
    if args.distribution in ("point", "path"):
        i = int(of_cls[0]) if args.index is None else args.index
        if not 0 <= i < x.shape[0]:
            raise InputError(f"--index {i} is out of range for {x.shape[0]} inputs")
        xs, ys, where = x[i : i + 1], None, f"instance #{i} (label {int(y[i])})"
    else:
        xs, ys, where = x, y, f"the {of_cls.numel()} instances of {cname!r}"
    target = Class(cls) if vs is None else ClassDifference(cls, vs)
    _say("internal influence")
    infl = InternalInfluence(
        model, layer=args.layer, distribution=args.distribution, reduce=args.reduce, steps=args.steps
    )
    res = infl.compute(xs, target, labels=ys)
    k = res.top_positive(args.top).numel()  # a ConfigError when --top exceeds the neurons
    print(f"{note}")
    print(
        f"internal influence of {res.target} at {res.layer!r} over {args.distribution}: {where}; "
        f"{res.n_neurons} {res.neuron}s" + (f", {res.reduce} over positions" if res.reduce else "")
    )
    for row in views.neuron_rows(res, k):
        print(f"  {row['rank']:>4}  {res.neuron} {row[res.neuron]:>5}  influence {row['influence']:+.4g}")
    neg_note = views.no_negative_note(res)
    if neg_note is not None:
        print(f"  ({neg_note})")

    ess = None
    if ks is not None:
        _say("essence experiment")
        ess = EssenceExperiment(
            model,
            layer=args.layer,
            ks=ks,
            n_random=args.random_draws,
            reduce=args.reduce,
            select=args.select,
            seed=args.seed,
        ).run(d.x_train, d.y_train, d.x_test, d.y_test, cls)
        print(
            f"essence of {cname!r} (class vs rest) at {ess.layer!r}: balanced accuracy on the test split "
            f"({ess.counts['test_positive']} + {ess.counts['test_negative']} inputs)"
        )
        print(f"  {'k':>6}  {'top-k':>7}  {'random-k (mean ± std)':>21}  {'top-k AUC':>9}  {'random-k AUC':>13}")
        for r in ess.rows():
            print(
                f"  {r['k']:>6}  {r['top-k balanced accuracy']:7.3f}  "
                f"{r['random-k balanced accuracy (mean)']:13.3f} ± {r['random-k balanced accuracy (std)']:.3f}  "
                f"{r['top-k AUC']:9.3f}  {r['random-k AUC (mean)']:5.3f} ± {r['random-k AUC (std)']:.3f}"
            )
        print(f"  {'all':>6}  {ess.full_accuracy:7.3f}  {'':21}  {ess.full_auc:9.3f}")

    if args.html:
        report = HtmlReport(f"influence: {args.model} · {res.layer} · {res.target}")
        report.add_paragraph(note)
        report.add_heading("Internal influence")
        views.add_influence(report, res, k=k)
        _say("neuron visualisations")
        shown = of_cls[:4] if args.distribution == "class" else torch.arange(xs.shape[0])
        src = x if args.distribution == "class" else xs
        maps = NeuronVisualization(model, layer=args.layer, method=args.method).visualize(src[shown], res, k=min(k, 3))
        views.add_neuron_maps(report, maps, n_show=len(shown))
        _say("class and comparative explanations")
        report.add_heading("Class and comparative explanations")
        comp = ClassInfluence(
            model, layer=args.layer, top=1, reduce=args.reduce, method=args.method, max_instances=16
        ).explain(x, y, cls, vs, class_names=names)
        views.add_comparison(report, comp, n_show=4)
        if ess is not None:
            report.add_heading("Essence")
            views.add_essence(report, ess, class_name=cname)
        path = report.save(args.html)
        print(f"Report written to {Path(path).resolve()}")
    return 0
