import pytest
import torch

import seethrough as st
from seethrough.attribution.masks import (
    default_feature_mask,
    feature_mask_from_spec,
    grid_mask,
    superpixel_mask,
)


def test_grid_mask_ids_and_shapes():
    m = grid_mask((3, 10, 12), 4)
    assert m.shape == (3, 10, 12)
    assert int(m.max()) + 1 == 3 * 3  # ceil(10/4) x ceil(12/4)
    assert torch.equal(m[0], m[2])  # channels share their patch id
    assert int(m[0, 0, 0]) == int(m[0, 3, 3]) != int(m[0, 4, 4])
    with pytest.raises(st.ConfigError):
        grid_mask((8, 8), 0)


def test_default_mask_is_an_8x8_grid_for_images_and_elements_otherwise():
    m = default_feature_mask(torch.zeros(2, 3, 64, 64))
    assert m.shape == (3, 64, 64) and int(m.max()) + 1 == 64
    m = default_feature_mask(torch.zeros(2, 10))
    assert torch.equal(m, torch.arange(10))


@pytest.mark.parametrize("method", ["slic", "quickshift", "felzenszwalb"])
def test_superpixels_partition_the_image(method):
    pytest.importorskip("skimage")
    img = torch.zeros(3, 32, 32)
    img[:, :, 16:] = 1.0  # two flat halves: no superpixel may straddle the edge
    m = superpixel_mask(img, method)
    assert m.shape == (3, 32, 32) and int(m.min()) == 0
    left, right = set(m[0, :, :16].unique().tolist()), set(m[0, :, 16:].unique().tolist())
    assert not (left & right)


def test_spec_parsing():
    x = torch.rand(2, 3, 16, 16)
    assert feature_mask_from_spec(None, x) is None
    assert int(feature_mask_from_spec("grid:4", x).max()) + 1 == 16
    assert feature_mask_from_spec("elements", x).numel() == 3 * 16 * 16
    pytest.importorskip("skimage")
    assert feature_mask_from_spec("slic:10", x).shape == (2, 3, 16, 16)
    with pytest.raises(st.ConfigError, match="grid:N"):
        feature_mask_from_spec("grid:x", x)
    with pytest.raises(st.ConfigError, match="unknown feature mask"):
        feature_mask_from_spec("voronoi", x)
    with pytest.raises(st.InputError):
        feature_mask_from_spec("grid:4", torch.rand(2, 10))
