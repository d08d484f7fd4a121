"""The Ray engine on a local cluster this module starts and stops: the same bytes as the
local engine, a killed worker that the job survives, and a worker-side failure named on the
driver."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from seethrough.app.jobs import JobFailed, JobSpec, load_outputs, run_job

ray = pytest.importorskip("ray", reason="the Ray engine's tests need ray[data] (pip install 'seethrough[ray]')")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.parametrize(
    "settings",
    [{"method": "integrated_gradients", "steps": 8}, {"method": "saliency"}, {"method": "smoothgrad", "n_samples": 3}],
)
def test_ray_and_local_write_the_same_bytes(cluster, tmp_path, user, spec_kwargs, settings):
    root, _ = user
    kw = spec_kwargs(root, settings=settings)
    local = run_job(JobSpec(**kw, out=str(tmp_path / "local")))
    on_ray = run_job(JobSpec(**kw, out=str(tmp_path / "ray")), engine="ray", workers=2)
    assert on_ray.complete and on_ray.engine == "ray"
    assert {i: r.sha256 for i, r in on_ray.shards.items()} == {i: r.sha256 for i, r in local.shards.items()}
    assert {r.worker for r in on_ray.shards.values()}.isdisjoint({r.worker for r in local.shards.values()})


def test_a_killed_worker_loses_no_shard(cluster, tmp_path, user, spec_kwargs):
    root, _ = user
    kw = spec_kwargs(root, shard_size=2, settings={"method": "integrated_gradients", "steps": 32})
    killed: list[int] = []

    def kill_the_first_worker(done, total, rec):
        if not killed:
            pid = int(rec.worker.rsplit(":", 1)[1])  # a Ray actor process of the cluster this test started
            assert pid != os.getpid()
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    m = run_job(JobSpec(**kw, out=str(tmp_path / "ray")), engine="ray", workers=2, progress=kill_the_first_worker)
    assert killed and m.complete and sorted(m.shards) == list(range(20))
    files = sorted(p.name for p in (tmp_path / "ray").glob("shard-*.safetensors"))
    assert files == [f"shard-{i:05d}.safetensors" for i in range(20)]  # each shard once, none lost
    local = run_job(JobSpec(**kw, out=str(tmp_path / "local")))
    assert {i: r.sha256 for i, r in m.shards.items()} == {i: r.sha256 for i, r in local.shards.items()}
    out = load_outputs(tmp_path / "ray")
    assert out["index"].tolist() == list(range(40)) and torch.isfinite(out["attributions"]).all()


def test_a_worker_side_failure_is_named_on_the_driver(cluster, tmp_path, user, spec_kwargs):
    root, _ = user
    # the driver plans the job without loading the model; the workers cannot read the weights
    kw = spec_kwargs(root, weights=str(tmp_path / "not-on-shared-storage.safetensors"))
    with pytest.raises(JobFailed, match=r"a Ray worker failed .*ConfigError: weights file .* does not exist"):
        run_job(JobSpec(**kw, out=str(tmp_path / "o")), engine="ray", workers=1)


def test_connecting_elsewhere_while_initialised_is_refused(cluster, tmp_path, user, spec_kwargs):
    from seethrough._core.errors import ConfigError

    root, _ = user
    with pytest.raises(ConfigError, match="already initialised"):
        run_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"))), engine="ray", address="ray://10.0.0.1:10001")
