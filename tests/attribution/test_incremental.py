"""Incremental occlusion: the same attributions as full occlusion (Occlusion, itself equal
to Captum's) for every split, window, stride and baseline, on models with batch norm,
residual additions, in-place ReLUs, pooling with padding, dilation, grouped and 1-d
convolutions; a sensible automatic split; clear errors for models it cannot handle; the
model left as it was."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seethrough as st
from seethrough import zoo
from seethrough._core.errors import ConfigError, ModelStateWarning
from seethrough.attribution.incremental import IncrementalOcclusion, _analyse
from seethrough.attribution.perturbation import Occlusion
from seethrough.testing import TinyCNN, TinyResNet, seeded

pytestmark = pytest.mark.filterwarnings("ignore::seethrough.ZeroAttributionWarning")

RTOL, ATOL = 1e-4, 1e-6


def _x(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _both(model, x, target, **settings):
    ref = Occlusion(model, **{k: v for k, v in settings.items() if k != "split"}).attribute(x, target)
    inc = IncrementalOcclusion(model, **settings)
    out = inc.attribute(x, target)
    return ref, out, inc


def _assert_same(out, ref):
    """Equal up to float rounding. An attribution is a difference of two scores, and the
    recomputed regions are evaluated with other tensor shapes and memory layouts than the
    full forward pass, so each score may differ by a few units in the last place: the
    absolute tolerance is ``ATOL`` per unit of score magnitude (shapes-cnn logits reach
    ~10, where float32 resolves ~1e-6)."""
    assert ref.attributions.abs().max() > 0  # a real comparison, not 0 == 0
    atol = ATOL * max(1.0, float(ref.scores.abs().max()))
    err = (out.attributions - ref.attributions).abs().max().item()
    assert torch.allclose(out.attributions, ref.attributions, rtol=RTOL, atol=atol), (err, atol)


def _cuts(model, x):
    inc = IncrementalOcclusion(model)
    traced = inc._trace(())
    with torch.no_grad():
        an = _analyse(traced["gm"], x, ())
    return [c.name for c in an.cuts]


T3 = torch.tensor([0, 1, 2])


@pytest.mark.parametrize("cls", [TinyCNN, TinyResNet])
@pytest.mark.parametrize(
    "window,strides,baseline",
    [
        ((3, 4, 4), 2, 0.3),  # overlapping
        ((3, 5, 5), (1, 3, 3), 0.0),  # 16 = 3*3 + 5 + 2: the last window is cut at the border
        ((1, 4, 4), (1, 4, 4), 0.5),  # one channel at a time
        ((3, 3, 7), (1, 2, 5), 0.1),  # different sizes and strides per dimension
        ((3, 16, 16), 1, 0.2),  # one window covering everything
        ((3, 1, 1), 3, -0.4),  # single pixels, gaps between windows
    ],
)
def test_equals_full_occlusion(cls, window, strides, baseline):
    model = seeded(cls)
    ref, out, _ = _both(model, _x(3, 3, 16, 16), T3, window=window, strides=strides, baseline=baseline)
    _assert_same(out, ref)
    assert out.n_evaluations == ref.n_evaluations
    assert torch.equal(out.scores, ref.scores)


def test_tensor_and_mean_baselines_and_explicit_batching():
    model = seeded(TinyResNet)
    x = _x(2, 3, 16, 16)
    for baseline, batching in [(_x(2, 3, 16, 16, seed=5), 7), ("mean", None), ("blur", 1000)]:
        ref, out, _ = _both(model, x, 1, window=(3, 5, 5), strides=3, baseline=baseline, batching=batching)
        _assert_same(out, ref)


@pytest.mark.parametrize("cls", [TinyCNN, TinyResNet])
def test_every_split_equals_full_occlusion(cls):
    model = seeded(cls)
    x = _x(2, 3, 16, 16, seed=1)
    splits = _cuts(model, x)
    assert len(splits) >= 3
    ref = Occlusion(model, window=(3, 5, 5), strides=(1, 3, 3), baseline=0.25).attribute(x, 0)
    for split in splits:
        out = IncrementalOcclusion(model, window=(3, 5, 5), strides=(1, 3, 3), baseline=0.25, split=split).attribute(
            x, 0
        )
        _assert_same(out, ref)


def test_split_by_module_name():
    model = seeded(TinyResNet)
    x = _x(2, 3, 16, 16, seed=2)
    ref = Occlusion(model, window=(4, 4), strides=2).attribute(x, 2)
    for split, shown in [("layer1", "layer1"), ("layer2", "layer2"), ("bn1", "bn1"), ("conv1", "conv1")]:
        inc = IncrementalOcclusion(model, window=(4, 4), strides=2, split=split)
        out = inc.attribute(x, 2)
        _assert_same(out, ref)
        assert inc.split_used == shown
        assert out.settings["split"] == shown


class _Odd(nn.Module):
    """Asymmetric 'same' padding, dilation, groups, average pooling with padding, a
    stride that differs per dimension, elementwise products with constants, concatenation
    along channels, padded max pooling, 'valid' padding, in-place methods."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 4, padding="same")
        self.b = nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=2)
        self.p = nn.AvgPool2d(3, stride=2, padding=1)
        self.c = nn.Conv2d(6, 4, (3, 1), stride=(1, 2), padding=(1, 0))
        self.d = nn.Conv2d(6, 4, 1, stride=(1, 2))
        self.m = nn.MaxPool2d(3, stride=2, padding=1)
        self.e = nn.Conv2d(8, 8, 2, padding="valid")
        self.fc = nn.Linear(8, 3)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 6).view(1, 6, 1, 1))

    def forward(self, x):
        y = self.act(self.a(x))
        y = torch.sigmoid(self.b(y)) * y * self.scale + 0.5
        y = self.p(y)
        y = torch.cat([self.c(y), F.relu(self.d(y))], dim=1)
        y = self.e(self.m(y)).relu_()
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class _Net1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv1d(2, 5, 5, stride=2, padding=2),
            nn.BatchNorm1d(5),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(5, 5, 3, padding=1),
            nn.GELU(),
        )
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.f(x).mean(-1))


