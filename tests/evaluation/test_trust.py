"""The trust report: every applicable metric per method, rankings, HTML, budgets, CLI."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import seethrough as st
from seethrough.app.cli import main
from seethrough.evaluation.registry import METRIC_FAMILIES, get_metric, metrics, select_metrics
from seethrough.evaluation.trust import _ranks, trust_report
from seethrough.testing.models import TinyCNN, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, snapshot  # noqa: E402

pytestmark = pytest.mark.xdist_group("trust")


@pytest.fixture(scope="module")
def tiny():
    model = seeded(TinyCNN).eval()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 16, 16, generator=gen)
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 4:10, 4:10] = True
    return model, x, masks


_FAST = {
    "deletion": {"steps": 8},
    "insertion": {"steps": 8},
    "road": {"percentages": (0.2, 0.5)},
    "region_perturbation": {"patch_size": 4, "steps": 4},
    "max_sensitivity": {"n_samples": 3},
    "avg_sensitivity": {"n_samples": 3},
    "infidelity": {"n_perturbations": 8},
    "faithfulness_correlation": {"n_subsets": 8, "subset_size": 16},
}


def _fast_settings(names):
    out = {}
    for n in names:
        if n in _FAST:
            out[n] = _FAST[n]
    return out


def test_registry_lists_every_family_with_directions():
    table = metrics()
    assert {s.family for s in table.values()} == set(METRIC_FAMILIES)
    assert get_metric("deletion").higher_is_better is False
    assert get_metric("insertion").higher_is_better is True
    assert all("masks" in s.needs for s in table.values() if s.family == "localization")
    # Without masks, no localization metric is selected.
    assert not any(s.family == "localization" for s in select_metrics(None, have_masks=False))


def test_unknown_metric_suggests_names():
    with pytest.raises(st.ConfigError, match="deletion"):
        get_metric("deleton")
    with pytest.raises(st.ConfigError, match="family"):
        get_metric("localization")
    with pytest.raises(st.ConfigError, match="masks"):
        select_metrics(["pointing_game"], have_masks=False)


def test_ranks_follow_direction_and_share_ties():
    assert _ranks({"a": 1.0, "b": 2.0, "c": 3.0}, True) == {"a": 3.0, "b": 2.0, "c": 1.0}
    assert _ranks({"a": 1.0, "b": 2.0, "c": 3.0}, False) == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert _ranks({"a": 1.0, "b": 1.0, "c": float("nan")}, True) == {"a": 1.5, "b": 1.5, "c": 3.0}


def test_report_runs_every_applicable_metric_and_leaves_model_unchanged(tiny):
    model, x, masks = tiny
    names = [s.name for s in select_metrics(None, have_masks=True)]
    snap = snapshot(model, x)
    rep = trust_report(
        model,
        x,
        ["saliency", "gradcam"],
        masks=masks,
        layer="features.3",
        metric_settings=_fast_settings(names),
        randomization=True,
        seed=1,
    )
    assert_unchanged(model, snap, x)
    assert rep.methods == ("saliency", "gradcam")
    assert [s.name for s in rep.metrics] == names
    # Every cell has a value or a stated reason.
    for m in rep.methods:
        for n in names:
            assert (n in rep.results[m]) != (n in rep.failures.get(m, {})), (m, n)
    # Each family is ranked, ranks within 1..2.
    assert set(rep.rankings) <= set(METRIC_FAMILIES) and "localization" in rep.rankings
    for fam in rep.rankings.values():
        assert all(1.0 <= r <= 2.0 for r in fam.values())
    # Every method explained the same (predicted) classes.
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert torch.equal(rep.target_indices, pred)
    for e in rep.explanations.values():
        assert torch.equal(e.target_indices.cpu(), pred)
    assert set(rep.sanity) == {"saliency", "gradcam"}
    html = rep.to_html()
    assert "Ranking per metric family" in html and "Sanity check" in html and "data:image/png" in html
    table = rep.table()
    assert table[0]["method"] == "saliency" and set(names) <= set(table[0])


def test_report_is_deterministic(tiny):
    model, x, masks = tiny
    kw = dict(
        masks=masks,
        layer="features.3",
        families=["faithfulness"],
        randomization=False,
        seed=5,
        metric_settings=_fast_settings(
            [s.name for s in select_metrics(None, families=["faithfulness"], have_masks=True)]
        ),
    )
    a = trust_report(model, x, ["saliency"], **kw)
    b = trust_report(model, x, ["saliency"], **kw)
    for n, r in a.results["saliency"].items():
        assert torch.equal(r.values, b.results["saliency"][n].values), n


def test_time_budget_lists_what_was_skipped(tiny):
    model, x, _ = tiny
    rep = trust_report(
        model, x, ["saliency", "input_x_gradient"], families=["complexity"], randomization=False, time_budget=1e-9
    )
    assert rep.failures and all("time budget" in why for d in rep.failures.values() for why in d.values())
    assert any("time budget" in n for n in rep.notes)
    assert all(math.isnan(v) for row in rep.table() for k, v in row.items() if k != "method")


def test_max_samples_and_bad_input(tiny):
    model, x, masks = tiny
    rep = trust_report(model, x, ["saliency"], families=["complexity"], randomization=False, max_samples=2)
    assert rep.inputs.shape[0] == 2 and rep.results["saliency"]["sparseness"].values.numel() == 2
    with pytest.raises(st.ConfigError, match="at least one method"):
        trust_report(model, x, [])
    with pytest.raises(st.ConfigError, match="layer"):
        trust_report(model, x, ["gradcam"])
    with pytest.raises(st.InputError, match="masks"):
        trust_report(model, x, ["saliency"], masks=masks[:, :8])
    with pytest.raises(st.ConfigError, match="not run"):
        trust_report(model, x, ["saliency"], families=["complexity"], metric_settings={"deletion": {"steps": 4}})
    with pytest.raises(st.InputError, match="Attribution"):
        trust_report(model, x, [lambda m: 3])


def test_method_instances_and_factories_are_accepted(tiny):
    model, x, _ = tiny
    rep = trust_report(
        model,
        x,
        [st.GradCAM(model, layer=model.features[3]), lambda m: st.Saliency(m)],
        families=["randomization", "complexity"],
        randomization=False,
        metric_settings={"model_randomization": {}},
    )
    assert rep.methods == ("gradcam", "saliency")
    assert "model_randomization" in rep.results["gradcam"]


def test_metric_errors_are_reported_per_cell(tiny):
    # Precomputed-map metrics run; a metric that cannot apply records its error, not a crash:
    # here a layer-sized map has no pixel to delete.
    model, x, _ = tiny
    rep = trust_report(
        model,
        x,
        ["saliency"],
        metrics=["sparseness", "deletion"],
        randomization=False,
        metric_settings={"deletion": {"steps": 0}},
    )
    assert "sparseness" in rep.results["saliency"]
    assert "deletion" in rep.failures["saliency"] and "steps" in rep.failures["saliency"]["deletion"]


@pytest.mark.slow
def test_cli_trust_writes_a_report(tmp_path, capsys):
    out = tmp_path / "t.html"
    code = main(
        [
            "trust",
            "--n",
            "2",
            "--methods",
            "saliency,gradcam",
            "--families",
            "localization,complexity",
            "--no-randomization",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.is_file()
    text = capsys.readouterr().out
    assert "pointing_game" in text and "Report written" in text
    assert main(["trust", "--list-metrics"]) == 0
    assert main(["trust", "--n", "2", "--metrics", "nope", "--out", str(out)]) == 2


def test_randomization_metric_read_off_the_curves_equals_the_metric(tiny):
    from seethrough.evaluation.randomization import model_randomization

    model, x, _ = tiny
    rep = trust_report(model, x, ["saliency"], metrics=["model_randomization"], randomization=True, seed=2)
    direct = model_randomization(model, x, st.Saliency(model), target=rep.target_indices, seed=2)
    assert torch.allclose(rep.results["saliency"]["model_randomization"].values, direct.values)
    assert "saliency" in rep.sanity


def test_avg_sensitivity_shares_the_draws_of_max_sensitivity(tiny):
    from seethrough.evaluation import avg_sensitivity

    model, x, _ = tiny
    rep = trust_report(
        model,
        x,
        ["saliency"],
        metrics=["max_sensitivity", "avg_sensitivity"],
        randomization=False,
        metric_settings={"max_sensitivity": {"n_samples": 4}, "avg_sensitivity": {"n_samples": 4}},
        seed=3,
    )
    direct = avg_sensitivity(model, x, st.Saliency(model), target=rep.target_indices, n_samples=4, seed=3)
    assert torch.allclose(rep.results["saliency"]["avg_sensitivity"].values, direct.values)


def test_tabular_inputs_and_small_images_do_not_crash():
    from torch import nn

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    rep = trust_report(
        mlp,
        x,
        ["saliency"],
        families=["randomization", "faithfulness", "complexity"],
        metric_settings={
            "infidelity": {"n_perturbations": 8},
            "faithfulness_correlation": {"n_subsets": 8, "subset_size": 2},
            "deletion": {"steps": 3},
            "insertion": {"steps": 3},
        },
    )
    assert "road" not in {s.name for s in rep.metrics} and any("non-image" in n for n in rep.notes)
    assert "deletion" in rep.results["saliency"] and "insertion" in rep.results["saliency"]
    assert set(rep.sanity["saliency"].similarity) == {"spearman_abs", "spearman"}
    small = seeded(TinyCNN).eval()
    xs = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    rep = trust_report(small, xs, ["saliency"], families=["complexity"])
    assert "saliency" in rep.sanity and "sparseness" in rep.results["saliency"]


def test_a_target_object_is_kept_with_its_output(tiny):
    model, x, _ = tiny
    rep = trust_report(
        model, x, ["saliency"], target=st.Class(1, output="softmax"), families=["complexity"], randomization=False
    )
    assert "softmax" in rep.explanations["saliency"].target
    rep = trust_report(
        model, x, ["saliency"], target=st.ClassDifference(0, 1), families=["complexity"], randomization=False
    )
    assert rep.target_indices is None and "ClassDifference" in rep.explanations["saliency"].target


def test_missing_values_do_not_rank_last():
    from seethrough.evaluation.trust import family_rankings

    specs = [get_metric("sparseness"), get_metric("entropy_complexity")]
    r = lambda v: st.evaluation.MetricResult("m", torch.tensor([v]), True)  # noqa: E731
    results = {"a": {"sparseness": r(0.9), "entropy_complexity": r(5.0)}, "b": {"sparseness": r(0.5)}, "c": {}}
    ranks = family_rankings(results, specs, ["a", "b", "c"])["complexity"]
    # b misses entropy: ranked on sparseness alone (2nd), not last on entropy; c has no rank at all.
    assert ranks["a"] == 1.0 and ranks["b"] == 2.0 and math.isnan(ranks["c"])
