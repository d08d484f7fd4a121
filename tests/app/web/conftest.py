"""The explorer under test: an in-process client, and a real server in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="the web explorer needs the web extra (fastapi, uvicorn)")

from fastapi.testclient import TestClient  # noqa: E402

from seethrough.app.web import ServeConfig, create_app  # noqa: E402

PORT = 8765  # the in-process client's port (nothing listens on it)
#: Where the browser tests leave their screenshots (``reports/`` is not committed).
OUTPUT = Path(os.environ.get("SEETHROUGH_TEST_OUTPUT", Path(__file__).resolve().parents[3] / "reports" / "test-output"))


def client_for(config: ServeConfig, *, start_jobs: bool = True) -> TestClient:
    return TestClient(create_app(config, start_jobs=start_jobs), base_url=f"http://127.0.0.1:{config.port}")


@pytest.fixture
def config(tmp_path) -> ServeConfig:
    return ServeConfig(out=str(tmp_path / "out"), port=PORT)


@pytest.fixture
def client(config):
    with client_for(config) as c:
        yield c


def wait_job(c, job_id: str, timeout: float = 240.0, states=("done", "failed", "cancelled")) -> dict:
    t0 = time.monotonic()
    while True:
        job = c.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """``seethrough serve`` in a subprocess (the command a user runs), on a free port."""

    def __init__(self, out: Path, *args: str, port: int | None = None) -> None:
        self.out, self.args, self.port = Path(out), args, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.out.parent / f"serve-{self.port}.log"

    def start(self, timeout: float = 120.0) -> LiveServer:
        cmd = [sys.executable, "-c", "import sys; from seethrough.app.cli import main; sys.exit(main())"]
        cmd += ["serve", "--out", str(self.out), "--port", str(self.port), *self.args]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise AssertionError(f"serve did not answer in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up runs (the fault tests)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("live") / "out").start()
    yield server
    server.stop()


@pytest.fixture
def make_client():
    """``make_client(config, start_jobs=True)``: an in-process client of a new app."""
    return client_for


@pytest.fixture
def job_waiter():
    """``job_waiter(client, job_id, timeout=240)``: poll until the job has finished."""
    return wait_job


@pytest.fixture
def server_factory():
    """``server_factory(out, *serve_args)``: a :class:`LiveServer` (not yet started)."""
    return LiveServer


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The folder the browser tests leave their screenshots in."""
    d = OUTPUT / "web"
    d.mkdir(parents=True, exist_ok=True)
    return d
