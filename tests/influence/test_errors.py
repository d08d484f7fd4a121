"""Bad input and settings: the documented error class, a message naming the problem and the
fix, and the model left exactly as it was, after successful calls too."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import seethrough as st
from seethrough.influence import ClassInfluence, EssenceExperiment, InternalInfluence, NeuronVisualization
from seethrough.testing import DeadBranchNet, ReusedReLUNet, TinyCNN, TinyMLP, TinyResNet, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, freeze_some, snapshot  # noqa: E402


class NeverRuns(nn.Module):
    """``unused`` is a submodule that forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 3)
        self.unused = nn.Linear(10, 4)

    def forward(self, x):
        return self.fc(x)


@pytest.fixture
def cnn():
    model = seeded(TinyCNN)
    freeze_some(model)
    return model


@pytest.fixture
def x():
    return torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))


LABELS = torch.tensor([0, 1, 2, 0, 1, 2])


def expect_error(model, call, error, *words, inputs=None):
    snap = snapshot(model, inputs)
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert re.search(re.escape(word), message, re.IGNORECASE), f"{word!r} not in message: {message}"
    assert_unchanged(model, snap, inputs)
    return message


def test_dead_branch_slice_is_not_on_the_path():
    model = seeded(DeadBranchNet)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    for dist in ("point", "path"):
        expect_error(
            model,
            lambda: InternalInfluence(model, layer="side", distribution=dist, steps=4).compute(x, 0),
            st.GradientError,
            "'side'",
            "not on the path",
            inputs=x,
        )


def test_layer_that_never_runs():
    model = seeded(NeverRuns)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(2))
    expect_error(
        model,
        lambda: InternalInfluence(model, layer="unused").compute(x, 0),
        st.LayerError,
        "'unused'",
        "did not run",
        "on the path to the output",
        inputs=x,
    )
    y = torch.tensor([0, 1, 0, 1])
    expect_error(
        model,
        lambda: EssenceExperiment(model, layer="unused", ks=(1,), n_random=1).run(x, y, x, y, 0),
        st.LayerError,
        "did not run",
    )


def test_unknown_layer_suggests_names(cnn, x):
    msg = expect_error(
        cnn,
        lambda: InternalInfluence(cnn, layer="feature.3").compute(x, 0),
        st.LayerError,
        "unknown layer 'feature.3'",
        "closest names",
    )
    assert "'features.3'" in msg
    expect_error(
        cnn,
        lambda: EssenceExperiment(cnn, layer="featurs.4").run(x, LABELS, x, LABELS, 0),
        st.LayerError,
        "closest names",
    )


def test_class_without_instances(cnn, x):
    expect_error(
        cnn,
        lambda: InternalInfluence(cnn, layer="features.3", distribution="class").compute(x, 4, labels=LABELS),
        st.InputError,
        "class 4 has no instances",
        "classes present: [0, 1, 2]",
        inputs=x,
    )
    expect_error(
        cnn,
        lambda: ClassInfluence(cnn, layer="features.3").explain(x, LABELS, 3),
        st.InputError,
        "class 3 has no instances",
    )
    y_te = torch.tensor([0, 0, 1, 1, 0, 1])
    expect_error(
        cnn,
        lambda: EssenceExperiment(cnn, layer="features.4").run(x, LABELS, x, y_te, 2),
        st.InputError,
        "class 2 has no instances",
        "test inputs",
    )


def test_class_distribution_needs_labels_and_a_class(cnn, x):
    expect_error(
        cnn,
        lambda: InternalInfluence(cnn, layer="features.3", distribution="class").compute(x, 0),
        st.InputError,
        "needs labels=",
    )
    expect_error(
        cnn,
        lambda: InternalInfluence(cnn, layer="features.3", distribution="class").compute(x, None, labels=LABELS),
        st.ConfigError,
        "of_class=",
    )
    expect_error(
        cnn,
        lambda: InternalInfluence(cnn, layer="features.3").compute(x, 0, labels=LABELS[:4]),
        st.InputError,
        "4 labels for 6 inputs",
    )
    expect_error(
        cnn,
        lambda: InternalInfluence(cnn, layer="features.3").compute(x, 0, labels=LABELS.float()),
        st.InputError,
        "integer class indices",
    )


