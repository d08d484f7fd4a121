"""Sanity checks (Adebayo et al. 2018): the paper's qualitative result on the bundled model,
the copy never touching the user's model, the layer plan (order, skips, blocks, BatchNorm),
re-initialisation (seeded, same in both modes, Gaussian fallback), the fixed target, the
metric with the uniform signature, the data randomization check, plots and bad input."""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError, LayerError, ModelStateWarning
from seethrough._core.targets import Class
from seethrough.attribution import GradCAM, GuidedBackprop, Saliency, SmoothGrad
from seethrough.evaluation._common import MetricResult
from seethrough.evaluation.randomization import (
    DEFAULT_THRESHOLDS,
    METRICS,
    ModelRandomizationCheck,
    SanityResult,
    data_randomization_check,
    model_randomization,
    randomization_layers,
)
from seethrough.evaluation.views import plot_randomization_curves, plot_randomization_examples
from seethrough.testing import TinyCNN, TinyMLP, TinyResNet, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, freeze_some, snapshot  # noqa: E402

RESNET_LAYERS = [
    "conv1", "bn1", "layer1.conv1", "layer1.bn1", "layer1.conv2", "layer1.bn2",
    "layer2.downsample.0", "layer2.downsample.1", "layer2.conv1", "layer2.bn1", "layer2.conv2", "layer2.bn2", "fc",
]  # fmt: skip


