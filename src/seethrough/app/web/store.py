"""The job store of the web explorer: one SQLite file (standard library) under the output root.

Every job is a row: its kind, its parameters (JSON), its state, progress, message, error and
result (JSON: a summary and the files it wrote, relative to the output root). Nothing about
a job is kept only in memory: a restarted server reads the same rows back, lists finished
jobs with their outputs, and :meth:`JobStore.recover` settles the jobs the last server left
running (re-queued when the kind can resume, else marked failed with the reason).

Each call opens its own connection (SQLite serialises writers; WAL lets readers go on while
a job writes its progress), so the store is safe to share between the request threads and
the worker pool.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["JobRecord", "JobStore", "STATES", "FINISHED"]

#: A job's life: queued -> running -> done | failed | cancelled.
STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    result TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""


@dataclass(frozen=True)
class JobRecord:
    """One job as stored (``params`` and ``result`` decoded from JSON)."""

    id: str
    kind: str
    title: str
    params: dict[str, Any]
    state: str
    progress: float
    message: str
    error: str | None
    result: dict[str, Any] | None
    cancel_requested: bool
    attempts: int
    created: float
    updated: float

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "params": self.params,
            "state": self.state,
            "progress": self.progress,
            "message": self.message,
            "error": self.error,
            "result": self.result,
            "cancel_requested": self.cancel_requested,
            "attempts": self.attempts,
            "created": self.created,
            "updated": self.updated,
        }


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        title=row["title"],
        params=json.loads(row["params"]),
        state=row["state"],
        progress=float(row["progress"]),
        message=row["message"],
        error=row["error"],
        result=None if row["result"] is None else json.loads(row["result"]),
        cancel_requested=bool(row["cancel_requested"]),
        attempts=int(row["attempts"]),
        created=float(row["created"]),
        updated=float(row["updated"]),
    )


class JobStore:
    """The jobs of one output root, in ``<root>/jobs.sqlite``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    # -------------------------------------------------------------------------- writing
    def create(self, kind: str, params: dict[str, Any], *, title: str) -> JobRecord:
        now = time.time()
        job_id = uuid.uuid4().hex[:16]
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, title, params, state, created, updated) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (job_id, kind, title, json.dumps(params, sort_keys=True), now, now),
            )
        return self.get(job_id)

    def _update(self, job_id: str, where: str = "", **fields: Any) -> bool:
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [json.dumps(v) if k == "result" and v is not None else v for k, v in fields.items()]
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE jobs SET {sets}, updated = ? WHERE id = ? {where}", (*values, time.time(), job_id)
            )
            return cur.rowcount == 1

    def start(self, job_id: str) -> bool:
        """queued -> running (False when the job is no longer queued, e.g. cancelled)."""
        with self._connect() as db:
            cur = db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated = ? "
                "WHERE id = ? AND state = 'queued'",
                (time.time(), job_id),
            )
            return cur.rowcount == 1

    def progress(self, job_id: str, fraction: float, message: str) -> None:
        self._update(job_id, "AND state = 'running'", progress=min(max(float(fraction), 0.0), 1.0), message=message)

    def finish(self, job_id: str, result: dict[str, Any]) -> None:
        self._update(job_id, state="done", progress=1.0, message="done", result=result, error=None)

    def fail(self, job_id: str, error: str, *, result: dict[str, Any] | None = None) -> None:
        self._update(job_id, state="failed", error=error, message="failed", result=result)

    def cancelled(self, job_id: str, *, result: dict[str, Any] | None = None) -> None:
        self._update(job_id, state="cancelled", message="cancelled", result=result)

    def request_cancel(self, job_id: str) -> JobRecord:
        """A queued job is cancelled at once; a running one is asked to stop at its next
        progress step. Finished jobs are left as they are."""
        with self._connect() as db:
            now = time.time()
            db.execute(
                "UPDATE jobs SET state = 'cancelled', message = 'cancelled', cancel_requested = 1, updated = ? "
                "WHERE id = ? AND state = 'queued'",
                (now, job_id),
            )
            db.execute(
                "UPDATE jobs SET cancel_requested = 1, message = 'cancelling', updated = ? "
                "WHERE id = ? AND state = 'running'",
                (now, job_id),
            )
        return self.get(job_id)

    def requeue(self, job_id: str, message: str) -> None:
        self._update(job_id, state="queued", message=message)

    # -------------------------------------------------------------------------- reading
    def get(self, job_id: str) -> JobRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return _record(row)

    def cancel_requested(self, job_id: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def list(
        self, *, kind: str | None = None, states: Iterable[str] | None = None, limit: int = 200
    ) -> builtins.list[JobRecord]:
        sql = "SELECT * FROM jobs"
        args: builtins.list[Any] = []
        where: builtins.list[str] = []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if states is not None:
            states = builtins.list(states)
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(int(limit))
        with self._connect() as db:
            return [_record(r) for r in db.execute(sql, args).fetchall()]

    def count(self, states: Iterable[str]) -> int:
        states = builtins.list(states)
        with self._connect() as db:
            row = db.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(states))})", states)
            return int(row.fetchone()[0])

    # -------------------------------------------------------------------------- restart
    def recover(self, resumable: Iterable[str]) -> tuple[builtins.list[str], builtins.list[str]]:
        """Settle the jobs a stopped server left queued or running: a running job of a
        resumable kind goes back to the queue (it continues from what it had committed), any
        other running job is marked failed with the reason. Queued jobs stay queued.
        Returns ``(requeued ids, failed ids)``."""
        resumable = set(resumable)
        requeued: builtins.list[str] = []
        failed: builtins.list[str] = []
        for job in self.list(states=["running"], limit=10_000):
            if job.cancel_requested:
                self.cancelled(job.id)
                failed.append(job.id)
            elif job.kind in resumable:
                self.requeue(job.id, "resumed after a server restart")
                requeued.append(job.id)
            else:
                self.fail(job.id, "the server stopped while this job ran; start it again")
                failed.append(job.id)
        return requeued, failed

    def queued(self) -> builtins.list[JobRecord]:
        return sorted(self.list(states=["queued"], limit=10_000), key=lambda j: j.created)