def test_k_larger_than_the_number_of_neurons(cnn, x):
    res = InternalInfluence(cnn, layer="features.3").compute(x, 0)
    with pytest.raises(st.ConfigError, match=r"k=13 is larger than the 12 channels of layer 'features.3'; use k <= 12"):
        res.top_positive(13)
    with pytest.raises(st.ConfigError, match="positive int"):
        res.top_negative(0)
    expect_error(
        cnn,
        lambda: EssenceExperiment(cnn, layer="features.3", ks=(2, 20)).run(x, LABELS, x, LABELS, 0),
        st.ConfigError,
        "k=20 is larger than the 12 channels",
        "ks <= 12",
    )
    expect_error(
        cnn,
        lambda: ClassInfluence(cnn, layer="features.3", top=13).explain(x, LABELS, 0),
        st.ConfigError,
        "k=13 is larger than the 12 channels",
    )
    expect_error(
        cnn,
        lambda: NeuronVisualization(cnn, layer="features.3").visualize(x[:1], res, k=20),
        st.ConfigError,
        "k=20 is larger",
    )


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"distribution": "uniform"}, ("unknown distribution", "'point'")),
        ({"reduce": "sum"}, ("reduce must be one of",)),
        ({"distribution": "path", "steps": 0}, ("steps",)),
        ({"distribution": "path", "baseline": "nope"}, ("unknown baseline",)),
    ],
)
def test_bad_settings(cnn, x, kwargs, words):
    expect_error(
        cnn, lambda: InternalInfluence(cnn, layer="features.3", **kwargs).compute(x, 0), st.ConfigError, *words
    )


def test_bad_essence_settings(cnn, x):
    for kw, word in (
        ({"ks": ()}, "ks must be"),
        ({"ks": (0,)}, "ks must be"),
        ({"n_random": 0}, "n_random"),
        ({"quantity": "x"}, "quantity"),
        ({"select": "x"}, "select"),
    ):
        expect_error(
            cnn,
            lambda: EssenceExperiment(cnn, layer="features.3", **kw).run(x, LABELS, x, LABELS, 0),
            st.ConfigError,
            word,
        )
    expect_error(
        cnn,
        lambda: EssenceExperiment(cnn, layer="features.3").run(x, torch.zeros(6, dtype=torch.long), x, LABELS, 0),
        st.InputError,
        "every training input is of class 0",
    )


def test_reused_module_is_refused(x):
    model = seeded(ReusedReLUNet)
    expect_error(model, lambda: InternalInfluence(model, layer="act").compute(x, 0), st.LayerError, "more than once")
    expect_error(
        model,
        lambda: EssenceExperiment(model, layer="act", ks=(1,), n_random=1).run(x, LABELS, x, LABELS, 0),
        st.LayerError,
        "more than once",
    )


def test_wrong_inputs(cnn):
    bad = torch.randn(2, 4, 16, 16)
    expect_error(
        cnn, lambda: InternalInfluence(cnn, layer="features.3").compute(bad, 0), st.InputError, "forward pass failed"
    )
    nan = torch.full((2, 3, 16, 16), float("nan"))
    expect_error(cnn, lambda: InternalInfluence(cnn, layer="features.3").compute(nan, 0), st.InputError, "NaN")


def test_bad_visualisation_and_comparison_settings(cnn, x):
    expect_error(
        cnn,
        lambda: NeuronVisualization(cnn, layer="features.3", method="gradcam").visualize(x, [0]),
        st.ConfigError,
        "cannot visualise",
    )
    expect_error(
        cnn,
        lambda: NeuronVisualization(cnn, layer="features.3").visualize(x, [12]),
        st.ConfigError,
        "neuron 12 is out of range",
        "12 neurons",
    )
    expect_error(
        cnn, lambda: ClassInfluence(cnn, layer="features.3").explain(x, LABELS, 1, 1), st.ConfigError, "vs must differ"
    )
    expect_error(
        cnn,
        lambda: ClassInfluence(cnn, layer="features.3", distribution="point").explain(x, LABELS, 1),
        st.ConfigError,
        "'class' or 'path'",
    )


def test_model_unchanged_after_successful_calls(x):
    for model, layer, inp in (
        (seeded(TinyResNet), "layer1.conv2", x),
        (seeded(TinyCNN), "features.3", x),
        (seeded(TinyMLP), "net.1", torch.randn(6, 10, generator=torch.Generator().manual_seed(3))),
    ):
        freeze_some(model)
        model.train()  # a train-mode model is explained in eval mode and handed back in train mode
        snap = snapshot(model, inp)
        with pytest.warns(st.ModelStateWarning):
            InternalInfluence(model, layer=layer, distribution="path", steps=3).compute(inp, 1)
        with pytest.warns(st.ModelStateWarning):
            InternalInfluence(model, layer=layer, multiply_by_activation=True).compute(inp, 1)
        with pytest.warns(st.ModelStateWarning):
            EssenceExperiment(model, layer=layer, ks=(1, 2), n_random=2).run(inp, LABELS, inp, LABELS, 1)
        assert_unchanged(model, snap, inp)