def _x(n=4, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _sal(m):
    return Saliency(m)


# ---------------------------------------------------------------------------------------
# the paper's qualitative result
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_reproduces_the_papers_result_on_the_bundled_shapes_model():
    """Cascading randomization of shapes-cnn: the gradient and Grad-CAM maps change, guided
    backpropagation's survive the randomization of the upper layers. Margins from
    docs/evaluation-sanity.md (8 held-out images, randomization seeds 0-4): mean Spearman-abs
    over the cascade saliency 0.44-0.49, guided backprop 0.59-0.60, Grad-CAM 0.07-0.25; after
    randomizing only the classifier saliency 0.58-0.73, guided backprop 0.89-0.92."""
    from seethrough import zoo
    from seethrough.data import make_shapes
    from seethrough.zoo.train import TEST_SEED_OFFSET

    model = zoo.load("shapes-cnn")
    x = make_shapes(8, seed=TEST_SEED_OFFSET).images
    snap = snapshot(model, x)
    res = {}
    for name, factory in [
        ("saliency", _sal),
        ("guided_backprop", lambda m: GuidedBackprop(m)),
        ("gradcam", lambda m: GradCAM(m, layer="features.16")),
    ]:
        res[name] = ModelRandomizationCheck(factory, similarity=("spearman_abs", "hog"), seed=1).run(model, x)
    assert_unchanged(model, snap, x)
    sal, gbp, cam = res["saliency"], res["guided_backprop"], res["gradcam"]
    assert sal.stages[0] == "classifier" and sal.stages[-1] == "features.0" and len(sal.stages) == 11
    s = {k: r.scores["spearman_abs"] for k, r in res.items()}
    assert s["guided_backprop"] > s["saliency"] + 0.07
    assert s["guided_backprop"] > s["gradcam"] + 0.3
    assert s["saliency"] > s["gradcam"]
    first = {k: float(r.mean_curve("spearman_abs")[0]) for k, r in res.items()}
    assert first["guided_backprop"] > 0.85
    assert first["guided_backprop"] > first["saliency"] + 0.1
    assert gbp.verdicts["spearman_abs"] == "FAIL" and gbp.verdicts["hog"] == "FAIL"
    assert cam.verdicts["spearman_abs"] == "PASS" and cam.verdicts["hog"] == "PASS"
    assert sal.verdicts["hog"] == "PASS"
    # every method's maps are far from the original once the whole network is random
    for r in res.values():
        assert float(r.final("spearman_abs").mean()) < 0.35


# ---------------------------------------------------------------------------------------
# the user's model is never modified
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_user_model_bit_identical_and_hooks_unchanged(mode):
    model = seeded(TinyResNet)
    freeze_some(model)
    handle = model.layer1.register_forward_hook(lambda m, i, o: None)
    x = _x()
    snap = snapshot(model, x)
    res = ModelRandomizationCheck(_sal, mode=mode).run(model, x)
    assert_unchanged(model, snap, x)
    assert len(res.stages) == len(RESNET_LAYERS)
    # and after error paths
    with pytest.raises(LayerError):
        ModelRandomizationCheck(_sal, layers=["layer1.conv3"]).run(model, x)
    with pytest.raises(ConfigError):
        ModelRandomizationCheck(lambda m: "not a method").run(model, x)
    assert_unchanged(model, snap, x)
    handle.remove()


def test_train_mode_model_is_checked_in_eval_mode_and_restored():
    model = seeded(TinyResNet).train()
    x = _x()
    snap = snapshot(model, x)
    with pytest.warns(ModelStateWarning):
        ModelRandomizationCheck(_sal, similarity="spearman").run(model, x)
    assert_unchanged(model, snap, x)


# ---------------------------------------------------------------------------------------
# which layers, in which order
# ---------------------------------------------------------------------------------------
class Reordered(nn.Module):
    """Registered in another order than executed; one parameter module never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.unused = nn.Linear(4, 4)
        self.conv_b = nn.Conv2d(5, 6, 3, padding=1)
        self.conv_a = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.conv_b(torch.relu(self.conv_a(x))))
        return self.head(x.mean(dim=(2, 3)))


def test_layers_in_forward_execution_order_with_notes():
    model = seeded(Reordered)
    names, skipped = randomization_layers(model, _x())
    assert names == ["conv_a", "conv_b", "head"]
    assert skipped == [("unused", "does not run in the forward pass")]
    res = ModelRandomizationCheck(_sal, similarity="spearman").run(model, _x())
    assert res.stages == ("head", "conv_b", "conv_a")  # output layer first
    assert res.skipped == (("unused", "does not run in the forward pass"),)


def test_batchnorm_by_option():
    model = seeded(TinyResNet)
    names, _ = randomization_layers(model, _x())
    assert names == RESNET_LAYERS
    names, skipped = randomization_layers(model, _x(), include_batchnorm=False)
    assert names == [n for n in RESNET_LAYERS if "bn" not in n and n != "layer2.downsample.1"]
    assert ("layer1.bn1", "BatchNorm (include_batchnorm=False)") in skipped
    # an explicitly named BatchNorm is randomized whatever the option
    names, _ = randomization_layers(model, _x(), layers=["bn1", "fc"], include_batchnorm=False)
    assert names == ["bn1", "fc"]


def test_blocks_randomize_their_parameterised_modules():
    model = seeded(TinyResNet)
    x = _x()
    check = ModelRandomizationCheck(_sal, layers=["layer2", model.fc], similarity="spearman")
    stages = []
    for name, copy in check.randomized_models(model, x):
        stages.append(name)
        changed = _changed_modules(model, copy)
        if name == "fc":
            assert changed == {"fc"}
        else:
            assert changed == {"fc"} | {n for n in RESNET_LAYERS if n.startswith("layer2.")}
    assert stages == ["fc", "layer2"]


def _changed_modules(model: nn.Module, other: nn.Module) -> set[str]:
    a, b = dict(model.named_modules()), dict(other.named_modules())
    out = set()
    for name, m in a.items():
        own = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
        other_own = dict(list(b[name].named_parameters(recurse=False)) + list(b[name].named_buffers(recurse=False)))
        if any(not torch.equal(t, other_own[k]) for k, t in own):
            out.add(name)
    return out


def test_cascading_is_cumulative_and_independent_restores_each_layer():
    model = seeded(TinyResNet)
    x = _x()
    cascade = []
    for name, copy in ModelRandomizationCheck(_sal, mode="cascading").randomized_models(model, x):
        cascade.append(name)
        assert _changed_modules(model, copy) == set(cascade)
        assert copy is not model and not copy.training
    assert cascade == RESNET_LAYERS[::-1]
    seen = []
    weights = {}
    for name, copy in ModelRandomizationCheck(_sal, mode="independent").randomized_models(model, x):
        seen.append(name)
        assert _changed_modules(model, copy) == {name}
        weights[name] = {k: v.clone() for k, v in dict(copy.named_modules())[name].state_dict().items()}
    assert seen == RESNET_LAYERS[::-1]
    # a layer gets the same random weights in both modes (seeded by its name)
    for name, copy in ModelRandomizationCheck(_sal, mode="cascading").randomized_models(model, x):
        for k, v in dict(copy.named_modules())[name].state_dict().items():
            assert torch.equal(v, weights[name][k]), (name, k)


class Replacing(nn.Linear):
    """reset_parameters() assigns new Parameter objects instead of writing in place."""

    def reset_parameters(self):
        self.weight = nn.Parameter(torch.randn(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.randn(self.out_features))


class ReplacingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = Replacing(10, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_independent_restores_layers_whose_reset_replaces_parameters():
    model = seeded(ReplacingNet)
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    seen = []
    for name, copy in ModelRandomizationCheck(_sal, mode="independent").randomized_models(model, x):
        seen.append(name)
        assert _changed_modules(model, copy) == {name}
    assert seen == ["fc2", "fc1"]
    assert _changed_modules(model, copy) == set()  # restored after the last stage as well


def test_reinitialisation_uses_reset_parameters_and_is_seeded():
    model = seeded(TinyCNN)
    x = _x()

    def final_weights(seed):
        copy = None
        for _name, copy in ModelRandomizationCheck(_sal, seed=seed).randomized_models(model, x):  # noqa: B007
            pass  # the last stage's copy is the fully randomized model
        return {k: v.clone() for k, v in copy.state_dict().items()}

    a, b, c = final_weights(0), final_weights(0), final_weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)
    # reset_parameters of a Linear: kaiming-uniform bound 1/sqrt(fan_in)
    bound = 1 / (12 * 4) ** 0.5
    assert float(a["classifier.weight"].abs().max()) <= bound
    assert not torch.equal(a["classifier.weight"], model.classifier.weight)


def test_reinitialisation_leaves_the_callers_rng_state_on_every_device(monkeypatch):
    # torch.manual_seed would seed every accelerator too (and for CUDA not yet started, queue
    # the seed for later), which fork_rng restores only for the model's device: only the
    # CPU generator may be seeded for a CPU model, and it is restored
    from copy import deepcopy

    from seethrough.evaluation._randomize import _layer_seed

    model = seeded(TinyCNN)
    x = _x()
    with torch.random.fork_rng(devices=[]):  # the weights the classifier is expected to get
        torch.default_generator.manual_seed(_layer_seed(5, "classifier"))
        expected = deepcopy(model.classifier)
        expected.reset_parameters()
    calls = []
    for mod in (torch.cuda, torch.mps, torch.xpu):
        for fn in ("manual_seed", "manual_seed_all", "seed", "seed_all"):
            if hasattr(mod, fn):
                name = f"{mod.__name__}.{fn}"
                monkeypatch.setattr(mod, fn, lambda *a, _name=name, **k: calls.append(_name))
    torch.default_generator.manual_seed(1234)
    state = torch.get_rng_state()
    name, first = next(iter(ModelRandomizationCheck(_sal, seed=5).randomized_models(model, x)))
    assert name == "classifier" and torch.equal(first.classifier.weight, expected.weight)
    assert torch.equal(torch.get_rng_state(), state)
    ModelRandomizationCheck(_sal, seed=5, similarity="spearman").run(model, x)
    assert torch.equal(torch.get_rng_state(), state)
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reinitialisation_leaves_the_cuda_rng_state():
    x = _x()
    before = torch.cuda.get_rng_state_all()
    cpu = torch.get_rng_state()
    ModelRandomizationCheck(_sal, seed=0, similarity="spearman").run(seeded(TinyCNN), x)  # a CPU model
    assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), before))
    model = seeded(TinyCNN).cuda()
    a = ModelRandomizationCheck(_sal, seed=0, similarity="spearman").run(model, x.cuda())
    b = ModelRandomizationCheck(_sal, seed=0, similarity="spearman").run(model, x.cuda())
    assert all(torch.equal(p, q) for p, q in zip(torch.cuda.get_rng_state_all(), before))
    assert torch.equal(torch.get_rng_state(), cpu)
    torch.testing.assert_close(a.similarity["spearman"], b.similarity["spearman"], equal_nan=True)


class NoInit(nn.Module):
    """A custom layer with a weight but no reset_parameters()."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n) * 0.3 + 0.5)

    def forward(self, x):
        return x @ self.weight


class Temperature(nn.Module):
    """A custom layer whose only parameter cannot be re-drawn (no init, no weight)."""

    def __init__(self) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return x / self.t


class CustomNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 64)
        self.mix = NoInit(64)
        self.temp = Temperature()
        self.out = nn.Linear(64, 3)

    def forward(self, x):
        return self.out(self.temp(torch.relu(self.mix(torch.relu(self.fc(x))))))