@pytest.mark.parametrize(
    "cls,shape,window,strides",
    [
        (_Odd, (2, 3, 19, 23), (3, 4, 4), 2),
        (_Odd, (2, 3, 19, 23), (2, 5, 3), (1, 3, 4)),
        (_Net1d, (2, 2, 37), (2, 4), 3),
        (_Net1d, (2, 2, 37), (1, 5), (1, 2)),
    ],
)
def test_unusual_layers_every_split(cls, shape, window, strides):
    warnings.filterwarnings("ignore", message=".*padding='same'.*")
    model = seeded(cls)
    x = _x(*shape, seed=3)
    ref = Occlusion(model, window=window, strides=strides, baseline=0.2).attribute(x, 0)
    splits = _cuts(model, x)
    assert len(splits) >= 5
    for split in [None] + splits:
        out = IncrementalOcclusion(model, window=window, strides=strides, baseline=0.2, split=split).attribute(x, 0)
        _assert_same(out, ref)


def test_float64():
    model = seeded(TinyResNet).double()
    x = _x(2, 3, 16, 16).double()
    ref, out, _ = _both(model, x, 1, window=(3, 4, 4), strides=3)
    assert out.attributions.dtype == torch.float64
    assert torch.allclose(out.attributions, ref.attributions, rtol=1e-10, atol=1e-12)


def test_layer_targets():
    model = seeded(TinyResNet)
    x = _x(2, 3, 16, 16, seed=4)
    # the target layer in the suffix (a whole block), inside the local part (the split
    # must come before it), and given as a module
    for target in [st.Channel("layer2", 3), st.Channel("layer1.conv2", 1), st.Neuron(model.layer2.bn1, (0, 3, 3))]:
        ref, out, inc = _both(model, x, target, window=(3, 4, 4), strides=3)
        _assert_same(out, ref)
    with pytest.raises(ConfigError, match="not in the local part"):
        IncrementalOcclusion(model, window=(4, 4), strides=4, split="layer2").attribute(
            x, st.Channel("layer1.conv2", 1)
        )


def _shapes_cnn_or_skip():
    try:
        return zoo.load("shapes-cnn")
    except FileNotFoundError:
        pytest.skip("shapes-cnn weights not trained")


