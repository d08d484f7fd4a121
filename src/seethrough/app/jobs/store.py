"""A job's output directory: ``shard-NNNNN.safetensors`` files and ``manifest.json``.

Shard ``i`` holds samples ``[i * shard_size, min((i + 1) * shard_size, n))``: one
safetensors file of the task's tensors (all with the shard's samples as dimension 0, and
``index``, their positions in the data). Each shard is written to a temporary file in the
same directory, flushed to disk and renamed into place (``os.replace``, atomic on POSIX);
only then is the manifest rewritten the same way with the shard's name, size and SHA-256.
A job stopped at any moment therefore leaves finished shards listed in the manifest and at
most a shard file the manifest does not list (which the resumed job writes again, byte for
byte the same); a resumed job computes exactly the shards the manifest lacks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seethrough._core.errors import ConfigError, InputError

from .spec import JobSpec

__all__ = ["Manifest", "ShardRecord", "iter_shards", "load_outputs", "shard_bytes", "MANIFEST"]

MANIFEST = "manifest.json"
_FORMAT = "seethrough.job.manifest/1"
_SHARD_FORMAT = "seethrough.job.shard/1"


def shard_bytes(tensors: Mapping[str, Tensor], *, shard: int, start: int, stop: int) -> bytes:
    """The file content of one shard: a safetensors blob (deterministic for equal tensors).
    Every tensor has one row per ``index`` entry (a sample, or an accepted candidate)."""
    from safetensors.torch import save

    if "index" not in tensors:
        raise ValueError("a shard's outputs must hold 'index' (the positions of its rows in the data)")
    rows = int(tensors["index"].shape[0])
    clean = {}
    for k, t in sorted(tensors.items()):
        if not isinstance(t, Tensor):
            raise TypeError(f"shard output {k!r} is {type(t).__name__}, not a tensor")
        if t.dim() == 0 or t.shape[0] != rows:
            raise ValueError(f"shard output {k!r} has shape {tuple(t.shape)}; dimension 0 must be its {rows} rows")
        clean[k] = t.detach().cpu().contiguous()
    # one metadata entry: safetensors writes several in an order that changes from call to call,
    # and a shard's bytes must not (a resumed or retried shard equals the first one, byte for byte)
    meta = {"seethrough": json.dumps({"format": _SHARD_FORMAT, "shard": shard, "start": start, "stop": stop})}
    return bytes(save(clean, metadata=meta))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class ShardRecord:
    """One finished shard as the manifest lists it."""

    index: int
    start: int
    stop: int
    file: str
    bytes: int
    sha256: str
    worker: str = ""
    seconds: float = 0.0


@dataclass
class Manifest:
    """The state of a job's output directory (``manifest.json``)."""

    out: Path
    spec: dict[str, Any]
    fingerprint: str
    n_items: int
    shard_size: int
    shards: dict[int, ShardRecord] = field(default_factory=dict)
    engine: str = ""
    seconds: float = 0.0

    # -- reading ----------------------------------------------------------------------------
    @property
    def n_shards(self) -> int:
        return -(-self.n_items // self.shard_size)

    @property
    def complete(self) -> bool:
        return len(self.shards) == self.n_shards

    def shard_range(self, i: int) -> tuple[int, int]:
        return i * self.shard_size, min((i + 1) * self.shard_size, self.n_items)

    def pending(self) -> list[int]:
        return [i for i in range(self.n_shards) if i not in self.shards]

    @classmethod
    def load(cls, out: str | Path) -> Manifest:
        out = Path(out)
        path = out / MANIFEST
        if not path.is_file():
            raise InputError(f"{str(out)!r} holds no job manifest ({MANIFEST}); it is not a job's output directory")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(f"{str(path)!r} is not valid JSON ({e}); the directory was not written by a job") from e
        if d.get("format") != _FORMAT:
            raise InputError(f"{str(path)!r} is not a seethrough job manifest (format {d.get('format')!r})")
        shards = {int(s["index"]): ShardRecord(**s) for s in d["shards"]}
        return cls(
            out=out,
            spec=d["spec"],
            fingerprint=d["fingerprint"],
            n_items=int(d["n_items"]),
            shard_size=int(d["shard_size"]),
            shards=shards,
            engine=d.get("engine", ""),
            seconds=float(d.get("seconds", 0.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "spec": self.spec,
            "n_items": self.n_items,
            "shard_size": self.shard_size,
            "n_shards": self.n_shards,
            "complete": self.complete,
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
            "shards": [vars(self.shards[i]) for i in sorted(self.shards)],
        }

    # -- writing ----------------------------------------------------------------------------
    @classmethod
    def open(cls, spec: JobSpec, n_items: int) -> Manifest:
        """The manifest of ``spec.out``: a new one, or the existing one of the same job (to
        resume). Refuses a directory holding another job's manifest, or other files."""
        out = Path(spec.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"the output {str(out)!r} is a file; give a directory (new, or this job's own)")
        fp = spec.fingerprint()
        if (out / MANIFEST).is_file():
            m = cls.load(out)
            if m.fingerprint != fp:
                theirs = m.spec
                raise ConfigError(
                    f"{str(out)!r} holds the manifest of another job ({theirs.get('task')} of {theirs.get('model')!r} "
                    f"on {theirs.get('data')!r}, fingerprint {m.fingerprint}; this job's is {fp}). Give a new --out, "
                    f"or delete that directory to replace it"
                )
            if m.n_items != n_items or m.shard_size != spec.shard_size:
                raise ConfigError(
                    f"{str(out)!r} was written for {m.n_items} samples in shards of {m.shard_size}, but the data now "
                    f"holds {n_items}; the data changed since. Give a new --out"
                )
            m._verify_listed()
            return m
        if out.is_dir():
            others = [p.name for p in out.iterdir() if not p.name.startswith(".")]
            if others:
                raise ConfigError(
                    f"the output directory {str(out)!r} is not empty and holds no job manifest ({', '.join(others[:3])}"
                    f"{', ...' if len(others) > 3 else ''}); give a new or empty directory"
                )
        out.mkdir(parents=True, exist_ok=True)
        m = cls(out=out, spec=spec.to_dict(), fingerprint=fp, n_items=n_items, shard_size=spec.shard_size)
        m.save()
        return m

    def _verify_listed(self) -> None:
        for rec in self.shards.values():
            p = self.out / rec.file
            if not p.is_file() or p.stat().st_size != rec.bytes:
                raise InputError(
                    f"shard {rec.index} ({rec.file}) listed in {str(self.out / MANIFEST)!r} is missing or has the wrong "
                    f"size; the directory was changed by hand. Delete it and run the job again"
                )

    def clean_temporary(self) -> None:
        """Remove temporary files a stopped job left behind."""
        for p in self.out.glob(".*.tmp*"):
            p.unlink(missing_ok=True)

    def save(self) -> None:
        _atomic_write(self.out / MANIFEST, json.dumps(self.to_dict(), indent=1).encode())

    def commit(self, index: int, data: bytes, *, worker: str = "", seconds: float = 0.0) -> ShardRecord:
        """Write shard ``index`` (atomically), then list it in the manifest (atomically).
        A shard already listed is not written again: each shard is present exactly once."""
        if index in self.shards:
            return self.shards[index]
        if not 0 <= index < self.n_shards:
            raise ValueError(f"shard {index} out of range 0..{self.n_shards - 1}")
        start, stop = self.shard_range(index)
        name = f"shard-{index:05d}.safetensors"
        _atomic_write(self.out / name, data)
        rec = ShardRecord(
            index, start, stop, name, len(data), hashlib.sha256(data).hexdigest(), worker, round(seconds, 4)
        )
        self.shards[index] = rec
        self.save()
        return rec

    def finish(self, engine: str, seconds: float) -> None:
        self.engine = engine
        self.seconds = self.seconds + seconds
        self.save()


def iter_shards(out: str | Path, *, verify: bool = True) -> Iterator[tuple[ShardRecord, dict[str, Tensor]]]:
    """``(record, tensors)`` of every finished shard, in shard order."""
    from safetensors.torch import load

    m = Manifest.load(out)
    for i in sorted(m.shards):
        rec = m.shards[i]
        data = (m.out / rec.file).read_bytes()
        if verify and hashlib.sha256(data).hexdigest() != rec.sha256:
            raise InputError(f"shard {rec.file} in {str(m.out)!r} does not match its SHA-256 in the manifest")
        yield rec, load(data)


def load_outputs(out: str | Path, *, partial: bool = False) -> dict[str, Tensor]:
    """Every shard of a job read back and joined in order: ``{name: tensor}`` with all
    samples along dimension 0 (``index``: their positions in the data). An unfinished job
    raises unless ``partial=True`` (then: the finished shards only)."""
    m = Manifest.load(out)
    if not m.complete and not partial:
        raise InputError(
            f"the job in {str(m.out)!r} is unfinished ({len(m.shards)} of {m.n_shards} shards); run it again to "
            f"resume, or pass partial=True"
        )
    parts: dict[str, list[Tensor]] = {}
    for _rec, tensors in iter_shards(out):
        for k, t in tensors.items():
            parts.setdefault(k, []).append(t)
    if not parts:
        return {}
    return {k: torch.cat(v) for k, v in parts.items()}


def wall() -> float:
    return time.perf_counter()
