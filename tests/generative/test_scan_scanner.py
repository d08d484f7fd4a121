"""SubsetScanner on model layers: reduce, model left unchanged, results, views."""

from __future__ import annotations

import pytest
import torch

import seethrough.generative._scanviews  # noqa: F401  (registers the views)
from seethrough._core.errors import ConfigError, InputError, NotFittedError
from seethrough.generative.scanning import ScanResult, SubsetScanner, detection_auc, planted_check
from seethrough.testing import TinyCNN


def _snapshot(model):
    return [p.detach().clone() for p in model.parameters()], model.training


def test_scanner_on_conv_layer_reduce_and_model_unchanged():
    torch.manual_seed(0)
    model = TinyCNN().train()
    params, _ = _snapshot(model)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(120, 3, 16, 16, generator=g)
    other = torch.rand(40, 3, 16, 16, generator=g) * 3.0  # brighter: larger activations
    with pytest.warns(UserWarning):
        scanner = SubsetScanner(model, layer="features.1", reduce="mean").fit(real)
    assert scanner.background_.shape == (120, 8) and scanner.node_shape_ == (8,)
    with pytest.warns(UserWarning):
        r_real = scanner.scan(torch.rand(40, 3, 16, 16, generator=g))
        r_other = scanner.scan(other)
    assert model.training and all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    assert not model._forward_hooks and not model.features[1]._forward_hooks
    assert detection_auc(r_real.scores, r_other.scores) > 0.9
    assert r_other.layer == "features.1" and r_other.reduce == "mean" and r_other.n_background == 120


def test_scanner_without_reduce_keeps_every_element():
    model = TinyCNN().eval()
    real = torch.rand(60, 3, 16, 16)
    scanner = SubsetScanner(model, layer="features.4", batching=16).fit([real[:30], real[30:]])
    assert scanner.node_shape_ == (12, 8, 8)
    r = scanner.scan(real[:5])
    assert r.subsets.shape == (5, 12 * 8 * 8) and r.node_masks().shape == (5, 12, 8, 8)


def test_result_groups_save_and_views(tmp_path):
    r = planted_check(nodes=32, planted=4, n_background=200, n_test=30)
    scanner = SubsetScanner(None).fit_activations(torch.relu(torch.randn(200, 32)))
    res = scanner.scan_activations(torch.relu(torch.randn(30, 32)) + (torch.arange(30) >= 15)[:, None] * 3.0)
    groups = ["real"] * 15 + ["shifted"] * 15
    dist = res.size_distribution(groups)
    assert set(dist) == {"real", "shifted"} and int(dist["real"].sum()) == 15 and dist["real"].shape == (33,)
    freq = res.node_frequency(groups)
    assert freq["shifted"].shape == (32,) and float(freq["shifted"].max()) <= 1.0
    rows = res.group_summary(groups)
    assert rows[1]["mean score"] > rows[0]["mean score"]
    assert res.nodes(20) == torch.nonzero(res.subsets[20]).reshape(-1).tolist()
    back = ScanResult.load(res.save(tmp_path / "scan.safetensors"))
    assert torch.equal(back.subsets, res.subsets) and back.node_shape == res.node_shape
    fig = res.plot(groups=groups)
    assert fig.axes
    assert "<table" in res.to_html(groups=groups)
    assert r.plot().axes and "precision" in r.to_html()
    with pytest.raises(InputError, match="labels"):
        res.size_distribution(["a"])


def test_scanner_errors():
    with pytest.raises(NotFittedError):
        SubsetScanner(None).scan_activations(torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="alpha_max"):
        SubsetScanner(None, alpha_max=1.5).fit_activations(torch.zeros(5, 3))
    with pytest.raises(ConfigError, match="reduce"):
        SubsetScanner(None, reduce="median").fit_activations(torch.zeros(5, 3))
    with pytest.raises(ConfigError, match="no model"):
        SubsetScanner(None).fit(torch.zeros(5, 3))
    s = SubsetScanner(None).fit_activations(torch.randn(10, 4))
    with pytest.raises(InputError, match="shape|nodes"):
        s.scan_activations(torch.randn(3, 5))
