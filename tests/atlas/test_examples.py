"""Dataset examples: exact top-k/bottom-k against brute force, batch-size independence,
resumption after an interruption, receptive fields (arithmetic vs gradient), save/load,
data sources, errors, and the model left untouched."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError, LayerError, ModelStateWarning
from seethrough.app import open_source
from seethrough.atlas import DatasetExamples, FolderSource, TensorSource, select_layers
from seethrough.atlas.examples import _grad_boxes
from seethrough.atlas.receptive import arithmetic_fields
from seethrough.testing import TinyCNN, TinyMLP, TinyResNet, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, freeze_some, snapshot  # noqa: E402


def _images(n=30, size=16, seed=0, channels=3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g)


def _brute_force(model, layer, x):
    """Per image and unit: max over positions and its position, by a plain forward hook."""
    acts = {}
    module = dict(model.named_modules())[layer]
    h = module.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    a = acts["a"]
    if a.dim() == 2:
        return a, None
    flat = a.reshape(a.shape[0], a.shape[1], -1)
    v, arg = flat.max(dim=2)
    return v, arg


class _Counting(TensorSource):
    """A source that counts its reads and can fail after some of them (an interruption)."""

    def __init__(self, images, fail_after=None):
        super().__init__(images)
        self.calls = 0
        self.rows_read = 0
        self.fail_after = fail_after

    def get(self, idx):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("interrupted by the test")
        out = super().get(idx)
        self.rows_read += out.shape[0]
        return out


def test_top_and_bottom_k_match_brute_force():
    model = seeded(TinyCNN)
    x = _images(37)
    ex = DatasetExamples(model, layers="all", top_k=5, bottom_k=4, batching=6).fit(x)
    assert ex.layers_ == ("features.0", "features.3", "classifier")
    for layer in ex.layers_:
        v, arg = _brute_force(model, layer, x)  # (N, U)
        order_top = torch.sort(v.t(), dim=1, descending=True, stable=True).indices[:, :5]
        order_bot = torch.sort(v.t(), dim=1, descending=False, stable=True).indices[:, :4]
        assert torch.equal(ex.top_indices_[layer], order_top)
        assert torch.equal(ex.bottom_indices_[layer], order_bot)
        torch.testing.assert_close(ex.top_values_[layer], v.t().gather(1, order_top))
        torch.testing.assert_close(ex.bottom_values_[layer], v.t().gather(1, order_bot))
        torch.testing.assert_close(ex.mean_[layer], v.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ex.std_[layer], v.std(0, unbiased=False), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ex.frac_positive_[layer], (v > 0).float().mean(0))
        if arg is None:
            assert ex.top_positions_[layer].shape[-1] == 0 and ex.top_boxes_[layer] is None
            assert ex.receptive_field_[layer] == "none"
            continue
        W = ex.unit_shapes_[layer][2]
        pos = ex.top_positions_[layer]
        flat = pos[..., 0] * W + pos[..., 1]
        assert torch.equal(flat, arg.t().gather(1, order_top))
    assert ex.n_examples_ == 37 and ex.input_shape_ == (3, 16, 16)


def test_result_does_not_depend_on_batch_size():
    model = seeded(TinyResNet)
    x = _images(29)
    a = DatasetExamples(model, top_k=3, batching=4).fit(x)
    b = DatasetExamples(model, top_k=3, batching=29).fit(x)
    c = DatasetExamples(model, top_k=3).fit(x)  # automatic batch size
    for layer in a.layers_:
        for other in (b, c):
            assert torch.equal(a.top_indices_[layer], other.top_indices_[layer])
            assert torch.equal(a.bottom_indices_[layer], other.bottom_indices_[layer])
            assert torch.equal(a.top_positions_[layer], other.top_positions_[layer])
            torch.testing.assert_close(a.top_values_[layer], other.top_values_[layer], rtol=1e-5, atol=1e-6)


def test_ties_go_to_the_lower_index():
    model = seeded(TinyCNN)
    x = _images(5).repeat(4, 1, 1, 1)  # image i == image i + 5 == ...
    ex = DatasetExamples(model, layers=["features.3"], top_k=4, batching=3).fit(x)
    top = ex.top_indices_["features.3"]
    # the best image appears four times; its copies come in increasing index order
    assert torch.equal(top % 5, top[:, :1].expand_as(top) % 5)
    assert bool((top[:, 1:] > top[:, :-1]).all())


def test_interrupted_pass_resumes_to_the_identical_result(tmp_path):
    model = seeded(TinyCNN)
    x = _images(40)
    full = DatasetExamples(model, top_k=4, batching=5).fit(x)
    ckpt = tmp_path / "state.ckpt"
    # the first attempt dies at its 6th read (probe + 5 batches), after a checkpoint every 2 batches
    dying = _Counting(x, fail_after=6)
    with pytest.raises(KeyboardInterrupt):
        DatasetExamples(model, top_k=4, batching=5, checkpoint=ckpt, checkpoint_every=2).fit(dying)
    assert ckpt.is_file()
    again = _Counting(x)
    resumed = DatasetExamples(model, top_k=4, batching=5, checkpoint=ckpt, checkpoint_every=2).fit(again)
    assert resumed.resumed_from_ == 20  # 4 batches of 5 were checkpointed
    assert again.rows_read == 1 + 20  # the probe image, then only the 20 images not done
    assert not ckpt.exists()  # removed once complete
    for layer in full.layers_:
        for key in (
            "top_values_",
            "top_indices_",
            "top_positions_",
            "top_boxes_",
            "bottom_values_",
            "bottom_indices_",
            "bottom_boxes_",
            "mean_",
            "std_",
            "frac_positive_",
        ):
            assert torch.equal(getattr(full, key)[layer], getattr(resumed, key)[layer]), (layer, key)


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    model = seeded(TinyCNN)
    x = _images(20)
    ckpt = tmp_path / "c.ckpt"
    with pytest.raises(KeyboardInterrupt):
        DatasetExamples(model, top_k=2, batching=4, checkpoint=ckpt, checkpoint_every=1).fit(_Counting(x, fail_after=3))
    with pytest.raises(ConfigError, match="top_k") as e:
        DatasetExamples(model, top_k=3, batching=4, checkpoint=ckpt).fit(x)
    assert "delete it" in str(e.value)
    with pytest.raises(ConfigError, match="data"):
        DatasetExamples(model, top_k=2, batching=4, checkpoint=ckpt).fit(x + 0.01)


class _LinearConvNet(nn.Module):
    """Convolutions and average pooling only (no ReLU): every input pixel of the
    theoretical receptive field has a non-zero gradient, so both methods must agree."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.b = nn.Conv2d(4, 5, 5, padding=2, dilation=1)
        self.c = nn.Conv2d(5, 3, 3, padding=2, dilation=2)

    def forward(self, x):
        return self.c(self.b(self.pool(self.a(x)))).mean((2, 3))


