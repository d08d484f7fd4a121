"""Objectives: the algebra, each term's value on known activations, the fused evaluation
of per-image objectives, and the checks against layer shapes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, LayerError, TargetError
from seethrough.featurevis import (
    L1,
    L2,
    BlurPenalty,
    ClassLogit,
    DeepDream,
    Direction,
    Diversity,
    TotalVariation,
    channel,
    neuron,
)
from seethrough.featurevis.objectives import _Plan, as_objectives


class TwoLayer(nn.Module):
    """conv (3 -> 4 channels, 5x5 maps on 5x5 inputs) and fc (-> 6 units)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 5 * 5, 6)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


MODEL = TwoLayer()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _acts(k=3):
    g = _gen()
    return {"conv": torch.randn(k, 4, 5, 5, generator=g), "fc": torch.randn(k, 6, generator=g)}


def _evaluate(objectives, acts=None, output=None, image=None):
    acts = acts or _acts(len(objectives))
    plan = _Plan(MODEL, objectives)
    k = len(objectives)
    image = image if image is not None else torch.rand(k, 3, 5, 5, generator=_gen(1))
    shapes = {n: tuple(a.shape[1:]) for n, a in acts.items()}
    plan.check(shapes, None if output is None else tuple(output.shape[1:]), tuple(image.shape[1:]))
    return plan.evaluate({n: acts[n] for n in plan.modules}, output, image)


# -- algebra -------------------------------------------------------------------------------
def test_algebra_builds_linear_combinations():
    a, b, c = channel("conv", 0), channel("conv", 1), TotalVariation()
    obj = 2 * a - b / 4 + (-c) * 0.5
    assert [(coef, t) for coef, t in obj.terms] == [(2.0, a), (-0.25, b), (-0.5, c)]
    assert (a + a).terms == ((2.0, a),)  # the same term is merged
    assert sum([a, b]).terms == ((1.0, a), (1.0, b))  # sum() starts from 0
    assert (-a).terms == ((-1.0, a),)
    assert obj.describe() == "2 * channel('conv', 0) - 0.25 * channel('conv', 1) - 0.5 * TotalVariation()"


def test_algebra_values_match_the_terms():
    acts = _acts(1)
    a, b = channel("conv", 0), neuron("conv", 2, x=1, y=3)
    va = acts["conv"][0, 0].mean()
    vb = acts["conv"][0, 2, 3, 1]
    got = _evaluate([3 * a - b / 2], acts)
    torch.testing.assert_close(got, (3 * va - vb / 2).reshape(1))
    torch.testing.assert_close(_evaluate([-a], acts), -va.reshape(1))


def test_algebra_rejects_what_is_not_linear():
    a = channel("conv", 0)
    with pytest.raises(TypeError):
        a * a
    with pytest.raises(TypeError):
        a + 1.0  # a constant does not change the optimum: not an objective
    with pytest.raises(TypeError):
        a / 0
    with pytest.raises(ConfigError, match="no terms"):
        _Plan(MODEL, [a - a])


