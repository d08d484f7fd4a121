"""Neuron visualisations through the existing attribution methods, the weighted top-neuron
target, class and comparative explanations, plots (ax= in, figure out) and HTML."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

import seethrough as st
from seethrough.influence import (
    ClassComparison,
    ClassInfluence,
    InternalInfluence,
    NeuronVisualization,
    TopNeurons,
    plot_comparison,
    plot_influence,
    plot_neuron_maps,
)
from seethrough.testing import TinyMLP, seeded


def test_neuron_maps_are_the_attribution_of_the_channel_activation(model, data):
    x, _ = data
    maps = NeuronVisualization(model, layer="features.3", method_settings={"steps": 8}).visualize(x[:3], [5, 2])
    assert maps.neurons.tolist() == [5, 2] and maps.neuron == "channel"
    for j in (5, 2):
        ref = st.IntegratedGradients(model, steps=8).attribute(x[:3], st.Channel("features.3", j))
        torch.testing.assert_close(maps.maps[j].attributions, ref.attributions)
    assert bool(torch.isnan(maps.influence).all())
    sal = NeuronVisualization(model, layer="features.3", method="saliency").visualize(x[:2], torch.tensor([1]))
    ref = st.Saliency(model).attribute(x[:2], st.Channel("features.3", 1))
    torch.testing.assert_close(sal.maps[1].attributions, ref.attributions)


def test_neuron_maps_of_a_flat_slice_use_neuron_targets():
    mlp = seeded(TinyMLP)
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    maps = NeuronVisualization(mlp, layer="net.0", method="saliency").visualize(x, [4])
    ref = st.Saliency(mlp).attribute(x, st.Neuron("net.0", 4))
    torch.testing.assert_close(maps.maps[4].attributions, ref.attributions)
    assert maps.neuron == "unit"


def test_visualising_the_top_neurons_of_an_influence_result(model, data):
    x, y = data
    res = InternalInfluence(model, layer="features.3", distribution="class").compute(x, 1, labels=y)
    maps = NeuronVisualization(model, layer="features.3", method="saliency").visualize(x[:2], res, k=2)
    v = res.neuron_influence
    expected = [j for j in res.top_positive(2).tolist() if v[j] > 0] + [
        j for j in res.top_negative(2).tolist() if v[j] < 0
    ]
    assert len(expected) >= 2
    assert maps.neurons.tolist() == expected
    torch.testing.assert_close(maps.influence, res.neuron_influence[expected])
    with pytest.raises(st.ConfigError, match="same layer"):
        NeuronVisualization(model, layer="features.4").visualize(x[:2], res)


def test_top_neurons_target_is_the_weighted_sum_of_channel_means(model, data):
    x, _ = data
    sal = st.Saliency(model, abs=False)
    combined = sal.attribute(x[:2], TopNeurons("features.3", [3, 7], [0.25, -0.75])).attributions
    a = sal.attribute(x[:2], st.Channel("features.3", 3)).attributions
    b = sal.attribute(x[:2], st.Channel("features.3", 7)).attributions
    torch.testing.assert_close(combined, 0.25 * a - 0.75 * b, atol=1e-6, rtol=1e-5)
    with pytest.raises(st.TargetError, match="out of range"):
        sal.attribute(x[:1], TopNeurons("features.3", [40]))


def test_class_and_comparative_explanations(model, data):
    x, y = data
    comp = ClassInfluence(model, layer="features.3", top=1, max_instances=2, method_settings={"steps": 8}).explain(
        x, y, 1, 3, class_names=["a", "b", "c", "d"]
    )
    assert isinstance(comp, ClassComparison)
    assert list(comp.maps) == [
        "integrated gradients: b",
        "integrated gradients: b - d",
        "influence-directed: b",
        "influence-directed: b - d",
    ]
    assert comp.instances.tolist() == [1, 5]
    assert comp.influence.instances.tolist() == [1, 5, 9]  # the influence uses every instance of the class
    torch.testing.assert_close(comp.inputs, x[[1, 5]])
    # the comparative influence ranks the neurons for b - d
    assert comp.comparative is not None and comp.comparative.target == "ClassDifference(1, 3)"
    assert comp.neurons.tolist() == comp.influence.top_positive(1).tolist()
    assert comp.comparative_neurons.tolist() == comp.comparative.top_positive(1).tolist()
    # with one neuron the influence-directed map is the attribution of that channel's mean
    j = int(comp.neurons[0])
    ref = st.IntegratedGradients(model, steps=8).attribute(x[[1, 5]], st.Channel("features.3", j)).attributions
    torch.testing.assert_close(comp.maps["influence-directed: b"].attributions, ref, atol=1e-6, rtol=1e-5)
    plain = st.IntegratedGradients(model, steps=8).attribute(x[[1, 5]], st.ClassDifference(1, 3)).attributions
    torch.testing.assert_close(comp.maps["integrated gradients: b - d"].attributions, plain)
    # the class-level map is the mean over the class's explained instances
    for name, e in comp.maps.items():
        torch.testing.assert_close(comp.class_maps[name], e.attributions.mean(dim=0))
    assert comp.settings["top"] == 1 and comp.settings["layer"] == "features.3"
    assert "b vs d" in repr(comp)


def test_single_class_explanation_without_contrast(model, data):
    x, y = data
    comp = ClassInfluence(model, layer="features.3", top=2, max_instances=3, method="saliency").explain(x, y, 0)
    assert comp.vs is None and comp.comparative is None and comp.comparative_neurons is None
    assert list(comp.maps) == ["integrated gradients: 0", "influence-directed: 0"]
    assert len(comp.neurons) == 2


def test_plots_draw_into_the_given_axes_and_return_the_figure(model, data):
    x, y = data
    res = InternalInfluence(model, layer="features.3", distribution="class").compute(x, 2, labels=y)
    maps = NeuronVisualization(model, layer="features.3", method="saliency").visualize(x[:2], res, k=1)
    comp = ClassInfluence(model, layer="features.3", max_instances=2, method="saliency").explain(x, y, 2, 0)
    for fn, obj in ((plot_influence, res), (plot_neuron_maps, maps), (plot_comparison, comp)):
        fig = Figure()
        ax = fig.add_subplot()
        assert fn(obj, ax=ax) is fig
        assert isinstance(fn(obj), Figure)
    assert isinstance(res.plot(), Figure) and isinstance(maps.plot(), Figure) and isinstance(comp.plot(), Figure)


def test_comparison_html_is_self_contained(model, data):
    x, y = data
    comp = ClassInfluence(model, layer="features.3", max_instances=2, method="saliency").explain(
        x, y, 2, 0, class_names=["<a>", "b", "c&", "d"]
    )
    html = comp.to_html(n_show=2)
    assert html.count("<img") == 1 and "data:image/png;base64," in html
    assert "c&amp;" in html and "<a>" not in html and "<script" not in html
    assert "ClassDifference(2, 0)" in html


def test_neuron_tables_leave_out_zero_influence_and_say_why():
    from torch import nn

    from seethrough.influence.views import neuron_rows, no_negative_note

    class PoolAfter(nn.Module):  # max-pooling after the slice: positions outside the max get 0
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(nn.functional.max_pool2d(self.conv(x), 4).flatten(1))

    torch.manual_seed(0)
    m = PoolAfter().eval()
    res = InternalInfluence(m, layer="conv").compute(torch.randn(3, 1, 4, 4), 0)
    assert bool((res.neuron_influence >= 0).all())
    rows = neuron_rows(res, 4)
    assert all(r["influence"] > 0 for r in rows) and not any(r["rank"].startswith("-") for r in rows)
    assert "negative at every position" in no_negative_note(res)
