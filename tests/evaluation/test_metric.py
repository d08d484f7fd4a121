"""The Metric base (prepare, score, result), the registry built from it, the results' save/load
and views, and the core services the family now uses (per-sample targets, layer order)."""

from __future__ import annotations

import inspect
from html import escape

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from seethrough._core.result import Result
from seethrough._core.targets import Class
from seethrough.attribution import Saliency
from seethrough.evaluation import (
    Metric,
    MetricResult,
    ModelRandomizationCheck,
    SanityResult,
    TrustReport,
    deletion,
    mask_iou,
    max_sensitivity,
    pixel_maps,
    randomization_layers,
    sparseness,
    trust_report,
)
from seethrough.evaluation.faithfulness import Deletion
from seethrough.evaluation.metric import MapMetric, Score
from seethrough.evaluation.registry import metrics
from seethrough.testing import TinyCNN, seeded


@pytest.fixture(scope="module")
def tiny():
    model = seeded(TinyCNN).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    maps = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    return model, x, maps


# --------------------------------------------------------------------------- the base


def test_every_registered_metric_is_a_metric_and_the_registry_reads_its_class():
    table = metrics()
    assert len(table) == 16
    for name, spec in table.items():
        cls = type(spec.fn)
        assert isinstance(spec.fn, Metric) and callable(spec.fn)
        assert (
            (spec.name, spec.family, spec.higher_is_better, spec.needs)
            == (cls.name, cls.family, cls.higher_is_better, cls.needs)
            == (name, spec.fn.family, spec.fn.higher_is_better, spec.fn.needs)
        )
        assert spec.fn.__name__ == name and spec.summary == (cls.__doc__ or "").strip().splitlines()[0]


def test_the_signature_is_the_familys_one_with_the_metrics_defaults():
    sig = inspect.signature(deletion)
    assert list(sig.parameters)[:6] == ["model", "inputs", "maps", "target", "batching", "seed"]
    assert sig.parameters["steps"].default is None and sig.parameters["baseline"].default == 0.0
    assert sig.parameters["steps"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(mask_iou).parameters)[3] == "masks"  # localization: the extra input first
    assert inspect.signature(Deletion(baseline="blur")).parameters["baseline"].default == "blur"


def test_unknown_settings_are_refused_like_a_function_would(tiny):
    model, x, maps = tiny
    with pytest.raises(TypeError, match="unexpected keyword argument 'stepz'.*steps"):
        deletion(model, x, maps, stepz=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        Deletion(nope=1)


def test_a_configured_metric_equals_the_call_with_those_settings(tiny):
    model, x, maps = tiny
    configured = Deletion(baseline="blur", steps=4)
    a = configured(model, x, maps)
    b = deletion(model, x, maps, baseline="blur", steps=4)
    assert torch.equal(a.values, b.values) and a.settings["baseline"] == "blur"
    c = configured(model, x, maps, steps=2)  # a call's setting overrides the configured one
    assert c.settings["steps"] == 2 and c.curves["scores"].shape == (3, 3)
    assert "baseline='blur'" in repr(configured)


def test_a_new_metric_is_a_subclass_with_one_score():
    class PeakShare(MapMetric):
        """Share of the total absolute relevance held by the largest position."""

        name = "peak_share"
        family = "complexity"
        higher_is_better = True
        defaults = {"reduce": "abs_sum"}
        allow_zero_maps = True

        def score(self, run):
            pm = pixel_maps(run.maps, run.view, reduce=run.settings["reduce"]).reshape(run.x.shape[0], -1).abs()
            return Score(pm.amax(dim=1) / pm.sum(dim=1), settings={"reduce": run.settings["reduce"]})

    x = torch.zeros(2, 1, 4, 4)
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 0, 0] = 1.0
    maps[1] = 1.0
    r = PeakShare()(None, x, maps)
    assert r.name == "peak_share" and r.values.tolist() == [1.0, 1 / 16]
    assert dict(r.settings) == {"reduce": "abs_sum", "maps": "precomputed"} and r.n_evaluations == 0
    with pytest.raises(Exception, match="reduce="):
        PeakShare()(None, x, maps, reduce="median")


