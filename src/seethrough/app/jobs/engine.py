"""Running a job: :func:`run_job` on the local engine (this process) or on Ray.

Both engines do the same three things. The driver opens the output directory's
:class:`~seethrough.app.jobs.store.Manifest` (new, or the same job's to resume) and lists
the shards it lacks. Workers, each built from the spec alone (:func:`make_worker`: the
model is loaded on the worker, never pickled from the driver), turn a shard's sample range
into the bytes of its safetensors file. The driver commits each finished shard: the file
atomically, then the manifest atomically. A shard is therefore written by the driver
exactly once, whichever worker computed it and however often (a retried task after a
worker died computes the same bytes: seeds come from the sample index, not the worker).

The local engine computes the shards in order in this process. The Ray engine maps the
pending shards with Ray Data's ``map_batches`` over a pool of stateful actors (one model
per actor), one shard per call; the results stream back to the driver in whatever order
they finish.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from seethrough._core.errors import ConfigError, SeethroughError

from .spec import JobSpec
from .store import Manifest, ShardRecord, shard_bytes
from .tasks import check_settings, count_items, make_worker

__all__ = ["run_job", "ENGINES", "JobFailed", "plan_job", "Progress"]

ENGINES = ("local", "ray")

#: ``progress(done, total, record)`` after each committed shard (``record``: the shard).
Progress = Callable[[int, int, ShardRecord], None]


class JobFailed(SeethroughError):
    """A worker failed; the message names the worker-side cause. Finished shards are kept,
    so running the job again resumes it."""


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def plan_job(spec: JobSpec) -> Manifest:
    """Validate ``spec`` on the driver and open its output directory: the manifest, with
    the shards still to compute in ``manifest.pending()``."""
    check_settings(spec)
    manifest = Manifest.open(spec, count_items(spec))
    manifest.clean_temporary()
    return manifest


def compute_shard(worker: Callable, spec: JobSpec, manifest: Manifest, index: int) -> tuple[bytes, float]:
    """The bytes of shard ``index`` computed by ``worker``, and the seconds it took."""
    start, stop = manifest.shard_range(index)
    t0 = time.perf_counter()
    tensors = worker(start, stop)
    return shard_bytes(tensors, shard=index, start=start, stop=stop), time.perf_counter() - t0


def run_job(
    spec: JobSpec,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    show_progress: bool = False,
) -> Manifest:
    """Run ``spec`` to completion (or resume it) and return its finished manifest.

    ``engine``: ``"local"`` (default; needs no Ray) or ``"ray"``. ``address``: an existing
    Ray cluster (``"ray://host:10001"``, ``"auto"``); without it a local cluster is started
    (and stopped again afterwards) unless Ray is already initialised in this process.
    ``workers``: the Ray actor pool size (default: the cluster's CPUs, at most the pending
    shards). ``progress``: called after each committed shard; ``show_progress``: a tqdm bar.
    """
    if engine not in ENGINES:
        from .spec import close_names

        raise close_names(str(engine), list(ENGINES), "engine")
    if engine == "local" and (address is not None or workers is not None):
        raise ConfigError("address= and workers= are Ray settings; pass engine='ray' (--engine ray) to use them")
    t0 = time.perf_counter()
    manifest = plan_job(spec)
    pending = manifest.pending()
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=manifest.n_shards, initial=manifest.n_shards - len(pending), unit="shard", desc=spec.task)

    def committed(rec: ShardRecord) -> None:
        if bar is not None:
            bar.update(1)
        if progress is not None:
            progress(len(manifest.shards), manifest.n_shards, rec)

    try:
        if pending:
            if engine == "local":
                _run_local(spec, manifest, pending, committed)
            else:
                _run_ray(spec, manifest, pending, committed, address=address, workers=workers)
    finally:
        if bar is not None:
            bar.close()
    manifest.finish(engine, time.perf_counter() - t0)
    return manifest


def _run_local(spec: JobSpec, manifest: Manifest, pending: list[int], committed: Callable) -> None:
    worker = make_worker(spec)
    name = _worker_name()
    for i in pending:
        data, seconds = compute_shard(worker, spec, manifest, i)
        committed(manifest.commit(i, data, worker=name, seconds=seconds))


# -- Ray ----------------------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"the Ray engine needs Ray Data ({e}): pip install 'seethrough[ray]' (or 'ray[data]'), or use the local "
            f"engine (engine='local', --engine local)"
        ) from None
    return ray


class _ShardMapper:
    """The stateful Ray Data callable: the worker (model and data) is built once per actor
    from the spec's JSON; each call turns shard numbers into shard bytes."""

    def __init__(self, spec_json: str, manifest_json: dict) -> None:
        import torch

        threads = os.environ.get("SEETHROUGH_ACTOR_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        self.spec = JobSpec.from_json(spec_json)
        self.n_items = int(manifest_json["n_items"])
        self.shard_size = int(manifest_json["shard_size"])
        self.worker = make_worker(self.spec)
        self.name = _worker_name()

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out_data, seconds = [], []
        for i in batch["shard"]:
            i = int(i)
            start, stop = i * self.shard_size, min((i + 1) * self.shard_size, self.n_items)
            t0 = time.perf_counter()
            tensors = self.worker(start, stop)
            out_data.append(shard_bytes(tensors, shard=i, start=start, stop=stop))
            seconds.append(time.perf_counter() - t0)
        return {
            "shard": np.asarray(batch["shard"], dtype=np.int64),
            "data": np.array(out_data, dtype=object),
            "worker": np.array([self.name] * len(out_data), dtype=object),
            "seconds": np.asarray(seconds, dtype=np.float64),
        }


_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")


def worker_cause(error: BaseException) -> str:
    """The worker-side exception inside a Ray error, as ``Type: message`` (the last such
    line of its traceback text), else the error's own first line."""
    text = str(error)
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(error)):
        return f"{type(cause).__name__}: {cause}"
    hits = [m for m in (_ERROR_LINE.match(line) for line in text.splitlines()) if m]
    hits = [m for m in hits if not m.group(1).startswith("ray.")] or hits
    if hits:
        return f"{hits[-1].group(1)}: {hits[-1].group(2)}"
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _run_ray(
    spec: JobSpec,
    manifest: Manifest,
    pending: list[int],
    committed: Callable,
    *,
    address: str | None,
    workers: int | None,
) -> None:
    ray = _import_ray()
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address is not None:
            ray.init(address=address, **kw)
        else:
            ray.init(**kw)
        started = True
    elif address is not None:
        raise ConfigError(
            f"Ray is already initialised in this process; cannot connect to {address!r} as well. Drop --address, or "
            f"call ray.shutdown() first"
        )
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = workers if workers is not None else max(1, min(cpus, len(pending)))
        if size < 1:
            raise ConfigError(f"workers must be >= 1, got {size}")
        ds = ray.data.from_items([{"shard": i} for i in pending], override_num_blocks=len(pending))
        mapped = ds.map_batches(
            _ShardMapper,
            fn_constructor_args=(spec.to_json(), {"n_items": manifest.n_items, "shard_size": manifest.shard_size}),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=1,
            zero_copy_batch=True,
        )
        try:
            for row in mapped.iter_rows():
                rec = manifest.commit(
                    int(row["shard"]), bytes(row["data"]), worker=str(row["worker"]), seconds=float(row["seconds"])
                )
                committed(rec)
        except Exception as e:  # a Ray error wrapping the worker's exception
            raise JobFailed(
                f"a Ray worker failed while running {spec.describe()}: {worker_cause(e)}. The {len(manifest.shards)} "
                f"finished shard(s) are kept in {manifest.out}; fix the cause and run the job again to resume"
            ) from e
    finally:
        if started:
            ray.shutdown()
    missing = manifest.pending()
    if missing:
        raise JobFailed(f"the Ray run ended with shards {missing[:10]} missing; run the job again to resume them")
