"""The two engines: in-process (default, no Ray) and Ray Data.

Both run the same function on the same shards: :func:`compute_shard` builds nothing, it
calls a worker made by :func:`~seethrough.app.jobs.tasks.make_worker` on the shard's range
and serialises the result with :func:`~seethrough.app.jobs.store.shard_bytes`. The driver
alone writes the output directory (shard files, then the manifest), so a shard computed
twice (a Ray task retried after its worker died) is still listed once.

Ray: a data set of one row per pending shard, ``map_batches`` with a stateful class
(:class:`ShardActor`: the worker, that is the model and the data, is built once per actor
from the spec's JSON), one shard per call (``batch_size=1``; inside a shard the model
calls are sized by the core's ``Batching``), an actor pool sized from the cluster's CPUs
(or GPUs), actors restarted and their tasks retried when a worker process dies. An
exception inside a worker (a model that does not load there, bad data) is caught and
sent back as the shard's ``error``, so the driver stops with the worker-side cause instead
of Ray retrying a failure that would repeat.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from seethrough._core.errors import ConfigError, SeethroughError

from .spec import JobSpec
from .store import Manifest, shard_bytes

__all__ = ["run_local", "run_ray", "JobWorkerError", "pool_size", "ray_available"]

Progress = Callable[[int, int], None]


class JobWorkerError(SeethroughError):
    """A worker failed: the message names the worker-side cause (exception, where, shard)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def compute_shard(worker: Callable, m: Manifest, index: int) -> tuple[bytes, float]:
    start, stop = m.shard_range(index)
    t0 = time.perf_counter()
    tensors = worker(start, stop)
    return shard_bytes(tensors, shard=index, start=start, stop=stop), time.perf_counter() - t0


def run_local(spec: JobSpec, m: Manifest, progress: Progress | None) -> None:
    """Every pending shard in order, in this process."""
    from .tasks import make_worker

    pending = m.pending()
    if not pending:
        return
    worker = make_worker(spec)
    for i in pending:
        data, seconds = compute_shard(worker, m, i)
        m.commit(i, data, worker=f"local {worker_name()}", seconds=seconds)
        if progress is not None:
            progress(len(m.shards), m.n_shards)


# --------------------------------------------------------------------------------- Ray
def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"the ray engine needs Ray Data ({e}); install it with pip install 'seethrough[ray]' (ray[data]), or run "
            f"with --engine local"
        ) from e
    return ray


def pool_size(resources: dict[str, float], n_pending: int, *, cpus: float = 1.0, gpus: float = 0.0) -> int:
    """Actors for the job: as many as the cluster's CPUs (or GPUs) hold, never more than
    the pending shards, at least one."""
    fits = int(resources.get("CPU", 1.0) // cpus) if cpus > 0 else n_pending
    if gpus > 0:
        fits = min(fits, int(resources.get("GPU", 0.0) // gpus))
        if fits < 1:
            raise ConfigError(f"the cluster has no GPU for actors asking num_gpus={gpus}; give gpus=0 or add GPUs")
    return max(1, min(fits, n_pending))


class ShardActor:
    """The Ray Data stateful class: one worker per actor, built from the spec's JSON."""

    def __init__(self, spec_json: str, n_items: int) -> None:
        self.where = worker_name()
        self.error: str | None = None
        self.worker: Any = None
        try:
            from .tasks import make_worker

            self.spec = JobSpec.from_json(spec_json)
            self.manifest = Manifest(
                out=__import__("pathlib").Path(self.spec.out),
                spec={},
                fingerprint="",
                n_items=n_items,
                shard_size=self.spec.shard_size,
            )
            self.worker = make_worker(self.spec)
        except Exception as e:  # sent to the driver with the first shard
            self.error = f"building the worker failed on {self.where}: {_cause(e)}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out: dict[str, list[Any]] = {"shard": [], "data": [], "error": [], "worker": [], "seconds": []}
        for index in batch["shard"].tolist():
            data, seconds, error = b"", 0.0, self.error
            if error is None:
                try:
                    data, seconds = compute_shard(self.worker, self.manifest, int(index))
                except Exception as e:
                    error = f"shard {int(index)} failed on {self.where}: {_cause(e)}"
            out["shard"].append(int(index))
            out["data"].append(data)
            out["error"].append(error or "")
            out["worker"].append(f"ray {self.where}")
            out["seconds"].append(seconds)
        return {
            "shard": np.asarray(out["shard"], dtype=np.int64),
            "data": np.asarray(out["data"], dtype=object),
            "error": np.asarray(out["error"], dtype=object),
            "worker": np.asarray(out["worker"], dtype=object),
            "seconds": np.asarray(out["seconds"], dtype=np.float64),
        }


def _cause(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    at = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{at}"


def run_ray(
    spec: JobSpec,
    m: Manifest,
    progress: Progress | None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
) -> None:
    """The pending shards on Ray: a local cluster (``num_cpus``, default all) when
    ``address`` is None and Ray is not initialised yet, else the cluster at ``address``
    (``"auto"``: the one this machine belongs to). A cluster started here is shut down."""
    ray = _import_ray()
    pending = m.pending()
    if not pending:
        return
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = num_cpus
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"cannot start or reach the Ray cluster ({address or 'local'}): {e}") from e
        started = True
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        size = pool_size(ray.cluster_resources(), len(pending), cpus=cpus_per_worker, gpus=gpus_per_worker)
        ds = ray.data.from_items([{"shard": i} for i in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(
            ShardActor,
            fn_constructor_kwargs={"spec_json": spec.to_json(), "n_items": m.n_items},
            batch_size=1,
            batch_format="numpy",
            concurrency=size,
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            max_restarts=-1,
            max_task_retries=-1,
        )
        for row in ds.iter_rows():
            if row["error"]:
                raise JobWorkerError(f"the job {spec.describe()} failed on a Ray worker: {row['error']}")
            m.commit(int(row["shard"]), bytes(row["data"]), worker=str(row["worker"]), seconds=float(row["seconds"]))
            if progress is not None:
                progress(len(m.shards), m.n_shards)
    finally:
        if started:
            ray.shutdown()
