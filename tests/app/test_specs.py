"""The app layer's model and data specs: one vocabulary for every command."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from seethrough import ConfigError, InputError
from seethrough.app.data import BUNDLED_DATA, DataSpec, open_source
from seethrough.app.models import ModelSpec
from seethrough.app.specs import add_data_arguments, add_model_arguments, data_spec, model_spec
from seethrough.testing import TinyCNN, seeded


def _folder(tmp_path, n=3, size=20):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size + 3, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_model_spec_bundled_and_factory(tmp_path):
    bundled = ModelSpec("shapes-cnn")
    assert bundled.bundled and bundled.input_shape() == (3, 64, 64)
    assert bundled.default_layer == bundled.info.default_cam_layer and bundled.classes
    model = seeded(TinyCNN)
    w = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(w))
    own = ModelSpec("seethrough.testing.models:TinyCNN", weights=str(w), size=16)
    assert not own.bundled and own.info is None and own.default_layer is None
    assert own.input_shape() == (3, 16, 16)
    loaded = own.load()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ConfigError, match="--size"):
        ModelSpec("seethrough.testing.models:TinyCNN").require_input_shape("featurevis")


def test_data_spec_bundled_names_are_held_out_and_bring_ground_truth():
    d = DataSpec("shapes", n=4).load()
    assert d.images.shape == (4, 3, 64, 64) and d.labels.shape == (4,) and d.masks.shape == (4, 1, 64, 64)
    s = DataSpec("shapes-shortcut", n=4).load()
    assert not torch.equal(s.masks, d.masks)  # the masks are the planted marks, not the objects
    assert "10000" in d.note  # held out: no bundled model was trained on seed 10000
    assert set(BUNDLED_DATA) >= {"shapes", "shapes-shortcut", "stripes", "mnist"}
    with pytest.raises(ConfigError, match="brings its own labels"):
        DataSpec("shapes", labels="y.npy")


def test_data_spec_folder_files_and_tensor_with_labels_and_masks(tmp_path):
    folder = _folder(tmp_path)
    d = DataSpec(str(folder), size=16, mean=(0.5,), std=(0.25,)).load()
    assert d.images.shape == (3, 3, 16, 16) and d.labels is None
    files = tuple(str(p) for p in sorted(folder.iterdir()))[:2]
    assert DataSpec(files, size=16).load().images.shape == (2, 3, 16, 16)
    np.save(tmp_path / "x.npy", np.zeros((5, 3, 8, 8), np.float32))
    np.save(tmp_path / "y.npy", np.arange(5))
    np.save(tmp_path / "m.npy", np.ones((5, 8, 8), bool))
    t = DataSpec(str(tmp_path / "x.npy"), n=4, labels=str(tmp_path / "y.npy"), masks=str(tmp_path / "m.npy")).load()
    assert t.images.shape == (4, 3, 8, 8) and t.labels.tolist() == [0, 1, 2, 3] and t.masks.shape == (4, 8, 8)
    np.save(tmp_path / "few.npy", np.arange(2))
    with pytest.raises(InputError, match="2 labels for 5 inputs"):
        DataSpec(str(tmp_path / "x.npy"), labels=str(tmp_path / "few.npy")).load()
    with pytest.raises(InputError, match="does not exist"):
        DataSpec(str(tmp_path / "missing.npy")).load()
    with pytest.raises(InputError, match="unknown data 'shapez'"):
        DataSpec("shapez").load()


def test_open_source_reads_a_folder_by_position(tmp_path):
    folder = _folder(tmp_path, n=4)
    src = open_source(folder, size=8, n=3)
    assert len(src) == 3 and src.get([2]).shape == (1, 3, 8, 8)


def test_arguments_round_trip_into_specs(tmp_path):
    p = argparse.ArgumentParser()
    add_model_arguments(p)
    add_data_arguments(p, default="shapes", masks=True)
    args = p.parse_args(["--model", "shapes-cnn", "--n", "3", "--data-seed", "2"])
    ms = model_spec(args)
    ds = data_spec(args, ms)
    assert ms.name == "shapes-cnn" and ds.source == "shapes" and ds.n == 3 and ds.generated_seed == 2 and ds.size == 64
    assert ds.load().images.shape == (3, 3, 64, 64)
