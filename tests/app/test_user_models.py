"""Every command on a user's own model and data: a ``module:factory`` with safetensors
weights (not a bundled model) and the user's files (a folder of images, tensor files for
inputs, labels and masks), end to end through the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from seethrough.app.cli import main
from seethrough.testing import TinyCNN, seeded

FACTORY = "seethrough.testing.models:TinyCNN"
N = 12


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    model = seeded(TinyCNN)
    save_file(model.state_dict(), str(root / "w.safetensors"))
    rng = np.random.default_rng(0)
    for name in ("photos", "concept_a", "concept_b", "random"):
        (root / name).mkdir()
        for i in range(N if name == "photos" else 4 * N):
            img = rng.integers(0, 255, (18, 20, 3), dtype=np.uint8)
            if name == "concept_a":
                img[::2] = 255  # stripes
            Image.fromarray(img).save(root / name / f"{i:02d}.png")
    x = torch.rand(N, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    np.save(root / "x.npy", x.numpy())
    np.save(root / "y.npy", np.arange(N) % 5)
    masks = torch.zeros(N, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 4:12] = True
    np.save(root / "masks.npy", masks.numpy())
    save_file({"square": masks.clone(), "border": (~masks).clone()}, str(root / "concept_masks.safetensors"))
    return root, model


def _model(root):
    return ["--model", FACTORY, "--weights", str(root / "w.safetensors"), "--size", "16"]


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.mark.slow
def test_explain_on_a_folder(user, capsys, tmp_path):
    root, model = user
    maps = tmp_path / "m.safetensors"
    _run(
        [
            "explain",
            *_model(root),
            "--data",
            str(root / "photos"),
            "--n",
            "3",
            "--methods",
            "saliency",
            "--target",
            "1",
            "--maps",
            str(maps),
        ],
        capsys,
    )
    assert load_file(str(maps))["saliency"].shape == (3, 3, 16, 16)


@pytest.mark.slow
def test_trust_on_a_tensor_file_with_masks(user, capsys, tmp_path):
    root, _ = user
    out = tmp_path / "trust.html"
    text = _run(
        [
            "trust",
            *_model(root),
            "--data",
            str(root / "x.npy"),
            "--masks",
            str(root / "masks.npy"),
            "--n",
            "4",
            "--methods",
            "saliency",
            "--families",
            "localization,complexity",
            "--no-randomization",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert out.is_file() and "pointing_game" in out.read_text() and "masks from" in text


@pytest.mark.slow
def test_sanity_on_a_folder(user, capsys):
    root, _ = user
    text = _run(["sanity", *_model(root), "--data", str(root / "photos"), "--n", "3", "--methods", "saliency"], capsys)
    assert "saliency" in text and ("PASS" in text or "FAIL" in text)


@pytest.mark.slow
def test_featurevis_on_a_factory_model(user, capsys, tmp_path):
    root, _ = user
    out = tmp_path / "fv"
    _run(
        [
            "featurevis",
            "--model",
            FACTORY,
            "--weights",
            str(root / "w.safetensors"),
            "--size",
            "16",
            "--layer",
            "features.3",
            "--channels",
            "0,1",
            "--steps",
            "4",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert len(list(out.glob("*.png"))) >= 2


@pytest.mark.slow
def test_atlas_on_a_folder(user, capsys, tmp_path):
    root, _ = user
    out = tmp_path / "atlas"
    _run(
        [
            "atlas",
            *_model(root),
            "--data",
            str(root / "photos"),
            "--layers",
            "features.3",
            "--top-k",
            "2",
            "--steps",
            "2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert (out / "index.html").is_file()


@pytest.mark.slow
def test_influence_on_a_tensor_file_with_labels(user, capsys, tmp_path):
    root, _ = user
    html = tmp_path / "inf.html"
    text = _run(
        [
            "influence",
            *_model(root),
            "--data",
            str(root / "x.npy"),
            "--labels",
            str(root / "y.npy"),
            "--layer",
            "features.3",
            "--class",
            "1",
            "--steps",
            "4",
            "--html",
            str(html),
        ],
        capsys,
    )
    assert html.is_file() and "labels from" in text


@pytest.mark.slow
def test_tcav_on_concept_folders(user, capsys, tmp_path):
    root, _ = user
    text = _run(
        [
            "tcav",
            *_model(root),
            "--layer",
            "features.3",
            "--inputs",
            str(root / "photos"),
            "--labels",
            str(root / "y.npy"),
            "--classes",
            "1",
            "--concept-dir",
            f"a={root / 'concept_a'}",
            "--concept-dir",
            f"b={root / 'concept_b'}",
            "--random-dir",
            str(root / "random"),
            "--random-runs",
            "2",
            "--n-examples",
            "10",
        ],
        capsys,
    )
    assert "a" in text and "b" in text


@pytest.mark.slow
def test_dissect_on_own_scenes_and_masks(user, capsys, tmp_path):
    root, _ = user
    labels = tmp_path / "labels.json"
    text = _run(
        [
            "dissect",
            *_model(root),
            "--layers",
            "features.3",
            "--scenes",
            str(root / "x.npy"),
            "--concept-masks",
            str(root / "concept_masks.safetensors"),
            "--iou",
            "0.0",
            "--labels-out",
            str(labels),
        ],
        capsys,
    )
    assert "features.3" in text
    got = json.loads(labels.read_text())["features.3"]
    assert got and all(v.split(" ")[0] in ("square", "border") for v in got.values())


def test_dissect_needs_scenes_and_masks_together(user, capsys):
    root, _ = user
    assert main(["dissect", *_model(root), "--layers", "features.3", "--scenes", str(root / "x.npy")]) == 2
    assert "go together" in capsys.readouterr().err
