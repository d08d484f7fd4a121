"""Plots and HTML of concept results, and the two demo sections."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

from seethrough import zoo
from seethrough.app.concepts import run_null_check, run_tcav
from seethrough.app.demo.concepts import dissection_section, tcav_section
from seethrough.concepts import (
    TCAV,
    Dissection,
    DissectionResult,
    NullCheckResult,
    TCAVResult,
    add_dissection,
    add_tcav,
    plot_dissection,
    plot_tcav,
)
from seethrough.concepts.views import dissection_html, tcav_html, unit_examples
from seethrough.data.concepts import concept_scenes, random_images
from seethrough.report.html import HtmlReport

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _concept_models import PlantedDetectors, RednessNet  # noqa: E402


@pytest.fixture(scope="module")
def tcav_result():
    return run_tcav(
        TCAV(RednessNet().eval(), layer="features.1", random_runs=4, n_examples=10),
        random_images(6, seed=0, size=32),
        ["red", "dots"],
        classes=[0, 1],
    )


@pytest.fixture(scope="module")
def planted():
    scenes = concept_scenes(40, seed=2)
    model = PlantedDetectors().eval()
    return model, scenes, Dissection(model, layers=["relu2", "conv1"]).dissect(scenes)


def test_plots_are_pure_and_take_an_axes(tcav_result, planted):
    from matplotlib.figure import Figure

    fig = plot_tcav(tcav_result)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["red", "dots"]
    own = Figure()
    target = own.add_subplot(1, 2, 2)
    assert plot_tcav(tcav_result, ax=target) is own
    fig2 = plot_dissection(planted[2])
    assert [t.get_text() for t in fig2.axes[0].get_xticklabels()] == ["relu2", "conv1"]


def test_unit_examples_outline_where_the_unit_fires(planted):
    model, scenes, result = planted
    unit = PlantedDetectors.RED
    imgs, masks = unit_examples(model, "relu2", unit, float(result["relu2"].thresholds[unit]), scenes.images, k=3)
    assert imgs.shape == (3, 3, 64, 64) and masks.shape == (3, 64, 64) and masks.dtype == torch.bool
    # the strongest red-unit scenes are red where the unit fires
    red = scenes.masks["red"]
    idx = [int((scenes.images == imgs[i]).flatten(1).all(1).nonzero()[0]) for i in range(3)]
    overlap = (masks & red[idx]).sum() / masks.sum().clamp(min=1)
    assert float(overlap) > 0.5


def test_html_of_results(tcav_result, planted):
    model, scenes, result = planted
    null = run_null_check(
        TCAV(RednessNet().eval(), layer="features.1", random_runs=4, n_examples=10),
        random_images(6, seed=0, size=32),
        classes=[0],
        trials=2,
    )
    report = HtmlReport("t")
    add_tcav(report, tcav_result, null=null)
    add_dissection(report, result, model=model, scenes=scenes, examples=2)
    html = report.render()
    assert "TCAV score" in html and "Null check" in html and "Bonferroni" in html
    assert "horizontal_stripes" in html and "strongest scenes" in html
    assert html.count("data:image/png;base64,") >= 4


def test_results_plot_and_html_through_their_registered_views(tcav_result, planted, tmp_path):
    from matplotlib.figure import Figure

    model, scenes, result = planted
    fig = tcav_result.plot()
    assert isinstance(fig, Figure) and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["red", "dots"]
    html = tcav_result.to_html()
    assert html == tcav_html(tcav_result) and "TCAV score" in html and "Bonferroni" in html
    assert "data:image/png;base64," in html
    own = Figure()
    assert result.plot(ax=own.add_subplot()) is own
    d_html = result.to_html(model=model, scenes=scenes, examples=2)
    assert "strongest scenes" in d_html and d_html.count("data:image/png;base64,") >= 2
    assert "strongest scenes" not in dissection_html(result)  # no model: no unit strips
    null = run_null_check(
        TCAV(RednessNet().eval(), layer="features.1", random_runs=4, n_examples=10),
        random_images(6, seed=0, size=32),
        classes=[0],
        trials=2,
    )
    assert isinstance(null.plot(), Figure) and "false-positive rate" in null.to_html()
    # the dissection (nested LayerDissection results) and the null check save and load
    back = DissectionResult.load(result.save(tmp_path / "d.safetensors"))
    assert list(back.layers) == list(result.layers) and back.kinds == result.kinds
    assert torch.equal(back["relu2"].iou, result["relu2"].iou) and back["relu2"].labels == result["relu2"].labels
    assert back.table() == result.table() and back.to_text() == result.to_text()
    nback = NullCheckResult.load(null.save(tmp_path / "n.safetensors"))
    assert nback.interval == null.interval and torch.equal(nback.p_values, null.p_values)
    with pytest.raises(Exception, match="holds a NullCheckResult"):
        TCAVResult.load(tmp_path / "n.safetensors")


stripes_ready = (zoo.WEIGHTS_DIR / "stripes-cnn.safetensors").is_file() and "stripes-cnn" in zoo.available()


@pytest.mark.slow
@pytest.mark.skipif(not stripes_ready, reason="stripes-cnn weights not trained")
def test_tcav_section():
    report = HtmlReport("demo")
    seen = []
    t0 = time.perf_counter()
    tcav_section(report, progress=seen.append)
    assert seen == ["tcav"]
    html = report.render()
    assert "Concepts: TCAV" in html and "stripes" in html and "Null check" in html
    assert time.perf_counter() - t0 < 300  # a guard against runaway settings, not a timing test


@pytest.mark.slow
def test_dissection_section():
    report = HtmlReport("demo")
    dissection_section(report)
    html = report.render()
    assert "Concepts: network dissection" in html and "features.16" in html and "strongest scenes" in html
