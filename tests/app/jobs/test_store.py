"""The output directory: shards written atomically, the manifest, another job's directory,
and reading the outputs back."""

from __future__ import annotations

import json

import pytest
import torch

from seethrough._core.errors import ConfigError, InputError
from seethrough.app.jobs import JobSpec, Manifest, load_outputs, run_job
from seethrough.app.jobs.store import shard_bytes

N = 40  # the user fixture's samples


def test_shards_cover_every_sample_once_in_order(tmp_path, user, spec_kwargs):
    root, model = user
    m = run_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"))))
    assert m.complete and m.n_items == N and m.n_shards == 7  # 40 in shards of 6
    files = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert files == ["manifest.json"] + [f"shard-{i:05d}.safetensors" for i in range(7)]
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["complete"] and [s["start"] for s in manifest["shards"]] == list(range(0, N, 6))
    out = load_outputs(tmp_path / "o")
    assert out["index"].tolist() == list(range(N))
    # the same maps as the method run directly on all 40 inputs at once
    from seethrough import IntegratedGradients

    x = torch.cat([t for t in _inputs(root)])
    direct = IntegratedGradients(model, steps=8).attribute(x)
    assert torch.allclose(out["attributions"], direct.attributions, atol=1e-6, rtol=1e-5)
    assert torch.equal(out["target"], direct.target_indices.reshape(-1).long())


def _inputs(root):
    import numpy as np
    from safetensors.torch import load_file

    yield load_file(str(root / "shards" / "a.safetensors"))["x"]
    yield load_file(str(root / "shards" / "b.safetensors"))["x"]
    yield torch.from_numpy(np.load(root / "shards" / "c.npy"))


def test_another_jobs_directory_is_refused(tmp_path, user, spec_kwargs):
    root, _ = user
    run_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"), n=6)))
    other = spec_kwargs(root, out=str(tmp_path / "o"), n=6, settings={"method": "saliency"})
    with pytest.raises(ConfigError, match="manifest of another job"):
        run_job(JobSpec(**other))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty"):
        run_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "full"), n=6)))


def test_a_listed_shard_changed_by_hand_is_found(tmp_path, user, spec_kwargs):
    root, _ = user
    run_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"), n=12)))
    p = tmp_path / "o" / "shard-00001.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256"):
        load_outputs(tmp_path / "o")
    p.write_bytes(b"short")
    with pytest.raises(InputError, match="missing or has the wrong size"):
        run_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"), n=12)))


def test_shard_bytes_are_deterministic_and_checked():
    t = {"index": torch.arange(3), "a": torch.ones(3, 2), "b": torch.zeros(3)}
    first = shard_bytes(t, shard=0, start=0, stop=3)
    # the same bytes every time (a resumed or retried shard must equal the first one)
    assert all(shard_bytes(dict(reversed(t.items())), shard=0, start=0, stop=3) == first for _ in range(20))
    with pytest.raises(ValueError, match="dimension 0"):
        shard_bytes({"index": torch.arange(3), "a": torch.ones(2)}, shard=0, start=0, stop=3)
    with pytest.raises(ValueError, match="'index'"):
        shard_bytes({"a": torch.ones(2)}, shard=0, start=0, stop=2)


def test_not_a_job_directory(tmp_path):
    with pytest.raises(InputError, match="no job manifest"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        Manifest.load(tmp_path)
