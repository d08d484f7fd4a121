"""Faults, on a real server process: a client that goes away, and a server killed mid-job."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-faults")]

DATASET = {"task": "explain", "n": 240, "shard_size": 20, "settings": {"method": "integrated_gradients", "steps": 12}}


def _manifest(out: Path, job_id: str) -> dict:
    """The job's manifest, with its shards by index."""
    path = out / "jobs" / job_id / "shards" / "manifest.json"
    m = json.loads(path.read_text()) if path.is_file() else {"shards": []}
    return {**m, "shards": {s["index"]: s for s in m["shards"]}}


def test_killed_server_resumes_the_dataset_pass_and_fails_the_rest(tmp_path, server_factory, job_waiter):
    out = tmp_path / "out"
    server = server_factory(out, "--workers", "2").start()
    try:
        with server.client() as c:
            trust = c.post("/api/jobs", json={"kind": "trust", "params": {"n": 16, "methods": ["saliency", "gradcam"]}})
            data = c.post("/api/jobs", json={"kind": "dataset", "params": DATASET})
            assert trust.status_code == data.status_code == 202, (trust.text, data.text)
            trust_id, data_id = trust.json()["id"], data.json()["id"]
            t0 = time.monotonic()
            while len(_manifest(out, data_id)["shards"]) < 3:
                assert time.monotonic() - t0 < 180, c.get(f"/api/jobs/{data_id}").json()
                time.sleep(0.05)
            assert c.get(f"/api/jobs/{trust_id}").json()["state"] == "running"
        server.kill()  # SIGKILL: no clean-up of any kind
        before = _manifest(out, data_id)["shards"]
        assert 3 <= len(before) < 12
        shard_dir = out / "jobs" / data_id / "shards"
        sums = {k: hashlib.sha256((shard_dir / v["file"]).read_bytes()).hexdigest() for k, v in before.items()}
        assert sums == {k: v["sha256"] for k, v in before.items()}

        server = server_factory(out, "--workers", "2", port=server.port).start()
        with server.client() as c:
            failed = c.get(f"/api/jobs/{trust_id}").json()
            assert failed["state"] == "failed" and "server stopped while this job ran" in failed["error"]
            done = job_waiter(c, data_id, timeout=300)
            assert done["state"] == "done" and done["attempts"] == 2, done
        after = _manifest(out, data_id)["shards"]
        assert len(after) == 12
        for k, v in before.items():  # no finished shard was lost or rewritten
            assert after[k]["sha256"] == v["sha256"] == sums[k]
            assert hashlib.sha256((shard_dir / v["file"]).read_bytes()).hexdigest() == sums[k]
        # and the resumed job's outputs are those of an uninterrupted run
        from seethrough.app.jobs import JobSpec, load_outputs, run_job

        ref = tmp_path / "ref"
        run_job(JobSpec(model="shapes-cnn", data="shapes", out=str(ref), seed=0, **{**DATASET, "settings": {
            **DATASET["settings"], "layer": "features.16"}}))  # fmt: skip
        got, want = load_outputs(shard_dir), load_outputs(ref)
        assert set(got) == set(want)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    finally:
        server.stop()


def test_a_job_survives_its_client_going_away(tmp_path, server_factory, job_waiter):
    server = server_factory(tmp_path / "out").start()
    try:
        with server.client() as c:  # submit, then close the connection at once
            job_id = c.post("/api/jobs", json={"kind": "dataset", "params": {**DATASET, "n": 40}}).json()["id"]
        # a client that gives up in the middle of a request
        with pytest.raises(httpx.TimeoutException):
            httpx.post(server.url + "/api/explain", json={"image": {"index": 0}, "methods": ["occlusion"]},
                       timeout=0.05)  # fmt: skip
        with server.client() as c:
            done = job_waiter(c, job_id, timeout=240)
            assert done["state"] == "done" and done["result"]["summary"]["shards"] == 2
            r = c.post("/api/explain", json={"image": {"index": 0}, "methods": ["saliency"]})
            assert r.status_code == 200  # the server goes on serving
    finally:
        server.stop()