def test_receptive_field_arithmetic_equals_the_gradient_support():
    model = seeded(_LinearConvNet)
    x = _images(12, size=32)
    ex = DatasetExamples(model, top_k=3).fit(x)
    assert dict(ex.receptive_field_) == {"a": "arithmetic", "b": "arithmetic", "c": "arithmetic"}
    f = ex.fields_
    assert (f["a"].stride, f["a"].offset, f["a"].span) == ((2, 2), (-1, -1), (3, 3))
    # a: 3 px, stride 2; pool 2: 3 + 2 = 5 px, stride 4; b (5x5): 5 + 4 * 4 = 21 px
    assert (f["b"].stride, f["b"].offset, f["b"].span) == ((4, 4), (-9, -9), (21, 21))
    module = dict(model.named_modules())
    for layer in ex.layers_:
        U, k = ex.top_indices_[layer].shape
        rows = ex.top_indices_[layer].reshape(-1)
        units = torch.arange(U).repeat_interleave(k)
        pos = ex.top_positions_[layer].reshape(U * k, -1)
        grad = _grad_boxes(model, layer, module[layer], x[rows], units, pos)
        assert torch.equal(grad, ex.top_boxes_[layer].reshape(U * k, -1)), layer


def test_residual_model_fields_contain_the_gradient_support():
    model = seeded(TinyResNet)
    x = _images(10)
    ex = DatasetExamples(model, top_k=2).fit(x)
    assert set(ex.receptive_field_.values()) == {"arithmetic"}
    module = dict(model.named_modules())
    for layer in ex.layers_:
        U, k = ex.top_indices_[layer].shape
        rows = ex.top_indices_[layer].reshape(-1)
        grad = _grad_boxes(
            model,
            layer,
            module[layer],
            x[rows],
            torch.arange(U).repeat_interleave(k),
            ex.top_positions_[layer].reshape(U * k, -1),
        )
        arith = ex.top_boxes_[layer].reshape(U * k, -1)
        assert bool((grad[:, :2] >= arith[:, :2]).all() and (grad[:, 2:] <= arith[:, 2:]).all()), layer
    # layer2's downsampling branch and 3x3 path meet: stride 2, 11 pixels seen by a position
    assert ex.fields_["layer2.conv2"].stride == (2, 2)


class _Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        if float(y.detach().sum()) > -1.0:
            y = self.conv2(y)
        return y.mean((2, 3))


