"""The influence family on the core services: results are ``Result`` objects (save/load,
registered views), per-sample targets follow the selected instances through
``Target.take``, random draws come from ``seethrough._core.seeds``, and the family imports
no app, zoo or bundled data."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

import seethrough as st
import seethrough.influence
from seethrough._core.result import Result
from seethrough._core.targets import resolve_target
from seethrough.influence import (
    ClassComparison,
    ClassInfluence,
    EssenceExperiment,
    EssenceResult,
    InfluenceResult,
    InternalInfluence,
    NeuronMaps,
    NeuronVisualization,
)


def _same(a, b) -> None:
    """Fields of two results equal (tensors exactly, nested results and mappings recursively)."""
    if isinstance(a, Result):
        assert type(a) is type(b)
        for name in a.__dataclass_fields__:
            _same(getattr(a, name), getattr(b, name))
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    elif hasattr(a, "items"):
        assert list(a.keys()) == list(b.keys())
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    else:
        assert a == b or (a != a and b != b), (a, b)


def test_results_are_core_results_that_save_and_load(model, data, tmp_path):
    x, y = data
    res = InternalInfluence(model, layer="features.3", distribution="class").compute(x, 1, labels=y)
    maps = NeuronVisualization(model, layer="features.3", method="saliency").visualize(x[:2], res, k=2)
    comp = ClassInfluence(model, layer="features.3", max_instances=2, method="saliency").explain(x, y, 1, 2)
    ess = EssenceExperiment(model, layer="features.4", ks=(1, 2), n_random=2).run(x, y, x, y, 1)
    for r, cls in ((res, InfluenceResult), (maps, NeuronMaps), (comp, ClassComparison), (ess, EssenceResult)):
        assert isinstance(r, Result)
        path = r.save(tmp_path / f"{cls.__name__}.safetensors")
        back = cls.load(path)
        _same(r, back)
        with pytest.raises(TypeError):
            r.settings["layer"] = "x"  # mappings deep-frozen by the base
    assert isinstance(ClassComparison.load(tmp_path / "ClassComparison.safetensors").influence, InfluenceResult)


def test_views_are_registered_for_plot_and_html(model, data):
    x, y = data
    res = InternalInfluence(model, layer="features.3").compute(x, 1)
    assert isinstance(res.plot(k=2), Figure)
    html = res.to_html(k=2)
    assert html.count("<img") == 1 and "most influential neurons" in html and "<script" not in html
    ess = EssenceExperiment(model, layer="features.4", ks=(1,), n_random=2).run(x, y, x, y, 1)
    assert isinstance(ess.plot(metric="auc"), Figure)
    assert "Essence of class &#x27;1&#x27;" in ess.to_html() and ess.to_html().count("<img") == 1
    maps = NeuronVisualization(model, layer="features.3", method="saliency").visualize(x[:2], [0, 1])
    assert maps.to_html(n_show=2).count("<img") == 1


def test_per_sample_targets_are_taken_for_the_selected_instances(model, data):
    x, y = data
    targets = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3])
    res = InternalInfluence(model, layer="features.3").compute(x, st.Class(targets), labels=y, of_class=2)
    ref = InternalInfluence(model, layer="features.3").compute(x[y == 2], st.Class(targets[y == 2]))
    torch.testing.assert_close(res.influence, ref.influence)
    diff = InternalInfluence(model, layer="features.3").compute(x, st.ClassDifference(targets, 0), labels=y, of_class=2)
    ref = InternalInfluence(model, layer="features.3").compute(x[y == 2], st.ClassDifference(targets[y == 2], 0))
    torch.testing.assert_close(diff.influence, ref.influence)
    # one index per input is checked against the inputs before the selection takes from it
    with pytest.raises(st.TargetError, match="got 4 target indices for 12 samples"):
        InternalInfluence(model, layer="features.3").compute(x, st.Class([0, 1, 2, 3]), labels=y, of_class=0)


def test_resolve_target_runs_the_model_only_when_needed(model, data):
    x, _ = data
    t, n = resolve_target(model, x, st.Class(1))
    assert n == 0 and isinstance(t, st.Class)
    t, n = resolve_target(model, x, st.Predicted())
    with torch.no_grad():
        assert n == 12 and t.index.tolist() == model(x).argmax(dim=1).tolist()
    res = InternalInfluence(model, layer="features.3", batching=4).compute(x, None)
    fixed = InternalInfluence(model, layer="features.3", batching=4).compute(x, t)
    torch.testing.assert_close(res.influence, fixed.influence)
    assert res.n_evaluations == fixed.n_evaluations + 12


def test_random_draws_do_not_depend_on_the_other_ks(model, data):
    x, y = data
    a = EssenceExperiment(model, layer="features.4", ks=(1, 3), n_random=3, seed=5).run(x, y, x, y, 1)
    b = EssenceExperiment(model, layer="features.4", ks=(1,), n_random=3, seed=5).run(x, y, x, y, 1)
    torch.testing.assert_close(a.random_auc[0], b.random_auc[0])
    torch.testing.assert_close(a.random_accuracy[0], b.random_accuracy[0])
    with pytest.raises(st.ConfigError, match="seed must be an int"):
        EssenceExperiment(model, layer="features.4", ks=(1,), seed=1.5).run(x, y, x, y, 1)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_the_family_is_a_pure_library():
    root = Path(seethrough.influence.__file__).parent
    forbidden = ("seethrough.app", "seethrough.cli", "seethrough.zoo", "seethrough.data")
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: seethrough.influence.<...> or seethrough.<...>
                    base = ("seethrough.influence." if node.level == 1 else "seethrough.") + base
                base = base.rstrip(".")
                modules = [base] + [f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")]
            for name in modules:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
                parts = name.split(".")
                if len(parts) > 2 and parts[0] == "seethrough" and parts[1] not in ("influence", "_core"):
                    assert not any(p.startswith("_") for p in parts[2:]), f"{path.name} imports the private {name}"
    assert not hasattr(seethrough.influence, "influence_section")
