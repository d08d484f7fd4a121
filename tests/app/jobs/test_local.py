"""The local engine: a stopped job resumes with nothing duplicated or lost, the five
tasks on bundled and user models, and seeds per sample."""

from __future__ import annotations

import pytest
import torch

from seethrough._core.errors import ConfigError
from seethrough.app.jobs import JobSpec, Manifest, decode_strings, load_outputs, run_job

N = 40  # the user fixture's samples


class _Stop(Exception):
    pass


def test_a_stopped_job_resumes_from_its_last_shard(tmp_path, user, spec_kwargs):
    root, _ = user
    kw = spec_kwargs(root, settings={"method": "smoothgrad", "n_samples": 3})
    whole = run_job(JobSpec(**kw, out=str(tmp_path / "whole")))

    def stop_after_three(done, total, rec):
        if done == 3:
            raise _Stop

    with pytest.raises(_Stop):
        run_job(JobSpec(**kw, out=str(tmp_path / "part")), progress=stop_after_three)
    # a half-written shard the stop left behind (a temporary file) is not listed and is cleaned up
    (tmp_path / "part" / ".shard-00003.safetensors.tmp999").write_bytes(b"partial")
    part = Manifest.load(tmp_path / "part")
    assert sorted(part.shards) == [0, 1, 2] and not part.complete
    with pytest.raises(Exception, match="unfinished"):
        load_outputs(tmp_path / "part")
    seen = []
    resumed = run_job(JobSpec(**kw, out=str(tmp_path / "part")), progress=lambda d, t, r: seen.append(r.index))
    assert seen == [3, 4, 5, 6]  # only the missing shards were computed
    assert resumed.complete and not list((tmp_path / "part").glob(".*tmp*"))
    for i in range(whole.n_shards):  # byte for byte the uninterrupted run's shards
        assert resumed.shards[i].sha256 == whole.shards[i].sha256
    out = load_outputs(tmp_path / "part")
    assert out["index"].tolist() == list(range(N))


def test_sampled_methods_depend_on_the_seed_not_the_shards(tmp_path, user, spec_kwargs):
    root, _ = user
    kw = spec_kwargs(root, n=12, settings={"method": "smoothgrad", "n_samples": 3})
    a = load_outputs(run_job(JobSpec(**kw, out=str(tmp_path / "a"))).out)
    kw_b = dict(kw, shard_size=5)
    b = load_outputs(run_job(JobSpec(**kw_b, out=str(tmp_path / "b"))).out)
    c = load_outputs(run_job(JobSpec(**kw, seed=1, out=str(tmp_path / "c"))).out)
    assert torch.equal(a["attributions"], b["attributions"])  # other shards, same seeds per sample
    assert not torch.equal(a["attributions"], c["attributions"])  # another job seed


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, settings, keys",
    [
        ("explain", {"method": "gradcam"}, {"attributions", "target", "index"}),
        ("atlas", {}, {"features.0.max", "features.0.argmax", "index"}),
        ("trust", {"method": "saliency"}, {"deletion", "insertion", "index"}),
        ("metrics", {}, {"features", "index"}),
    ],
)
def test_tasks_on_the_bundled_model(tmp_path, task, settings, keys):
    m = run_job(
        JobSpec(task=task, model="shapes-cnn", data="shapes", n=6, shard_size=4, out=str(tmp_path), settings=settings)
    )
    out = load_outputs(m.out)
    assert keys <= set(out) and out["index"].tolist() == list(range(6))
    assert all(torch.isfinite(v.double()).all() for v in out.values())
    if task == "metrics":
        assert out["features"].shape == (6, 4) and out["features"].dtype == torch.float64
    if task == "trust":  # deletion falls more than insertion rises for a faithful map on average: both in [0, 1]
        assert ((out["deletion"] >= 0) & (out["deletion"] <= 1)).all()


@pytest.mark.slow
def test_rejection_sampling_of_peptides(tmp_path):
    kw = dict(task="sample", model="peptide-wae", n=600, settings={"conditions": ["charge>=3"]})
    a = load_outputs(run_job(JobSpec(**kw, shard_size=200, out=str(tmp_path / "a"))).out)
    b = load_outputs(run_job(JobSpec(**kw, shard_size=300, out=str(tmp_path / "b"))).out)
    assert torch.equal(a["index"], b["index"]) and torch.equal(a["z"], b["z"])  # per-candidate streams
    assert 0 < a["index"].numel() < 600
    seqs = decode_strings(a["sequence"])
    assert len(seqs) == a["index"].numel() and all(s and s.isalpha() and s.isupper() for s in seqs)


def test_local_engine_refuses_ray_settings(tmp_path, user, spec_kwargs):
    root, _ = user
    with pytest.raises(ConfigError, match="Ray settings"):
        run_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"))), workers=2)
    with pytest.raises(ConfigError, match="Did you mean 'ray'"):
        run_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"))), engine="rya")
