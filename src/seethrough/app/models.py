"""Which model a command runs on: :class:`ModelSpec`, and :func:`load_model` behind it.

A model is a bundled zoo name, a TorchScript file, or ``package.module:factory`` plus
weights. Weights are read as safetensors or as a state dict through ``torch.load(...,
weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seethrough._core.errors import ConfigError

__all__ = ["ModelSpec", "load_model", "load_state_dict"]


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (weights only, no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError and friends
        raise ConfigError(
            f"could not read {str(path)!r} as weights: {e}. seethrough loads only state dicts "
            f"(torch.save(model.state_dict(), path)) or safetensors, never arbitrary pickles."
        ) from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{str(path)!r} does not hold a state dict of tensors")
    return obj


def load_model(spec: str, weights: str | Path | None = None) -> nn.Module:
    """A model from ``spec``, in eval mode.

    ``spec`` is a bundled zoo name (``"shapes-cnn"``), a TorchScript file (``.pt``/``.ts``
    saved with ``torch.jit.save``), or ``"package.module:function"``: a factory called with
    no arguments, whose model then gets ``weights`` loaded (strictly).
    """
    from seethrough.zoo import available, load

    if spec in available():
        if weights is not None:
            raise ConfigError("a bundled model carries its own weights; drop --weights")
        return load(spec)
    if ":" in spec and not Path(spec).exists():
        mod_name, _, fn_name = spec.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise ConfigError(f"cannot import {mod_name!r} for model factory {spec!r}: {e}") from e
        factory = getattr(module, fn_name, None)
        if factory is None or not callable(factory):
            raise ConfigError(f"{mod_name!r} has no callable {fn_name!r}")
        model = factory()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"factory {spec!r} returned {type(model).__name__}, not an nn.Module")
        if weights is not None:
            missing, unexpected = model.load_state_dict(load_state_dict(weights), strict=False)
            if missing or unexpected:
                raise ConfigError(
                    f"weights {str(weights)!r} do not fit {type(model).__name__}: missing keys "
                    f"{missing[:5]}, unexpected keys {unexpected[:5]}"
                )
        return model.eval()
    path = Path(spec)
    if path.is_file():
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as e:
            raise ConfigError(
                f"{spec!r} is not a TorchScript file ({e}). Give a bundled name, a TorchScript "
                f"file, or package.module:factory with --weights."
            ) from e
        return model.eval()
    import difflib

    close = difflib.get_close_matches(spec, available(), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ConfigError(
        f"unknown model {spec!r}.{hint} Give a bundled name ({', '.join(available())}), a "
        f"TorchScript file, or package.module:factory with --weights."
    )


@dataclass(frozen=True)
class ModelSpec:
    """A model named the way every command names one.

    ``name``: a bundled zoo name, a TorchScript file, or ``package.module:factory``;
    ``weights``: safetensors or a weights-only torch file for a factory. ``size`` and
    ``channels`` state the input images of a model that is not bundled (a bundled model's
    card says them); ``mean``/``std`` its input normalisation.
    """

    name: str
    weights: str | None = None
    size: int | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def bundled(self) -> bool:
        from seethrough.zoo import available

        return self.name in available()

    @property
    def info(self) -> Any:
        """The zoo card of a bundled model, else None."""
        from seethrough import zoo

        return zoo.info(self.name) if self.bundled else None

    def load(self) -> nn.Module:
        return load_model(self.name, self.weights)

    def input_shape(self, *, default_size: int | None = None, default_channels: int = 3) -> tuple[int, int, int] | None:
        """``(C, H, W)`` of the model's inputs: what was given, else the card's, else the
        defaults (None when no size is known)."""
        info = self.info
        c = self.channels or (info.input_shape[0] if info else default_channels)
        h = self.size or (info.input_shape[1] if info else default_size)
        return None if h is None else (int(c), int(h), int(h))

    def require_input_shape(self, what: str = "this command") -> tuple[int, int, int]:
        shape = self.input_shape()
        if shape is None:
            raise ConfigError(
                f"{what} needs the input image size of model {self.name!r}, which is not bundled: give --size "
                f"(and --channels if it is not 3)"
            )
        return shape

    @property
    def classes(self) -> list[str] | None:
        info = self.info
        return list(info.classes) if info else None

    @property
    def default_layer(self) -> str | None:
        """The layer layer methods default to (a bundled model's CAM layer), else None."""
        info = self.info
        return info.default_cam_layer if info else None

    @property
    def normalization(self) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        info = self.info
        mean = self.mean if self.mean is not None else (tuple(info.mean) if info else None)
        std = self.std if self.std is not None else (tuple(info.std) if info else None)
        return mean, std
