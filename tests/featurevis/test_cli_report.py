"""`seethrough featurevis` end to end on a bundled model, its errors, and the demo
report section."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from seethrough.app.cli import main
from seethrough.report.html import HtmlReport


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["featurevis", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--channels" in out and "--param" in out


def test_featurevis_on_a_bundled_model(tmp_path, capsys):
    out = tmp_path / "fv"
    code = main(
        [
            "featurevis",
            "--model",
            "mnist-cnn",
            "--layer",
            "features.2",
            "--channels",
            "0,5,31",
            "--steps",
            "3",
            "--seed",
            "1",
            "--param",
            "pixel",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["channel_0000.png", "channel_0005.png", "channel_0031.png"]
    img = np.asarray(Image.open(out / "channel_0005.png"))
    assert img.shape == (28, 28)  # the bundled model's size, one channel
    page = (out / "index.html").read_text()
    for n in names:
        assert f'src="{n}"' in page
    assert "channel 31" in page and "pixel parameterization" in page
    assert "3 images" in captured.out


def test_featurevis_all_channels_with_fft(tmp_path, capsys):
    out = tmp_path / "fv"
    code = main(
        [
            "featurevis",
            "--model",
            "shapes-cnn",
            "--layer",
            "features.2",
            "--channels",
            "all",
            "--steps",
            "1",
            "--size",
            "32",
            "--batch-size",
            "16",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert len(list(out.glob("channel_*.png"))) == 32
    assert np.asarray(Image.open(out / "channel_0031.png")).shape == (32, 32, 3)


def test_featurevis_on_a_users_own_model(tmp_path, capsys):
    from safetensors.torch import save_file

    from seethrough.testing.models import TinyCNN

    weights = tmp_path / "tiny.safetensors"
    save_file(TinyCNN().state_dict(), str(weights))
    out = tmp_path / "fv"
    code = main(
        [
            "featurevis",
            "--model",
            "seethrough.testing.models:TinyCNN",
            "--weights",
            str(weights),
            "--layer",
            "features.4",
            "--channels",
            "1,11",
            "--size",
            "20",
            "--steps",
            "2",
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.glob("*.png")) == ["channel_0001.png", "channel_0011.png"]
    assert np.asarray(Image.open(out / "channel_0011.png")).shape == (20, 20, 3)  # --size, channels from the model
    page = (out / "index.html").read_text()
    assert "mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]" in page


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "features.2", "--channels", "0,40"], r"channel 40 is out of range .* \(valid: 0\.\.31\)"),
        (["--layer", "featurs.2"], r"unknown layer 'featurs\.2'.*closest names: 'features\.2'"),
        (["--layer", "features.2", "--channels", "a,b"], r"cannot read --channels"),
        (["--layer", "features.2", "--batch-size", "0"], r"--batch-size must be at least 1"),
        (["--layer", "features.2", "--size", "1"], r"size must be at least 2"),
    ],
)
def test_errors_exit_with_status_2(tmp_path, capsys, args, message):
    code = main(["featurevis", "--model", "shapes-cnn", "--steps", "1", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(message, err), err
    assert err.count("\n") == 1  # one line


def test_featurevis_section():
    from seethrough.app.demo.featurevis import featurevis_section

    report = HtmlReport("demo")
    seen = []
    featurevis_section(report, progress=seen.append, steps=2)
    html = report.render()
    assert "Feature visualization" in html
    assert html.count('class="st-sample"') == 32 + 16 + 4
    assert "class circle" in html and "features.16" in html
    assert any("features.5" in s for s in seen)
