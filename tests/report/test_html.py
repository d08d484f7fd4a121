"""Tests of seethrough.report.html and the Explanation display/persistence methods."""

from __future__ import annotations

import base64
import io
import re

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from seethrough._core.errors import InputError
from seethrough._core.result import Explanation
from seethrough.report import HtmlReport, explanation_html, figure_to_png

DATA_URI = "data:image/png;base64,"
EVIL = "<script>alert(1)</script>"


def _expl(n=3, *, method="integrated_gradients", signed=True, inputs=True, shape=(3, 8, 8), **kw):
    g = torch.Generator().manual_seed(n)
    a = torch.randn((n, *shape), generator=g) if signed else torch.rand((n, *shape), generator=g)
    x = torch.rand((n, *shape), generator=g) if inputs else None
    return Explanation(attributions=a, method=method, signed=signed, inputs=x, **kw)


def _images(html: str) -> list[Image.Image]:
    out = []
    for b64 in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.load()
        out.append(img)
    return out


def _assert_self_contained(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    for ref in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert ref.startswith(DATA_URI) or ref.startswith("#"), ref[:60]
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()


# -- explanation_html ------------------------------------------------------------------
def test_explanation_html_content():
    n = 5
    e = _expl(
        n,
        settings={"steps": 64, "baseline": "zeros", "note": EVIL},
        target="Class([1, 2, 3, 4, 5])",
        target_indices=torch.tensor([1, 2, 3, 4, 5]),
        scores=torch.tensor([0.5, 1.5, 2.5, 3.5, 4.5]),
        extras={"delta": torch.tensor([1e-3, -2e-3, 3e-3, 4e-3, 5e-3]), "layer_map": torch.rand(n, 1, 2, 2)},
        n_evaluations=320,
        seconds=1.25,
    )
    html = explanation_html(e, max_samples=3)
    assert html.lstrip().startswith("<style>") and "<section" in html and html.rstrip().endswith("</section>")
    assert html.count(DATA_URI) == 2 * 3  # input + map per shown sample
    assert len(_images(html)) == 6
    assert "showing 3 of 5 samples" in html
    assert "integrated_gradients" in html
    assert "320" in html and "1.25 s" in html
    assert "steps" in html and "64" in html and "zeros" in html
    assert EVIL not in html and "&lt;script&gt;" in html
    assert "delta 0.001" in html and "delta -0.002" in html  # per-sample extras
    assert "delta 0.004" not in html  # sample 3 is not shown
    assert "layer_map" in html and "(5, 1, 2, 2)" in html
    assert "score 2.5" in html and "class 3" in html
    _assert_self_contained(html)


def test_explanation_html_without_inputs_and_through_dataclass():
    e = _expl(2, inputs=False, signed=False, method="gradcam", shape=(1, 4, 4), layer="features.2")
    html = e.to_html(include_style=False)
    assert "<style>" not in html
    assert html.count(DATA_URI) == 2  # maps only
    assert "features.2" in html and "0 …" in html  # sequential scale from 0
    tab = _expl(2, shape=(10,))
    assert tab.to_html().count(DATA_URI) == 4
    with pytest.raises(InputError):
        explanation_html(e, max_samples=0)


def test_explanation_html_images_are_upscaled():
    html = explanation_html(_expl(1, shape=(1, 7, 7)))
    for img in _images(html):
        assert max(img.size) >= 128


# -- HtmlReport ------------------------------------------------------------------------
def test_report_is_full_self_contained_document(tmp_path):
    n = 4
    x = torch.rand(n, 3, 8, 8)
    masks = torch.zeros(n, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True
    expls = {
        "Integrated gradients": _expl(n, inputs=False, n_evaluations=200, seconds=0.75),
        "Grad-CAM": _expl(n, signed=False, shape=(1, 8, 8), n_evaluations=4, seconds=0.01),
        "Occlusion": _expl(n, shape=(3, 8, 8)),
    }
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1])
    r = HtmlReport("Report " + EVIL)
    r.add_heading("Comparison").add_paragraph("first line\nsecond " + EVIL + "\n\nnext paragraph")
    r.add_method_grid(
        x,
        expls,
        masks=masks,
        predictions=torch.tensor([0, 1, 2, 0]),
        labels=torch.tensor([0, 1, 1, 0]),
        class_names=["zero", "one", "two"],
    )
    r.add_heading("Details", level=3).add_figure(fig, caption="a figure " + EVIL)
    r.add_table([{"method": "a", "time": 0.123456}, {"method": EVIL, "extra": 3}])
    html = r.render()

    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert "<head>" in html and '<meta charset="utf-8">' in html and "<style>" in html
    assert html.count("<title>") == 1
    _assert_self_contained(html)
    assert EVIL not in html
    # title, h1, paragraph, figure caption and its alt text, table cell
    assert html.count("&lt;script&gt;") == 6
    # table of contents links to every heading
    anchors = re.findall(r'<h[1-6] id="([^"]+)">', html)
    assert len(anchors) == 2
    for a in anchors:
        assert f'href="#{a}"' in html
    # images: n inputs + n masks + n per method, plus one figure
    assert html.count(DATA_URI) == n * (1 + 1 + 3) + 1
    assert len(_images(html)) == n * 5 + 1
    # method rows carry run time and evaluations; predictions are named and judged
    assert "0.75 s · 200 evaluations" in html and "0.01 s · 4 evaluations" in html
    assert "pred: two" in html and "true: one" in html
    assert html.count('class="st-bad"') == 1 and html.count('class="st-ok"') == 3
    assert "<p>first line<br>second" in html and "<p>next paragraph</p>" in html
    # the table: union of columns, floats shortened, missing cells blank
    assert "<th>method</th><th>time</th><th>extra</th>" in html and ">0.1235<" in html

    path = r.save(tmp_path / "sub" / "report.html")
    assert path.exists()
    saved = path.read_text(encoding="utf-8")
    assert saved.startswith("<!doctype html>") and saved.count(DATA_URI) == html.count(DATA_URI)


