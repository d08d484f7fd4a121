"""``seethrough run`` end to end on the local engine, its resume and its errors."""

from __future__ import annotations

import pytest

from seethrough.app.cli import main
from seethrough.app.jobs import Manifest, load_outputs


def _user_model(root):
    return ["--model", "seethrough.testing.models:TinyCNN", "--weights", str(root / "w.safetensors"), "--size", "16"]


def test_explain_then_resume_is_a_no_op(tmp_path, user, capsys):
    root, _ = user
    argv = ["run", "explain", *_user_model(root), "--data", str(root / "shards"), "--set", "steps=8"]
    argv += ["--shard-size", "16", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    assert "3 shard(s), 40 item(s)" in capsys.readouterr().out
    first = Manifest.load(tmp_path / "o")
    assert main(argv) == 0  # everything is there: nothing is computed again
    again = Manifest.load(tmp_path / "o")
    assert {i: r.sha256 for i, r in again.shards.items()} == {i: r.sha256 for i, r in first.shards.items()}
    assert load_outputs(tmp_path / "o")["attributions"].shape == (40, 3, 16, 16)


def test_a_tensor_file_and_trust_settings(tmp_path, user, capsys):
    root, _ = user
    argv = ["run", "trust", *_user_model(root), "--data", str(root / "x.pt"), "--n", "4", "--metrics", "deletion"]
    argv += ["--method", "integrated_gradients", "--set", "steps=4", "--out", str(tmp_path / "t")]
    assert main(argv) == 0, capsys.readouterr().err
    out = load_outputs(tmp_path / "t")
    assert set(out) == {"deletion", "index"} and out["deletion"].shape == (4,)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "stepz=8"], "Did you mean 'steps'"),
        (["--set", "novalue"], "KEY=VALUE"),
        (["--method", "gradcam"], "needs a layer"),
        (["--target", "cat"], "class index"),
    ],
)
def test_bad_input_exits_2(tmp_path, user, capsys, extra, message):
    root, _ = user
    argv = ["run", "explain", *_user_model(root), "--data", str(root / "shards"), "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