@pytest.mark.parametrize("window,strides", [((4, 4), 4), ((8, 8), (1, 6, 6)), ((5, 5), 7)])
def test_shapes_cnn(window, strides):
    model = _shapes_cnn_or_skip()
    x = st.data.make_shapes(2, seed=7).images
    ref, out, inc = _both(model, x, None, window=window, strides=strides)
    _assert_same(out, ref)
    assert inc.split_used.startswith("features.")


def test_shapes_cnn_deep_split():
    model = _shapes_cnn_or_skip()
    x = st.data.make_shapes(1, seed=8).images
    ref, out, _ = _both(model, x, 1, window=(6, 6), strides=5, split="features.16")
    _assert_same(out, ref)


def test_resnet18_at_64():
    model = zoo.ResNet18(seed=0).eval()
    x = _x(1, 3, 64, 64, seed=5)
    ref = Occlusion(model, window=(8, 8), strides=7).attribute(x, 3)
    for split in [None, "maxpool", "layer2", "layer3.0"]:
        out = IncrementalOcclusion(model, window=(8, 8), strides=7, split=split).attribute(x, 3)
        _assert_same(out, ref)


def test_automatic_split():
    model = zoo.ShapesCNN(seed=0).eval()
    x = _x(1, 3, 64, 64, seed=6)
    # small windows: the recomputed regions stay small through the pooled layers, so
    # the split is deep; one window covering the whole image: every region is the whole
    # map, recomputing regions saves nothing and the split is the first layer
    small = IncrementalOcclusion(model, window=(4, 4), strides=4)
    small.attribute(x, 0)
    deep = [f"features.{i}" for i in range(9, 17)]
    assert small.split_used in deep
    whole = IncrementalOcclusion(model, window=(64, 64), strides=64)
    whole.attribute(x, 0)
    assert whole.split_used == "features.0"
    assert repr(whole) and whole.settings()["split"] == "features.0"


# -- errors -------------------------------------------------------------------------------
class _FlatLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x)
        if y.mean() > 0:  # data-dependent Python control flow
            y = y * 2
        return self.fc(y.mean((2, 3)))


class _GlobalFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.GroupNorm(1, 3)
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        return self.conv(self.norm(x)).mean((1, 2, 3)).unsqueeze(1)


class _InplaceShared(nn.Module):
    """An in-place ReLU writes into a tensor that is used again afterwards: the model's
    later use sees the write, which a functional recomputation would not."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        t = self.c1(x)
        u = F.relu(t, inplace=True)
        return self.fc(self.c2(t + u).mean((2, 3)))


@pytest.mark.parametrize(
    "cls,shape,match",
    [
        (_FlatLinear, (2, 3, 8, 8), r"flatten.*not a local operation.*Use Occlusion"),
        (_Branchy, (2, 3, 8, 8), r"trace.*control flow.*Use Occlusion"),
        (_GlobalFirst, (2, 3, 8, 8), r"GroupNorm.*Use Occlusion"),
    ],
)
def test_models_it_cannot_handle(cls, shape, match):
    model = seeded(cls)
    Occlusion(model, window=(4, 4), strides=4).attribute(_x(*shape), 0)  # plain occlusion works
    with pytest.raises(ConfigError, match=match):
        IncrementalOcclusion(model, window=(4, 4), strides=4).attribute(_x(*shape), 0)


def test_no_spatial_dims():
    from seethrough.testing import TinyMLP

    with pytest.raises(ConfigError, match="spatial"):
        IncrementalOcclusion(seeded(TinyMLP), window=(2,), strides=2).attribute(_x(2, 10), 0)


def test_inplace_write_into_shared_tensor_stops_the_local_part():
    model = seeded(_InplaceShared)
    x = _x(2, 3, 12, 12)
    ref, out, inc = _both(model, x, 0, window=(3, 3), strides=2)
    _assert_same(out, ref)
    assert inc.split_used == "c1"  # the in-place ReLU and what follows run in full
    with pytest.raises(ConfigError, match="in-place"):
        IncrementalOcclusion(model, window=(3, 3), strides=2, split="c2").attribute(x, 0)


class _PositionMap(nn.Module):
    """A learned map added per position: not the same operation everywhere, so the
    local part ends before it."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pos = nn.Parameter(torch.randn(1, 4, 12, 12))
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.c2(torch.relu(self.c1(x)) + self.pos).mean((2, 3)))