def test_method_grid_options():
    n = 5
    e = _expl(n)
    r = HtmlReport()
    r.add_method_grid(None, [e], indices=[1, 3], predictions=torch.randn(n, 3), class_names={0: "a", 1: "b"})
    html = r.render()
    assert html.count(DATA_URI) == 2 * 2  # inputs taken from the explanation, 2 samples
    assert "<th>#1</th><th>#3</th>" in html and "<th>#0</th>" not in html
    assert "pred:" in html and "true:" not in html
    r2 = HtmlReport().add_method_grid(None, [_expl(2, inputs=False)], labels=[0, 1])
    assert r2.render().count(DATA_URI) == 2  # no inputs: maps only
    with pytest.raises(InputError):
        HtmlReport().add_method_grid(torch.rand(3, 3, 8, 8), [e])  # 5 maps, 3 inputs
    with pytest.raises(InputError):
        HtmlReport().add_method_grid(None, [e], labels=[1, 2])
    with pytest.raises(InputError, match="out of range"):
        HtmlReport().add_method_grid(None, [e], indices=[7])


def test_report_add_figure_table_and_heading_inputs():
    fig = Figure(figsize=(1, 1))
    png = figure_to_png(fig)
    r = HtmlReport("t").add_figure(png).add_figure(np.random.rand(4, 4)).add_explanation(_expl(1))
    html = r.render()
    assert html.count(DATA_URI) == 2 + 2
    assert html.count("<style>") == 1  # add_explanation does not repeat the CSS
    with pytest.raises(InputError):
        HtmlReport().add_figure(b"not a png")
    with pytest.raises(InputError):
        HtmlReport().add_heading("x", level=7)
    with pytest.raises(InputError):
        HtmlReport().add_table([[1, 2, 3]], header=["a", "b"])
    t = HtmlReport().add_table([[1, EVIL]], header=["n", "<b>"]).render()
    assert "<th>&lt;b&gt;</th>" in t and EVIL not in t
    assert "Contents" not in HtmlReport().render()  # no headings, no table of contents
    raw = HtmlReport().add_html("<div id='raw'>ok</div>").render()
    assert "<div id='raw'>ok</div>" in raw


# -- Explanation persistence and display ---------------------------------------------
def test_explanation_save_load_round_trip(tmp_path):
    e = _expl(
        3,
        settings={"steps": 16, "method": "riemann_trapezoid", "nested": {"a": [1, 2]}},
        target="Class([0, 1, 2])",
        target_indices=torch.tensor([0, 1, 2]),
        scores=torch.tensor([0.1, 0.2, 0.3]),
        layer="features.0",
        extras={"delta": torch.tensor([1e-4, 2e-4, 3e-4])},
        n_evaluations=48,
        seconds=0.123456789,
    )
    path = e.save(tmp_path / "e.safetensors")
    back = Explanation.load(path)
    torch.testing.assert_close(back.attributions, e.attributions, rtol=0, atol=0)
    torch.testing.assert_close(back.inputs, e.inputs, rtol=0, atol=0)
    torch.testing.assert_close(back.scores, e.scores, rtol=0, atol=0)
    assert torch.equal(back.target_indices, e.target_indices)
    assert set(back.extras) == {"delta"}
    torch.testing.assert_close(back.delta, e.delta, rtol=0, atol=0)
    assert back.method == e.method and back.target == e.target and back.layer == e.layer
    assert dict(back.settings) == dict(e.settings)
    assert back.n_evaluations == 48 and back.seconds == e.seconds and back.signed is True
    # the loaded explanation displays like the original
    assert isinstance(back.plot(), Figure)
    assert back.to_html().count(DATA_URI) == 6

    u = _expl(2, signed=False, inputs=False)
    back_u = Explanation.load(u.save(tmp_path / "u.safetensors"))
    assert back_u.signed is False and back_u.inputs is None and back_u.layer is None
    assert back_u.plot(colorbar=False).axes[0].images[-1].get_clim()[0] == 0.0
