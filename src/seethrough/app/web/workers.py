"""The background worker pool of the web explorer.

A job kind is a function ``run(ctx, params, handle) -> result`` registered with
:func:`job_kind`; ``result`` is a JSON-able dict (a summary and ``files``, paths relative to
the output root). :class:`JobRunner` runs jobs on a bounded thread pool (``workers``
threads, at most ``max_queued`` waiting; more is refused with a clear error) and keeps
every state change in the :class:`~seethrough.app.web.store.JobStore`. A job reports with
:meth:`JobHandle.progress`, which also raises :class:`JobCancelled` once a cancel was asked
for, so cancelling takes effect at the job's next step.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seethrough._core.errors import ConfigError, SeethroughError

from .store import JobRecord, JobStore

__all__ = ["JobCancelled", "JobHandle", "JobKind", "JobRunner", "QueueFull", "job_kind", "JOB_KINDS"]

log = logging.getLogger("seethrough.web")


class JobCancelled(Exception):
    """Raised inside a job at its next progress step once a cancel was asked for."""


class QueueFull(ConfigError):
    """More jobs are waiting than the server takes."""


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Callable[[Any, dict[str, Any], JobHandle], dict[str, Any]]
    resumable: bool  # a restarted server continues it (it commits its work as it goes)
    title: Callable[[dict[str, Any]], str]
    check: Callable[[Any, dict[str, Any]], dict[str, Any]]  # bad parameters fail here, before queueing


#: Every job kind, by name (filled by the pages that define them).
JOB_KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str,
    *,
    check: Callable[[Any, dict[str, Any]], dict[str, Any]],
    resumable: bool = False,
    title: Callable[[dict[str, Any]], str] | None = None,
):
    """Register ``run(ctx, params, handle)`` as the job kind ``name``; ``check(ctx, params)``
    returns the parameters to store (defaults filled in) or raises on bad ones."""

    def deco(fn: Callable[[Any, dict[str, Any], JobHandle], dict[str, Any]]):
        JOB_KINDS[name] = JobKind(name, fn, resumable, title or (lambda p: name), check)
        return fn

    return deco


class JobHandle:
    """What a running job sees: its id, its folder, and :meth:`progress`."""

    def __init__(self, store: JobStore, job: JobRecord, folder: Path) -> None:
        self.store, self.job, self.folder = store, job, folder
        self.id = job.id

    def progress(self, fraction: float, message: str = "") -> None:
        if self.store.cancel_requested(self.id):
            raise JobCancelled(self.id)
        self.store.progress(self.id, fraction, message)

    def steps(self, total: int) -> Callable[[str], None]:
        """A ``progress(text)`` callback for library functions that report one line a step:
        the fraction is the steps seen so far over ``total`` (at most 0.99 until done)."""
        seen = [0]

        def say(text: str) -> None:
            seen[0] += 1
            self.progress(min(seen[0] / max(total, 1), 0.99), text)

        return say


class JobRunner:
    """A bounded pool of worker threads over the job store."""

    def __init__(self, ctx: Any, store: JobStore, *, workers: int = 1, max_queued: int = 32) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        self.ctx, self.store, self.max_queued = ctx, store, max_queued
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seethrough-job")
        self._lock = threading.Lock()

    def submit(self, kind: str, params: dict[str, Any]) -> JobRecord:
        spec = JOB_KINDS.get(kind)
        if spec is None:
            import difflib

            near = difflib.get_close_matches(str(kind), list(JOB_KINDS), n=2, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
            raise ConfigError(f"unknown job kind {kind!r}.{hint} Known: {', '.join(sorted(JOB_KINDS))}")
        if not isinstance(params, dict):
            raise ConfigError(f"a job's params must be a JSON object, got {type(params).__name__}")
        params = spec.check(self.ctx, dict(params))
        with self._lock:
            if self.store.count(["queued"]) >= self.max_queued:
                raise QueueFull(
                    f"{self.max_queued} jobs are already waiting; wait for some to finish or cancel them (jobs page)"
                )
            job = self.store.create(kind, params, title=spec.title(params))
        self.pool.submit(self._run, job.id)
        return job

    def resume(self) -> tuple[list[str], list[str]]:
        """At start-up: settle what the last server left running, then queue every queued job."""
        requeued, failed = self.store.recover(k for k, s in JOB_KINDS.items() if s.resumable)
        for job in self.store.queued():
            self.pool.submit(self._run, job.id)
        return requeued, failed

    def _run(self, job_id: str) -> None:
        if not self.store.start(job_id):  # cancelled while queued
            return
        job = self.store.get(job_id)
        folder = self.ctx.job_dir(job_id)
        handle = JobHandle(self.store, job, folder)
        spec = JOB_KINDS.get(job.kind)
        try:
            if spec is None:
                raise ConfigError(f"this server has no job kind {job.kind!r}")
            result = spec.run(self.ctx, job.params, handle)
        except JobCancelled:
            self.store.cancelled(job_id)
        except SeethroughError as e:
            self.store.fail(job_id, f"{type(e).__name__}: {e}")
        except Exception as e:  # a job's bug must not kill the worker thread
            log.error("job %s (%s) failed:\n%s", job_id, job.kind, traceback.format_exc())
            self.store.fail(job_id, f"{type(e).__name__}: {e}")
        else:
            self.store.finish(job_id, result)

    def shutdown(self, wait: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)