def test_constant_that_varies_over_positions_ends_the_local_part():
    model = seeded(_PositionMap)
    x = _x(2, 3, 12, 12)
    ref, out, inc = _both(model, x, 1, window=(3, 3), strides=2)
    _assert_same(out, ref)
    assert inc.split_used == "relu"
    with pytest.raises(ConfigError, match="varies over samples or positions"):
        IncrementalOcclusion(model, window=(3, 3), strides=2, split="c2").attribute(x, 1)


def test_forward_hooks_end_the_local_part():
    """A user's forward hook may change a module's output; the module then runs in full
    (regions are recomputed functionally, without the hook)."""
    model = seeded(TinyResNet)
    x = _x(2, 3, 16, 16)
    handle = model.layer1.conv2.register_forward_hook(lambda m, i, out: out * 2.0)
    try:
        ref, out, inc = _both(model, x, 0, window=(3, 3), strides=2)
        _assert_same(out, ref)
        assert inc.split_used == "relu"  # the last cut before layer1.conv2
        assert len(model.layer1.conv2._forward_hooks) == 1
    finally:
        handle.remove()
    handle = model.conv1.register_forward_pre_hook(lambda m, i: (i[0] * 0.5,))
    try:
        with pytest.raises(ConfigError, match="forward hooks"):
            IncrementalOcclusion(model, window=(3, 3), strides=2).attribute(x, 0)
    finally:
        handle.remove()


def test_bad_splits():
    model = seeded(TinyResNet)
    x = _x(1, 3, 16, 16)
    with pytest.raises(ConfigError, match="unknown split"):
        IncrementalOcclusion(model, split="layer9").attribute(x, 0)
    with pytest.raises(ConfigError, match="not a cut"):  # inside a residual block
        IncrementalOcclusion(model, split="layer1.conv1").attribute(x, 0)
    with pytest.raises(ConfigError, match="not in the local part"):
        IncrementalOcclusion(model, split="fc").attribute(x, 0)
    with pytest.raises(ConfigError, match="runs 2 times"):
        IncrementalOcclusion(model, split="layer1.relu").attribute(x, 0)
    with pytest.raises(ConfigError, match="split must be"):
        IncrementalOcclusion(model, split=3).attribute(x, 0)


# -- model state -----------------------------------------------------------------------------
def _state(model):
    return {
        "training": {n: m.training for n, m in model.named_modules()},
        "modules": {n: m for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: p.grad for n, p in model.named_parameters()},
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        },
        "type": type(model),
    }


def _assert_state(model, before):
    after = _state(model)
    assert after["training"] == before["training"]
    assert after["modules"].keys() == before["modules"].keys()
    assert all(after["modules"][n] is m for n, m in before["modules"].items())
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grad"] == before["grad"]
    assert after["hooks"] == before["hooks"]
    assert after["type"] is before["type"]
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k


def test_model_state_unchanged():
    model = seeded(TinyResNet)
    model.train()  # BN statistics would change if a train-mode forward ran
    model.layer1.conv1.weight.requires_grad_(False)
    x = _x(2, 3, 16, 16)
    x_before = x.clone()
    before = _state(model)
    with pytest.warns(ModelStateWarning):
        IncrementalOcclusion(model, window=(4, 4), strides=3).attribute(x, st.Channel("layer2", 1))
    _assert_state(model, before)
    assert torch.equal(x, x_before)
    with pytest.raises(ConfigError), warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelStateWarning)
        IncrementalOcclusion(model, split="layer1.conv1").attribute(x, 0)
    _assert_state(model, before)
    assert model.training


def test_repeated_calls_reuse_the_trace_and_follow_weight_changes():
    model = seeded(TinyCNN)
    x = _x(1, 3, 16, 16)
    inc = IncrementalOcclusion(model, window=(4, 4), strides=4)
    a = inc.attribute(x, 0).attributions
    with torch.no_grad():
        model.features[0].weight.mul_(1.5)
    b = inc.attribute(x, 0).attributions
    ref = Occlusion(model, window=(4, 4), strides=4).attribute(x, 0).attributions
    assert not torch.allclose(a, b)
    assert torch.allclose(b, ref, rtol=RTOL, atol=ATOL)
    assert len(inc._traces) == 1
