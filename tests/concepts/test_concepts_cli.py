"""``seethrough tcav`` and ``seethrough dissect``, in-process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seethrough import zoo
from seethrough.app.cli import main
from seethrough.data.concepts import concept_images, random_images

needs_stripes = pytest.mark.skipif(
    not (zoo.WEIGHTS_DIR / "stripes-cnn.safetensors").is_file() or "stripes-cnn" not in zoo.available(),
    reason="stripes-cnn weights not trained (scripts/train_concepts.py)",
)


@pytest.mark.parametrize("cmd", ["tcav", "dissect"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert f"usage: seethrough {cmd}" in capsys.readouterr().out


def test_dissect_factory_model(tmp_path, capsys):
    html = tmp_path / "d.html"
    code = main(
        [
            "dissect",
            "--model",
            "seethrough.testing.models:TinyCNN",
            "--size",
            "32",
            "--layers",
            "features.1,features.4",
            "--n",
            "16",
            "--top",
            "2",
            "--html",
            str(html),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "layer 'features.1'" in out.out and "layer 'features.4'" in out.out
    assert "units interpretable" in out.out
    text = html.read_text()
    assert "<table" in text and "features.4" in text and "data:image/png;base64," in text


def _png_folder(folder, x):
    folder.mkdir()
    for i in range(x.shape[0]):
        Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_tcav_factory_model_with_inputs_and_concept_folder(tmp_path, capsys):
    inputs = random_images(6, seed=0, size=32)
    np.save(tmp_path / "x.npy", inputs.numpy())
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 0, 1, 2]))
    folder = _png_folder(tmp_path / "checks", concept_images("checkerboard", 30, seed=1, size=32))
    code = main(
        [
            "tcav",
            "--model",
            "seethrough.testing.models:TinyCNN",
            "--size",
            "32",
            "--layer",
            "features.3",
            "--inputs",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
            "--classes",
            "0,2",
            "--concepts",
            "red",
            "--concept-dir",
            f"checks={folder}",
            "--random-runs",
            "3",
            "--n-examples",
            "10",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "checks" in out.out and "red" in out.out and "Bonferroni" in out.out


@needs_stripes
def test_tcav_bundled_model_with_null_check_and_html(tmp_path, capsys):
    html = tmp_path / "t.html"
    code = main(
        [
            "tcav",
            "--model",
            "stripes-cnn",
            "--layer",
            "features.13",
            "--concepts",
            "stripes,red",
            "--n-inputs",
            "20",
            "--random-runs",
            "3",
            "--n-examples",
            "10",
            "--null-check",
            "3",
            "--html",
            str(html),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "1 (striped)" in out.out and "null check: " in out.out
    text = html.read_text()
    assert "TCAV score" in text and "Null check" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tcav", "--model", "shapes-cnn", "--layer", "features.13", "--concept-dir", "oops"], "NAME=FOLDER"),
        (
            ["tcav", "--model", "shapes-cnn", "--layer", "features.13", "--concepts", "plaid", "--n-inputs", "8"],
            "not a generated concept",
        ),
        (
            ["tcav", "--model", "shapes-cnn", "--layer", "features.99", "--concepts", "red", "--n-inputs", "8"],
            "unknown layer",
        ),
        (
            [
                "tcav",
                "--model",
                "shapes-cnn",
                "--layer",
                "features.13",
                "--concepts",
                "red",
                "--n-inputs",
                "2",
                "--classes",
                "3",
                "--random-runs",
                "2",
                "--n-examples",
                "10",
            ],
            "class 3 has no inputs",
        ),
        (["tcav", "--model", "shapes-cnn", "--layer", "features.13"], "give --concepts"),
        (
            ["tcav", "--model", "seethrough.testing.models:TinyCNN", "--layer", "features.3", "--concepts", "red"],
            "--size",
        ),
        (
            ["dissect", "--model", "shapes-cnn", "--layers", "classifier", "--n", "2"],
            "needs \\(units, height, width\\)",
        ),
        (["dissect", "--model", "shapes-cnn", "--layers", "features.2", "--n", "0"], "--n must be"),
        (["dissect", "--model", "shapes-cnn", "--layers", "features.2", "--n", "2", "--iou", "3"], "iou_threshold"),
    ],
)
def test_errors_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("seethrough: error:")
    assert pytest.importorskip("re").search(message, err), err


def test_labels_tensor_file_is_read(tmp_path, capsys):
    torch.save(torch.tensor([1, 1, 1]), tmp_path / "y.pt")
    np.save(tmp_path / "x.npy", random_images(3, seed=0, size=32).numpy())
    code = main(
        [
            "tcav",
            "--model",
            "seethrough.testing.models:TinyCNN",
            "--size",
            "32",
            "--layer",
            "features.3",
            "--inputs",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.pt"),
            "--classes",
            "0",
            "--concepts",
            "red",
            "--random-runs",
            "2",
            "--n-examples",
            "10",
        ]
    )
    assert code == 2
    assert "class 0 has no inputs" in capsys.readouterr().err


@pytest.mark.slow
def test_dissection_labels_reach_the_atlas(tmp_path):
    import json

    from seethrough.app.cli import main

    labels = tmp_path / "labels.json"
    assert (
        main(["dissect", "--model", "shapes-cnn", "--layers", "features.16", "--n", "40", "--labels-out", str(labels)])
        == 0
    )
    written = json.loads(labels.read_text())
    assert written["features.16"], "no interpretable unit at features.16"
    unit, text = next(iter(written["features.16"].items()))
    out = tmp_path / "atlas"
    assert (
        main(
            [
                "atlas",
                "--model",
                "shapes-cnn",
                "--data",
                "shapes",
                "--n",
                "40",
                "--layers",
                "features.16",
                "--steps",
                "0",
                "--top-k",
                "3",
                "--labels",
                str(labels),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    pages = "".join(p.read_text() for p in out.rglob("*.html"))
    assert text.split(" (IoU")[0] in pages and "IoU" in pages


def test_tcav_inputs_folder_and_random_tensor_file(tmp_path, capsys):
    # the user's own data: class inputs as a folder of images, random images as a tensor file
    inputs = _png_folder(tmp_path / "inputs", random_images(4, seed=3, size=32))
    np.save(tmp_path / "random.npy", random_images(60, seed=4, size=32).numpy())
    code = main(
        [
            "tcav",
            "--model",
            "seethrough.testing.models:TinyCNN",
            "--size",
            "32",
            "--layer",
            "features.3",
            "--inputs",
            str(inputs),
            "--classes",
            "1",
            "--concepts",
            "dots",
            "--random-dir",
            str(tmp_path / "random.npy"),
            "--random-runs",
            "3",
            "--n-examples",
            "10",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "dots" in out.out and "Bonferroni" in out.out
    np.save(tmp_path / "few.npy", random_images(20, seed=4, size=32).numpy())
    assert (
        main(
            [
                "tcav",
                "--model",
                "seethrough.testing.models:TinyCNN",
                "--size",
                "32",
                "--layer",
                "features.3",
                "--inputs",
                str(inputs),
                "--classes",
                "1",
                "--concepts",
                "dots",
                "--random-dir",
                str(tmp_path / "few.npy"),
                "--random-runs",
                "3",
                "--n-examples",
                "10",
            ]
        )
        == 2
    )
    assert "needs 60" in capsys.readouterr().err
