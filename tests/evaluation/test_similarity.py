"""Similarity measures of the sanity checks: equal to scipy / scikit-image references,
their conventions (ties, constant maps, normalisation), and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seethrough._core.errors import ConfigError, InputError
from seethrough.evaluation.similarity import (
    SIMILARITIES,
    compare_maps,
    hog_features,
    hog_similarity,
    normalize_maps,
    pearson,
    rankdata,
    spearman,
    spearman_abs,
    ssim,
)

scipy_stats = pytest.importorskip("scipy.stats")


def _pair(n=4, h=20, w=24, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, h, w))
    b = a + noise * rng.normal(size=a.shape)
    return a, b


def test_rankdata_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=(5, 40)), 1)  # many ties
    x[0] = 3.0  # all tied
    ours = rankdata(torch.from_numpy(x)).numpy()
    ref = scipy_stats.rankdata(x, axis=1)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_spearman_matches_scipy_signed_and_abs():
    a, b = _pair()
    a[0, :5] = 0.0  # ties in one map
    b[1] = np.round(b[1])  # ties in the other
    s, s_abs = spearman(a, b).numpy(), spearman_abs(a, b).numpy()
    for i in range(a.shape[0]):
        ref = scipy_stats.spearmanr(a[i].ravel(), b[i].ravel())[0]
        ref_abs = scipy_stats.spearmanr(np.abs(a[i]).ravel(), np.abs(b[i]).ravel())[0]
        assert s[i] == pytest.approx(ref, abs=1e-12)
        assert s_abs[i] == pytest.approx(ref_abs, abs=1e-12)
    # the two measures differ when signs matter
    assert not np.allclose(s, s_abs)


def test_spearman_is_rank_invariant_and_signed():
    a, _ = _pair(n=3)
    t = torch.from_numpy(a)
    assert torch.allclose(spearman(t, t.exp() * 5 + 2), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(spearman(t, -t), -torch.ones(3, dtype=torch.float64))
    assert torch.allclose(spearman_abs(t, -t), torch.ones(3, dtype=torch.float64))


def test_pearson_matches_numpy_and_constant_maps_give_zero():
    a, b = _pair(n=3)
    ours = pearson(a, b).numpy()
    for i in range(3):
        assert ours[i] == pytest.approx(np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1], abs=1e-12)
    const = np.full((2, 6, 6), 0.1)  # mean of 0.1s is not exactly 0.1: rounding noise must not count
    other = np.random.default_rng(0).normal(size=(2, 6, 6))
    assert pearson(const, other).tolist() == [0.0, 0.0]
    assert spearman(const, other).tolist() == [0.0, 0.0]
    assert spearman(np.zeros((1, 8, 8)), np.zeros((1, 8, 8))).tolist() == [0.0]


def test_normalize_maps_is_abs_min_max_per_map():
    m = torch.tensor([[[-2.0, 1.0], [0.5, 0.0]], [[3.0, 3.0], [3.0, 3.0]]])
    out = normalize_maps(m)
    assert torch.allclose(out[0], torch.tensor([[1.0, 0.5], [0.25, 0.0]], dtype=torch.float64))
    assert torch.equal(out[1], torch.zeros(2, 2, dtype=torch.float64))


def test_ssim_matches_skimage_on_normalised_maps():
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _pair(n=4, h=23, w=30)
    ours = ssim(a, b).numpy()
    na, nb = normalize_maps(a).numpy(), normalize_maps(b).numpy()
    for i in range(4):
        ref = metrics.structural_similarity(
            na[i], nb[i], data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert ours[i] == pytest.approx(ref, abs=1e-12)
    # and without our normalisation, on raw maps with an explicit range
    raw = ssim(np.abs(a), np.abs(b), normalize=False, data_range=5.0).numpy()
    ref0 = metrics.structural_similarity(
        np.abs(a[0]), np.abs(b[0]), data_range=5.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert raw[0] == pytest.approx(ref0, abs=1e-12)


def test_ssim_identity_and_order():
    a, b = _pair(n=2, h=16, w=16, noise=0.3)
    _, far = _pair(n=2, h=16, w=16, seed=9)
    assert torch.allclose(ssim(a, a), torch.ones(2, dtype=torch.float64))
    assert bool((ssim(a, b) > ssim(a, far)).all())
    # scale invariant through the normalisation
    assert torch.allclose(ssim(a, 7.0 * a), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("orientations,cell,block", [(9, (8, 8), (2, 2)), (8, (5, 7), (2, 2)), (7, (6, 6), (3, 2))])
def test_hog_features_match_skimage(orientations, cell, block):
    feature = pytest.importorskip("skimage.feature")
    img = np.random.default_rng(orientations).random((37, 45))
    ours = hog_features(img, orientations=orientations, pixels_per_cell=cell, cells_per_block=block)
    ref = feature.hog(
        img,
        orientations=orientations,
        pixels_per_cell=cell,
        cells_per_block=block,
        block_norm="L2-Hys",
        feature_vector=True,
    )
    assert ours.shape == ref.shape
    # scikit-image accumulates the cell histograms in single precision
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_hog_features_match_skimage_on_exact_bin_edges():
    feature = pytest.importorskip("skimage.feature")
    # quantised values: gradients at 0, 45, 90, 135 degrees exactly, on the bin edges
    img = np.round(np.random.default_rng(3).random((32, 32)) * 3) / 3
    ref = feature.hog(img, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
    np.testing.assert_allclose(hog_features(img), ref, rtol=0, atol=1e-6)
    ref4 = feature.hog(img, orientations=4, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
    np.testing.assert_allclose(hog_features(img, orientations=4), ref4, rtol=0, atol=1e-6)


def test_hog_similarity_is_pearson_of_descriptors():
    feature = pytest.importorskip("skimage.feature")
    a, b = _pair(n=2, h=32, w=32, noise=0.5)
    ours = hog_similarity(a, b).numpy()
    na, nb = normalize_maps(a).numpy(), normalize_maps(b).numpy()
    for i in range(2):
        fa = feature.hog(na[i], orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
        fb = feature.hog(nb[i], orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
        assert ours[i] == pytest.approx(np.corrcoef(fa, fb)[0, 1], abs=1e-5)
    assert torch.allclose(hog_similarity(a, a), torch.ones(2, dtype=torch.float64))


def test_registry_and_dispatch():
    assert list(SIMILARITIES) == ["spearman_abs", "spearman", "ssim", "hog"]
    a, b = _pair(n=2, h=16, w=16)
    for name, fn in SIMILARITIES.items():
        v = compare_maps(name, a, b)
        assert v.shape == (2,) and v.dtype == torch.float64
        assert torch.equal(v, fn(a, b))
        assert bool(((v >= -1 - 1e-9) & (v <= 1 + 1e-9)).all())
    with pytest.raises(ConfigError, match="spearman_abs"):
        compare_maps("spearman-abs", a, b)


def test_bad_input():
    a, b = _pair(n=2, h=16, w=16)
    with pytest.raises(InputError, match="differ in shape"):
        spearman(a, b[:1])
    with pytest.raises(InputError, match="batch axis"):
        spearman(a[0, 0], b[0, 0])
    with pytest.raises(InputError, match="at least 11 x 11"):
        ssim(a[:, :8, :8], b[:, :8, :8])
    with pytest.raises(InputError, match="2-D maps"):
        ssim(a.reshape(2, -1), b.reshape(2, -1))
    with pytest.raises(InputError, match="too small for HOG"):
        hog_similarity(a[:, :12, :12], b[:, :12, :12])
    with pytest.raises(InputError, match="one 2-D map"):
        hog_features(a)
    # rank measures work on flat maps
    assert spearman(a.reshape(2, -1), b.reshape(2, -1)).shape == (2,)
