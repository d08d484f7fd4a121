"""Load a user's model: a bundled name, a TorchScript file, or a factory plus weights.

Weights are read as safetensors or as a state dict through ``torch.load(...,
weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from seethrough._core.errors import ConfigError

__all__ = ["load_model", "load_state_dict"]


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
