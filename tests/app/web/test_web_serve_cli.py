"""``seethrough serve``: what it prints, what it refuses."""

from __future__ import annotations

import pytest

from seethrough.app.cli import main
from seethrough.app.web import ServeConfig, server


def test_serve_prints_the_url_and_opens_nothing(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr("webbrowser.open", lambda *a, **k: pytest.fail("serve must not open a browser"))
    assert main(["serve", "--out", str(tmp_path / "o"), "--port", "8799"]) == 0
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8799/" in out and "WARNING" not in out
    assert calls == [{"host": "127.0.0.1", "port": 8799, "log_level": "warning", "access_log": False}]


def test_other_hosts_need_asking_and_warn(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: None)
    server.serve(ServeConfig(out=str(tmp_path / "o"), host="0.0.0.0", port=8798))
    out = capsys.readouterr().out
    assert out.startswith("WARNING: serving on 0.0.0.0, not loopback")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "--port must be 1..65535"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--text-model", "/no/such/dir"], "is not a directory"),
    ],
)
def test_bad_arguments(args, message, capsys, tmp_path):
    assert main(["serve", "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err
