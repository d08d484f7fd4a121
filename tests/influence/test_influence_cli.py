"""``seethrough influence`` in-process: help, a run on the bundled model with the essence
experiment and an HTML report, a tensor file with labels, and error exits."""

from __future__ import annotations

import re

import pytest
import torch

from seethrough.app.cli import main


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["influence", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--model", "--layer", "--class", "--vs", "--distribution", "--data", "--top", "--essence", "--html"):
        assert opt in out


@pytest.mark.slow
def test_bundled_model_with_essence_and_html(tmp_path, capsys):
    html = tmp_path / "r.html"
    code = main(
        [
            "influence",
            "--model",
            "shapes-cnn",
            "--layer",
            "features.16",
            "--class",
            "triangle",
            "--vs",
            "square",
            "--n",
            "40",
            "--top",
            "2",
            "--essence",
            "1,2",
            "--random-draws",
            "2",
            "--method",
            "saliency",
            "--html",
            str(html),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = captured.out
    assert "ClassDifference(2, 1)" in out and "the 10 instances of 'triangle'" in out
    assert len(re.findall(r"^\s+[+-]\d\s+channel\s+\d+\s+influence", out, re.M)) == 4
    assert "essence of 'triangle'" in out and re.search(r"^\s+all\s+\d\.\d{3}", out, re.M)
    text = html.read_text()
    assert text.count("<img") >= 4 and "Essence" in text and "<script" not in text


@pytest.mark.parametrize("reduce,negative", [("mean", True), ("max", False)])
def test_html_keeps_the_data_description_and_the_negative_note(tmp_path, capsys, reduce, negative):
    # the note on negative influence must neither replace the data description nor, when
    # some influence is negative (no note), reach the report as the text "None"
    html = tmp_path / "r.html"
    code = main(
        [
            "influence",
            "--model",
            "shapes-cnn",
            "--layer",
            "features.6",
            "--class",
            "0",
            "--n",
            "12",
            "--top",
            "2",
            "--reduce",
            reduce,
            "--method",
            "saliency",
            "--html",
            str(html),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = captured.out
    description = "12 synthetic shapes (seed 10000); essence test split: 12 more (seed 20000)"
    assert out.splitlines()[0] == description
    assert bool(re.search(r"^\s+-1\s+channel", out, re.M)) == negative
    assert ("no channel has negative influence" in out) != negative
    text = html.read_text()
    assert f"<p>{description}</p>" in text
    assert "<p>None</p>" not in text and ">None<" not in text
    assert text.count("no channel has negative influence") == (0 if negative else 1)


def test_tensor_file_point_and_path(tmp_path, capsys):
    from safetensors.torch import save_file

    from seethrough.testing import TinyCNN, seeded

    model = seeded(TinyCNN)
    weights, data, labels = tmp_path / "w.safetensors", tmp_path / "x.safetensors", tmp_path / "y.safetensors"
    save_file(model.state_dict(), str(weights))
    g = torch.Generator().manual_seed(0)
    save_file({"x": torch.rand(8, 3, 16, 16, generator=g)}, str(data))
    save_file({"y": torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])}, str(labels))
    base = [
        "influence",
        "--model",
        "seethrough.testing.models:TinyCNN",
        "--weights",
        str(weights),
        "--data",
        str(data),
        "--labels",
        str(labels),
        "--layer",
        "features.3",
        "--class",
        "2",
        "--top",
        "2",
    ]
    assert main(base + ["--distribution", "point", "--index", "6"]) == 0
    out = capsys.readouterr().out
    assert "over point: instance #6 (label 2)" in out
    assert main(base + ["--distribution", "path", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "over path: instance #2 (label 2)" in out  # the first instance of the class


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--class", "hexagon"], ["cannot read --class 'hexagon'", "circle"]),
        (["--class", "7"], ["out of range"]),
        (["--class", "0", "--layer", "features.99"], ["unknown layer", "closest names"]),
        (["--class", "0", "--essence", "1,x"], ["--essence"]),
        (["--class", "0", "--essence", "500"], ["k=500 is larger than the 128 channels"]),
        (["--class", "0", "--top", "129"], ["k=129 is larger than the 128 channels"]),
        (["--class", "0", "--data", "no_such_file.npy"], ["neither 'shapes', 'mnist' nor an existing tensor file"]),
    ],
)
def test_errors_exit_2_with_one_line(extra, words, capsys):
    args = ["influence", "--model", "shapes-cnn", "--layer", "features.16", "--n", "8"]
    if "--layer" in extra:
        args = ["influence", "--model", "shapes-cnn", "--n", "8"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("seethrough: error:")
    for w in words:
        assert w in err


def test_folder_of_images_with_a_factory_model_and_its_input_size(tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    from seethrough.testing import TinyCNN, seeded

    model = seeded(TinyCNN)
    weights, folder, labels = tmp_path / "w.safetensors", tmp_path / "images", tmp_path / "y.safetensors"
    save_file(model.state_dict(), str(weights))
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # larger than the model's input: read at --size
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    save_file({"y": torch.tensor([0, 1, 2, 0, 1, 2])}, str(labels))
    code = main(
        [
            "influence",
            "--model",
            "seethrough.testing.models:TinyCNN",
            "--weights",
            str(weights),
            "--size",
            "16",
            "--data",
            str(folder),
            "--labels",
            str(labels),
            "--layer",
            "features.3",
            "--class",
            "1",
            "--top",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "6 inputs from" in captured.out and "the 2 instances of '1'" in captured.out