def test_gaussian_fallback_and_unrandomizable_layers():
    model = seeded(CustomNet)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    check = ModelRandomizationCheck(_sal, similarity=("spearman", "spearman_abs"))
    for name, copy in check.randomized_models(model, x):
        if name == "mix":
            w = copy.mix.weight.detach()
            # N(0, s^2) with s the trained weight's std: the mean 0.5 is gone, the spread kept
            assert abs(float(w.mean())) < 0.05
            assert float(w.std()) == pytest.approx(float(model.mix.weight.detach().std()), rel=0.1)
    res = check.run(model, x)
    assert res.stages == ("out", "mix", "fc")
    assert res.skipped[0][0] == "temp" and "no reset_parameters()" in res.skipped[0][1]
    with pytest.raises(LayerError, match=r"cannot randomize layer 'temp'.*reset_parameters"):
        ModelRandomizationCheck(_sal, layers=["temp"], similarity="spearman").run(model, x)
    # inside a named block, such a layer is skipped with a note like when iterating
    wrapped = nn.Sequential(model).eval()
    res = ModelRandomizationCheck(_sal, layers=["0"], similarity="spearman").run(wrapped, x)
    assert res.stages == ("0",) and res.skipped[0][0] == "0.temp"


# ---------------------------------------------------------------------------------------
# the result, the target, determinism
# ---------------------------------------------------------------------------------------
def test_result_contents_and_determinism():
    model = seeded(TinyResNet)
    x = _x(5)
    check = ModelRandomizationCheck(_sal, n_examples=2, seed=3)
    r1, r2 = check.run(model, x), check.run(model, x)
    assert isinstance(r1, SanityResult)
    for m in ("spearman_abs", "spearman", "ssim", "hog"):
        assert r1.similarity[m].shape == (len(RESNET_LAYERS), 5) and r1.similarity[m].dtype == torch.float64
        assert torch.equal(r1.similarity[m], r2.similarity[m])
        expected = float(r1.similarity[m].mean())
        assert r1.scores[m] == pytest.approx(expected)
        assert r1.thresholds[m] == DEFAULT_THRESHOLDS[m]
        assert r1.verdicts[m] == ("PASS" if expected < DEFAULT_THRESHOLDS[m] else "FAIL")
    assert r1.passed == all(v == "PASS" for v in r1.verdicts.values())
    assert r1.original_maps.shape == (2, 16, 16) and r1.randomized_maps.shape == (len(RESNET_LAYERS), 2, 16, 16)
    assert torch.equal(r1.example_inputs, x[:2])
    assert r1.n_evaluations > 0 and r1.seconds > 0
    assert r1.method == "saliency" and r1.settings["mode"] == "cascading" and r1.settings["include_batchnorm"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r1.check = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        r1.scores["spearman"] = 0.0  # type: ignore[index]
    assert "saliency" in repr(r1) and len(r1.table()) == 4
    r3 = ModelRandomizationCheck(_sal, n_examples=2, seed=4).run(model, x)
    assert not torch.equal(r1.similarity["spearman"], r3.similarity["spearman"])


class Spy(Saliency):
    targets: list = []

    def attribute(self, inputs, target=None, **kwargs):
        Spy.targets.append(target)
        return super().attribute(inputs, target=target, **kwargs)


def test_target_is_the_original_prediction_kept_fixed():
    model = seeded(TinyCNN)
    x = _x(6)
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    Spy.targets = []
    res = ModelRandomizationCheck(lambda m: Spy(m), similarity="spearman").run(model, x)
    assert torch.equal(res.target_indices, pred)
    assert Spy.targets[0] is None and len(Spy.targets) == 1 + len(res.stages)
    for t in Spy.targets[1:]:
        assert isinstance(t, Class) and torch.equal(t.index, pred)
    # an explicit target is used throughout
    Spy.targets = []
    res = ModelRandomizationCheck(lambda m: Spy(m), similarity="spearman").run(model, x, target=2)
    assert torch.equal(res.target_indices, torch.full((6,), 2))
    assert all(isinstance(t, Class) and int(t.index) == 2 for t in Spy.targets[1:])


@pytest.mark.filterwarnings("ignore::seethrough._core.errors.ZeroAttributionWarning")
def test_method_given_by_name_instance_or_factory_agree():
    model = seeded(TinyResNet)
    x = _x(3)
    kw = dict(similarity=("spearman",), seed=5)
    by_factory = ModelRandomizationCheck(lambda m: GradCAM(m, layer="layer2"), **kw).run(model, x)
    by_name = ModelRandomizationCheck("gradcam", method_settings={"layer": "layer2"}, **kw).run(model, x)
    # an instance whose layer is a module of the user's model is re-bound to each copy
    by_instance = ModelRandomizationCheck(GradCAM(model, layer=model.layer2), **kw).run(model, x)
    for r in (by_name, by_instance):
        torch.testing.assert_close(
            r.similarity["spearman"], by_factory.similarity["spearman"], equal_nan=True, rtol=0, atol=0
        )
    # a nested method bound to the user's model is re-bound too (SmoothGrad around an instance)
    inner = Saliency(model)
    sg = ModelRandomizationCheck(lambda m: SmoothGrad(m, method=inner, n_samples=2), **kw).run(model, x)
    assert float(sg.scores["spearman"]) < 0.999


def test_constant_original_maps_give_nan_and_are_skipped():
    model = seeded(TinyCNN)
    x = _x(3)
    x_zero = x.clone()
    x_zero[1] = 0.0  # Grad-CAM of a ReLU network can vanish on some samples

    class ZeroOne(Saliency):
        def attribute(self, inputs, target=None, **kwargs):
            e = super().attribute(inputs, target=target, **kwargs)
            a = e.attributions.clone()
            a[1] = 0.0
            return dataclasses.replace(e, attributions=a)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ModelRandomizationCheck(lambda m: ZeroOne(m), similarity="spearman").run(model, x_zero)
    s = res.similarity["spearman"]
    assert bool(torch.isnan(s[:, 1]).all()) and not bool(torch.isnan(s[:, [0, 2]]).any())
    assert res.scores["spearman"] == pytest.approx(float(s[:, [0, 2]].mean()))


# ---------------------------------------------------------------------------------------
# the metric with the uniform signature
# ---------------------------------------------------------------------------------------
def test_metric_uniform_signature():
    model = seeded(TinyResNet)
    x = _x(4)
    method = Saliency(model)
    snap = snapshot(model, x)
    r = model_randomization(model, x, method, seed=2)
    assert_unchanged(model, snap, x)
    assert isinstance(r, MetricResult) and r.name == "model_randomization" and not r.higher_is_better
    check = ModelRandomizationCheck(_sal, similarity=("spearman_abs",), seed=2).run(model, x)
    assert torch.allclose(r.values, check.final("spearman_abs"))
    assert r.curves["similarity"].shape == (4, len(RESNET_LAYERS))
    assert r.extras["stages"] == check.stages and r.settings["aggregate"] == "final"
    mean = model_randomization(model, x, "saliency", seed=2, aggregate="mean", batching=2)
    assert torch.allclose(mean.values, check.similarity["spearman_abs"].mean(dim=0))
    assert model_randomization.family == "randomization"
    assert model_randomization.higher_is_better is False
    assert model_randomization.needs == frozenset({"model", "method"})
    assert METRICS == (model_randomization,)
    with pytest.raises(InputError, match="needs the attribution"):
        model_randomization(model, x, method.attribute(x))
    with pytest.raises(InputError, match="needs the attribution"):
        model_randomization(model, x, torch.ones(4, 3, 16, 16))
    with pytest.raises(ConfigError, match="aggregate"):
        model_randomization(model, x, method, aggregate="max")
    assert_unchanged(model, snap, x)


# ---------------------------------------------------------------------------------------
# data randomization
# ---------------------------------------------------------------------------------------
def test_data_randomization_check_on_tiny_models():
    model = seeded(TinyCNN, seed=0)
    other = seeded(TinyCNN, seed=1)
    x = _x(4)
    snaps = snapshot(model, x), snapshot(other)
    res = data_randomization_check(_sal, model, other, x, n_examples=2)
    assert_unchanged(model, snaps[0], x)
    assert_unchanged(other, snaps[1])
    assert res.check == "data" and res.stages == ("random labels",)
    assert res.similarity["spearman_abs"].shape == (1, 4)
    assert res.randomized_maps.shape == (1, 2, 16, 16)
    # the same weights give the same maps: similarity 1, the check fails
    twin = seeded(TinyCNN, seed=0)
    same = data_randomization_check(_sal, model, twin, x)
    for m in same.measures:
        assert torch.allclose(same.similarity[m], torch.ones(1, 4, dtype=torch.float64))
        assert same.verdicts[m] == "FAIL"
    assert float(res.similarity["spearman_abs"].mean()) < 0.9
    with pytest.raises(ConfigError, match="architecture"):
        data_randomization_check(_sal, model, seeded(TinyCNN, num_classes=3), x)
    with pytest.raises(ConfigError, match="model itself"):
        data_randomization_check(_sal, model, model, x)


@pytest.mark.slow
def test_data_randomization_on_the_bundled_random_label_model():
    from seethrough import zoo
    from seethrough.data import make_shapes
    from seethrough.zoo.train import TEST_SEED_OFFSET

    if not (zoo.WEIGHTS_DIR / "shapes-cnn-random-labels.safetensors").is_file():
        pytest.skip("shapes-cnn-random-labels is not trained (scripts/train_zoo.py --only shapes-cnn-random-labels)")
    model, rand = zoo.load("shapes-cnn"), zoo.load("shapes-cnn-random-labels")
    x = make_shapes(8, seed=TEST_SEED_OFFSET).images
    snaps = snapshot(model, x), snapshot(rand)
    res = {
        name: data_randomization_check(f, model, rand, x, similarity=("spearman_abs", "ssim", "hog"))
        for name, f in [("saliency", _sal), ("gradcam", lambda m: GradCAM(m, layer="features.16"))]
    }
    assert_unchanged(model, snaps[0], x)
    assert_unchanged(rand, snaps[1])
    # measured on 5 sets of 8 held-out images (docs/evaluation-sanity.md): ssim <= 0.24,
    # hog <= 0.25 for both methods; Grad-CAM's Spearman-abs <= 0.36 (saliency's reaches 0.48)
    for r in res.values():
        assert r.scores["ssim"] < 0.3 and r.scores["hog"] < 0.3
        assert r.verdicts["ssim"] == "PASS" and r.verdicts["hog"] == "PASS"
    assert res["gradcam"].scores["spearman_abs"] < 0.45


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def test_plots_return_figures():
    from matplotlib.figure import Figure

    model = seeded(TinyResNet)
    res = ModelRandomizationCheck(_sal, n_examples=2).run(model, _x(3))
    fig = plot_randomization_curves(res)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.get_lines()) >= 4 and ax.get_xticklabels()[0].get_text() == "original"
    own = Figure()
    ax2 = own.add_subplot()
    assert plot_randomization_curves(res, ax=ax2, measures=["hog"], band=False) is own
    ex = plot_randomization_examples(res, max_stages=4)
    assert isinstance(ex, Figure) and len(ex.axes) == 2 * (2 + 4)
    with pytest.raises(ConfigError):
        plot_randomization_curves(res, measures=["pearson"])
    none = ModelRandomizationCheck(_sal, n_examples=0, similarity="spearman").run(model, _x(3))
    with pytest.raises(InputError, match="n_examples"):
        plot_randomization_examples(none)
    with pytest.raises(InputError):
        plot_randomization_curves("not a result")


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_bad_input():
    model = seeded(TinyResNet)
    x = _x(3)
    with pytest.raises(LayerError, match=r"unknown layer 'layer1.conv3'.*closest names:.*'layer1.conv1'"):
        ModelRandomizationCheck(_sal, layers=["layer1.conv3"]).run(model, x)
    with pytest.raises(LayerError, match=r"'relu' \(ReLU\) has no parameters.*e\.g\."):
        ModelRandomizationCheck(_sal, layers=["relu"]).run(model, x)
    with pytest.raises(ConfigError, match="overlap"):
        ModelRandomizationCheck(_sal, layers=["layer1", "layer1.conv1"]).run(model, x)
    with pytest.raises(ConfigError, match="not an attribution method"):
        ModelRandomizationCheck(lambda m: nn.Linear(2, 2)).run(model, x)
    third = seeded(TinyResNet, seed=1)
    with pytest.raises(ConfigError, match="on another model"):
        ModelRandomizationCheck(lambda m: Saliency(third)).run(model, x)
    with pytest.raises(ConfigError, match="method_factory must be"):
        ModelRandomizationCheck(42).run(model, x)
    with pytest.raises(ConfigError, match="Did you mean 'saliency'"):
        ModelRandomizationCheck("salency").run(model, x)
    with pytest.raises(ConfigError, match="unknown mode"):
        ModelRandomizationCheck(_sal, mode="bottom_up").run(model, x)
    with pytest.raises(ConfigError, match="unknown similarity"):
        ModelRandomizationCheck(_sal, similarity=("spearman", "pearson")).run(model, x)
    with pytest.raises(ConfigError, match="threshold"):
        ModelRandomizationCheck(_sal, thresholds={"ssim": 2.0}).run(model, x)
    with pytest.raises(InputError, match="torch.Tensor"):
        ModelRandomizationCheck(_sal).run(model, x.numpy())
    # SSIM/HOG on maps without two spatial axes fail before any randomization; ranks work
    mlp = seeded(TinyMLP)
    xm = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="2-D maps"):
        ModelRandomizationCheck(_sal).run(mlp, xm)
    r = ModelRandomizationCheck(_sal, similarity=("spearman", "spearman_abs")).run(mlp, xm)
    assert r.stages == ("net.4", "net.2", "net.0")


