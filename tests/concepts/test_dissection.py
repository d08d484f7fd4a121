"""Network dissection: planted detectors are found, thresholds and IoUs are exact and do
not depend on the batch size, bad input is reported, the model is left as it was."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seethrough import zoo
from seethrough._core.errors import ConfigError, InputError, LayerError
from seethrough.concepts import QUANTILE_METHOD, Dissection, DissectionResult
from seethrough.data.concepts import ConceptScenes, concept_scenes
from seethrough.testing import TinyCNN, seeded

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _concept_models import PlantedDetectors  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _model_state import assert_unchanged, snapshot  # noqa: E402


@pytest.fixture(scope="module")
def scenes() -> ConceptScenes:
    return concept_scenes(120, seed=1)


@pytest.fixture(scope="module")
def planted(scenes) -> DissectionResult:
    return Dissection(PlantedDetectors().eval(), layers=["relu2", "conv1"]).dissect(scenes)


def test_planted_detectors_are_labelled(planted):
    d = planted["relu2"]
    assert d.labels[PlantedDetectors.RED] == "red"
    assert d.labels[PlantedDetectors.HSTRIPES] == "horizontal_stripes"
    assert float(d.best_iou[PlantedDetectors.RED]) > 0.1
    assert float(d.best_iou[PlantedDetectors.HSTRIPES]) > 0.2
    # each planted unit beats every other concept by far
    for unit, concept in ((PlantedDetectors.RED, "red"), (PlantedDetectors.HSTRIPES, "horizontal_stripes")):
        ious = d.iou[unit]
        others = torch.cat([ious[: planted.concepts.index(concept)], ious[planted.concepts.index(concept) + 1 :]])
        assert float(others.max()) < 0.5 * float(d.best_iou[unit])
    labels = planted.unit_labels()
    assert labels["relu2"][PlantedDetectors.RED].startswith("red (IoU 0.")
    assert labels["relu2"][PlantedDetectors.HSTRIPES].startswith("horizontal_stripes (IoU ")
    assert set(labels) == {"relu2", "conv1"}
    assert all(bool(d.interpretable[k]) for k in labels["relu2"])


def test_result_views(planted, scenes):
    assert planted.n_images == len(scenes) and planted.quantile == 0.005 and planted.iou_threshold == 0.04
    assert planted.quantile_method == QUANTILE_METHOD and "exact" in QUANTILE_METHOD
    rows = planted.summary()
    assert [r["layer"] for r in rows] == ["relu2", "conv1"]
    assert rows[0]["units"] == 4 and rows[0]["interpretable"] == planted["relu2"].n_interpretable
    assert rows[0]["color"] >= 1 and rows[0]["texture"] >= 1
    table = planted.table()
    assert len(table) == 9 and table[0]["concept"] == "horizontal_stripes"
    assert len(planted.table(interpretable_only=True)) == sum(r["interpretable"] for r in rows)
    assert "horizontal_stripes" in planted.to_text() and "relu2" in repr(planted)
    assert planted["relu2"].iou.shape == (4, len(scenes.concepts))
    with pytest.raises(LayerError, match="was not dissected"):
        planted["conv2"]


def _brute_force(model, layer, scenes, quantile):
    acts = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.setdefault("a", o.detach()))
    with torch.no_grad():
        model(scenes.images)
    h.remove()
    a = acts["a"]
    vals = a.transpose(0, 1).reshape(a.shape[1], -1)
    k = math.ceil(quantile * vals.shape[1])
    thr = vals.topk(k, dim=1).values[:, -1]
    up = F.interpolate(a, size=scenes.images.shape[2:], mode="bilinear", align_corners=False)
    hit = up > thr.reshape(1, -1, 1, 1)
    iou = torch.zeros(a.shape[1], len(scenes.concepts))
    for j, c in enumerate(scenes.concepts):
        m = scenes.masks[c][:, None]
        inter = (hit & m).sum(dim=(0, 2, 3)).double()
        union = (hit | m).sum(dim=(0, 2, 3)).double()
        iou[:, j] = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter)).float()
    return thr, iou


def test_thresholds_and_ious_are_exact_and_batch_independent(scenes):
    model = seeded(TinyCNN)
    small = scenes.subset(slice(0, 40))
    thr, iou = _brute_force(model, "features.1", small, 0.01)
    results = [Dissection(model, layers="features.1", quantile=0.01, batching=b).dissect(small) for b in (None, 7, 40)]
    for r in results:
        assert torch.equal(r["features.1"].thresholds, thr)
        assert torch.allclose(r["features.1"].iou, iou, atol=2e-3)  # F.interpolate rounds differently
    assert torch.equal(results[1]["features.1"].iou, results[2]["features.1"].iou)


def test_bad_input_is_reported_and_model_untouched(scenes):
    model = seeded(TinyCNN)
    snap = snapshot(model, scenes.images)
    cases = [
        (
            LayerError,
            "needs \\(units, height, width\\)",
            lambda: Dissection(model, layers="classifier").dissect(scenes),
        ),
        (LayerError, "closest names", lambda: Dissection(model, layers="features.9").dissect(scenes)),
        (LayerError, "no layers", lambda: Dissection(model, layers=[]).dissect(scenes)),
        (ConfigError, "quantile", lambda: Dissection(model, layers="features.1", quantile=0).dissect(scenes)),
        (ConfigError, "iou_threshold", lambda: Dissection(model, layers="features.1", iou_threshold=2).dissect(scenes)),
        (InputError, "ConceptScenes", lambda: Dissection(model, layers="features.1").dissect(scenes.images)),
        (InputError, "no images", lambda: Dissection(model, layers="features.1").dissect(scenes.subset([]))),
        (
            InputError,
            "NaN",
            lambda: Dissection(model, layers="features.1").dissect(
                ConceptScenes(
                    images=torch.full((2, 3, 32, 32), float("nan")),
                    masks={"x": torch.zeros(2, 32, 32, dtype=torch.bool)},
                    concepts=("x",),
                )
            ),
        ),
    ]
    for exc, text, call in cases:
        with pytest.raises(exc, match=text):
            call()
        assert_unchanged(model, snap, scenes.images)
    Dissection(model, layers=["features.1", "features.4"]).dissect(scenes.subset(slice(0, 8)))
    assert_unchanged(model, snap, scenes.images)


class _Scenes:
    """A user's own container: any object with images, masks and concepts (no kinds)."""

    def __init__(self, images, masks, concepts):
        self.images, self.masks, self.concepts = images, masks, concepts