def test_untraceable_model_falls_back_to_gradient_boxes():
    model = seeded(_Untraceable)
    x = _images(8)
    assert arithmetic_fields(model, ["conv1", "conv2"], x[:1]) == {}
    ex = DatasetExamples(model, top_k=2, batching=3).fit(x)
    assert dict(ex.receptive_field_) == {"conv1": "gradient", "conv2": "gradient"}
    for layer, reach in (("conv1", 1), ("conv2", 2)):
        pos = ex.top_positions_[layer]
        box = ex.top_boxes_[layer]
        # the box holds the position itself and stays within the theoretical field
        assert bool((box[..., :2] <= pos).all() and (box[..., 2:] >= pos).all())
        assert bool((box[..., :2] >= (pos - reach).clamp(min=0)).all())
        assert bool((box[..., 2:] <= (pos + reach).clamp(max=15)).all())


def test_save_and_load_round_trip(tmp_path):
    model = seeded(TinyCNN)
    ex = DatasetExamples(model, layers="all", top_k=3).fit(_images(15))
    path = ex.save(tmp_path / "ex.safetensors")
    back = DatasetExamples.load(path)
    assert back.layers_ == ex.layers_ and back.n_examples_ == 15 and back.input_shape_ == ex.input_shape_
    assert dict(back.receptive_field_) == dict(ex.receptive_field_) and dict(back.fields_) == dict(ex.fields_)
    for layer in ex.layers_:
        a, b = ex.unit(layer, 1), back.unit(layer, 1)
        assert torch.equal(a.top_indices, b.top_indices) and torch.equal(a.bottom_values, b.bottom_values)
        assert (a.top_boxes is None) == (b.top_boxes is None)
    with pytest.raises(ConfigError, match="no model"):
        back.fit(_images(3))
    with pytest.raises(InputError, match="not a dataset-examples file"):
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        DatasetExamples.load(tmp_path / "other.safetensors")


def test_fitted_tables_are_read_only():
    ex = DatasetExamples(seeded(TinyCNN), top_k=2).fit(_images(6))
    with pytest.raises(TypeError):
        ex.top_indices_["features.0"] = torch.zeros(1)


def test_dead_and_constant_units_are_flagged():
    model = seeded(TinyCNN)
    with torch.no_grad():
        model.features[3].weight[2].zero_()
        model.features[3].bias[2] = -1.0  # channel 2 of features.3: always -1
    ex = DatasetExamples(model, layers=["features.3", "features.4"], top_k=3).fit(_images(9))
    dead = ex.unit("features.3", 2)
    assert dead.never_positive and dead.constant and dead.frac_positive == 0.0
    relu = ex.unit("features.4", 2)
    assert relu.never_positive and relu.constant
    live = ex.unit("features.3", 0)
    assert not live.constant


@pytest.mark.parametrize("top_k,bottom_k", [(3, 0), (0, 3), (9, 0), (0, 9)])
def test_constant_with_only_one_end_kept(top_k, bottom_k):
    # bottom_k=0 used to raise IndexError and top_k=0 to call every unit non-constant
    model = seeded(TinyCNN)
    with torch.no_grad():
        model.features[3].weight[2].zero_()
        model.features[3].bias[2] = 0.3  # channel 2 of features.3: always 0.3 (not exact in float32)
        model.features[3].weight[1].zero_()
        model.features[3].bias[1] = -1.0
    ex = DatasetExamples(model, layers=["features.3", "features.4"], top_k=top_k, bottom_k=bottom_k).fit(_images(9))
    assert ex.unit("features.3", 2).constant and ex.unit("features.3", 1).constant
    assert ex.unit("features.4", 1).constant  # ReLU of -1: always 0
    assert not ex.unit("features.3", 0).constant and not ex.unit("features.4", 0).constant
    # a unit that differs on a single example is not constant either
    with torch.no_grad():
        model.features[3].weight[2, 0, 1, 1] = 1e-3
    ex = DatasetExamples(model, layers=["features.3"], top_k=top_k, bottom_k=bottom_k).fit(_images(9))
    assert not ex.unit("features.3", 2).constant


def test_constant_without_kept_examples_uses_the_spread():
    ex = DatasetExamples(seeded(TinyCNN), layers=["features.3"], top_k=2).fit(_images(5))
    u = ex.unit("features.3", 0)
    empty = torch.empty(0)
    blank = dict(top_values=empty, bottom_values=empty)
    assert not dataclasses.replace(u, **blank).constant
    assert dataclasses.replace(u, **blank, mean=0.3, std=1e-8).constant
    assert dataclasses.replace(u, **blank, mean=0.0, std=0.0).constant
    assert not dataclasses.replace(u, **blank, mean=0.0, std=1e-8).constant
    assert not dataclasses.replace(u, n_examples=0).constant


