"""``seethrough atlas`` and ``seethrough examples`` in-process: builds, resumes, tables
and the one-line errors (exit status 2)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from seethrough.app.cli import main
from seethrough.testing import TinyCNN, seeded


@pytest.mark.parametrize("cmd", ["atlas", "examples"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "--top-k" in capsys.readouterr().out


@pytest.fixture
def factory(tmp_path):
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file(seeded(TinyCNN).state_dict(), str(weights))
    x = torch.rand(20, 3, 16, 16, generator=torch.Generator().manual_seed(0)).numpy()
    np.save(tmp_path / "x.npy", x)
    return [
        "--model",
        "seethrough.testing.models:TinyCNN",
        "--weights",
        str(weights),
        "--data",
        str(tmp_path / "x.npy"),
    ]


def test_atlas_builds_and_resumes(tmp_path, factory, capsys):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"features.3": {"4": "stripes (IoU 0.31)"}}))
    out = tmp_path / "site"
    args = ["atlas", *factory, "--steps", "0", "--top-k", "2", "--labels", str(labels), "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    assert "Atlas of 20 units in 2 layers" in capsys.readouterr().out
    assert "stripes (IoU 0.31)" in (out / "layers/features.3/u4.html").read_text()
    assert main(args) == 0  # finished: nothing to redo
    assert main([*args, "--n", "10"]) == 2  # the folder holds an atlas of all 20 images
    assert "other settings" in capsys.readouterr().err


def test_examples_writes_the_table(tmp_path, factory, capsys):
    from seethrough.atlas import DatasetExamples

    out = tmp_path / "ex.safetensors"
    table = tmp_path / "ex.csv"
    assert main(["examples", *factory, "--layers", "all", "--top-k", "3", "--out", str(out), "--csv", str(table)]) == 0
    ex = DatasetExamples.load(out)
    assert ex.layers_ == ("features.0", "features.3", "classifier")
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == (8 + 12 + 5) * 2 * 3
    first = rows[0]
    assert first["layer"] == "features.0" and first["kind"] == "top" and first["rank"] == "0"
    assert int(first["index"]) == int(ex.top_indices_["features.0"][0, 0])
    assert len(first["box"].split()) == 4 and rows[-1]["box"] == ""


def test_errors_exit_with_status_2(tmp_path, factory, capsys):
    def run(*extra):
        code = main(["examples", *factory, "--out", str(tmp_path / "e.safetensors"), *extra])
        return code, capsys.readouterr().err

    code, err = run("--layers", "features.33")
    assert code == 2 and "closest names" in err and "features.3" in err
    code, err = run("--n", "0")
    assert code == 2 and "no images" in err
    np.save(tmp_path / "bad.npy", np.zeros((3, 4, 16, 16), dtype=np.float32))
    bad = [a if not a.endswith("x.npy") else str(tmp_path / "bad.npy") for a in factory]
    assert main(["examples", *bad, "--out", str(tmp_path / "e.safetensors")]) == 2
    assert "per-sample shape (4, 16, 16)" in capsys.readouterr().err
    assert (
        main(["atlas", *factory, "--steps", "0", "--labels", str(tmp_path / "none.json"), "--out", str(tmp_path / "s")])
        == 2
    )
    assert "cannot read dissection labels" in capsys.readouterr().err
    assert main(["atlas", "--model", "mnist-cnn", "--data", "no/such/folder", "--out", str(tmp_path / "t")]) == 2
    assert "'no/such/folder' does not exist" in capsys.readouterr().err
    assert main(["atlas", "--model", "mnist-cnn", "--data", "shapez", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "unknown data 'shapez'" in err and "shapes" in err  # the bundled names are offered
