"""Views of token-level results: tokens coloured by a value and token × token matrices,
as matplotlib figures (``ax=`` in, figure out) and as self-contained HTML fragments.

Colours are always on the diverging colormap of :mod:`seethrough.report.plot`
(``RdBu_r``: red positive, blue negative, near-white at 0), symmetric around 0 and scaled
to the largest finite ``|value|`` unless ``vmax`` is given (pass the same ``vmax`` to put
several views on one scale). Non-negative values use only the red half. Non-finite values
(NaN) get no colour: a blank cell or an uncoloured token.

Tokens are shown as display text: the word-start markers of byte-level BPE (``Ġ``) and
SentencePiece (``▁``) become a leading space, newlines (``\\n``, ``Ċ``) ``↵``, tabs ``⇥``
and a token that is only spaces ``␣``; the raw token and its value are in the hover text
(the ``title`` attribute). Everything that comes from the caller is HTML-escaped.

Each family registers the views of its own results with these helpers
(:func:`seethrough._core.result.register_view`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._core.errors import InputError
from ..report.html import _esc
from ..report.plot import _as_numpy, _get_cmap, _new_axes, color_limits, default_cmap

__all__ = [
    "display_token",
    "value_colors",
    "plot_tokens",
    "tokens_html",
    "plot_matrix",
    "matrix_html",
    "register_token_views",
]

#: characters per line of a token row in a new figure, and the font size of its tokens
_LINE_CHARS = 80
_FONT = 10.0
#: at most this many columns get their value written in the cells of a matrix
_ANNOTATE_MAX = 16


# ---------------------------------------------------------------------------------------
# tokens and values
# ---------------------------------------------------------------------------------------
def display_token(token: Any) -> str:
    """The text shown for one token: ``Ġ``/``▁`` → a space, ``Ċ``/newline → ``↵``, tab →
    ``⇥``; a token that is empty or only spaces becomes one ``␣`` per space (at least one)."""
    s = str(token).replace("Ġ", " ").replace("▁", " ").replace("Ċ", "↵").replace("\n", "↵")
    s = s.replace("\r", "").replace("\t", "⇥")
    if not s.strip(" "):
        return "␣" * max(1, len(s))
    return s


def _tokens(tokens: Any, what: str = "tokens") -> list[str]:
    if isinstance(tokens, str):
        raise InputError(f"{what} must be a sequence of token strings, not one string")
    try:
        return [str(t) for t in tokens]
    except TypeError as e:
        raise InputError(f"{what} must be a sequence of token strings, got {type(tokens).__name__}") from e


def _values(values: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = _as_numpy(values, what)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"{what} must be numbers, got an array of {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.shape != shape:
        squeezed = arr.squeeze()
        if squeezed.shape != shape:
            raise InputError(f"{what} has shape {tuple(arr.shape)} but {shape} is needed to match the labels")
        arr = squeezed
    return arr


def _limit(vals: np.ndarray, vmax: float | None) -> float:
    if vmax is not None:
        v = float(vmax)
        if not (math.isfinite(v) and v > 0.0):
            raise InputError(f"vmax must be a positive finite number, got {vmax!r}")
        return v
    return color_limits(vals, True, 100.0)[1]


def value_colors(values: Any, *, vmax: float | None = None) -> np.ndarray:
    """RGBA colours (``(..., 4)`` floats in [0, 1]) of values on the diverging scale
    ``[-vmax, vmax]`` (default: the largest finite ``|value|``); NaN → alpha 0."""
    vals = _as_numpy(values, "values").astype(np.float64)
    v = _limit(vals, vmax)
    cmap = _get_cmap(default_cmap(True))
    frac = np.clip((np.nan_to_num(vals, nan=0.0) + v) / (2.0 * v), 0.0, 1.0)
    rgba = np.asarray(cmap(frac), dtype=np.float64)
    rgba[~np.isfinite(vals)] = (1.0, 1.0, 1.0, 0.0)
    return rgba


def _hex(rgba: np.ndarray) -> str:
    r, g, b = (int(round(float(c) * 255)) for c in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _ink(rgba: np.ndarray) -> str:
    """Black or white text, whichever reads better on the background."""
    lum = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]
    return "#000" if lum > 0.5 or rgba[3] == 0.0 else "#fff"


def _num(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:.4g}"


def _scale_note(v: float) -> str:
    return f"colour scale ±{v:.3g} ({default_cmap(True)}: red positive, blue negative)"


def _colorbar(fig: Any, ax: Any, v: float, **kw: Any) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import MaxNLocator

    sm = ScalarMappable(norm=Normalize(-v, v), cmap=_get_cmap(default_cmap(True)))
    cb = fig.colorbar(sm, ax=ax, **kw)
    cb.locator = MaxNLocator(nbins=5, symmetric=True)
    cb.update_ticks()
    cb.ax.tick_params(labelsize=7)


# ---------------------------------------------------------------------------------------
# a row of tokens
# ---------------------------------------------------------------------------------------
def _wrap(texts: Sequence[str], width: int) -> list[list[int]]:
    lines: list[list[int]] = [[]]
    used = 0
    for i, t in enumerate(texts):
        n = len(t) + 1
        if lines[-1] and used + n > width:
            lines.append([])
            used = 0
        lines[-1].append(i)
        used += n
    return lines


def plot_tokens(
    tokens: Sequence[str],
    values: Any,
    *,
    ax: Any = None,
    title: str | None = None,
    vmax: float | None = None,
) -> Any:
    """The tokens in wrapped lines, each on a box coloured by its value (diverging scale
    centred at 0, ``±vmax``), with a colour bar. Returns the figure drawn on."""
    toks = _tokens(tokens)
    vals = _values(values, (len(toks),), "values")
    v = _limit(vals, vmax)
    texts = [display_token(t) for t in toks]
    if ax is None:
        width = _LINE_CHARS
    else:  # as many monospace characters as fit across the given axes
        root = ax.figure
        while getattr(root, "figure", None) is not None and root.figure is not root:  # a SubFigure's root
            root = root.figure
        fig_w = float(ax.get_window_extent().width) / float(root.dpi)
        width = max(8, int(fig_w * 72.0 / (0.6 * _FONT)) - 2)
    lines = _wrap(texts, width)
    fig, ax = _new_axes(ax, (width * 0.6 * _FONT / 72.0 + 0.6, 0.9 + 0.32 * len(lines)))
    colors = value_colors(vals, vmax=v)
    ax.set_xlim(0, width)
    ax.set_ylim(len(lines), 0)
    ax.set_axis_off()
    for row, idx in enumerate(lines):
        x = 0.0
        for i in idx:
            c = colors[i]
            bbox = {"boxstyle": "square,pad=0.15", "facecolor": c[:3], "alpha": None if c[3] else 0.0, "lw": 0}
            ax.text(
                x,
                row + 0.5,
                texts[i],
                family="monospace",
                fontsize=_FONT,
                va="center",
                ha="left",
                color=_ink(c),
                bbox=bbox,
            )
            x += len(texts[i]) + 1
    _colorbar(fig, ax, v, orientation="horizontal", fraction=0.15 if len(lines) > 2 else 0.3, pad=0.02, aspect=40)
    if title:
        ax.set_title(str(title), fontsize=10)
    return fig


def tokens_html(
    tokens: Sequence[str],
    values: Any,
    *,
    title: str | None = None,
    vmax: float | None = None,
) -> str:
    """A self-contained ``<div>``: one ``<span>`` per token with its background colour
    on the diverging scale (``±vmax``) and ``title="raw token: value"`` for hover; the
    scale in a note under it. Tokens and title are escaped."""
    toks = _tokens(tokens)
    vals = _values(values, (len(toks),), "values")
    v = _limit(vals, vmax)
    colors = value_colors(vals, vmax=v)
    spans = []
    for i, t in enumerate(toks):
        c = colors[i]
        bg = f"background:{_hex(c)};" if c[3] else ""
        style = f"{bg}color:{_ink(c)};white-space:pre;padding:1px 3px;border-radius:3px;margin:0 1px;box-shadow:inset 0 0 0 1px #e4e4e4"
        hover = f"{t!r} #{i}: {_num(float(vals[i]))}"
        spans.append(f'<span class="st-token" style="{style}" title="{_esc(hover)}">{_esc(display_token(t))}</span>')
    head = f'<div style="font-weight:600;margin-bottom:.2rem">{_esc(title)}</div>' if title else ""
    body = '<div style="font-family:ui-monospace,monospace;line-height:1.9;font-size:.92rem">' + "".join(spans)
    note = f'<div style="color:#666;font-size:.8rem">{_esc(_scale_note(v))}; hover a token for its value</div>'
    return f'<div class="st-tokens" style="margin:.5rem 0">{head}{body}</div>{note}</div>'


# ---------------------------------------------------------------------------------------
# a token x token matrix
# ---------------------------------------------------------------------------------------
def plot_matrix(
    rows: Sequence[str],
    cols: Sequence[str],
    M: Any,
    *,
    ax: Any = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    vmax: float | None = None,
) -> Any:
    """A heatmap of ``M`` (``len(rows) × len(cols)``) on the diverging scale centred at 0,
    rows and columns labelled with the display tokens, NaN cells blank, values written in
    the cells when there are at most 16 columns, and a colour bar. Returns the figure."""
    r = _tokens(rows, "rows")
    c = _tokens(cols, "cols")
    mat = _values(M, (len(r), len(c)), "M")
    v = _limit(mat, vmax)
    fig, ax = _new_axes(ax, (1.6 + 0.42 * max(len(c), 3), 1.2 + 0.34 * max(len(r), 3)))
    cmap = _get_cmap(default_cmap(True)).with_extremes(bad=(1.0, 1.0, 1.0, 0.0))
    ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=-v, vmax=v, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(c)))
    ax.set_xticklabels([display_token(t) for t in c], rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(r)))
    ax.set_yticklabels([display_token(t) for t in r], fontsize=8)
    if len(c) <= _ANNOTATE_MAX and len(r) <= 40:
        colors = value_colors(mat, vmax=v)
        for i in range(len(r)):
            for j in range(len(c)):
                if math.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2g}", ha="center", va="center", fontsize=6, color=_ink(colors[i, j]))
    if xlabel:
        ax.set_xlabel(str(xlabel))
    if ylabel:
        ax.set_ylabel(str(ylabel))
    if title:
        ax.set_title(str(title), fontsize=10)
    _colorbar(fig, ax, v, shrink=0.8)
    return fig


def matrix_html(
    rows: Sequence[str],
    cols: Sequence[str],
    M: Any,
    *,
    title: str | None = None,
    vmax: float | None = None,
) -> str:
    """An HTML table heatmap: a cell per ``M[i, j]`` coloured on the diverging scale, the
    row and column tokens as headers, ``title="row × col: value"`` for hover, NaN cells
    blank, the value written in the cells when there are at most 16 columns."""
    r = _tokens(rows, "rows")
    c = _tokens(cols, "cols")
    mat = _values(M, (len(r), len(c)), "M")
    v = _limit(mat, vmax)
    colors = value_colors(mat, vmax=v)
    write = len(c) <= _ANNOTATE_MAX
    cell = "border:1px solid #eee;min-width:1.6rem;height:1.4rem;text-align:center;font-size:.72rem;padding:1px 3px"
    head = "padding:2px 4px;font-weight:400;font-family:ui-monospace,monospace;white-space:pre"
    out = ['<div class="st-matrix" style="overflow-x:auto;margin:.5rem 0">']
    out.append('<table style="border-collapse:collapse">')
    if title:
        out.append(f'<caption style="caption-side:top;text-align:left;font-weight:600">{_esc(title)}</caption>')
    out.append("<thead><tr><th></th>")
    for j, t in enumerate(c):
        out.append(
            f'<th style="{head};writing-mode:vertical-rl;transform:rotate(180deg);text-align:left" '
            f'title="{_esc(repr(t))} #{j}">{_esc(display_token(t))}</th>'
        )
    out.append("</tr></thead><tbody>")
    for i, rt in enumerate(r):
        out.append(
            f'<tr><th style="{head};text-align:right" title="{_esc(repr(rt))} #{i}">{_esc(display_token(rt))}</th>'
        )
        for j, ct in enumerate(c):
            x = float(mat[i, j])
            hover = _esc(f"{rt!r} × {ct!r}: {_num(x)}")
            if not math.isfinite(x):
                out.append(f'<td class="st-nan" style="{cell}" title="{hover}"></td>')
                continue
            col = colors[i, j]
            text = _esc(f"{x:.2g}") if write else ""
            out.append(f'<td style="{cell};background:{_hex(col)};color:{_ink(col)}" title="{hover}">{text}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append(f'<div style="color:#666;font-size:.8rem">{_esc(_scale_note(v))}; hover a cell for its value</div>')
    out.append("</div>")
    return "".join(out)


def register_token_views(cls: type, title: Any) -> None:
    """Give a result class with ``tokens`` and per-token ``scores`` its ``plot`` and
    ``to_html`` views: :func:`plot_tokens` and :func:`tokens_html` of them, titled
    ``title(result)`` unless the caller passes ``title=``."""
    from .._core.result import register_view

    def plot(r: Any, *, ax: Any = None, **kw: Any) -> Any:
        return plot_tokens(list(r.tokens), r.scores.numpy(), ax=ax, title=kw.pop("title", title(r)), **kw)

    def html(r: Any, **kw: Any) -> str:
        return tokens_html(list(r.tokens), r.scores.numpy(), title=kw.pop("title", title(r)), **kw)

    register_view(cls, plot=plot, html=html)