def test_any_object_with_images_masks_and_concepts_is_dissected(scenes):
    model = seeded(TinyCNN)
    small = scenes.subset(slice(0, 16))
    ref = Dissection(model, layers="features.1").dissect(small)
    two = ("red", "horizontal_stripes")
    mine = _Scenes(small.images, {c: small.masks[c] for c in two}, two)
    r = Dissection(model, layers="features.1").dissect(mine)
    assert r.concepts == two and dict(r.kinds) == {"red": "custom", "horizontal_stripes": "custom"}
    cols = [small.concepts.index(c) for c in two]
    assert torch.equal(r["features.1"].iou, ref["features.1"].iou[:, cols])
    assert torch.equal(r["features.1"].thresholds, ref["features.1"].thresholds)
    snap = snapshot(model, small.images)
    bad = [
        (_Scenes(small.images, {"red": small.masks["red"]}, two), "mask of concept 'horizontal_stripes'"),
        (_Scenes(small.images, {"red": small.masks["red"].float()}, ("red",)), "bool tensor"),
        (_Scenes(small.images, {"red": small.masks["red"][:3]}, ("red",)), "shape"),
        (_Scenes(small.images, {}, ()), "no concepts"),
        (_Scenes(small.images[:, 0], {"red": small.masks["red"]}, ("red",)), "\\(N, C, H, W\\)"),
    ]
    for data, text in bad:
        with pytest.raises(InputError, match=text):
            Dissection(model, layers="features.1").dissect(data)
    assert_unchanged(model, snap, small.images)


@pytest.mark.slow
def test_shapes_cnn_has_colour_units_early_and_shape_units_late():
    model = zoo.load("shapes-cnn")
    r = Dissection(model, layers=["features.2", "features.16"]).dissect(concept_scenes(200, seed=0))
    early, late = r["features.2"], r["features.16"]
    early_kinds = [r.kinds[early.labels[k]] for k in range(early.n_units) if bool(early.interpretable[k])]
    late_kinds = [r.kinds[late.labels[k]] for k in range(late.n_units) if bool(late.interpretable[k])]
    assert "color" in early_kinds
    # the last layer feeds the shape classifier: most of its units detect shapes
    assert late.n_interpretable >= late.n_units // 2
    assert late_kinds.count("shape") >= 0.9 * len(late_kinds)
    assert late.n_interpretable > early.n_interpretable


@pytest.mark.parametrize("out_size, in_size", [(64, 8), (64, 16), (32, 32), (28, 7), (10, 4)])
def test_bilinear_matrix_matches_interpolate(out_size, in_size):
    from seethrough.concepts.dissection import bilinear_matrix

    x = torch.rand(2, 3, in_size, in_size + 1)
    ref = F.interpolate(x, size=(out_size, out_size + 2), mode="bilinear", align_corners=False)
    got = bilinear_matrix(out_size, in_size) @ x @ bilinear_matrix(out_size + 2, in_size + 1).T
    assert torch.allclose(got, ref, atol=1e-6)
