"""Tests of the known-factor scenes (seethrough.data.factors)."""

from __future__ import annotations

import pytest
import torch

from seethrough.data.factors import (
    CATEGORICAL_FACTORS,
    COLORS,
    FACTOR_NAMES,
    FACTOR_RANGES,
    SHAPE_NAMES,
    SYMMETRY_ORDER,
    FactorScenes,
    canonical_rotation,
    make_factor_scenes,
    render_scenes,
    sample_factors,
)


def _row(shape=0, color=0, scale=0.18, x=0.5, y=0.5, rotation=0.0):
    return [float(shape), float(color), scale, x, y, rotation]


def _centroid(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    size = weights.shape[-1]
    c = torch.arange(size, dtype=torch.float64) + 0.5
    w = weights.double()
    tot = w.sum((-2, -1))
    return (w * c[None, :]).sum((-2, -1)) / tot, (w * c[:, None]).sum((-2, -1)) / tot


def test_shapes_ranges_and_names():
    s = make_factor_scenes(64, seed=1)
    assert isinstance(s, FactorScenes) and len(s) == 64
    assert s.images.shape == (64, 3, 32, 32) and s.images.dtype == torch.float32
    assert s.factors.shape == (64, 6) and s.masks.shape == (64, 32, 32) and s.masks.dtype == torch.bool
    assert s.factor_names == FACTOR_NAMES == ("shape", "color", "scale", "x", "y", "rotation")
    assert s.categorical == CATEGORICAL_FACTORS == ("shape", "color")
    assert 0.0 <= float(s.images.min()) and float(s.images.max()) <= 1.0
    for name, (lo, hi) in FACTOR_RANGES.items():
        col = s.factor(name)
        assert float(col.min()) >= lo and float(col.max()) <= hi
    assert set(s.factor("shape").long().tolist()) <= set(range(len(SHAPE_NAMES)))
    # the background is black: nothing outside the (dilated) object
    far = ~torch.nn.functional.max_pool2d(s.masks[:, None].float(), 5, 1, 2)[:, 0].bool()
    assert float(s.images.permute(1, 0, 2, 3)[:, far].abs().max()) == 0.0
    # every object is inside the image: its edge rows and columns are empty
    assert float(s.images[..., 0].max() + s.images[..., -1].max() + s.images[..., 0, :].max()) == 0.0


def test_deterministic_for_a_seed():
    a, b, c = make_factor_scenes(40, seed=5), make_factor_scenes(40, seed=5), make_factor_scenes(40, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.factors, c.factors)
    assert torch.equal(sample_factors(40, 5), a.factors)


def test_render_reproduces_generated_scenes_exactly():
    s = make_factor_scenes(30, seed=2)
    r = render_scenes(s.factors)
    assert torch.equal(r.images, s.images) and torch.equal(r.masks, s.masks)
    g = make_factor_scenes(30, factors=s.factors.numpy())
    assert torch.equal(g.images, s.images)
    sub = s.subset([3, 4])
    assert torch.equal(sub.images, s.images[3:5]) and len(s.subset(0)) == 1


@pytest.mark.parametrize("shape", range(4))
def test_moving_x_only_moves_the_mask_centroid(shape):
    rows = torch.tensor([_row(shape, 1, x=x, rotation=33.0) for x in (0.3, 0.4, 0.55, 0.7)])
    s = render_scenes(rows)
    cx, cy = _centroid(s.masks.float())
    # exact-pixel shifts move the mask exactly: 0.3 -> 0.55 is 8 pixels
    assert float(cx[2] - cx[0]) == pytest.approx(8.0, abs=1e-6)
    assert float(cy[2] - cy[0]) == pytest.approx(0.0, abs=1e-6)
    # the coverage-weighted centroid is the object's centroid, for any shift
    gray = s.images.max(1).values
    wx, wy = _centroid(gray)
    assert torch.allclose(wx, rows[:, 3].double() * 32, atol=0.08)
    assert torch.allclose(wy, rows[:, 4].double() * 32, atol=0.08)


@pytest.mark.parametrize("shape", range(4))
def test_mask_area_grows_with_scale_and_colour_is_right(shape):
    scales = [0.08, 0.12, 0.16, 0.2, 0.24]
    s = render_scenes(torch.tensor([_row(shape, 3, scale=v, rotation=20.0) for v in scales]))
    area = s.masks.sum((1, 2))
    assert (area[1:] > area[:-1]).all()
    # area in pixels grows like scale^2 (the mask is the shape at that size)
    ratio = area[-1].item() / area[1].item()
    assert ratio == pytest.approx((0.24 / 0.12) ** 2, rel=0.15)
    full = s.images.permute(0, 2, 3, 1)[s.masks & (s.images.amin(1) > 0)]
    inner = full[(full.max(1).values > 0.999)]
    assert torch.allclose(inner, torch.tensor(COLORS[3]).expand_as(inner))


def test_rotation_is_smooth_and_symmetric():
    angles = torch.linspace(0, 30, 16)
    rows = torch.tensor([_row(3, 4, rotation=float(a)) for a in angles])
    img = render_scenes(rows).images
    step = (img[1:] - img[:-1]).abs().mean((1, 2, 3))
    assert (step > 0).all()  # every small rotation changes the pixels (anti-aliased)
    for k, order in enumerate(SYMMETRY_ORDER):
        s = render_scenes(torch.tensor([_row(k, 0, rotation=17.0), _row(k, 0, rotation=17.0 + 360.0 / order)]))
        assert float((s.images[0] - s.images[1]).abs().mean()) < 2e-3
        if order > 1:  # a rotation by less than the symmetry period shows
            t = render_scenes(torch.tensor([_row(k, 0, rotation=17.0), _row(k, 0, rotation=17.0 + 180.0 / order)]))
            assert float((t.images[0] - t.images[1]).abs().mean()) > 5e-3
    f = torch.tensor([_row(0, 0, rotation=100.0), _row(3, 0, rotation=100.0), _row(1, 0, rotation=190.0)])
    assert canonical_rotation(f).tolist() == pytest.approx([10.0, 100.0, 10.0], abs=1e-4)


def test_bad_factors_are_named():
    with pytest.raises(ValueError, match=r"shape \(N, 6\)"):
        render_scenes(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="'shape' must be an integer index"):
        render_scenes(torch.tensor([_row(4)]))
    with pytest.raises(ValueError, match="'color'"):
        render_scenes(torch.tensor([_row(0, 1.5)]))
    with pytest.raises(ValueError, match="'scale' must be > 0"):
        render_scenes(torch.tensor([_row(scale=0.0)]))
    with pytest.raises(ValueError, match="NaN"):
        render_scenes(torch.tensor([_row(x=float("nan"))]))
    with pytest.raises(ValueError, match="size"):
        make_factor_scenes(2, size=4)
    with pytest.raises(ValueError, match="n=3 but 2"):
        make_factor_scenes(3, factors=sample_factors(2))
    with pytest.raises(KeyError, match="unknown factor"):
        make_factor_scenes(1).factor("hue")
