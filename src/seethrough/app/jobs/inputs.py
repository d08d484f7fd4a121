"""The samples of a job, read by position: every worker opens them from the spec itself.

Bundled data, a folder of images, image files and one tensor file go through the app's
:class:`~seethrough.app.data.DataSpec`; tensor shards (several ``.safetensors`` / ``.npy``
files, or a folder holding only such files) are one data set read file by file
(:class:`TensorShards`), so that a worker reading positions 5,000..5,255 opens only the
files that hold them.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seethrough._core.errors import InputError
from seethrough._core.sources import IMAGE_SUFFIXES, ImageSource

from .spec import JobSpec

__all__ = ["TensorShards", "open_inputs", "TENSOR_SUFFIXES"]

TENSOR_SUFFIXES = (".safetensors", ".npy")


def _rows(path: Path, key: str | None) -> int:
    if path.suffix == ".npy":
        return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        k = _key(path, keys, key)
        return int(f.get_slice(k).get_shape()[0])


def _key(path: Path, keys: list[str], key: str | None) -> str:
    if key is None:
        if len(keys) != 1:
            raise InputError(f"{str(path)!r} holds tensors {sorted(keys)}; name one with tensor_key (--tensor-key)")
        return keys[0]
    if key not in keys:
        raise InputError(f"{str(path)!r} has no tensor {key!r}; it has {sorted(keys)}")
    return key


class TensorShards(ImageSource):
    """Tensor files read in order as one data set of ``sum(rows)`` samples."""

    def __init__(self, files: list[Path], *, key: str | None = None, limit: int | None = None) -> None:
        if not files:
            raise InputError("no tensor files to read")
        self.files = files
        self.key = key
        self.name = f"{len(files)} tensor shard(s)"
        counts = [_rows(p, key) for p in files]
        self.offsets = list(np.cumsum([0, *counts]).tolist())
        self.n = int(self.offsets[-1]) if limit is None else min(int(limit), int(self.offsets[-1]))

    def __len__(self) -> int:
        return self.n

    def _read(self, i: int, lo: int, hi: int) -> Tensor:
        path = self.files[i]
        if path.suffix == ".npy":
            return torch.from_numpy(np.array(np.load(path, mmap_mode="r", allow_pickle=False)[lo:hi])).float()
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            k = _key(path, list(f.keys()), self.key)
            return f.get_slice(k)[lo:hi].float()

    def get(self, idx: Any) -> Tensor:
        if not isinstance(idx, slice) or idx.step not in (None, 1):
            raise InputError("tensor shards are read by contiguous ranges")
        start, stop = max(0, idx.start or 0), min(self.n, self.n if idx.stop is None else idx.stop)
        parts = []
        pos = start
        while pos < stop:
            i = bisect.bisect_right(self.offsets, pos) - 1
            hi = min(stop, self.offsets[i + 1])
            parts.append(self._read(i, pos - self.offsets[i], hi - self.offsets[i]))
            pos = hi
        return torch.cat(parts) if len(parts) != 1 else parts[0]

    def fingerprint(self) -> str:
        return repr([(str(p), p.stat().st_size) for p in self.files])


def _tensor_files(data: str | tuple[str, ...]) -> list[Path] | None:
    """The tensor shards named by ``data``, or None when it names something else."""
    paths = [Path(p) for p in ((data,) if isinstance(data, str) else data)]
    if len(paths) == 1 and paths[0].is_dir():
        entries = sorted(p for p in paths[0].iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        tensors = [p for p in entries if p.suffix.lower() in TENSOR_SUFFIXES]
        if not images and not tensors:
            shown = ", ".join(p.name for p in entries[:5]) or "nothing"
            raise InputError(
                f"the data folder {str(paths[0])!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}) and no tensor "
                f"shards ({', '.join(TENSOR_SUFFIXES)}); it holds {shown}. Point --data at a folder of images or "
                f"tensor files"
            )
        if images and tensors:
            raise InputError(
                f"the data folder {str(paths[0])!r} mixes image files and tensor files; give one kind per folder"
            )
        return tensors or None
    if len(paths) > 1 and all(p.suffix.lower() in TENSOR_SUFFIXES for p in paths):
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"tensor shard {missing[0]!r} does not exist")
        return paths
    return None


def open_inputs(spec: JobSpec) -> ImageSource:
    """The job's samples by position, at the model's input size and normalisation."""
    from seethrough.app.data import DataSpec

    assert spec.data is not None  # JobSpec refuses data-less jobs other than sample
    files = _tensor_files(spec.data)
    if files is not None:
        source: ImageSource = TensorShards(files, key=spec.tensor_key, limit=spec.n)
    else:
        model = spec.model_spec()
        shape = model.input_shape()
        mean, std = model.normalization
        ds = DataSpec(
            spec.data,
            n=spec.n,
            seed=spec.data_seed,
            size=shape[1] if shape else None,
            channels=shape[0] if shape else None,
            mean=mean,
            std=std,
            tensor_key=spec.tensor_key,
            split="all",
        )
        source = ds.image_source()
    if len(source) == 0:
        raise InputError(f"the data {spec.data!r} holds no samples; give data with at least one")
    return source
