"""``seethrough latent`` and ``seethrough creative`` end to end, in-process: bundled image
VAEs, the peptide WAE, a user's own autoencoder (module:factory + safetensors) and a user's
separate encoder/decoder, and the error exits."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import save_file

from seethrough import zoo
from seethrough.app.cli import main
from seethrough.testing import TinyVAE

needs_peptides = pytest.mark.skipif(
    not (zoo.WEIGHTS_DIR / "peptide-wae.safetensors").is_file(), reason="peptide-wae weights not trained"
)


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("cmd", ["interpolate", "sample", "traverse", "factors"])
def test_latent_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(["latent", cmd, "--help"])
    assert e.value.code == 0
    assert "usage: seethrough latent" in capsys.readouterr().out


def test_interpolate_bundled_image_vae(tmp_path):
    out = tmp_path / "i"
    assert (
        main(
            ["latent", "interpolate", "--model", "mnist-vae", "--a", "0", "--b", "3", "--steps", "5", "--out", str(out)]
        )
        == 0
    )
    rows = _csv(out / "interpolation.csv")
    assert [float(r["alpha"]) for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for f in ("interpolation.html", "interpolation.png", "interpolation.safetensors"):
        assert (out / f).stat().st_size > 0
    from seethrough.generative import LatentWalk

    walk = LatentWalk.load(out / "interpolation.safetensors")
    assert walk.outputs.shape == (5, 1, 28, 28)


def test_traverse_scenes_along_a_latent_coordinate(tmp_path):
    out = tmp_path / "t"
    args = ["latent", "traverse", "--model", "scenes-vae", "--start", "2", "--direction", "dim1"]
    assert main([*args, "--strengths=-1:1:3", "--out", str(out)]) == 0
    s = [float(r["strength"]) for r in _csv(out / "traversal.csv")]
    # in z units: the given strengths times the codes' spread along the direction
    assert s[1] == 0.0 and s[2] > 0 and s[0] == pytest.approx(-s[2])


def _user_vae(tmp_path):
    model = TinyVAE(seed=3)
    w = tmp_path / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(w))
    data = tmp_path / "x.safetensors"
    save_file({"x": torch.rand(6, 1, 8, 8)}, str(data))
    return model, w, data


def test_interpolate_a_users_autoencoder_from_a_factory(tmp_path):
    model, w, data = _user_vae(tmp_path)
    out = tmp_path / "u"
    args = ["latent", "interpolate", "--model", "seethrough.testing:TinyVAE", "--weights", str(w), "--data", str(data)]
    assert main([*args, "--a", "0", "--b", "5", "--steps", "3", "--out", str(out)]) == 0
    from seethrough.generative import LatentWalk

    walk = LatentWalk.load(out / "interpolation.safetensors")
    from safetensors.torch import load_file

    images = load_file(str(data))["x"]
    with torch.no_grad():
        expected = model.eval().decode(model.encode(images[0:1]))
    torch.testing.assert_close(walk.outputs[0:1], expected, rtol=1e-5, atol=1e-6)


def test_separate_encoder_and_decoder(tmp_path):
    from safetensors.torch import load_file

    from seethrough.generative import LatentWalk
    from seethrough.testing.generative import tiny_decoder, tiny_encoder

    _, _, data = _user_vae(tmp_path)
    enc, dec = tiny_encoder().eval(), tiny_decoder().eval()
    for p in list(enc.parameters()) + list(dec.parameters()):
        p.data.add_(0.01)  # weights that differ from the factory's, so loading them matters
    enc_w, dec_w = tmp_path / "enc.safetensors", tmp_path / "dec.safetensors"
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(enc_w))
    save_file({k: v.contiguous() for k, v in dec.state_dict().items()}, str(dec_w))
    out = tmp_path / "s"
    args = ["latent", "interpolate", "--encoder", "seethrough.testing.generative:tiny_encoder"]
    args += ["--encoder-weights", str(enc_w), "--decoder", "seethrough.testing.generative:tiny_decoder"]
    args += ["--decoder-weights", str(dec_w), "--latent-dim", "4", "--data", str(data)]
    assert main([*args, "--a", "0", "--b", "1", "--steps", "3", "--out", str(out)]) == 0
    walk = LatentWalk.load(out / "interpolation.safetensors")
    x = load_file(str(data))["x"]
    with torch.no_grad():
        torch.testing.assert_close(walk.outputs[-1:], dec(enc(x[1:2])), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["latent", "interpolate", "--model", "mnist-cnn", "--a", "0", "--b", "1"], "not an autoencoder"),
        (
            ["latent", "traverse", "--model", "scenes-vae", "--start", "0", "--direction", "sideways"],
            "unknown direction",
        ),
        (["latent", "interpolate", "--model", "mnist-vae", "--a", "0", "--b", "9999"], "out of range"),
        (["latent", "sample", "--model", "mnist-vae"], "peptide model"),
        (
            ["latent", "traverse", "--model", "mnist-vae", "--start", "0", "--direction", "pc1", "--strengths", "1:2"],
            "FROM:TO:COUNT",
        ),
        (["latent", "interpolate", "--model", "seethrough.testing:TinyVAE", "--a", "0", "--b", "1"], "--data"),
    ],
)
def test_errors_exit_2_with_the_problem(argv, message, tmp_path, capsys):
    try:
        code = main([*argv, "--out", str(tmp_path / "e")])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_factors_table_and_disentanglement(tmp_path):
    out = tmp_path / "f"
    assert main(["latent", "factors", "--n", "300", "--out", str(out)]) == 0
    summary = json.loads((out / "factors.json").read_text())
    assert 0.0 <= summary["mig"] <= 1.0
    assert set(summary["dci"]) == {"disentanglement", "completeness", "informativeness"}
    assert (out / "factors.html").stat().st_size > 0


@pytest.mark.slow
def test_creative_study_on_the_bundled_vae(tmp_path):
    out = tmp_path / "c"
    assert main(["creative", "--samples", "40", "--n-train", "200", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    # noise images are far from real digits for the scanned detector
    assert s["detection_auc_vs_real"]["noise"] > 0.9
    assert s["settings"]["low_active_units"] > 0
    assert (out / "creative.html").stat().st_size > 0


@needs_peptides
@pytest.mark.slow
def test_peptide_interpolation_table(tmp_path):
    out = tmp_path / "p"
    args = ["latent", "interpolate", "--a", "GLFDIVKKVVGALGSL", "--b", "KWKLFKKIEKVGQNIRDG", "--steps", "6"]
    assert main([*args, "--out", str(out)]) == 0
    rows = _csv(out / "interpolation.csv")
    assert len(rows) == 6
    assert {"sequence", "charge", "aromaticity", "hydrophobic_moment", "instability_index", "molecular_weight"} <= set(
        rows[0]
    )
    assert {"amp_z", "acp_z", "amp_seq"} <= set(rows[0])


@needs_peptides
@pytest.mark.slow
def test_peptide_conditioned_sampling_meets_the_condition_more_often(tmp_path):
    out = tmp_path / "s"
    args = ["latent", "sample", "--condition", "amp > 0.8", "--condition", "charge in [2, 6]", "--n", "40"]
    assert main([*args, "--max-candidates", "20000", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    cond, base = s["conditioned"], s["unconditioned"]
    assert cond["acceptance_rate"] < 1.0
    assert cond["decoded_meets"]["all"] > base["decoded_meets"]["all"]


@needs_peptides
def test_peptide_bad_sequence_is_named(tmp_path, capsys):
    code = main(["latent", "interpolate", "--a", "GLFDIVKKXVGALGSL", "--b", "KWKL", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'X'" in err or "X" in err
