"""GAN dissection and causal intervention on a TinyGAN with a planted unit.

The planted generator: ``to_image`` reads only unit ``U`` of ``block1.relu`` (all its other
input weights are 0) with a bias set so that about 20% of the pixels are bright. The
segmenter labels a pixel ``bright`` when it exceeds 0.5, so unit ``U`` alone paints the
concept: dissection must label it ``bright`` with a high IoU, ablating it must remove every
bright pixel, ablating any other unit must change nothing, and random units of the same
count must remove far less on average. Thresholds and IoUs are checked against a brute
force (hooks, ``F.interpolate``), for both threshold rules.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seethrough._core.errors import ConfigError, InputError, LayerError
from seethrough.concepts import Dissection
from seethrough.concepts.gan import (
    ACECurve,
    GANDissection,
    GANDissectionResult,
    InterventionEffect,
    UnitIntervention,
    causal_effect,
    conv_layers,
)
from seethrough.testing.generative import TinyGAN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, snapshot  # noqa: E402

U = 3  # the planted unit of block1.relu
LAYER = "block1.relu"


def planted_generator(bright_share: float = 0.2) -> TinyGAN:
    """A TinyGAN whose image depends on unit U of block1.relu only."""
    g = TinyGAN()
    with torch.no_grad():
        g.to_image.weight.zero_()
        g.to_image.weight[U, 0] = 1.0
        g.to_image.bias.zero_()
        seen: dict[str, torch.Tensor] = {}
        h = g.to_image.register_forward_hook(lambda m, i, o: seen.setdefault("logits", o))
        g(torch.randn(400, 4, generator=torch.Generator().manual_seed(9)))
        h.remove()
        g.to_image.bias.fill_(-float(torch.quantile(seen["logits"].flatten(), 1 - bright_share)))
    return g.eval()


def bright(images: torch.Tensor) -> dict[str, torch.Tensor]:
    x = images[:, 0]
    return {"bright": x > 0.5, "dark": x <= 0.5}


def regions(images: torch.Tensor) -> dict[str, torch.Tensor]:
    b = images[:, 0] > 0.5
    rows = torch.arange(8)
    tl = (rows[:, None] < 4) & (rows[None, :] < 4)
    br = (rows[:, None] >= 5) & (rows[None, :] >= 5)
    return {"bright": b, "bright_tl": b & tl, "bright_br": b & br}


def codes(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def gen() -> TinyGAN:
    return planted_generator()


@pytest.fixture(scope="module")
def dissected(gen) -> GANDissectionResult:
    return GANDissection(gen, layer=LAYER, segmenter=bright).dissect(400, seed=0)


# ----------------------------------------------------------------------------- brute force
def _maps_and_masks(gen, z, seg=bright):
    seen = {}
    h = dict(gen.named_modules())[LAYER].register_forward_hook(lambda m, i, o: seen.setdefault("a", o.detach()))
    with torch.no_grad():
        images = gen(z)
    h.remove()
    masks = seg(images)
    a = seen["a"]
    up = F.interpolate(a, size=images.shape[2:], mode="bilinear", align_corners=False)
    return a, up, masks


def _iou(hit, m):
    inter = (hit & m).sum().double()
    union = (hit | m).sum().double()
    return float(inter / union) if union > 0 else 0.0


def _iqr_brute(hit, m):
    """I/H of two binary variables, from the 2x2 table (entropies in nats)."""
    n = hit.numel()
    table = (
        torch.tensor([[(hit & m).sum(), (hit & ~m).sum()], [(~hit & m).sum(), (~hit & ~m).sum()]], dtype=torch.float64)
        / n
    )
    pa, pm = table.sum(1), table.sum(0)
    info = sum(
        float(table[i, j] * math.log(table[i, j] / (pa[i] * pm[j])))
        for i in range(2)
        for j in range(2)
        if table[i, j] > 0
    )
    h = -sum(float(p * math.log(p)) for p in table.flatten() if p > 0)
    return info / h if h > 1e-12 else 0.0


# --------------------------------------------------------------------------------- tests
def test_planted_unit_is_labelled_with_its_concept(dissected, gen):
    d = dissected[LAYER]
    assert dissected.layer == LAYER and dissected.rule == "iqr" and dissected.concepts == ("bright", "dark")
    assert dissected.n_images == 400 and dissected.n_selection == 400 and dissected.image_shape == (1, 8, 8)
    assert d.labels[U] == "bright" and bool(d.interpretable[U])
    col = d.iou[:, 0]
    assert float(col[U]) > 0.5
    others = torch.cat([col[:U], col[U + 1 :]])
    assert float(others.max()) < 0.5 * float(col[U])  # the planted unit beats every other unit by far
    assert dissected.top_units("bright")[0] == U
    # the share of bright pixels is what the bias was set for, measured on the dissected images
    _, _, masks = _maps_and_masks(gen, torch.randn(400, 4, generator=torch.Generator().manual_seed(0)))
    assert abs(float(dissected.concept_fraction[0]) - float(masks["bright"].float().mean())) < 1e-6
    assert abs(float(dissected.concept_fraction[0]) - 0.2) < 0.05
    assert d.concept_thresholds is not None and d.concept_thresholds.shape == (8, 2)
    assert float(d.thresholds[U]) == float(d.concept_thresholds[U, 0])


def test_quantile_rule_matches_brute_force_and_does_not_depend_on_batching(gen):
    z = codes(120, 1)
    a, up, masks = _maps_and_masks(gen, z)
    q = 0.2
    vals = a.transpose(0, 1).reshape(a.shape[1], -1)
    thr = vals.topk(math.ceil(q * vals.shape[1]), dim=1).values[:, -1]
    results = [
        GANDissection(gen, layer=LAYER, segmenter=bright, threshold="quantile", quantile=q, batching=b).dissect(z=z)
        for b in (None, 7, 120)
    ]
    for r in results:
        d = r[LAYER]
        assert torch.equal(d.thresholds, thr) and d.concept_thresholds is None and r.n_selection == 0
        for k in range(8):
            hit = up[:, k] > thr[k]
            for j, c in enumerate(r.concepts):
                assert abs(float(d.iou[k, j]) - _iou(hit, masks[c])) < 2e-3  # F.interpolate rounds differently
    assert torch.equal(results[1][LAYER].iou, results[2][LAYER].iou)
    assert results[0][LAYER].labels[U] == "bright"


def test_iqr_rule_matches_brute_force(gen):
    z, sel = codes(60, 2), codes(50, 3)
    bins = 32
    r = GANDissection(gen, layer=LAYER, segmenter=bright, bins=bins).dissect(z=z, selection=sel)
    d = r[LAYER]
    assert r.n_selection == 50 and r.settings["bins"] == bins
    a_sel, up_sel, m_sel = _maps_and_masks(gen, sel)
    _, up, m = _maps_and_masks(gen, z)
    assert d.concept_thresholds is not None
    for k in range(8):
        lo, hi = float(a_sel[:, k].min()), float(a_sel[:, k].max())
        step = (hi - lo) / bins
        for j, c in enumerate(r.concepts):
            scores = [_iqr_brute(up_sel[:, k] > lo + i * step, m_sel[c]) for i in range(bins)]
            best = max(range(bins), key=lambda i: (scores[i], -i))
            t = float(d.concept_thresholds[k, j])
            assert abs(t - (lo + best * step)) <= step * 1.001 + 1e-6
            assert abs(float(d.iou[k, j]) - _iou(up[:, k] > t, m[c])) < 0.02
    assert d.labels[U] == "bright" and float(d.iou[U, 0]) > 0.5


def test_one_implementation_serves_classifier_and_gan_dissection(gen):
    """dissect_inputs (latent codes with masks given) and GANDissection (masks from the
    segmenter, chunk by chunk) run the same engine: identical thresholds and IoUs."""
    z = codes(80, 4)
    with torch.no_grad():
        masks = bright(gen(z))
    for rule, kw in (("quantile", {"quantile": 0.1}), ("iqr", {"bins": 16})):
        mine = Dissection(gen, layers=LAYER, threshold=rule, **kw).dissect_inputs(z, masks)
        theirs = GANDissection(gen, layer=LAYER, segmenter=bright, threshold=rule, **kw).dissect(z=z, selection=z)
        assert mine.concepts == theirs.concepts == ("bright", "dark") and mine.rule == theirs.rule == rule
        assert torch.equal(mine[LAYER].iou, theirs[LAYER].iou)
        assert torch.equal(mine[LAYER].thresholds, theirs[LAYER].thresholds)
        assert mine[LAYER].labels == theirs[LAYER].labels
    with pytest.raises(InputError, match="mask of concept 'bright'"):
        Dissection(gen, layers=LAYER).dissect_inputs(z[:10], masks)
    with pytest.raises(InputError, match="mapping"):
        Dissection(gen, layers=LAYER).dissect_inputs(z, {})


def test_ablating_the_labelled_unit_removes_the_concept_more_than_random(gen, dissected):
    ui = UnitIntervention(gen, layer=LAYER, segmenter=bright)
    curve = ui.ace_curve(dissected, "bright", n_samples=200, random_draws=6, seed=0)
    assert isinstance(curve, ACECurve) and curve.counts.tolist() == [1, 2, 4]
    assert all(units[0] == U for units in curve.top_units)
    assert 0.1 < curve.baseline < 0.3
    # ablating the planted unit removes every bright pixel, whatever else is ablated with it
    assert torch.allclose(curve.effect, torch.full((3,), -curve.baseline, dtype=torch.float64), atol=1e-9)
    # random units only remove the concept when a draw includes U: much less on average
    assert bool((curve.random_mean > curve.effect + 0.3 * curve.baseline).all())
    for i, sets in enumerate(curve.random_units):
        for j, units in enumerate(sets):
            expected = -curve.baseline if U in units else 0.0
            assert abs(float(curve.random_effects[i, j]) - expected) < 1e-9
    # any unit but U does nothing at all; U alone removes everything
    z = codes(50, 5)
    others = causal_effect(gen, LAYER, [0, 1, 2, 4, 5, 6, 7], "bright", z, segmenter=bright)
    assert others.effect == 0.0 and torch.equal(others.ablated, others.clean)
    alone = causal_effect(gen, LAYER, U, "bright", z, segmenter=bright)
    assert float(alone.ablated.max()) == 0.0 and abs(alone.effect + float(alone.clean.mean())) < 1e-6


def test_insertion_paints_the_concept_where_asked(gen):
    z = codes(64, 6)
    ui = UnitIntervention(gen, layer=LAYER, segmenter=regions)
    where = torch.zeros(4, 4, dtype=torch.bool)
    where[:2, :2] = True  # layer positions feeding image rows/cols 0..4 only
    tl = ui.effect([U], "bright_tl", z, mode="insert", positions=where)
    br = ui.effect([U], "bright_br", z, mode="insert", positions=where)
    assert tl.effect > 0.1 and tl.value is not None  # the quadrant is 16 of 64 pixels
    assert torch.equal(br.inserted, br.clean)  # far from the inserted positions nothing changes
    # the default value is each unit's largest activation over the codes
    seen = {}
    h = dict(gen.named_modules())[LAYER].register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    with torch.no_grad():
        gen(z)
    h.remove()
    assert torch.allclose(tl.value, seen["a"][:, U].amax().reshape(1))
    # the paper's ACE: inserted minus ablated, per image
    ace = ui.effect([U], "bright", z, mode="ace", value=5.0)
    assert ace.ablated is not None and ace.inserted is not None
    assert torch.allclose(ace.per_sample, ace.inserted - ace.ablated)
    assert abs(ace.effect - float((ace.inserted - ace.ablated).mean())) < 1e-6 and ace.effect > 0.5
    # per-image positions
    per = where.expand(64, 4, 4).clone()
    per[::2] = False
    half = ui.effect([U], "bright_tl", z, mode="insert", positions=per)
    assert torch.equal(half.inserted[::2], half.clean[::2]) and half.effect < tl.effect


def test_segmenter_forms_give_the_same_dissection(gen):
    z = codes(60, 7)

    def bool_maps(images):
        m = bright(images)
        return torch.stack([m["bright"], m["dark"]], dim=1)

    def labels(images):
        return (images[:, 0] > 0.5).long()  # 1 = bright, 0 = dark

    def two_maps(images):
        lab = labels(images)
        return torch.stack([torch.zeros_like(lab), lab], dim=1)

    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(1)
            self.eval()

        def forward(self, x):
            return self.bn(x)

        def concept_masks(self, images):
            return bright(images)

    seg_module = Seg()
    snap = snapshot(seg_module)
    forms = [
        (bright, None),
        (bool_maps, ["bright", "dark"]),
        (labels, {"bright": 1, "dark": 0}),
        (two_maps, {"bright": (1, 1), "dark": (1, 0)}),
        (seg_module, None),
    ]
    ref = None
    for seg, concepts in forms:
        r = GANDissection(gen, layer=LAYER, segmenter=seg, concepts=concepts, threshold="quantile", quantile=0.2)
        d = r.dissect(z=z)
        assert d.concepts == ("bright", "dark")
        if ref is None:
            ref = d[LAYER].iou
        assert torch.equal(d[LAYER].iou, ref)
    assert_unchanged(seg_module, snap)
    only = GANDissection(gen, layer=LAYER, segmenter=bright, concepts=["bright"], threshold="quantile", quantile=0.2)
    assert torch.equal(only.dissect(z=z)[LAYER].iou[:, 0], ref[:, 0])


def test_results_save_load_and_views(tmp_path, gen, dissected):
    from matplotlib.figure import Figure

    ui = UnitIntervention(gen, layer=LAYER, segmenter=bright)
    curve = ui.ace_curve(dissected, "bright", counts=[1, 2], n_samples=40, random_draws=2)
    effect = ui.effect([U, 1], "bright", codes(30, 8))
    assert isinstance(effect, InterventionEffect) and effect.units == (U, 1) and "ablate 2 units" in repr(effect)
    for res in (dissected, curve, effect):
        path = res.save(tmp_path / f"{type(res).__name__}.safetensors")
        back = type(res).load(path)
        assert type(back) is type(res)
        fig = Figure()
        ax = fig.add_subplot(1, 2, 2)
        assert res.plot(ax=ax) is fig
        html = res.to_html()
        assert "<img" in html and LAYER in html
    back = GANDissectionResult.load(tmp_path / "GANDissectionResult.safetensors")
    assert torch.equal(back[LAYER].iou, dissected[LAYER].iou) and back.layer == LAYER and back.rule == "iqr"
    assert torch.equal(back.concept_fraction, dissected.concept_fraction)
    assert "per unit and concept, maximal information quality ratio" in dissected.to_text()
    back_curve = ACECurve.load(tmp_path / "ACECurve.safetensors")
    assert back_curve.top_units == curve.top_units and torch.equal(back_curve.effect, curve.effect)
    assert [r["units"] for r in curve.rows()] == [1, 2]
    assert "bright" in curve.to_html()


def test_bad_input_is_reported_and_model_untouched(gen, dissected):
    snap = snapshot(gen)
    z = codes(20, 9)
    assert conv_layers(gen) == ["block1.conv", "to_image"]

    class NoLatent(nn.Module):
        def forward(self, z):
            return z

    def dissect(**kw):
        settings = {"layer": LAYER, "segmenter": bright, **kw}
        return lambda **call: GANDissection(gen, **settings).dissect(**{"n_samples": 20, **call})

    ui = UnitIntervention(gen, layer=LAYER, segmenter=bright)
    cases = [
        (LayerError, "'block1.conv', 'to_image'", dissect(layer="fc")),
        (
            LayerError,
            "'block1.conv', 'to_image'",
            lambda: UnitIntervention(gen, layer="fc", segmenter=bright).effect(0, "bright", z),
        ),
        (LayerError, "closest names", dissect(layer="block9.relu")),
        (InputError, r"does not take latent codes of shape \(1, 5\)", dissect(latent_dim=5)),
        (InputError, r"\(N, 4\)", lambda: dissect()(z=torch.randn(10, 5))),
        (InputError, r"\(N, 4\)", lambda: ui.effect([U], "bright", torch.randn(10, 3))),
        (InputError, r"\(N, 4\)", lambda: dissect()(selection=torch.randn(10, 2))),
        (ConfigError, "latent_dim", lambda: GANDissection(NoLatent(), layer="", segmenter=bright).dissect(5)),
        (ConfigError, "threshold must be one of", dissect(threshold="otsu")),
        (ConfigError, "quantile", dissect(threshold="quantile", quantile=0.0)),
        (ConfigError, "n_samples", lambda: dissect()(n_samples=0)),
        (InputError, "returned torch.float32", dissect(segmenter=lambda x: x[:, 0])),
        (InputError, "no mask for concept", dissect(concepts=["sky"])),
        (ConfigError, "label maps", dissect(segmenter=lambda x: (x[:, 0] > 0.5).long())),
        (InputError, "not among the segmenter's concepts", lambda: ui.effect([U], "sky", z)),
        (InputError, r"units must be in 0\.\.7", lambda: ui.effect([8], "bright", z)),
        (InputError, "no units", lambda: ui.effect([], "bright", z)),
        (ConfigError, "mode must be one of", lambda: ui.effect([U], "bright", z, mode="paint")),
        (ConfigError, "ablation sets the units to 0", lambda: ui.effect([U], "bright", z, value=3.0)),
        (
            InputError,
            "positions must be a bool mask",
            lambda: ui.effect([U], "bright", z, positions=torch.ones(8, 8, dtype=torch.bool)),
        ),
        (InputError, "one per unit", lambda: ui.effect([U, 1], "bright", z, mode="insert", value=[1.0, 2.0, 3.0])),
        (
            ConfigError,
            "counts must be ints in 1..8",
            lambda: ui.ace_curve(dissected, "bright", counts=[9], n_samples=10),
        ),
        (InputError, "was not dissected", lambda: ui.ace_curve(dissected, "sky", n_samples=10)),
        (
            LayerError,
            "dissect 'block1.conv' first",
            lambda: UnitIntervention(gen, layer="block1.conv", segmenter=bright).ace_curve(
                dissected, "bright", n_samples=10
            ),
        ),
    ]
    for exc, text, call in cases:
        with pytest.raises(exc, match=text):
            call()
        assert_unchanged(gen, snap)
    dissect(threshold="quantile")()
    ui.effect([U], "bright", z, mode="ace")
    ui.ace_curve(dissected, "bright", counts=[1], n_samples=10, random_draws=1, mode="insert")
    assert_unchanged(gen, snap)


def test_generator_in_train_mode_is_dissected_in_eval_mode_and_restored():
    g = planted_generator()
    g.train()
    snap = snapshot(g)
    with pytest.warns(UserWarning, match="train mode"):
        r = GANDissection(g, layer=LAYER, segmenter=bright, threshold="quantile", quantile=0.2).dissect(60)
    assert_unchanged(g, snap)
    ref = GANDissection(planted_generator(), layer=LAYER, segmenter=bright, threshold="quantile", quantile=0.2)
    assert torch.equal(r[LAYER].iou, ref.dissect(60)[LAYER].iou)  # eval-mode BatchNorm, same seed, same codes
