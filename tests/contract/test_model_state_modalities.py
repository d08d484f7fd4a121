"""Contract beyond images: token-id models (TinyLM, TinyEncoder) explained at their
embedding, and a generator (TinyGenerator) explained from its latent vector.

As in test_model_state.py: every applicable registered method x model x scenario (success
and deliberate failures) leaves no hook, the train/eval and ``requires_grad`` flags,
parameters, buffers and ``.grad`` as before, and the inputs untouched; a method that cannot
explain token ids refuses them with a library error, and the model is unchanged.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _model_state import FAST, assert_unchanged, freeze_some, snapshot

import seethrough as st
from seethrough.attribution.registry import METHODS, build_method
from seethrough.testing import TinyCNN, TinyEncoder, TinyGenerator, TinyLM, seeded

#: Methods that explain token ids at the embedding's output (``layer=``).
TOKEN_METHODS = [
    "saliency",
    "input_x_gradient",
    "guided_backprop",
    "deconvolution",
    "integrated_gradients",
    "smoothgrad",
    "smoothgrad_sq",
    "vargrad",
    "layer_gradient_x_activation",
]
assert set(TOKEN_METHODS) <= set(METHODS)


class Boom(Exception):
    pass


def _boom(output):
    raise Boom("target exploded")


def _ids(shape, high=16, seed=0):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def _corner():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[:4, :4] = True
    return m


_CLASSIFIER = seeded(TinyCNN)  # TinyCNN also takes the generator's (3, 8, 8) images

# model -> (class, make inputs, layer, scenarios: name -> (target, make inputs or None, expected error))
MODELS = {
    "lm": (
        TinyLM,
        lambda: _ids((2, 6)),
        "embed",
        {
            "success": (st.TokenAt(-1, 1), None, None),
            "success_predicted": (None, None, None),
            "success_sequence": (st.SequenceLogProb([3, 4]), None, None),
            "target_out_of_range": (st.TokenAt(-1, 99), None, st.TargetError),
            "target_raises": (_boom, None, Boom),
            "ids_out_of_range": (st.TokenAt(-1, 1), lambda: _ids((2, 6)) + 16, st.InputError),
            "forward_fails": (st.TokenAt(-1, 1), lambda: _ids((2, 40)), st.InputError),
        },
    ),
    "encoder": (
        TinyEncoder,
        lambda: _ids((2, 5)),
        "embed",
        {
            "success": (1, None, None),
            "success_predicted": (None, None, None),
            "target_out_of_range": (7, None, st.TargetError),
            "target_raises": (_boom, None, Boom),
            "ids_out_of_range": (1, lambda: _ids((2, 5)) - 1 - 16, st.InputError),
        },
    ),
    "generator": (
        TinyGenerator,
        lambda: torch.randn(2, 8, generator=torch.Generator().manual_seed(0)),
        "fc",
        {
            "success": (st.Region(_corner()), None, None),
            "success_predicted": (None, None, None),
            "success_classify": (st.Classify(_CLASSIFIER, 2), None, None),
            "target_out_of_range": (st.Region(torch.ones(5, 5, dtype=torch.bool)), None, st.TargetError),
            "target_raises": (_boom, None, Boom),
            "forward_fails": (st.Region(_corner()), lambda: torch.randn(2, 5), st.InputError),
        },
    ),
}


def _applies(name: str, model: str) -> bool:
    spec = METHODS[name]
    if model in ("lm", "encoder"):
        return name in TOKEN_METHODS
    # the generator's latent input is a flat vector: methods for any input, and layer methods
    # other than the CAMs (which need spatial maps matching the input)
    return spec.needs == "any" and (not spec.needs_layer or spec.family == "layer")


def _build(name: str, model, layer):
    settings = dict(FAST.get(name, {}))
    if METHODS[name].needs_layer:
        return build_method(name, model, layer=layer, **settings)
    if isinstance(model, (TinyLM, TinyEncoder)):
        if name in ("smoothgrad", "smoothgrad_sq", "vargrad"):
            return build_method(name, model, method=st.Saliency(model, layer=layer), **settings)
        # input methods take layer= to attribute at the embedding's output
        return METHODS[name].cls(model, layer=layer, **{**METHODS[name].defaults, **settings})
    return build_method(name, model, **settings)


def _setup(model_name, grads):
    cls, make, layer, _ = MODELS[model_name]
    model = seeded(cls)
    if grads == "mixed":
        freeze_some(model)
        assert {p.requires_grad for p in model.parameters()} == {True, False}
    return model, make(), layer


CASES = [
    (name, model, scenario)
    for model, (_, _, _, scenarios) in MODELS.items()
    for name in METHODS
    if _applies(name, model)
    for scenario in scenarios
]
REFUSED = [(name, model) for model in ("lm", "encoder") for name in METHODS if not _applies(name, model)]


@pytest.mark.parametrize("grads", ["all", "mixed"])
@pytest.mark.parametrize("method,model_name,scenario", CASES)
def test_model_state_restored(method, model_name, scenario, grads):
    model, x, layer = _setup(model_name, grads)
    target, make_bad, expected = MODELS[model_name][3][scenario]
    if make_bad is not None:
        x = make_bad()
    snap = snapshot(model, x)
    classifier_snap = snapshot(_CLASSIFIER)
    explainer = _build(method, model, layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ZeroAttributionWarning)
        if expected is None:
            expl = explainer.attribute(x, target=target)
            assert isinstance(expl, st.Explanation)
            assert expl.attributions.shape[0] == x.shape[0]
            assert bool(torch.isfinite(expl.attributions).all())
            assert not expl.attributions.requires_grad
            if model_name != "generator":
                assert expl.layer == layer  # attributed at the embedding's output
        else:
            with pytest.raises(expected):
                explainer.attribute(x, target=target)
    assert_unchanged(model, snap, x)
    assert_unchanged(_CLASSIFIER, classifier_snap)


@pytest.mark.parametrize("method,model_name", REFUSED)
def test_methods_without_a_layer_refuse_token_ids_cleanly(method, model_name):
    model, ids, layer = _setup(model_name, "all")
    snap = snapshot(model, ids)
    target = st.TokenAt(-1, 1) if model_name == "lm" else 1
    spec = METHODS[method]
    explainer = build_method(method, model, layer=layer if spec.needs_layer else None, **FAST.get(method, {}))
    with pytest.raises(st.SeethroughError) as info:
        explainer.attribute(ids, target=target)
    assert isinstance(info.value, st.InputError) and "layer=" in str(info.value)
    assert_unchanged(model, snap, ids)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_train_mode_model_is_explained_in_eval_mode_and_restored(model_name):
    model, x, layer = _setup(model_name, "all")
    target = MODELS[model_name][3]["success"][0]
    expected = _build("integrated_gradients", seeded(MODELS[model_name][0]), layer).attribute(x, target=target)
    model.train()
    snap = snapshot(model, x)
    with pytest.warns(st.ModelStateWarning, match="train mode"):
        got = _build("integrated_gradients", model, layer).attribute(x, target=target)
    assert_unchanged(model, snap, x)
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(got.attributions, expected.attributions, rtol=0, atol=0)
