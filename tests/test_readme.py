"""The README's Python examples run as written (slow: the trust report runs every metric)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_python_examples():
    assert len(_blocks()) >= 2


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _blocks():
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 (our own README)
    assert (tmp_path / "ig.safetensors").is_file() and (tmp_path / "trust.html").is_file()
