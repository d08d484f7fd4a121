"""The CLI, in-process: every subcommand's --help, explain on a factory model with
weights, error exits, and the demo end to end (slow)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from seethrough.app.cli import main


@pytest.mark.parametrize("cmd", ["demo", "explain", "methods", "models"])
def test_help_on_every_subcommand(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: seethrough" in capsys.readouterr().out


def test_methods_lists_the_registry(capsys):
    from seethrough.attribution.registry import METHODS

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in METHODS:
        assert name in out
    from seethrough.language.registry import TEXT_METHODS

    text = out.split("language models")[1]
    for name in TEXT_METHODS:
        assert f"\n{name} " in text


def _images(tmp_path, n=2, size=16):
    paths = []
    rng = np.random.default_rng(0)
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (size + 4, size + 2, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_explain_factory_model_with_weights(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from seethrough.testing import TinyCNN, seeded

    model = seeded(TinyCNN)
    weights = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(weights))
    maps = tmp_path / "maps.safetensors"
    html = tmp_path / "r.html"
    code = main(
        [
            "explain",
            "--model",
            "seethrough.testing.models:TinyCNN",
            "--weights",
            str(weights),
            "--images",
            *_images(tmp_path),
            "--size",
            "16",
            "--mean",
            "0.5",
            "--std",
            "0.25",
            "--methods",
            "saliency,gradcam,integrated_gradients",
            "--layer",
            "features.3",
            "--target",
            "1",
            "--html",
            str(html),
            "--maps",
            str(maps),
        ]
    )
    assert code == 0, capsys.readouterr().err
    saved = load_file(str(maps))
    assert set(saved) == {"saliency", "gradcam", "integrated_gradients"}
    assert saved["saliency"].shape == (2, 3, 16, 16)
    assert saved["gradcam"].shape == (2, 1, 16, 16)
    # the maps are those of the library on the same preprocessed inputs
    import seethrough as st
    from seethrough._core.files import load_images

    x = load_images(_images(tmp_path), size=16, mean=[0.5], std=[0.25])
    ref = st.Saliency(model).attribute(x, 1).attributions
    assert torch.allclose(saved["saliency"], ref, atol=1e-6)
    text = html.read_text()
    assert text.startswith("<!doctype html>") and len(re.findall("data:image/png;base64", text)) >= 6


def test_explain_tensor_file_and_npy_maps(tmp_path):
    from seethrough.testing import TinyMLP, seeded

    model = seeded(TinyMLP)
    script = torch.jit.script(model)
    ts = tmp_path / "mlp.pt"
    torch.jit.save(script, str(ts))
    x = torch.randn(3, 10)
    np.save(tmp_path / "x.npy", x.numpy())
    out = tmp_path / "maps"
    assert (
        main(
            [
                "explain",
                "--model",
                str(ts),
                "--tensor",
                str(tmp_path / "x.npy"),
                "--methods",
                "saliency,input_x_gradient",
                "--target",
                "0-2",
                "--maps",
                str(out),
            ]
        )
        == 0
    )
    m = np.load(out / "input_x_gradient.npy")
    assert m.shape == (3, 10)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["explain", "--model", "shapes-cnx", "--tensor", "x.npy"], "shapes-cnn"),
        (["explain", "--model", "shapes-cnn", "--tensor", "missing.npy"], "does not exist"),
        (["explain", "--model", "shapes-cnn", "--tensor", "x.npy", "--methods", "saliancy"], "saliency"),
        (["explain", "--model", "shapes-cnn", "--tensor", "x.npy", "--target", "abc"], "cannot read target"),
        (["explain", "--model", "nosuchpkg.mod:fn", "--tensor", "x.npy"], "cannot import"),
    ],
)
def test_errors_exit_2_with_a_message(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 64, 64), dtype=np.float32))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("seethrough: error:") and needle in err


def test_pickled_weights_are_refused(tmp_path, capsys):
    import pickle

    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"x": object()}, f)
    code = main(["explain", "--model", "seethrough.testing.models:TinyMLP", "--weights", str(p), "--tensor", str(p)])
    assert code == 2
    assert "never arbitrary pickles" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    # The model sections (trust, feature visualization, atlas, influence, concepts) have their
    # own tests; here the maps part end to end.
    assert main(["demo", "--out", str(tmp_path), "--n-images", "2", "--maps-only"]) == 0
    out = capsys.readouterr().out
    assert "Report written to" in out
    text = (tmp_path / "index.html").read_text()
    from seethrough.attribution.registry import METHODS

    for name in METHODS:
        assert name in text
    assert "http://" not in text and "https://" not in text
    assert "planted shortcut" in text
    assert "trust.html" not in text  # --maps-only


@pytest.mark.slow
def test_demo_trust_section_writes_linked_reports(tmp_path):
    from seethrough.app.demo.trust import trust_section
    from seethrough.report.html import HtmlReport

    rep = HtmlReport()
    written = trust_section(rep, tmp_path, n_images=2, methods=("saliency", "gradcam"))
    assert set(written) == {"shapes-cnn", "shapes-cnn-shortcut"}
    html = rep.render()
    assert 'href="trust.html"' in html and 'href="trust-shortcut.html"' in html
    page = written["shapes-cnn"].read_text()
    assert "Ranking per metric family" in page and "data randomization" in page.lower()
    assert "relevance_mass_accuracy" in written["shapes-cnn-shortcut"].read_text()


def test_explain_perturbation_methods_with_a_feature_mask(tmp_path):
    from safetensors.torch import load_file, save_file

    import seethrough as st
    from seethrough._core.files import load_images
    from seethrough.attribution.masks import grid_mask
    from seethrough.testing import TinyCNN, seeded

    model = seeded(TinyCNN)
    weights = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(weights))
    maps = tmp_path / "maps.safetensors"
    imgs = _images(tmp_path)
    assert (
        main(
            [
                "explain",
                "--model",
                "seethrough.testing.models:TinyCNN",
                "--weights",
                str(weights),
                "--images",
                *imgs,
                "--size",
                "16",
                "--methods",
                "feature_ablation,occlusion",
                "--feature-mask",
                "grid:4",
                "--target",
                "2",
                "--maps",
                str(maps),
            ]
        )
        == 0
    )
    saved = load_file(str(maps))
    x = load_images(imgs, size=16)
    ref = st.FeatureAblation(model).attribute(x, 2, feature_mask=grid_mask((3, 16, 16), 4)).attributions
    assert torch.allclose(saved["feature_ablation"], ref, atol=1e-6)
    # 16 patches: the map is constant on each 4x4 patch
    fa = saved["feature_ablation"][0, 0]
    assert torch.equal(fa[:4, :4], fa[0, 0].expand(4, 4))