# -- each term -------------------------------------------------------------------------------
def test_channel_neuron_deepdream_direction_values():
    acts = _acts(2)
    x = acts["conv"]
    torch.testing.assert_close(_evaluate([channel("conv", 3)] * 2, acts), x[:, 3].mean(dim=(1, 2)))
    torch.testing.assert_close(_evaluate([neuron("conv", 1)] * 2, acts), x[:, 1, 2, 2])  # centre
    torch.testing.assert_close(_evaluate([channel("fc", 5)] * 2, acts), acts["fc"][:, 5])
    torch.testing.assert_close(_evaluate([neuron("fc", 4)] * 2, acts), acts["fc"][:, 4])
    torch.testing.assert_close(_evaluate([DeepDream("conv")] * 2, acts), (x**2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(_evaluate([DeepDream("conv", reduce="sum")] * 2, acts), (x**2).sum(dim=(1, 2, 3)))
    v = torch.tensor([1.0, -2.0, 0.5, 0.0])
    expected = (x * v.view(1, 4, 1, 1)).sum(dim=1).mean(dim=(1, 2))
    torch.testing.assert_close(_evaluate([Direction("conv", v)] * 2, acts), expected)
    # with cossim_pow, each position's dot product is weighted by max(cos, 0.1) ** p
    dot = (x * v.view(1, 4, 1, 1)).sum(dim=1)
    cos = dot / (x.norm(dim=1) * v.norm() + 1e-6)
    expected = (dot * cos.clamp(min=0.1) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(_evaluate([Direction("conv", v, cossim_pow=2)] * 2, acts), expected)


def test_class_logit_reads_the_output():
    out = torch.randn(2, 6, generator=_gen(3))
    plan = _Plan(MODEL, [ClassLogit(4), ClassLogit(1)])
    assert plan.needs_output
    plan.check({}, (6,), (3, 5, 5))
    torch.testing.assert_close(plan.evaluate({}, out, torch.rand(2, 3, 5, 5)), torch.stack([out[0, 4], out[1, 1]]))


def test_diversity_is_minus_mean_gram_cosine():
    x = torch.rand(3, 4, 5, 5, generator=_gen(4))
    grams = [(a.reshape(4, -1) @ a.reshape(4, -1).T).flatten() for a in x]
    cos = lambda p, q: float(p @ q / (p.norm() * q.norm()))  # noqa: E731
    expected = torch.tensor([-(sum(cos(grams[i], grams[j]) for j in range(3) if j != i) / 2) for i in range(3)])
    got = _evaluate([Diversity("conv")] * 3, {"conv": x})
    torch.testing.assert_close(got, expected)
    # identical images: every Gram cosine is 1
    same = x[:1].expand(3, -1, -1, -1)
    torch.testing.assert_close(_evaluate([Diversity("conv")] * 3, {"conv": same}), -torch.ones(3))
    # one image: nothing to differ from
    assert float(_evaluate([Diversity("conv")], {"conv": x[:1]})) == 0.0


def test_diversity_couples_only_the_images_whose_objective_has_it():
    x = torch.rand(4, 4, 5, 5, generator=_gen(6)).requires_grad_(True)
    objs = [
        channel("conv", 0),
        channel("conv", 1) + Diversity("conv"),
        channel("conv", 2),
        channel("conv", 3) + Diversity("conv"),
    ]
    got = _evaluate(objs, {"conv": x})
    # images 1 and 3 diversify between themselves only; 0 and 2 keep their plain channel mean
    div = _evaluate([Diversity("conv")] * 2, {"conv": x[[1, 3]]})
    expected = torch.stack([x[0, 0].mean(), x[1, 1].mean() + div[0], x[2, 2].mean(), x[3, 3].mean() + div[1]])
    torch.testing.assert_close(got, expected)
    # the gradient reaching an image without Diversity is that of its own objective alone
    (grad,) = torch.autograd.grad(got.sum(), x)
    own = torch.zeros(4, 5, 5)
    own[0] = 1 / 25
    torch.testing.assert_close(grad[0], own)
    own = torch.zeros(4, 5, 5)
    own[2] = 1 / 25
    torch.testing.assert_close(grad[2], own)
    # two equal Diversity terms in one objective count that image once among the members
    twice = _evaluate([Diversity("conv") + Diversity("conv"), channel("conv", 0), Diversity("conv")], {"conv": x[:3]})
    div = _evaluate([Diversity("conv")] * 2, {"conv": x[[0, 2]]})
    torch.testing.assert_close(twice, torch.stack([2 * div[0], x[1, 0].mean(), div[1]]))
    # a lone image with Diversity has nothing to differ from
    lone = _evaluate([channel("conv", 0), Diversity("conv")], {"conv": x[:2]})
    torch.testing.assert_close(lone, torch.stack([x[0, 0].mean(), torch.zeros(())]))


def test_regularisers_on_known_images():
    flat = torch.full((1, 3, 5, 5), 0.5)
    stripes = torch.zeros(1, 3, 5, 5)
    stripes[..., ::2] = 1.0  # columns 0, 2, 4 white
    assert float(_evaluate([TotalVariation()], image=flat)) == 0.0
    # 4 of the 4 horizontal neighbour pairs differ by 1 in every row; none vertically
    assert float(_evaluate([TotalVariation()], image=stripes)) == pytest.approx(1.0)
    assert float(_evaluate([L1()], image=stripes)) == pytest.approx(0.5)
    assert float(_evaluate([L2()], image=stripes)) == pytest.approx(0.5)
    assert float(_evaluate([L1(0.0)], image=stripes)) == pytest.approx(3 / 5)
    assert float(_evaluate([BlurPenalty()], image=flat)) == pytest.approx(0.0)
    assert float(_evaluate([BlurPenalty()], image=stripes)) > 0.01


def test_blur_gradient_pulls_towards_the_neighbourhood_mean():
    img = torch.zeros(1, 1, 5, 5)
    img[0, 0, 2, 2] = 1.0
    img.requires_grad_(True)
    BlurPenalty().score(img).sum().backward()
    g = img.grad[0, 0]
    assert float(g[2, 2]) > 0  # the bright pixel is above its blurred value: descent lowers it
    assert float(g[2, 1]) < 0  # its neighbours are below theirs


# -- per-image objectives ---------------------------------------------------------------------
def test_one_objective_per_image_fused_and_unfused_agree():
    acts = _acts(4)
    objs = [channel("conv", 2), channel("conv", 0), channel("conv", 3), channel("conv", 2)]
    plan = _Plan(MODEL, objs)
    assert [g.kind for g in plan.groups] == ["fused"]  # one gather for all four
    got = _evaluate(objs, acts)
    expected = torch.stack([acts["conv"][k, c].mean() for k, c in enumerate([2, 0, 3, 2])])
    torch.testing.assert_close(got, expected)
    # mixed terms: each image gets exactly its own objective
    mixed = [channel("conv", 1) - 0.1 * TotalVariation(), DeepDream("conv"), neuron("fc", 2), 2 * channel("conv", 0)]
    image = torch.rand(4, 3, 5, 5, generator=_gen(5))
    got = _evaluate(mixed, acts, image=image)
    one = [
        _evaluate([o], {n: a[k : k + 1] for n, a in acts.items()}, image=image[k : k + 1]) for k, o in enumerate(mixed)
    ]
    torch.testing.assert_close(got, torch.cat(one))


def test_as_objectives():
    a = channel("conv", 0)
    assert as_objectives(a, None) == [a]
    assert as_objectives(a, 3) == [a, a, a]
    assert as_objectives([a, a], None) == [a, a]
    with pytest.raises(ConfigError, match="batch=3"):
        as_objectives([a, a], 3)
    with pytest.raises(ConfigError, match="empty"):
        as_objectives([], None)
    with pytest.raises(ConfigError, match="Objective"):
        as_objectives("conv", None)
    with pytest.raises(ConfigError, match="positive int"):
        as_objectives(a, 0)


# -- checks against shapes ---------------------------------------------------------------------
def test_unit_out_of_range_names_the_valid_range():
    with pytest.raises(
        TargetError, match=r"channel 4 is out of range for layer 'conv' with 4 channels \(valid: 0\.\.3\)"
    ):
        _evaluate([channel("conv", 4)])
    with pytest.raises(TargetError, match=r"valid: 0\.\.5"):
        _evaluate([neuron("fc", 6)])
    with pytest.raises(TargetError, match=r"valid: y 0\.\.4, x 0\.\.4"):
        _evaluate([neuron("conv", 0, x=5, y=0)])
    with pytest.raises(TargetError, match=r"class 6 is out of range .* \(valid: 0\.\.5\)"):
        plan = _Plan(MODEL, [ClassLogit(6)])
        plan.check({}, (6,), (3, 5, 5))
    with pytest.raises(TargetError, match="4 channels"):
        _evaluate([Direction("conv", [1.0, 2.0])])


def test_neuron_position_on_a_linear_layer_is_an_error():
    with pytest.raises(LayerError, match=r"'fc' gives per-image shape \(6,\).*without spatial positions.*drop x/y"):
        _evaluate([neuron("fc", 1, x=0, y=0)])


def test_bad_term_arguments():
    with pytest.raises(TargetError, match="int"):
        channel("conv", 1.5)
    with pytest.raises(LayerError, match="dotted name"):
        channel(3, 1)
    with pytest.raises(ConfigError, match="reduce"):
        DeepDream("conv", reduce="max")
    with pytest.raises(ConfigError, match="non-zero"):
        Direction("conv", [0.0, 0.0])
    with pytest.raises(ConfigError, match="cossim_pow"):
        Direction("conv", [1.0], cossim_pow=-1)
    with pytest.raises(LayerError, match="closest names"):
        _Plan(MODEL, [channel("convv", 0)])
    assert math.isfinite(float(_evaluate([channel(MODEL.conv, 0)])[0]))  # a module works as a layer


# -- names and the package's targets ------------------------------------------------------------
def test_no_public_name_means_two_things():
    import seethrough
    import seethrough.featurevis as fv

    for name in ("Channel", "Neuron", "Blur"):
        assert not hasattr(fv, name), name  # the core targets / the attribution baseline keep these names
    shared = (set(fv.__all__) & set(seethrough.__all__)) - {"render"}
    assert not shared, shared
    assert isinstance(fv.channel("conv", 1), fv.ChannelObjective)
    assert isinstance(fv.neuron("conv", 1, x=0, y=0), fv.NeuronObjective)
    assert isinstance(fv.deep_dream("conv"), DeepDream) and isinstance(fv.class_logit(2), ClassLogit)
    assert isinstance(fv.direction("conv", [1.0, 0, 0, 0]), Direction) and isinstance(fv.diversity("conv"), Diversity)


def test_channel_sum_reduction():
    acts = _acts(2)
    x = acts["conv"]
    torch.testing.assert_close(_evaluate([channel("conv", 3, reduce="sum")] * 2, acts), x[:, 3].sum(dim=(1, 2)))
    # fused with another channel of the same reduction, not with a mean
    objs = [channel("conv", 1, reduce="sum"), channel("conv", 2)]
    torch.testing.assert_close(_evaluate(objs, acts), torch.stack([x[0, 1].sum(), x[1, 2].mean()]))
    with pytest.raises(ConfigError, match="reduce"):
        channel("conv", 0, reduce="max")


def test_from_target_maps_the_core_targets_to_fused_terms():
    import seethrough as st
    from seethrough.featurevis import ChannelObjective, NeuronObjective, TargetObjective, from_target

    c = from_target(st.Channel("conv", 2, reduce="sum"))
    assert isinstance(c, ChannelObjective) and (c.channel, c.reduce) == (2, "sum")
    n = from_target(st.Neuron("conv", (1, 3, 4)))
    assert isinstance(n, NeuronObjective) and (n.channel, n.y, n.x) == (1, 3, 4)
    k = from_target(st.Class(5))
    assert isinstance(k, ClassLogit) and k.index == 5
    acts = _acts(2)
    torch.testing.assert_close(_evaluate([n] * 2, acts), acts["conv"][:, 1, 3, 4])
    # the others are scored by the target itself
    assert isinstance(from_target(st.Neuron("fc", 4)), TargetObjective)
    torch.testing.assert_close(_evaluate([from_target(st.Neuron("fc", 4))] * 2, acts), acts["fc"][:, 4])
    out = torch.randn(2, 6, generator=_gen(3))
    soft = from_target(st.Class(1, output="softmax"))
    torch.testing.assert_close(_evaluate([soft] * 2, acts, output=out), out.softmax(dim=1)[:, 1])
    diff = from_target(st.ClassDifference(1, 4)) - 0.5 * from_target(st.Custom(lambda o: o[:, 0] ** 2))
    torch.testing.assert_close(_evaluate([diff] * 2, acts, output=out), out[:, 1] - out[:, 4] - 0.5 * out[:, 0] ** 2)
    assert "from_target(ClassDifference(1, 4))" in diff.describe()
    assert from_target(c) is c


def test_from_target_refuses_what_has_no_meaning_here():
    import seethrough as st
    from seethrough.featurevis import from_target

    with pytest.raises(ConfigError, match="prediction"):
        from_target(st.Predicted())
    with pytest.raises(ConfigError, match="one objective per image"):
        from_target(st.Class([0, 1, 2]))
    with pytest.raises(ConfigError, match="Target"):
        from_target("conv")
    with pytest.raises(TargetError, match="does not fit layer 'conv'"):
        _evaluate([from_target(st.Neuron("conv", 1))])  # a (c,) index on a (C, H, W) layer
    with pytest.raises(TargetError, match="does not fit"):
        _evaluate([from_target(st.Channel("conv", -5))])  # negative: scored by the target, out of range
    with pytest.raises(TargetError, match="out of range"):
        _evaluate([from_target(st.Channel("conv", 4))])


def test_targets_are_accepted_as_objectives():
    import seethrough as st

    objs = as_objectives([st.Channel("conv", 1), channel("conv", 2)], None)
    assert objs[0].describe() == "channel('conv', 1)"
    assert as_objectives(st.Class(3), 2)[0].describe() == "class_logit(3)"
    with pytest.raises(ConfigError, match="Objective"):
        as_objectives([channel("conv", 1), 3], None)
