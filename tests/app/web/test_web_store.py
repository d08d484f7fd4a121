"""The SQLite job store and the worker pool: persistence, cancellation, restart recovery."""

from __future__ import annotations

import threading
import time

import pytest

from seethrough._core.errors import ConfigError, InputError
from seethrough.app.web import JOB_KINDS, JobStore
from seethrough.app.web.workers import JobKind, JobRunner, QueueFull


def test_jobs_persist_across_store_instances(tmp_path):
    a = JobStore(tmp_path / "jobs.sqlite")
    job = a.create("trust", {"n": 3, "methods": ["saliency"]}, title="t <b>")
    a.start(job.id)
    a.progress(job.id, 0.5, "half")
    a.finish(job.id, {"files": ["jobs/x/trust.html"], "summary": {"n": 3}})
    b = JobStore(tmp_path / "jobs.sqlite")  # a restarted server
    got = b.get(job.id)
    assert got.state == "done" and got.progress == 1.0 and got.params == {"n": 3, "methods": ["saliency"]}
    assert got.result == {"files": ["jobs/x/trust.html"], "summary": {"n": 3}} and got.attempts == 1
    assert [j.id for j in b.list()] == [job.id]
    with pytest.raises(KeyError):
        b.get("nope")


def test_progress_only_while_running_and_clamped(tmp_path):
    s = JobStore(tmp_path / "j.sqlite")
    job = s.create("k", {}, title="k")
    s.progress(job.id, 0.7, "not yet running")
    assert s.get(job.id).progress == 0.0
    s.start(job.id)
    s.progress(job.id, 3.0, "over")
    assert s.get(job.id).progress == 1.0


def test_cancel_queued_is_immediate_running_is_requested(tmp_path):
    s = JobStore(tmp_path / "j.sqlite")
    q = s.create("k", {}, title="q")
    r = s.create("k", {}, title="r")
    s.start(r.id)
    assert s.request_cancel(q.id).state == "cancelled"
    assert not s.start(q.id)  # a cancelled job never starts
    got = s.request_cancel(r.id)
    assert got.state == "running" and got.cancel_requested and s.cancel_requested(r.id)


def test_recover_requeues_resumable_and_fails_the_rest(tmp_path):
    s = JobStore(tmp_path / "j.sqlite")
    resumable = s.create("dataset", {}, title="d")
    other = s.create("trust", {}, title="t")
    done = s.create("trust", {}, title="done")
    waiting = s.create("trust", {}, title="waiting")
    for j in (resumable, other, done):
        s.start(j.id)
    s.finish(done.id, {"files": []})
    requeued, failed = JobStore(s.path).recover(["dataset"])
    assert requeued == [resumable.id] and failed == [other.id]
    assert s.get(resumable.id).state == "queued"
    assert s.get(other.id).state == "failed" and "server stopped" in s.get(other.id).error
    assert s.get(done.id).state == "done" and s.get(waiting.id).state == "queued"


class _Ctx:
    def __init__(self, root):
        self.root = root

    def job_dir(self, job_id):
        d = self.root / job_id
        d.mkdir(parents=True, exist_ok=True)
        return d


def _kind(monkeypatch, name, run, check=lambda ctx, p: p):
    monkeypatch.setitem(JOB_KINDS, name, JobKind(name, run, False, lambda p: name, check))


def _wait(store, job_id, timeout=20.0):
    t0 = time.monotonic()
    while store.get(job_id).state not in ("done", "failed", "cancelled"):
        assert time.monotonic() - t0 < timeout, store.get(job_id)
        time.sleep(0.02)
    return store.get(job_id)


def test_runner_states_errors_and_cancel(tmp_path, monkeypatch):
    store = JobStore(tmp_path / "j.sqlite")
    release = threading.Event()

    def ok(ctx, params, h):
        h.progress(0.5, "half")
        return {"files": [], "summary": {"x": params["x"]}}

    def bad_input(ctx, params, h):
        raise InputError("the data holds no images")

    def bug(ctx, params, h):
        raise RuntimeError("boom")

    def slow(ctx, params, h):
        for i in range(1000):
            h.progress(i / 1000, f"step {i}")
            release.wait(0.01)
        return {}

    def check(ctx, params):
        if "x" not in params:
            raise ConfigError("give x")
        return params

    _kind(monkeypatch, "t-ok", ok, check)
    _kind(monkeypatch, "t-bad", bad_input)
    _kind(monkeypatch, "t-bug", bug)
    _kind(monkeypatch, "t-slow", slow)
    runner = JobRunner(_Ctx(tmp_path), store, workers=2, max_queued=50)
    try:
        with pytest.raises(ConfigError, match="give x"):
            runner.submit("t-ok", {})
        with pytest.raises(ConfigError, match="Did you mean 't-ok'"):
            runner.submit("t-okk", {"x": 1})
        assert store.list() == []  # refused before anything was stored
        a = runner.submit("t-ok", {"x": 3})
        b = runner.submit("t-bad", {})
        c = runner.submit("t-bug", {})
        d = runner.submit("t-slow", {})
        assert _wait(store, a.id).result == {"files": [], "summary": {"x": 3}}
        assert _wait(store, b.id).error == "InputError: the data holds no images"
        assert _wait(store, c.id).error == "RuntimeError: boom"
        while store.get(d.id).progress == 0:
            time.sleep(0.01)
        store.request_cancel(d.id)
        got = _wait(store, d.id)
        assert got.state == "cancelled" and got.progress < 1
    finally:
        release.set()
        runner.shutdown(wait=True)


def test_queue_is_bounded(tmp_path, monkeypatch):
    store = JobStore(tmp_path / "j.sqlite")
    gate = threading.Event()
    _kind(monkeypatch, "t-block", lambda ctx, p, h: gate.wait(20) and {})
    runner = JobRunner(_Ctx(tmp_path), store, workers=1, max_queued=2)
    try:
        runner.submit("t-block", {})
        while store.count(["running"]) == 0:
            time.sleep(0.01)
        runner.submit("t-block", {})
        runner.submit("t-block", {})
        with pytest.raises(QueueFull, match="2 jobs are already waiting"):
            runner.submit("t-block", {})
    finally:
        gate.set()
        runner.shutdown(wait=True)