def test_verdict_text_and_trust_report_call_forms():
    """The calls the trust report makes: a factory passed as method_factory next to the
    method, a target of fixed indices, and seed= for the data check."""
    model = seeded(TinyCNN)
    x = _x(3)
    with torch.no_grad():
        fixed = model(x).argmax(dim=1)
    res = ModelRandomizationCheck(_sal, similarity=("spearman", "hog")).run(model, x, target=fixed)
    text = res.verdict_text()
    for m in ("spearman", "hog"):
        rel = "<" if res.verdicts[m] == "PASS" else ">="
        assert f"{m} {res.scores[m]:.3f} {rel} 0.5 {res.verdicts[m]}" in text
    expl = Saliency(model).attribute(x, target=fixed)
    r = model_randomization(model, x, expl, target=fixed, seed=0, method_factory=_sal)
    assert torch.allclose(
        r.values, ModelRandomizationCheck(_sal, similarity="spearman_abs").run(model, x).final("spearman_abs")
    )
    d = data_randomization_check(_sal, model, seeded(TinyCNN, seed=1), x, target=fixed, seed=3)
    assert d.settings["seed"] == 3 and torch.equal(d.target_indices, fixed)


@pytest.mark.slow
def test_cli_sanity(tmp_path, capsys):
    from seethrough import zoo
    from seethrough.app.cli import main
    from seethrough.attribution.registry import get_method
    from seethrough.data.shapes import make_shapes

    html = tmp_path / "sanity.html"
    methods = "saliency,guided_backprop,gradcam"
    assert main(["sanity", "--methods", methods, "--n-images", "2", "--curves", "--html", str(html)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    measures = ("spearman_abs", "spearman", "ssim", "hog")
    assert lines[0].split() == ["method", "check", *measures]
    # the same check through the API: the CLI's defaults (seed 0, images of seed 4242, the
    # model's CAM layer for Grad-CAM)
    model, x = zoo.load("shapes-cnn"), make_shapes(2, seed=4242).images
    layer = zoo.info("shapes-cnn").default_cam_layer
    rows = [ln.split() for ln in lines if ln and not ln.startswith((" ", "method", "Report"))]
    assert [r[0] for r in rows] == ["saliency", "guided_backprop", "gradcam"]
    assert {"PASS", "FAIL"} <= {r[3] for r in rows}  # both verdicts are checked (guided backprop fails)
    for row in rows:
        name = row[0]
        settings = {"layer": layer} if get_method(name).needs_layer else None
        res = ModelRandomizationCheck(name, seed=0, method_settings=settings).run(model, x)
        assert row[1] == "cascading" and len(row) == 2 + 2 * len(measures)
        for j, m in enumerate(measures):
            score, verdict = row[2 + 2 * j], row[3 + 2 * j]
            assert score == f"{res.scores[m]:.3f}", (name, m)
            assert verdict == res.verdicts[m], (name, m)
            value, threshold = res.scores[m], res.thresholds[m]
            expected = "N/A" if math.isnan(value) else ("PASS" if value < threshold else "FAIL")
            assert verdict == expected, (name, m, value, threshold)
        # the --curves lines under the row: the mean similarity after each stage
        at = lines.index(next(ln for ln in lines if ln.split()[:1] == [name]))
        for j, m in enumerate(measures):
            curve = lines[at + 1 + j].strip()
            assert curve == f"{m}: " + ", ".join(
                f"{st} {v:.3f}" for st, v in zip(res.stages, res.mean_curve(m).tolist())
            )
    assert "spearman_abs: classifier " in out and "features.0 " in out
    assert html.is_file() and "<img" in html.read_text()
    assert main(["sanity", "--methods", "salency", "--n-images", "2"]) == 2
    assert "Did you mean 'saliency'" in capsys.readouterr().err
    assert main(["sanity", "--n-images", "0"]) == 2
