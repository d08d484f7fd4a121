"""Dataset-scale jobs: one API, run in this process (default) or on Ray, same results.

>>> from seethrough.app.jobs import JobSpec, run_job, load_outputs
>>> spec = JobSpec(task="explain", model="shapes-cnn", data="shapes", out="out/ig",
...                settings={"method": "integrated_gradients", "steps": 32}, n=2000, shard_size=256)
>>> manifest = run_job(spec)                       # doctest: +SKIP
>>> maps = load_outputs("out/ig")["attributions"]  # doctest: +SKIP

A job writes sharded safetensors and a JSON manifest, shard by shard and atomically; run
again, a stopped job resumes from its last finished shard. See docs/jobs.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from seethrough._core.errors import ConfigError

from .engines import JobWorkerError, pool_size
from .spec import TASKS, JobSpec
from .store import Manifest, ShardRecord, iter_shards, load_outputs
from .tasks import decode_strings

__all__ = [
    "JobSpec",
    "run_job",
    "Manifest",
    "ShardRecord",
    "load_outputs",
    "iter_shards",
    "JobWorkerError",
    "ENGINES",
    "TASKS",
    "decode_strings",
    "pool_size",
]

#: The engines :func:`run_job` knows.
ENGINES = ("local", "ray")


def run_job(
    spec: JobSpec,
    *,
    engine: str = "local",
    address: str | None = None,
    progress: Callable[[int, int], None] | bool | None = None,
    num_cpus: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
) -> Manifest:
    """Run (or resume) ``spec``; returns the finished :class:`Manifest`.

    ``engine``: ``"local"`` (this process) or ``"ray"`` (Ray Data; ``address`` of an
    existing cluster, else a local one with ``num_cpus``). ``progress``: a callback
    ``(done_shards, total_shards)``, or True for a progress bar on stderr. Validation
    (task, method, settings, data, output directory) happens here, before any worker.
    """
    from .engines import run_local, run_ray
    from .tasks import check_settings, count_items

    if engine not in ENGINES:
        from .spec import close_names

        raise close_names(str(engine), list(ENGINES), "engine")
    if engine == "local" and address is not None:
        raise ConfigError("address= names a Ray cluster; use it with engine='ray'")
    check_settings(spec)
    n_items = count_items(spec)
    m = Manifest.open(spec, n_items)
    m.clean_temporary()
    callback, bar = _progress(progress, m)
    t0 = time.perf_counter()
    try:
        if engine == "local":
            run_local(spec, m, callback)
        else:
            run_ray(
                spec,
                m,
                callback,
                address=address,
                num_cpus=num_cpus,
                cpus_per_worker=cpus_per_worker,
                gpus_per_worker=gpus_per_worker,
            )
    finally:
        if bar is not None:
            bar.close()
    if not m.complete:  # pragma: no cover - an engine that returned early is a bug
        raise RuntimeError(f"the {engine} engine stopped with {len(m.pending())} shards to do")
    m.finish(engine, time.perf_counter() - t0)
    return m


def _progress(progress: Any, m: Manifest) -> tuple[Callable[[int, int], None] | None, Any]:
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=m.n_shards, initial=len(m.shards), unit="shard", desc=m.spec.get("task", "job"))

        def update(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

        return update, bar
    if progress is None or progress is False:
        return None, None
    if not callable(progress):
        raise ConfigError(f"progress must be a callable (done, total), True or None, got {progress!r}")
    return progress, None
