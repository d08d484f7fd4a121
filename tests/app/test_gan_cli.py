"""``seethrough gan`` end to end, in-process, at small sizes: the bundled GANs, a user's own
generator (module:factory + safetensors, latent size read from the model), and the error
exits (not a generator, a layer that is not a conv layer, a wrong latent size, a user's
generator without data to score it)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from seethrough.app.cli import main
from seethrough.testing import TinyGAN


@pytest.mark.parametrize("cmd", ["directions", "dissect", "metrics", "recover"])
def test_gan_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(["gan", cmd, "--help"])
    assert e.value.code == 0
    assert "usage: seethrough gan" in capsys.readouterr().out


@pytest.mark.slow
def test_directions_on_the_scenes_gan(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["gan", "directions", "--model", "scenes-gan", "--k", "2", "--samples", "300", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "directions.json").read_text())
    assert set(summary["mean_purity"]) >= {"SeFa", "GANSpace", "supervised"}
    assert all(0.0 < v <= 1.0 for v in summary["mean_purity"].values())
    for f in ("directions.html", "traversals.png", "response.png", "response.safetensors"):
        assert (out / f).is_file(), f
    assert "sup:scale | x fixed" in (out / "directions.html").read_text()


@pytest.mark.slow
def test_dissect_on_the_scenes_gan(tmp_path, capsys):
    out = tmp_path / "x"
    args = ["gan", "dissect", "--model", "scenes-gan", "--samples", "150", "--counts", "1,2", "--effect-samples"]
    assert main([*args, "20", "--concepts", "object", "--out", str(out)]) == 0
    info = json.loads((out / "dissection.json").read_text())
    assert info["summary"][0]["units"] > 0
    assert [r["units"] for r in info["curves"]["object"]] == [1, 2]
    assert (out / "dissection.html").is_file() and (out / "ace-object.png").is_file()
    assert "causal effect on 'object'" in capsys.readouterr().out


@pytest.mark.slow
def test_metrics_on_the_mnist_gan(tmp_path, capsys):
    out = tmp_path / "m"
    assert (
        main(["gan", "metrics", "--model", "mnist-gan", "--samples", "300", "--bootstrap", "5", "--out", str(out)]) == 0
    )
    info = json.loads((out / "metrics.json").read_text())
    names = {r["metric"] for r in info["metrics"]}
    assert {"FID", "KID", "precision", "recall", "density", "coverage", "IS"} <= names
    assert info["n_fake"] == 300 and info["n_real"] == 1000


@pytest.mark.slow
def test_recover_flags_the_memorising_gan(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["gan", "recover", "--model", "mnist-gan-memorized", "--n", "12", "--steps", "120", "--restarts", "2"]
    assert main([*args, "--out", str(out)]) == 0
    test = json.loads((out / "recovery.json").read_text())["test"]
    assert test["flagged"] is True and test["p-value"] < 0.01
    assert (out / "recovery.html").is_file() and (out / "recovery.png").is_file()


def _user_generator(tmp_path):
    weights = tmp_path / "g.safetensors"
    save_file(TinyGAN(seed=3).state_dict(), str(weights))
    train = tmp_path / "train.safetensors"
    heldout = tmp_path / "heldout.safetensors"
    with torch.no_grad():
        g = TinyGAN(seed=3).eval()
        save_file({"images": g(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))}, str(train))
    save_file({"images": torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))}, str(heldout))
    return weights, train, heldout


def test_recover_on_a_user_generator(tmp_path, capsys):
    weights, train, heldout = _user_generator(tmp_path)
    out = tmp_path / "u"
    args = ["gan", "recover", "--model", "seethrough.testing.generative:TinyGAN", "--weights", str(weights)]
    args += ["--train", str(train), "--heldout", str(heldout), "--n", "4", "--steps", "40", "--restarts", "1"]
    assert main([*args, "--out", str(out)]) == 0
    assert (out / "recovery.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "shapes-cnn"], "not a generator"),
        (["--latent-dim", "5"], "latent_dim=5 was given"),
        ([], "--data scenes"),
    ],
)
def test_gan_errors(tmp_path, capsys, extra, message):
    weights, _, _ = _user_generator(tmp_path)
    base = ["gan", "metrics", "--model", "seethrough.testing.generative:TinyGAN", "--weights", str(weights)]
    if extra[:1] == ["--model"]:
        base = ["gan", "metrics"]
    assert main([*base, *extra, "--out", str(tmp_path / "e")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_dissect_refuses_a_layer_that_is_not_a_conv_layer(tmp_path, capsys):
    assert main(["gan", "dissect", "--model", "scenes-gan", "--layer", "fc", "--out", str(tmp_path / "e")]) == 2
    assert "blocks.0" in capsys.readouterr().err