def test_pixel_maps_take_the_core_vocabulary():
    x = torch.zeros(1, 3, 2, 2)
    maps = torch.tensor([3.0, -4.0, 1.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert bool((pixel_maps(maps, x, reduce="max") == 3.0).all())
    assert bool((pixel_maps(maps, x, reduce="max_abs") == 4.0).all())


# --------------------------------------------------------------------------- core services


def test_sensitivity_takes_the_samples_of_a_per_sample_target(tiny):
    # A callable target that reads one class per sample must follow each perturbed copy's sample
    # (Target.take): it then explains exactly what the class indices explain.
    model, x, _ = tiny
    idx = torch.tensor([2, 0, 1])

    def per_sample(out, samples):
        return out[torch.arange(out.shape[0]), idx.to(samples.device)[samples]]

    method = Saliency(model)
    by_class = max_sensitivity(model, x, method, target=Class(idx), n_samples=3, batching=4)
    by_callable = max_sensitivity(model, x, method, target=per_sample, n_samples=3, batching=4)
    assert torch.allclose(by_class.extras["sensitivities"], by_callable.extras["sensitivities"])


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return {"logits": self.lin(x)}


class _Wrapped(nn.Module):
    """A model whose parameterised submodule returns a dict (as many library models do)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.head = _DictOut()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.head(self.first(x))["logits"] * self.scale


def test_layer_order_is_recorded_whatever_a_layer_returns():
    layers, skipped = randomization_layers(seeded(_Wrapped), torch.rand(2, 4))
    assert layers == ["first", "head.lin"]  # head returns a dict: still recorded, in forward order
    assert [name for name, _ in skipped] == [""]  # the model's own scale has no reset_parameters()


# --------------------------------------------------------------------------- results and views


def test_metric_results_save_load_plot_and_html(tiny, tmp_path):
    model, x, maps = tiny
    r = deletion(model, x, maps, steps=4)
    assert isinstance(r, Result)
    back = MetricResult.load(r.save(tmp_path / "deletion.safetensors"))
    assert torch.equal(back.values, r.values) and torch.equal(back.curves["scores"], r.curves["scores"])
    assert dict(back.settings) == dict(r.settings) and back.higher_is_better is False
    assert isinstance(r.plot(), Figure) and isinstance(sparseness(None, x, maps).plot(), Figure)
    html = r.to_html()
    assert "deletion" in html and "data:image/png;base64," in html


def test_sanity_results_save_load_plot_and_html(tiny, tmp_path):
    model, x, _ = tiny
    res = ModelRandomizationCheck("saliency", similarity=("spearman",), n_examples=2).run(model, x)
    back = SanityResult.load(res.save(tmp_path / "sanity.safetensors"))
    assert back.stages == res.stages and back.verdicts == res.verdicts
    assert torch.equal(back.similarity["spearman"], res.similarity["spearman"])
    assert isinstance(res.plot(), Figure)
    html = res.to_html()
    assert escape(res.verdict_text()) in html and html.count("data:image/png;base64,") == 2


def test_trust_report_is_a_result_saved_as_html_or_as_one_file(tiny, tmp_path):
    model, x, _ = tiny
    rep = trust_report(
        model,
        x,
        ["saliency"],
        metrics=["deletion", "sparseness"],
        metric_settings={"deletion": {"steps": 4}},
        randomization=False,
    )
    assert isinstance(rep, Result)
    page = rep.save(tmp_path / "trust.html").read_text()
    assert "Ranking per metric family" in page and "deletion" in page and page.startswith("<!doctype html>")
    back = TrustReport.load(rep.save(tmp_path / "trust.safetensors"))
    assert [s.name for s in back.metrics] == ["deletion", "sparseness"] and back.metrics == rep.metrics
    assert back.table() == rep.table()
    assert torch.equal(back.explanations["saliency"].attributions, rep.explanations["saliency"].attributions)
