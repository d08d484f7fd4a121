"""Tests of the concept data: generated concept sets, random images, scenes with exact
pixel masks, the concept-decided task, and loaders of a user's concept sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seethrough._core.errors import InputError
from seethrough.data.concepts import (
    COLORS,
    CONCEPT_KINDS,
    CONCEPTS,
    SHAPES,
    TEXTURES,
    ConceptScenes,
    concept_dataset,
    concept_images,
    concept_scenes,
    load_concept_images,
    random_images,
)
from seethrough.data.shapes import CLASSES


@pytest.fixture(scope="module")
def scenes() -> ConceptScenes:
    return concept_scenes(160, seed=4)


def _hsv(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees), saturation, value of (N, 3, H, W) images, each (N, H, W)."""
    a = x.numpy()
    mx, mn = a.max(axis=1), a.min(axis=1)
    d = np.where(mx - mn > 1e-6, mx - mn, 1e-6)
    r, g, b = a[:, 0], a[:, 1], a[:, 2]
    h = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) * 60.0
    s = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    return h, s, mx


def _hue_dist(h: np.ndarray, ref: float) -> np.ndarray:
    d = np.abs(h - ref) % 360
    return np.minimum(d, 360 - d)


def test_vocabulary():
    assert CONCEPTS == COLORS + TEXTURES + SHAPES
    assert SHAPES == CLASSES
    assert set(CONCEPT_KINDS.values()) == {"color", "texture", "shape"}
    assert [CONCEPT_KINDS[c] for c in ("red", "dots", "circle")] == ["color", "texture", "shape"]


@pytest.mark.parametrize(
    "fn",
    [
        lambda n, **kw: concept_images("stripes", n, **kw),
        lambda n, **kw: random_images(n, **kw),
        lambda n, **kw: concept_scenes(n, **kw).images,
        lambda n, **kw: concept_dataset(n, "dots", **kw)[0],
    ],
)
def test_shapes_ranges_and_determinism(fn):
    a = fn(6, seed=3, size=40)
    assert a.shape == (6, 3, 40, 40) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, fn(6, seed=3, size=40))
    assert not torch.equal(a, fn(6, seed=4, size=40))
    g = fn(3, seed=3, size=32, channels=1)
    assert g.shape == (3, 1, 32, 32)


def test_streams_differ_between_concepts_and_random():
    # the same seed gives unrelated images for different concepts and for random images
    r = concept_images("red", 4, seed=0)
    g = concept_images("green", 4, seed=0)
    z = random_images(4, seed=0)
    assert (r - g).abs().mean() > 0.05 and (r - z).abs().mean() > 0.05


def test_scene_masks_are_exact_for_colours(scenes):
    h, s, v = _hsv(scenes.images)
    for c, ref in (("red", 0.0), ("green", 120.0), ("blue", 225.0), ("yellow", 55.0)):
        m = scenes.masks[c].numpy()
        assert m.sum() > 500, c
        # mask pixels carry the named hue, saturated (grain noise aside)
        assert np.median(_hue_dist(h[m], ref)) < 10, c
        assert np.quantile(_hue_dist(h[m], ref), 0.95) < 20, c
        assert np.median(s[m]) > 0.6, c
    # pixels outside every colour mask and every shape (shapes may be filled with an
    # unnamed saturated hue) are dull: backgrounds and textures
    named = np.zeros_like(scenes.masks["red"].numpy())
    for c in COLORS + SHAPES:
        named |= scenes.masks[c].numpy()
    assert np.quantile(s[~named], 0.95) < 0.45
    # no named-colour hue that is saturated and bright outside the colour masks except
    # on shapes filled with another hue: red pixels outside "red" are rare
    red_like = (_hue_dist(h, 0.0) < 8) & (s > 0.65) & (v > 0.6)
    assert (red_like & ~scenes.masks["red"].numpy()).sum() < 0.02 * red_like.sum()


