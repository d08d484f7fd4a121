"""The command-line vocabulary for models and data, shared by every command.

Each command adds the same arguments with :func:`add_model_arguments` and
:func:`add_data_arguments`, and turns them into a :class:`~seethrough.app.models.ModelSpec`
and a :class:`~seethrough.app.data.DataSpec` with :func:`model_spec` and :func:`data_spec`,
so that every command takes a bundled model or the user's own (``module:factory`` plus
weights, a TorchScript file) and bundled data or the user's own (a folder of images, image
files, a tensor file, with labels and masks as tensor files).
"""

from __future__ import annotations

import argparse
from typing import Any

from .data import BUNDLED_DATA, DataSpec
from .models import ModelSpec

__all__ = ["add_model_arguments", "add_data_arguments", "model_spec", "data_spec", "floats"]


def floats(text: str) -> list[float]:
    """``"0.5,0.5,0.5"`` -> ``[0.5, 0.5, 0.5]`` (an argparse type)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_model_arguments(p: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """``--model``, ``--weights``, ``--size``, ``--channels``, ``--mean``, ``--std``."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        required=default is None,
        default=default,
        help="bundled name (see 'seethrough models'), a TorchScript file, or package.module:factory with --weights"
        + (f" (default: {default})" if default else ""),
    )
    g.add_argument("--weights", help="weights of a factory model: .safetensors, or a weights-only torch file")
    g.add_argument("--size", type=int, help="input image size SIZE x SIZE (bundled models: their own)")
    g.add_argument("--channels", type=int, choices=(1, 3), help="input channels, 1 or 3 (bundled models: their own)")
    g.add_argument("--mean", type=floats, help="per-channel mean subtracted after scaling images to [0, 1]")
    g.add_argument("--std", type=floats, help="per-channel std divided after the mean")


def add_data_arguments(
    p: argparse.ArgumentParser,
    *,
    default: str | None = None,
    n_default: int | None = None,
    labels: bool = True,
    masks: bool = False,
    seed: bool = True,
    required: bool | None = None,
    seed_default: int | None = None,
) -> None:
    """``--data`` (with ``--n``, ``--tensor-key``, ``--data-seed``) and, where the command
    uses them, ``--labels`` and ``--masks``."""
    g = p.add_argument_group("data")
    names = ", ".join(BUNDLED_DATA)
    g.add_argument(
        "--data",
        nargs="+",
        required=(default is None) if required is None else required,
        default=None if default is None else [default],
        help=f"bundled data ({names}), a folder of images, image files, or a tensor file"
        + (f" (default: {default})" if default else ""),
    )
    g.add_argument(
        "--n",
        type=int,
        default=n_default,
        help="number of samples (generated data: how many; others: the first N)"
        + (f" (default: {n_default})" if n_default else ""),
    )
    g.add_argument("--tensor-key", help="tensor name inside a .safetensors --data file")
    if seed:
        g.add_argument(
            "--data-seed",
            type=int,
            default=seed_default,
            help=f"seed of generated data (default: {seed_default if seed_default is not None else 10000}; "
            "no bundled model was trained on it)",
        )
    if labels:
        g.add_argument("--labels", help="labels of --data (a tensor file of class indices); bundled data bring theirs")
    if masks:
        g.add_argument("--masks", help="ground-truth masks of --data, (N, H, W) tensor file; bundled data bring theirs")


def model_spec(args: Any) -> ModelSpec:
    return ModelSpec(
        args.model,
        weights=getattr(args, "weights", None),
        size=getattr(args, "size", None),
        channels=getattr(args, "channels", None),
        mean=_tuple(getattr(args, "mean", None)),
        std=_tuple(getattr(args, "std", None)),
    )


def data_spec(args: Any, model: ModelSpec | None = None, **overrides: Any) -> DataSpec:
    """The data of ``args``; images are read at the model's input size and channels."""
    shape = model.input_shape() if model is not None else None
    mean, std = model.normalization if model is not None else (None, None)
    source = args.data if isinstance(args.data, str) else tuple(args.data)
    if isinstance(source, tuple) and len(source) == 1:
        source = source[0]
    settings: dict[str, Any] = dict(
        n=getattr(args, "n", None),
        seed=getattr(args, "data_seed", None),
        size=shape[1] if shape else None,
        channels=shape[0] if shape else None,
        mean=mean,
        std=std,
        tensor_key=getattr(args, "tensor_key", None),
        labels=getattr(args, "labels", None),
        masks=getattr(args, "masks", None),
    )
    settings.update(overrides)
    return DataSpec(source, **settings)


def _tuple(v: Any) -> tuple[float, ...] | None:
    return None if v is None else tuple(float(x) for x in v)
