"""Shared fixtures of the influence tests: a tiny CNN and twelve labelled inputs."""

from __future__ import annotations

import pytest
import torch

from seethrough.testing import TinyCNN, seeded


@pytest.fixture(scope="module")
def model():
    return seeded(TinyCNN)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(12, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 3] * 3)