def test_scene_texture_masks(scenes):
    st = scenes.masks["stripes"]
    hs, vs = scenes.masks["horizontal_stripes"], scenes.masks["vertical_stripes"]
    assert hs.any() and vs.any()
    assert not (hs & ~st).any() and not (vs & ~st).any(), "oriented stripes are stripes"
    assert not (hs & vs).any()
    lum = scenes.images.mean(dim=1)
    dy = (lum[:, 1:, :] - lum[:, :-1, :]).abs()[:, :, :-1]
    dx = (lum[:, :, 1:] - lum[:, :, :-1]).abs()[:, :-1, :]
    inner_h = hs[:, 1:, 1:] & hs[:, :-1, :-1]
    inner_v = vs[:, 1:, 1:] & vs[:, :-1, :-1]
    # horizontal bands vary along y, vertical bands along x
    assert dy[inner_h].mean() > 3 * dx[inner_h].mean()
    assert dx[inner_v].mean() > 3 * dy[inner_v].mean()


def test_scene_every_concept_occurs_and_coverage(scenes):
    cov = scenes.coverage()
    assert set(cov) == set(CONCEPTS)
    for c in CONCEPTS:
        assert scenes.masks[c].flatten(1).any(1).sum() >= 5, c
        assert 0.0 < cov[c] < 0.2
    assert scenes.kinds["checkerboard"] == "texture"


def test_scenes_container(scenes):
    sub = scenes.subset([0, 2, 5])
    assert len(sub) == 3 and torch.equal(sub.images[1], scenes.images[2])
    assert torch.equal(sub.masks["red"][2], scenes.masks["red"][5])
    assert len(scenes.subset(slice(0, 4))) == 4
    with pytest.raises(InputError, match="one entry per concept"):
        ConceptScenes(images=scenes.images[:2], masks={"red": scenes.masks["red"][:2]})
    with pytest.raises(InputError, match="bool of shape"):
        ConceptScenes(images=scenes.images[:2], masks={"red": scenes.masks["red"][:3]}, concepts=("red",))
    own = ConceptScenes(images=scenes.images[:2], masks={"mine": scenes.masks["red"][:2]}, concepts=("mine",))
    assert own.kinds["mine"] == "custom"


def test_concept_images_show_their_concept():
    x = concept_images("red", 30, seed=1)
    h, s, v = _hsv(x)
    red = (_hue_dist(h, 0.0) < 12) & (s > 0.55) & (v > 0.5)
    assert (red.reshape(30, -1).mean(axis=1) > 0.01).all()
    # random images can exclude a concept
    z = random_images(30, seed=1, exclude="red")
    h, s, v = _hsv(z)
    red = (_hue_dist(h, 0.0) < 8) & (s > 0.65) & (v > 0.6)
    assert red.reshape(30, -1).mean(axis=1).max() < 0.002


def test_concept_dataset_labels_decide_the_concept():
    x, y = concept_dataset(60, "red", seed=2)
    assert y.dtype == torch.int64 and int(y.sum()) == 30
    h, s, v = _hsv(x)
    frac = ((_hue_dist(h, 0.0) < 8) & (s > 0.65) & (v > 0.6)).reshape(60, -1).mean(axis=1)
    assert (frac[y.numpy() == 1] > 0.01).all()
    assert (frac[y.numpy() == 0] < 0.002).all()


def test_generator_errors():
    with pytest.raises(InputError, match="Did you mean 'stripes'"):
        concept_images("stripe", 3)
    with pytest.raises(InputError, match="at least 24"):
        concept_scenes(2, size=16)
    with pytest.raises(InputError, match="channels"):
        random_images(2, channels=2)
    with pytest.raises(InputError, match="non-negative"):
        concept_images("red", -1)
    with pytest.raises(InputError, match="unknown concept"):
        random_images(2, exclude=["plaid"])
    assert concept_images("red", 0).shape == (0, 3, 64, 64)


def test_load_concept_images(tmp_path):
    folder = tmp_path / "stripes"
    folder.mkdir()
    x = concept_images("stripes", 3, seed=0, size=32)
    for i in (2, 0, 1):  # written out of order; read sorted by name
        Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    got = load_concept_images(folder)
    assert got.shape == (3, 3, 32, 32)
    assert (got - x).abs().max() < 1 / 255 + 1e-6
    assert load_concept_images(folder, size=24, channels=1).shape == (3, 1, 24, 24)
    np.save(tmp_path / "c.npy", x.numpy())
    assert torch.equal(load_concept_images(tmp_path / "c.npy"), x)
    assert torch.equal(load_concept_images(x), x)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no image files"):
        load_concept_images(empty)
    with pytest.raises(InputError, match="neither a folder"):
        load_concept_images(tmp_path / "missing")
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        load_concept_images(torch.zeros(3, 8, 8))