def test_mlp_units_have_no_positions():
    model = seeded(TinyMLP)
    x = torch.randn(25, 10, generator=torch.Generator().manual_seed(1))
    ex = DatasetExamples(model, layers="all", top_k=3).fit(x)
    assert ex.layers_ == ("net.0", "net.2", "net.4")
    v, _ = _brute_force(model, "net.2", x)
    assert torch.equal(ex.top_indices_["net.2"], torch.sort(v.t(), dim=1, descending=True, stable=True).indices[:, :3])
    assert ex.receptive_field_["net.0"] == "none"
    with pytest.raises(LayerError, match="no convolution layers"):
        DatasetExamples(model).fit(x)


def test_layer_selection():
    model = seeded(TinyResNet)
    convs = select_layers(model, None)
    assert convs[0] == "conv1" and "layer2.downsample.0" in convs and all("bn" not in c for c in convs)
    assert select_layers(model, "layer1.conv1,layer1.bn1") == ["layer1.conv1", "layer1.bn1"]
    assert select_layers(model, [model.layer1.conv2]) == ["layer1.conv2"]
    with pytest.raises(LayerError, match="layer1.conv1"):
        select_layers(model, "layer1.cnv1")


def test_sources(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (20, 18, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    (folder / "notes.txt").write_text("not an image")
    src = open_source(folder, size=16)
    assert isinstance(src, FolderSource) and len(src) == 5
    assert src.get([4, 0]).shape == (2, 3, 16, 16)
    assert open_source(folder, size=16, n=2).get(slice(0, 2)).shape == (2, 3, 16, 16)
    ex = DatasetExamples(seeded(TinyCNN), top_k=2).fit(src)
    assert ex.n_examples_ == 5
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 16, 16), dtype=np.float32))
    assert len(open_source(tmp_path / "x.npy", n=3)) == 3
    assert open_source("shapes", n=4, size=32).get([3]).shape == (1, 3, 32, 32)
    norm = TensorSource(torch.zeros(2, 3, 4, 4), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert torch.allclose(norm.for_display(norm.get([0])), torch.full((1, 3, 4, 4), 0.5))
    with pytest.raises(InputError, match="missing' does not exist"):
        open_source(tmp_path / "missing")
    with pytest.raises(InputError, match="shapes"):  # an unknown name: the bundled names are offered
        open_source("shapez")
    with pytest.raises(InputError, match="index 9"):
        src.get([9])


def test_map_style_dataset_source():
    x = _images(7)
    dataset = [(x[i], i % 2) for i in range(7)]
    ex = DatasetExamples(seeded(TinyCNN), top_k=2).fit(dataset)
    ref = DatasetExamples(seeded(TinyCNN), top_k=2).fit(x)
    assert torch.equal(ex.top_indices_["features.3"], ref.top_indices_["features.3"])


def test_bad_input_errors_leave_the_model_untouched():
    model = seeded(TinyCNN)
    freeze_some(model)
    x = _images(6)
    snap = snapshot(model, x)
    with pytest.raises(InputError, match="empty"):
        DatasetExamples(model).fit(x[:0])
    with pytest.raises(InputError, match=r"per-sample shape \(4, 16, 16\)"):
        DatasetExamples(model).fit(torch.rand(3, 4, 16, 16))
    with pytest.raises(LayerError, match="features.3"):
        DatasetExamples(model, layers="features.33").fit(x)
    with pytest.raises(InputError, match="NaN"):
        DatasetExamples(model).fit(torch.full((2, 3, 16, 16), float("nan")))
    with pytest.raises(ConfigError, match="top_k"):
        DatasetExamples(model, top_k=-1).fit(x)
    with pytest.raises(ConfigError, match="both 0"):
        DatasetExamples(model, top_k=0).fit(x)
    ex = DatasetExamples(model, top_k=2).fit(x)
    with pytest.raises(InputError, match="out of range"):
        ex.unit("features.0", 8)
    with pytest.raises(LayerError, match="features.0"):
        ex.unit("features.00", 0)
    assert_unchanged(model, snap, x)


def test_train_mode_model_is_restored_and_data_untouched():
    model = seeded(TinyResNet).train()
    x = _images(6)
    snap = snapshot(model, x)
    with pytest.warns(ModelStateWarning):
        ex = DatasetExamples(model, top_k=2, batching=4).fit(x)
    assert_unchanged(model, snap, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = DatasetExamples(model.eval(), top_k=2).fit(x)
    assert torch.equal(ex.top_indices_["conv1"], ref.top_indices_["conv1"])  # eval mode was used


def test_top_k_larger_than_the_data_keeps_every_example():
    ex = DatasetExamples(seeded(TinyCNN), top_k=10).fit(_images(4))
    assert ex.top_indices_["features.0"].shape == (8, 4)
    assert sorted(ex.top_indices_["features.0"][0].tolist()) == [0, 1, 2, 3]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_models_are_refused_with_the_fix():
    scripted = torch.jit.script(seeded(TinyCNN))
    with pytest.raises(ConfigError, match="package.module:factory"):
        DatasetExamples(scripted, layers="features.0").fit(_images(3))
