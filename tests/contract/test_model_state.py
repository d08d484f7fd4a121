"""Contract: an explanation never leaves a trace on the model, whatever happens.

Every registered method x model x scenario (success and deliberate failures): after the
call, no hook is left (module and global), train/eval flags, ``requires_grad`` flags,
parameters, buffers and ``.grad`` are as before, the inputs are untouched and no
TorchFunctionMode is left active.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _model_state import FAST, assert_unchanged, freeze_some, snapshot
from torch import nn

import seethrough as st
from seethrough.attribution.registry import METHODS, build_method
from seethrough.testing import TinyCNN, TinyMLP, TinyResNet, seeded

# model name -> (class, input shape, layer for layer methods, wrong input shape)
MODELS = {
    "cnn": (TinyCNN, (2, 3, 16, 16), "features.3", (2, 4, 16, 16)),
    "resnet": (TinyResNet, (2, 3, 16, 16), "layer2", (2, 4, 16, 16)),
    "mlp": (TinyMLP, (2, 10), None, (2, 7)),
}


class Boom(Exception):
    pass


def _boom(output):
    raise Boom("target exploded")


def _applies(spec, model: str) -> bool:
    """Whether the method can explain that model at all (the image models are conv nets)."""
    if spec.needs_layer and MODELS[model][2] is None:
        return False
    return spec.needs == "any" or model != "mlp"


CASES = [(name, model) for name, spec in METHODS.items() for model in MODELS if _applies(spec, model)]
INAPPLICABLE = [
    (name, model)
    for name, spec in METHODS.items()
    for model in MODELS
    if not _applies(spec, model) and not spec.needs_layer
]
assert len(CASES) + len(INAPPLICABLE) == 2 * len(METHODS) + sum(not s.needs_layer for s in METHODS.values())

# scenario -> (target, use wrong-shaped inputs, expected exception or None)
SCENARIOS = {
    "success": (1, False, None),
    "success_predicted": (None, False, None),
    "target_out_of_range": (7, False, st.TargetError),
    "target_raises": (_boom, False, Boom),
    "forward_fails": (0, True, st.InputError),
}


def _setup(model_name, grads, seed=0):
    cls, shape, layer, bad_shape = MODELS[model_name]
    model = seeded(cls, seed=seed)
    if grads == "mixed":
        freeze_some(model)
        assert {p.requires_grad for p in model.parameters()} == {True, False}
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return model, x, layer, bad_shape


def _build(name, model, layer):
    return build_method(name, model, layer=layer, **FAST.get(name, {}))


@pytest.mark.parametrize("grads", ["all", "mixed"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("method,model_name", CASES)
def test_model_state_restored(method, model_name, scenario, grads):
    model, x, layer, bad_shape = _setup(model_name, grads)
    target, bad, expected = SCENARIOS[scenario]
    if bad:
        x = torch.randn(bad_shape)
    snap = snapshot(model, x)
    explainer = _build(method, model, layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ZeroAttributionWarning)
        if expected is None:
            expl = explainer.attribute(x, target=target)
            assert isinstance(expl, st.Explanation)
            assert expl.attributions.shape[0] == x.shape[0]
            assert bool(torch.isfinite(expl.attributions).all())
            assert not expl.attributions.requires_grad
        else:
            with pytest.raises(expected):
                explainer.attribute(x, target=target)
    assert_unchanged(model, snap, x)


@pytest.mark.parametrize("method,model_name", INAPPLICABLE)
def test_inapplicable_model_is_refused_cleanly(method, model_name):
    """A method that cannot explain this kind of model or input says so, with a library
    error, and leaves the model as it was."""
    model, x, layer, _ = _setup(model_name, "all")
    snap = snapshot(model, x)
    with pytest.raises(st.SeethroughError):
        _build(method, model, layer).attribute(x, target=1)
    assert_unchanged(model, snap, x)


@pytest.mark.parametrize("method,model_name", CASES)
def test_inputs_requiring_grad_are_untouched(method, model_name):
    model, x, layer, _ = _setup(model_name, "all")
    x.requires_grad_(True)
    snap = snapshot(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ZeroAttributionWarning)
        expl = _build(method, model, layer).attribute(x, target=0)
    assert not expl.attributions.requires_grad
    assert x.grad is None
    assert_unchanged(model, snap, x)


@pytest.mark.parametrize("method", list(METHODS))
def test_train_mode_model_is_explained_in_eval_mode_and_restored(method):
    model, x, layer, _ = _setup("resnet", "all")
    reference = seeded(TinyResNet, seed=0)  # same weights, eval mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ZeroAttributionWarning)
        expected = _build(method, reference, layer).attribute(x, target=None).attributions

    model.train()
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and all(m.training for m in model.modules())
    snap = snapshot(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ZeroAttributionWarning)
        with pytest.warns(st.ModelStateWarning, match="train mode"):
            got = _build(method, model, layer).attribute(x, target=None).attributions
    assert_unchanged(model, snap, x)  # includes BN running stats and num_batches_tracked
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_partly_train_mode_model_warns_and_keeps_each_flag():
    model, x, _, _ = _setup("resnet", "mixed")
    model.layer1.train()  # only one block in train mode
    snap = snapshot(model, x)
    with pytest.warns(st.ModelStateWarning):
        st.Saliency(model).attribute(x, target=0)
    assert_unchanged(model, snap, x)
    assert model.layer1.bn1.training and not model.layer2.bn1.training and not model.training


def test_eval_mode_model_does_not_warn():
    model, x, layer, _ = _setup("resnet", "all")
    with warnings.catch_warnings():
        warnings.simplefilter("error", st.ModelStateWarning)
        st.GradCAM(model, layer=layer).attribute(x, target=0)


# -- nested calls: a custom target that itself explains the same model ----------------

NESTED_OUTER = ["saliency", "guided_backprop", "integrated_gradients", "smoothgrad", "gradcam", "guided_gradcam"]
NESTED_INNER = ["saliency", "gradcam"]


@pytest.mark.parametrize("inner", NESTED_INNER)
@pytest.mark.parametrize("outer", NESTED_OUTER)
@pytest.mark.parametrize("grads", ["all", "mixed"])
def test_nested_call_leaves_model_clean(outer, inner, grads):
    model, x, layer, _ = _setup("cnn", grads)
    snap = snapshot(model, x)
    inner_snaps = []

    def target(output):
        inner_x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
        inner_snaps.append(snapshot(model))
        try:
            _build(inner, model, layer).attribute(inner_x, target=2)
        except st.SeethroughError:
            pass  # whether the nested call may succeed is tested separately
        # the nested call restores exactly the state the outer call set up
        assert_unchanged(model, inner_snaps[-1])
        return output[:, 0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ZeroAttributionWarning)
        _build(outer, model, layer).attribute(x, target=target)
    assert inner_snaps
    assert_unchanged(model, snap, x)
    # and the model is still usable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ZeroAttributionWarning)
        _build(outer, model, layer).attribute(x, target=0)
    assert_unchanged(model, snap, x)


@pytest.mark.parametrize("outer", ["saliency", "integrated_gradients"])
def test_nested_call_outer_result_is_unaffected(outer):
    model, x, layer, _ = _setup("cnn", "all")
    plain = _build(outer, model, layer).attribute(x, target=0).attributions

    def target(output):
        st.Saliency(model).attribute(x[:1], target=1)
        return output[:, 0]

    nested = _build(outer, model, layer).attribute(x, target=target).attributions
    torch.testing.assert_close(nested, plain, rtol=0, atol=0)


def test_failure_after_state_change_restores_everything():
    """A failure deep inside (layer attribution on a reused module) still restores."""
    from seethrough.testing import ReusedReLUNet

    model = seeded(ReusedReLUNet)
    freeze_some(model)
    model.train()
    x = torch.randn(2, 3, 8, 8)
    snap = snapshot(model, x)
    with pytest.warns(st.ModelStateWarning), pytest.raises(st.LayerError):
        st.GradCAM(model, layer="act").attribute(x, target=0)
    assert_unchanged(model, snap, x)


# -- nested calls see a clean model: no outer hook or ReLU override leaks into them ------


@pytest.mark.parametrize(
    "outer",
    [
        "saliency",
        "integrated_gradients",
        "smoothgrad",
        "guided_backprop",
        "deconvolution",
        "gradcam",
        "layer_gradient_x_activation",
    ],
)
def test_nested_call_inner_result_equals_standalone(outer):
    model, x, layer, _ = _setup("cnn", "all")
    inner_x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    expected = st.Saliency(model, abs=False).attribute(inner_x, target=2).attributions
    got = []

    def target(output):
        got.append(st.Saliency(model, abs=False).attribute(inner_x, target=2).attributions)
        return output[:, 0]

    _build(outer, model, layer).attribute(x, target=target)
    assert got
    for g in got:
        torch.testing.assert_close(g, expected, rtol=0, atol=0)


# -- a model that modifies its input in place: the caller's tensor is never modified ----


class InplaceInputCNN(nn.Module):
    """TinyCNN behind an in-place ReLU on the input (like in-place input normalisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU(inplace=True)
        self.body = seeded(TinyCNN)

    def forward(self, x):
        return self.body(self.act(x))


# (method, target) combinations that currently write into the caller's inputs


@pytest.mark.parametrize(
    "method,target",
    [pytest.param(m, t) for m in METHODS for t in (0, None)],
)
def test_model_writing_into_its_input_leaves_caller_inputs_untouched(method, target):
    model = InplaceInputCNN().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    snap = snapshot(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ZeroAttributionWarning)
        try:
            _build(method, model, "body.features.3").attribute(x, target=target)
        except st.SeethroughError:
            pass  # whether such a model can be explained is not what this test is about
    assert_unchanged(model, snap, x)
