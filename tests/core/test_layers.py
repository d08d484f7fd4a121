"""Layer resolution: by dotted name, by module object, and helpful errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seethrough as st
from seethrough._core.layers import layer_names, resolve_layer
from seethrough.testing import TinyCNN, TinyResNet, seeded


def test_layer_names_is_named_modules_without_root():
    model = seeded(TinyResNet)
    names = layer_names(model)
    assert names == [n for n, _ in model.named_modules()][1:]
    assert "" not in names
    assert names[:3] == ["conv1", "bn1", "relu"]
    assert "layer2.downsample.0" in names and "layer1.downsample" not in names  # None child
    assert st.layer_names is layer_names


def test_layer_names_of_a_leaf_module():
    assert layer_names(nn.Linear(2, 2)) == []


@pytest.mark.parametrize("name", ["features.3", "classifier", "features"])
def test_resolve_by_name(name):
    model = seeded(TinyCNN)
    got_name, module = resolve_layer(model, name)
    assert got_name == name
    assert module is dict(model.named_modules())[name]


def test_resolve_nested_name():
    model = seeded(TinyResNet)
    name, module = resolve_layer(model, "layer2.downsample.1")
    assert name == "layer2.downsample.1"
    assert module is model.layer2.downsample[1]
    assert isinstance(module, nn.BatchNorm2d)


def test_resolve_by_module():
    model = seeded(TinyResNet)
    assert resolve_layer(model, model.layer2.conv2) == ("layer2.conv2", model.layer2.conv2)
    assert resolve_layer(model, model.layer1) == ("layer1", model.layer1)


def test_resolve_shared_module_gives_first_name():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    # named_modules() de-duplicates: the first path is the canonical one
    assert resolve_layer(model, shared) == ("0", shared)
    assert resolve_layer(model, "0")[1] is shared


def test_unknown_name_lists_close_names():
    model = seeded(TinyCNN)
    with pytest.raises(st.LayerError) as info:
        resolve_layer(model, "features.33")
    msg = str(info.value)
    assert "'features.33'" in msg and "TinyCNN" in msg
    close = msg.split("closest names:")[1].split(". Layer")[0]
    assert close.strip().startswith("'features.3'")  # best match first
    assert "'classifier'" not in close
    assert "named_modules" in msg


def test_unknown_name_typo():
    model = seeded(TinyResNet)
    with pytest.raises(st.LayerError, match=r"closest names: 'layer2\.conv1'"):
        resolve_layer(model, "layer2.cnov1")


def test_unknown_name_without_close_match_falls_back_to_same_tail():
    model = seeded(TinyResNet)
    with pytest.raises(st.LayerError) as info:
        resolve_layer(model, "zzzz.qqqq.bn2")
    hint = str(info.value).split("closest names:")[1]
    assert "'layer1.bn2'" in hint and "'layer2.bn2'" in hint


def test_unknown_name_in_model_without_submodules():
    with pytest.raises(st.LayerError, match="no submodules"):
        resolve_layer(nn.Linear(2, 2), "weight")


def test_module_not_in_model():
    model = seeded(TinyCNN)
    with pytest.raises(st.LayerError, match="not part of the model TinyCNN"):
        resolve_layer(model, seeded(TinyCNN).features[0])
    # equal-looking but different object
    with pytest.raises(st.LayerError):
        resolve_layer(model, nn.ReLU())


@pytest.mark.parametrize("bad", [3, None, ("features", 3), torch.zeros(1)])
def test_layer_of_wrong_type(bad):
    with pytest.raises(st.LayerError, match="dotted name"):
        resolve_layer(seeded(TinyCNN), bad)


def test_methods_accept_module_or_name_equally():
    model = seeded(TinyCNN)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    by_name = st.GradCAM(model, layer="features.3").attribute(x, target=1)
    by_module = st.GradCAM(model, layer=model.features[3]).attribute(x, target=1)
    assert by_name.layer == by_module.layer == "features.3"
    torch.testing.assert_close(by_name.attributions, by_module.attributions, rtol=0, atol=0)
