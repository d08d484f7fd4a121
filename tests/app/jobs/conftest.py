"""A user's model (a factory and a safetensors weights file) and tensor-shard data, shared by the job tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from seethrough.testing import TinyCNN, seeded

FACTORY = "seethrough.testing.models:TinyCNN"
N = 40


@pytest.fixture(scope="session")
def user(tmp_path_factory):
    """``(root, model)``: weights in root/w.safetensors, 40 inputs in three tensor shards
    under root/shards (two safetensors files and one .npy)."""
    root = tmp_path_factory.mktemp("jobs-user")
    model = seeded(TinyCNN)
    save_file(model.state_dict(), str(root / "w.safetensors"))
    x = torch.rand(N, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    (root / "shards").mkdir()
    save_file({"x": x[:15].clone()}, str(root / "shards" / "a.safetensors"))
    save_file({"x": x[15:30].clone()}, str(root / "shards" / "b.safetensors"))
    np.save(root / "shards" / "c.npy", x[30:].numpy())
    torch.save(x, root / "x.pt")
    return root, model


@pytest.fixture(scope="session")
def spec_kwargs():
    """``spec_kwargs(root, **changes)``: the JobSpec arguments of a job on the user's model and shards."""
    return _spec_kwargs


def _spec_kwargs(root, **kw):
    base = dict(
        task="explain",
        model=FACTORY,
        weights=str(root / "w.safetensors"),
        size=16,
        data=str(root / "shards"),
        settings={"method": "integrated_gradients", "steps": 8},
        shard_size=6,
    )
    base.update(kw)
    return base
