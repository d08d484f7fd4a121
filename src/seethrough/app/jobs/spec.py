"""What a job is: :class:`JobSpec`, validated on the driver before any work starts.

A spec names everything a worker needs to rebuild the job on its own (the model by name or
factory plus weights file, the data by name, folder or files, the task and its settings),
as plain values, so that it travels to a worker as JSON and never as a pickled model.
Its :meth:`JobSpec.fingerprint` is a hash of everything that decides the outputs (not the
output directory, not the engine): a directory that already holds a manifest with another
fingerprint belongs to another job and is refused.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from seethrough._core.errors import ConfigError

__all__ = ["JobSpec", "TASKS", "close_names"]

#: The tasks a job runs, and what one sample of each gives.
TASKS: dict[str, str] = {
    "explain": "attribution maps of every sample with a registered method",
    "atlas": "per-unit activation maxima (and their positions) of every sample: the dataset-examples pass",
    "trust": "per-sample scores of evaluation metrics (faithfulness, ...) for an attribution method",
    "metrics": "feature vectors of every sample (FID / KID features) from a network's layer",
    "sample": "rejection sampling of peptide codes: each candidate drawn from its own seeded stream",
}

_FORMAT = "seethrough.job/1"


def close_names(name: str, known: Sequence[str], what: str) -> ConfigError:
    """A ConfigError for an unknown ``name`` with the nearest known names."""
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    return ConfigError(f"unknown {what} {name!r}.{hint} Known: {', '.join(known)}")


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON values (tuples become lists); a clear error otherwise."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    raise ConfigError(
        f"{where} holds {type(value).__name__} {value!r}: job settings must be plain values (numbers, strings, "
        f"lists, dicts) so that every worker rebuilds the job from them"
    )


@dataclass(frozen=True)
class JobSpec:
    """One dataset-scale job.

    Parameters
    ----------
    task:
        ``"explain"``, ``"atlas"``, ``"trust"``, ``"metrics"`` or ``"sample"`` (:data:`TASKS`).
    model:
        A bundled model name, a TorchScript file, or ``package.module:factory`` (with
        ``weights``); for ``sample`` a bundled autoencoder (``"peptide-wae"``) or a factory.
        Every worker rebuilds the model from this: a factory's module and the weights file
        must be importable and readable where the workers run (shared storage on a cluster).
    data:
        Bundled data (``"shapes"``, ``"mnist"``, ...), a folder of images, image files, a
        tensor file, or tensor shards (several ``.safetensors`` / ``.npy`` files, or a folder
        of them, read in name order as one data set). ``sample`` takes no data: its items are
        candidate indices ``0 .. n-1``.
    out:
        The output directory: ``manifest.json`` and ``shard-NNNNN.safetensors`` files.
    settings:
        The task's settings (``method`` and the method's own keyword settings, ``layer``,
        ``target``, ``metrics``, ``conditions``, ``batch_size``, ...; see docs/jobs.md).
    n:
        How many samples (generated data: how many to generate; others: the first ``n``).
    shard_size:
        Samples per output shard: the unit of work, of writing and of resuming.
    seed:
        The job's seed; a sampled method's seed for sample ``i`` is derived from
        ``(seed, i)``, never from the worker or the shard.
    weights, size, channels, mean, std:
        As in :class:`~seethrough.app.models.ModelSpec` (weights of a factory, input
        shape and normalisation of a model that is not bundled).
    data_seed, tensor_key:
        As in :class:`~seethrough.app.data.DataSpec`.
    """

    task: str
    model: str
    data: str | tuple[str, ...] | None = None
    out: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    n: int | None = None
    shard_size: int = 256
    seed: int = 0
    weights: str | None = None
    size: int | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    data_seed: int | None = None
    tensor_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or self.task not in TASKS:
            raise close_names(str(self.task), list(TASKS), "task")
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model must be a name, a file or package.module:factory, got {self.model!r}")
        data = self.data
        if isinstance(data, Path):
            data = str(data)
        if isinstance(data, (list, tuple)):
            data = tuple(str(d) for d in data)
            if len(data) == 1:
                data = data[0]
            elif not data:
                data = None
        object.__setattr__(self, "data", data)
        if self.task == "sample":
            if data is not None:
                raise ConfigError("the sample task draws its own candidates; give --n (how many), not --data")
        elif data is None:
            raise ConfigError(f"the {self.task} task needs data: a bundled name, a folder, image files or tensor files")
        if not self.out:
            raise ConfigError("give the output directory (out=, --out)")
        object.__setattr__(self, "out", str(self.out))
        for what, v, low in (("shard_size", self.shard_size, 1), ("seed", self.seed, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{what} must be an int >= {low}, got {v!r}")
        if self.n is not None and (isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1):
            raise ConfigError(f"n must be a positive number of samples, got {self.n!r}")
        if self.task == "sample" and self.n is None:
            raise ConfigError("the sample task needs n: how many candidates to draw and score")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(float(x) for x in v))
        if not isinstance(self.settings, Mapping):
            raise ConfigError(f"settings must be a dict, got {type(self.settings).__name__}")
        object.__setattr__(self, "settings", MappingProxyType(_jsonable(dict(self.settings), "settings")))

    # -- the specs the app already has --------------------------------------------------
    def model_spec(self) -> Any:
        from seethrough.app.models import ModelSpec

        return ModelSpec(
            self.model, weights=self.weights, size=self.size, channels=self.channels, mean=self.mean, std=self.std
        )

    def autoencoder_spec(self) -> Any:
        from seethrough.app.autoencoders import AutoencoderSpec

        return AutoencoderSpec(name=self.model, weights=self.weights)

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {
            "task": self.task,
            "model": self.model,
            "data": list(self.data) if isinstance(self.data, tuple) else self.data,
            "out": self.out,
            "settings": _jsonable(dict(self.settings), "settings"),
            "n": self.n,
            "shard_size": self.shard_size,
            "seed": self.seed,
            "weights": self.weights,
            "size": self.size,
            "channels": self.channels,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "data_seed": self.data_seed,
            "tensor_key": self.tensor_key,
        }
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobSpec:
        known = set(cls.__dataclass_fields__)
        bad = [k for k in d if k not in known]
        if bad:
            raise ConfigError(f"unknown job spec fields {bad}; known: {sorted(known)}")
        kw = dict(d)
        if isinstance(kw.get("data"), list):
            kw["data"] = tuple(kw["data"])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        """A hash of everything that decides the outputs (not ``out``)."""
        d = self.to_dict()
        d.pop("out")
        d["format"] = _FORMAT
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:32]

    def describe(self) -> str:
        data = " ".join(self.data) if isinstance(self.data, tuple) else self.data
        what = f"on {data}" if data is not None else f"over {self.n} candidates"
        method = self.settings.get("method")
        return f"{self.task} of {self.model}{f' with {method}' if method else ''} {what}"
