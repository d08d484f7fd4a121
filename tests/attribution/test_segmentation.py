import numpy as np
import pytest
import torch

import seethrough as st
from seethrough.attribution import otsu_threshold


def test_otsu_matches_scikit_image():
    skf = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.8, 0.1, 1000)]).astype(np.float32)
    ours = otsu_threshold(torch.from_numpy(v))
    ref = skf.threshold_otsu(v, nbins=256)
    assert abs(ours - ref) < (v.max() - v.min()) / 256 + 1e-6


def test_threshold_methods_and_boxes():
    m = torch.zeros(2, 10, 12)
    m[0, 2:5, 3:7] = 1.0
    m[1, 6:9, 1:4] = 2.0
    m[1, 0, 11] = 0.5
    fixed = st.threshold_map(m, method="fixed", value=0.9)
    assert fixed[0].sum() == 12 and fixed[1].sum() == 9
    pct = st.threshold_map(m, method="percentile", value=90)
    assert pct[0].sum() == 12
    otsu = st.threshold_map(m, method="otsu")
    assert torch.equal(otsu[0], fixed[0])
    boxes = st.bounding_boxes(fixed)
    assert boxes.tolist() == [[3, 2, 6, 4], [1, 6, 3, 8]]
    loose = st.threshold_map(m, method="fixed", value=0.1)
    assert st.bounding_boxes(loose)[1].tolist() == [1, 0, 11, 8]
    assert st.bounding_boxes(loose, largest_component=True)[1].tolist() == [1, 6, 3, 8]
    assert st.bounding_boxes(torch.zeros(1, 4, 4, dtype=torch.bool)).tolist() == [[-1, -1, -1, -1]]


def test_bad_threshold_settings():
    with pytest.raises(st.ConfigError):
        st.threshold_map(torch.rand(1, 4, 4), method="fixed")
    with pytest.raises(st.ConfigError):
        st.threshold_map(torch.rand(1, 4, 4), method="kmeans")
    with pytest.raises(st.InputError):
        st.threshold_map(torch.full((1, 4, 4), float("nan")))
