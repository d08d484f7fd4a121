"""Token and matrix views: escaping, colours monotone in the value, NaN handling, figures."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from seethrough._core.errors import InputError
from seethrough.language.views import (
    display_token,
    matrix_html,
    plot_matrix,
    plot_tokens,
    tokens_html,
    value_colors,
)
from seethrough.report.plot import figure_to_png


def _lum(rgba: np.ndarray) -> np.ndarray:
    return 0.2126 * rgba[..., 0] + 0.7152 * rgba[..., 1] + 0.0722 * rgba[..., 2]


def _backgrounds(html: str) -> list[str | None]:
    cells = re.findall(r"<(?:span|td)[^>]*>", html)
    out = []
    for c in cells:
        m = re.search(r"background:(#[0-9a-f]{6})", c)
        out.append(m.group(1) if m else None)
    return out


def _hex_lum(h: str) -> float:
    r, g, b = (int(h[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_display_token_markers():
    assert display_token("Ġthe") == " the"
    assert display_token("▁cat") == " cat"
    assert display_token("Ċ") == "↵"
    assert display_token("Ġ") == "␣"
    assert display_token("  ") == "␣␣"
    assert display_token("") == "␣"
    assert display_token("a\tb") == "a⇥b"
    assert display_token("##ing") == "##ing"


def test_colours_monotone_in_value():
    v = np.linspace(-2.0, 2.0, 81)
    rgba = value_colors(v)
    lum = _lum(rgba)
    neg, pos = v < 0, v > 0
    # darker the further from 0, on each side
    assert np.all(np.diff(lum[pos]) <= 1e-12)
    assert np.all(np.diff(lum[neg]) >= -1e-12)
    assert lum[pos][-1] < lum[pos][0] - 0.3 and lum[neg][0] < lum[neg][-1] - 0.3
    # hue by sign: red for positive, blue for negative
    assert np.all(rgba[pos, 0] >= rgba[pos, 2]) and np.all(rgba[neg, 2] >= rgba[neg, 0])
    # symmetric scale: -x and x equally far from white
    assert np.allclose(lum[v == 2.0], _lum(value_colors(np.array([-2.0, 2.0]))[1:]))


def test_vmax_shares_the_scale_and_clips():
    a = value_colors(np.array([0.5, 1.0]), vmax=2.0)
    b = value_colors(np.array([0.5, 2.0]))
    assert np.allclose(a[0], b[0])
    assert np.allclose(value_colors(np.array([5.0]), vmax=1.0), value_colors(np.array([1.0]), vmax=1.0))
    with pytest.raises(InputError):
        value_colors(np.array([1.0]), vmax=0.0)


def test_tokens_html_escapes_and_hovers():
    toks = ["<script>", "Ġa&b", '"q"', "▁x"]
    html = tokens_html(toks, [0.1, -0.5, 1.0, 0.0], title="<b>t</b>")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>t</b>" not in html and "&lt;b&gt;t&lt;/b&gt;" in html
    assert " a&amp;b" in html  # Ġ shown as a space, & escaped
    titles = re.findall(r'title="([^"]*)"', html)
    assert len(titles) == 4
    assert "-0.5" in titles[1] and "1" in titles[2]
    assert html.count("<span") == 4
    assert html.count("<div") == html.count("</div>")
    assert "http" not in html and "<script" not in html  # self-contained, no scripts


def test_tokens_html_colours_follow_values():
    vals = [0.0, 0.25, 0.5, 1.0]
    bgs = _backgrounds(tokens_html(list("abcd"), vals))
    lums = [_hex_lum(b) for b in bgs if b]
    assert len(lums) == 4 and lums == sorted(lums, reverse=True)


def test_tokens_nan_gets_no_colour():
    html = tokens_html(["a", "b"], [float("nan"), 1.0])
    bgs = _backgrounds(html)
    assert bgs[0] is None and bgs[1] is not None
    assert "—" in re.findall(r'title="([^"]*)"', html)[0]
    fig = plot_tokens(["a", "b"], torch.tensor([float("nan"), 1.0]))
    assert isinstance(fig, Figure)


def test_all_nan_and_all_zero_do_not_fail():
    assert "span" in tokens_html(["a"], [float("nan")])
    assert "span" in tokens_html(["a"], [0.0])
    assert isinstance(plot_matrix(["a"], ["b"], [[float("nan")]]), Figure)


def test_length_mismatch_is_an_input_error():
    with pytest.raises(InputError):
        tokens_html(["a", "b"], [1.0])
    with pytest.raises(InputError):
        plot_tokens("ab", [1.0, 2.0])
    with pytest.raises(InputError):
        matrix_html(["a"], ["b", "c"], np.zeros((2, 2)))


def test_plot_tokens_uses_given_axes_and_wraps():
    fig = Figure(figsize=(4, 2))
    ax = fig.add_subplot()
    toks = [f"Ġtoken{i}" for i in range(40)]
    out = plot_tokens(toks, np.linspace(-1, 1, 40), ax=ax, title="x")
    assert out is fig
    texts = [t for t in ax.texts]
    assert len(texts) == 40
    ys = {round(t.get_position()[1], 3) for t in texts}
    assert len(ys) > 1  # wrapped over several lines
    assert ax.get_title() == "x"
    fig2 = plot_tokens(["a", "b"], [1.0, -1.0])
    assert isinstance(fig2, Figure) and fig2 is not fig
    assert figure_to_png(fig2).startswith(b"\x89PNG") and figure_to_png(fig).startswith(b"\x89PNG")


def test_plot_matrix_given_axes_labels_and_nan():
    fig = Figure()
    ax = fig.add_subplot()
    M = np.array([[1.0, np.nan], [-0.5, 0.2], [0.0, 0.1]])
    out = plot_matrix(["Ġa", "b", "c"], ["x", "▁y"], M, ax=ax, title="T", xlabel="B", ylabel="A")
    assert out is fig
    assert [t.get_text() for t in ax.get_yticklabels()] == [" a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", " y"]
    assert ax.get_xlabel() == "B" and ax.get_ylabel() == "A" and ax.get_title() == "T"
    img = ax.images[0]
    assert np.ma.is_masked(img.get_array()[0, 1])
    assert img.get_clim() == (-1.0, 1.0)
    assert len(ax.texts) == 5  # the NaN cell is not written


def test_matrix_html_cells_hover_and_nan():
    M = torch.tensor([[1.0, float("nan")], [-1.0, 0.5]])
    html = matrix_html(["<r>", "s"], ["c&", "d"], M, title="m")
    assert "<r>" not in html and "&lt;r&gt;" in html and "c&amp;" in html
    assert html.count("<td") == 4
    nan_cell = re.search(r'<td class="st-nan"[^>]*>([^<]*)</td>', html)
    assert nan_cell is not None and nan_cell.group(1) == ""
    tds = re.findall(r"<td[^>]*>", html)
    assert "background" not in tds[1]
    bg = [re.search(r"background:(#[0-9a-f]{6})", t) for t in tds]
    assert _hex_lum(bg[3].group(1)) > _hex_lum(bg[0].group(1))  # 0.5 lighter than 1.0
    # red for positive, blue for negative
    r0, b0 = int(bg[0].group(1)[1:3], 16), int(bg[0].group(1)[5:7], 16)
    r2, b2 = int(bg[2].group(1)[1:3], 16), int(bg[2].group(1)[5:7], 16)
    assert r0 > b0 and b2 > r2
    hovers = re.findall(r'<td[^>]*title="([^"]*)"', html)
    assert "—" in hovers[1] and "0.5" in hovers[3]


def test_large_matrix_values_not_written():
    M = np.random.default_rng(0).normal(size=(3, 30))
    html = matrix_html(["a", "b", "c"], [str(i) for i in range(30)], M)
    assert re.search(r"<td[^>]*>[^<]+</td>", html) is None
    fig = plot_matrix(["a", "b", "c"], [str(i) for i in range(30)], M)
    assert len(fig.axes[0].texts) == 0
