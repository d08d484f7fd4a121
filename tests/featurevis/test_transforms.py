"""Transforms: exact geometry (pad, crop, rotation, scale), per-image seeded draws that do
not depend on the batch, composition into one resampling, and bad arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seethrough._core.errors import ConfigError
from seethrough.featurevis import (
    Compose,
    Jitter,
    Pad,
    RandomRotate,
    RandomScale,
    StepRandom,
    standard_transforms,
)
from seethrough.featurevis.transforms import as_transform


def _x(k=4, size=16, seed=0):
    return torch.rand(k, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _rng(k=4, step=0, seed=0, rows=None, n_total=None):
    rows = torch.arange(k) if rows is None else torch.tensor(rows)
    return StepRandom(seed, step, rows, n_total or int(rows.max()) + 1)


def test_pad_then_jitter_is_a_per_image_crop_of_the_padded_image():
    x = _x()
    y = Compose([Pad(2), Jitter(4)])(x, _rng(step=1))
    assert y.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2), value=0.5)
    offsets = []
    for k in range(4):
        hits = [
            (oy, ox)
            for oy in range(5)
            for ox in range(5)
            if torch.allclose(padded[k, :, oy : oy + 16, ox : ox + 16], y[k], atol=1e-5)
        ]
        assert len(hits) == 1, hits
        offsets.append(hits[0])
    assert len(set(offsets)) > 1  # each image has its own shift


def test_pad_fills_with_its_value_and_identity_affines_change_nothing():
    x = _x()
    y = Pad(3, value=0.25)(x, _rng())
    assert y.shape[-1] == 22
    torch.testing.assert_close(y[..., 3:-3, 3:-3], x, atol=1e-5, rtol=0)
    assert torch.allclose(y[..., 0, :], torch.tensor(0.25))
    y = Compose([RandomScale([1.0]), RandomRotate([0.0])])(x, _rng())
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
    y = Pad(2, mode="replicate")(x, _rng())
    torch.testing.assert_close(y, F.pad(x, (2, 2, 2, 2), mode="replicate"), atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_and_zoom_by_2():
    x = _x()
    y = RandomRotate([90.0])(x, _rng())
    torch.testing.assert_close(y, torch.rot90(x, 1, (2, 3)), atol=1e-5, rtol=0)
    # zooming by 2 about the centre: output pixel (i, j) samples input (4 + i/2, 4 + j/2)
    img = torch.arange(16.0).repeat(16, 1).expand(1, 1, 16, 16)  # value = column index
    y = RandomScale([2.0])(img, _rng(k=1))
    # centre columns 7, 8 of the output sample input x = 7.5 +- 0.5 / 2 -> 7.25, 7.75
    torch.testing.assert_close(y[0, 0, 5, 7:9], torch.tensor([7.25, 7.75]), atol=1e-5, rtol=0)


def test_composed_run_equals_sequential_geometry():
    x = _x(k=2)
    # a rotation then a zoom, composed, equals applying them one after the other when no
    # pixel is sampled from outside (rotation by 90 degrees keeps every pixel)
    t = Compose([RandomRotate([90.0]), RandomScale([1.0])])
    seq = RandomScale([1.0])(RandomRotate([90.0])(x, _rng(k=2)), _rng(k=2))
    torch.testing.assert_close(t(x, _rng(k=2)), seq, atol=1e-5, rtol=0)


def test_draws_are_seeded_per_image_and_independent_of_the_batch():
    t = standard_transforms(16)
    x = _x(k=4)
    a = t(x, _rng(k=4, step=3))
    b = t(x, _rng(k=4, step=3))
    torch.testing.assert_close(a, b)  # same seed and step: same transform
    c = t(x, _rng(k=4, step=4))
    assert not torch.allclose(a, c)  # another step: other draws
    # image 2 alone, as row 2 of the same 4 rows: the same output
    alone = t(x[2:3], StepRandom(0, 3, torch.tensor([2]), 4))
    torch.testing.assert_close(alone[0], a[2], atol=1e-5, rtol=0)


def test_standard_transforms_keep_the_size():
    for size in (16, 28, 64, 224):
        y = standard_transforms(size)(torch.rand(2, 3, size, size), _rng(k=2))
        assert y.shape[-2:] == (size, size)
    assert "RandomRotate" in repr(standard_transforms(64))


def test_callables_are_transforms():
    x = _x()
    t = Compose([lambda im: im.flip(-1), Pad(1)])
    y = t(x, _rng())
    torch.testing.assert_close(y[..., 1:-1, 1:-1], x.flip(-1), atol=1e-5, rtol=0)
    t2 = as_transform(lambda im, rng: im * rng.uniform(1, 1, 1))
    assert t2(x, _rng()).shape == x.shape
    with pytest.raises(ConfigError, match="must return images"):
        as_transform(lambda im: im.mean())(x, _rng())


def test_bad_transform_arguments():
    with pytest.raises(ConfigError):
        Pad(-1)
    with pytest.raises(ConfigError):
        Pad(2, mode="wrap")
    with pytest.raises(ConfigError):
        Jitter(1.5)
    with pytest.raises(ConfigError, match="positive"):
        RandomScale([0.0, 1.0])
    with pytest.raises(ConfigError, match="non-empty"):
        RandomRotate([])
    with pytest.raises(ConfigError, match="leaves no pixels"):
        Jitter(16)(_x(), _rng())
    with pytest.raises(ConfigError, match="Transform"):
        as_transform(3)
