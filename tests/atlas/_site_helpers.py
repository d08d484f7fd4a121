"""Shared by the atlas tests: a cheap feature-visualisation stand-in and a link checker."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import torch


class FakeVisualize:
    """Stands in for ``visualize_channels`` (same call signature): one flat-coloured image
    per channel, so tests exercise the atlas without minutes of optimisation. Counts the
    channels it was asked for and can fail on a chosen call (an interruption)."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        self.fail_on_call = fail_on_call

    def __call__(
        self,
        model,
        layer,
        channels=None,
        *,
        size=None,
        steps=256,
        seed=0,
        batch_size=None,
        progress=None,
        input_range=None,
        mean=None,
        std=None,
    ):
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            raise KeyboardInterrupt("interrupted by the test")
        self.calls.append((str(layer), tuple(channels)))
        h, w = (size, size) if isinstance(size, int) else size
        k = torch.tensor([float(c) for c in channels]).reshape(-1, 1, 1, 1)
        colour = torch.cat([(k % 5) / 4, (k % 3) / 2, (k % 2)], dim=1)
        return SimpleNamespace(images=colour.expand(-1, 3, h, w).clone())


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and "src" in a:
            self.refs.append(("img", a["src"]))
        if tag == "a" and "href" in a:
            self.refs.append(("a", a["href"]))
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.refs.append((tag, a.get("href") or a.get("src")))


def check_links(root: Path) -> tuple[int, int]:
    """Every ``<img src>`` and ``<a href>`` of every page under ``root`` is a relative
    link to an existing file inside ``root``. Returns (pages, links) checked."""
    root = root.resolve()
    pages = sorted(root.rglob("*.html"))
    n_links = 0
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for tag, ref in parser.refs:
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"{page}: {tag} {ref!r} is not a relative link"
            assert not ref.startswith("/"), f"{page}: {tag} {ref!r} is absolute"
            if not parts.path:
                continue  # a fragment on the same page
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{page.relative_to(root)}: {tag} {ref!r} points to a missing file"
            assert root in target.parents, f"{page}: {ref!r} leaves the atlas folder"
            n_links += 1
    return len(pages), n_links
