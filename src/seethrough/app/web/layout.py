"""The explorer's page shell: plain HTML, one stylesheet and one script, both served by the
server itself (no CDN, no build step). Every string from a user goes through :func:`esc`."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["esc", "page", "png_data_url", "options", "table", "jsonable", "NAV"]

#: The pages, in the order of the navigation bar.
NAV = (
    ("/", "Home"),
    ("/explain", "Explain"),
    ("/trust", "Trust"),
    ("/atlas", "Atlas"),
    ("/latent", "Latent walk"),
    ("/language", "Language"),
    ("/jobs", "Jobs"),
)


def esc(value: Any) -> str:
    """HTML-escape anything (quotes too: safe inside attributes)."""
    return html.escape(str(value), quote=True)


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def options(values: Iterable[Any], selected: Any = None, labels: dict[Any, str] | None = None) -> str:
    out = []
    for v in values:
        label = (labels or {}).get(v, v)
        sel = " selected" if v == selected else ""
        out.append(f'<option value="{esc(v)}"{sel}>{esc(label)}</option>')
    return "".join(out)


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], *, raw: Sequence[int] = (), cls: str = "") -> str:
    """An HTML table; cells are escaped except the columns in ``raw`` (HTML made here)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = "".join(f"<td>{c if i in raw else esc(_fmt(c))}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.4g}"
    return str(v)


def page(title: str, body: str, *, active: str = "/", page_id: str = "") -> str:
    """A whole page: the navigation, ``body`` (HTML made by the caller, strings escaped), and
    the explorer's script, which finds its work by ``data-page``."""
    nav = "".join(
        f'<a href="{href}"{" class=active" if href == active else ""}>{esc(label)}</a>' for href, label in NAV
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · seethrough</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/style.css"></head>'
        f'<body data-page="{esc(page_id)}"><header><strong>seethrough</strong><nav>{nav}</nav></header>'
        f"<main><h1>{esc(title)}</h1>{body}</main>"
        '<script src="/static/app.js"></script></body></html>'
    )


def jsonable(v: Any) -> Any:
    """Plain JSON values (NaN as null) of what the library returns."""
    import math

    import numpy as np
    import torch

    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        return jsonable(v.detach().cpu().tolist())
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)
