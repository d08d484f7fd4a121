"""Occlusion, feature ablation and permutation: identical to Captum for the same
windows, strides, masks and baselines; independent of chunking; bad settings."""

from __future__ import annotations

import pytest
import torch

captum_attr = pytest.importorskip("captum.attr")

import seethrough as st
from seethrough.attribution.masks import as_feature_mask, grid_mask
from seethrough.attribution.perturbation import FeatureAblation, FeaturePermutation, Occlusion
from seethrough.testing import TinyMLP, TinyResNet, seeded


@pytest.fixture
def model():
    return seeded(TinyResNet)


@pytest.fixture
def x():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


T = torch.tensor([0, 1, 2])


@pytest.mark.parametrize(
    "window,strides,baseline",
    [((3, 4, 4), 2, 0.3), ((3, 5, 5), (1, 3, 3), 0.0), ((1, 4, 4), (1, 4, 4), 0.5), ((3, 16, 16), 1, 0.2)],
)
def test_occlusion_equals_captum(model, x, window, strides, baseline):
    ours = Occlusion(model, window=window, strides=strides, baseline=baseline).attribute(x, T)
    ref = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=window, strides=strides, baselines=baseline, target=T
    )
    assert torch.allclose(ours.attributions, ref, rtol=1e-5, atol=1e-7)
    _, _, counts = Occlusion(model, window=window, strides=strides).geometry((3, 16, 16))
    n_windows = counts[0] * counts[1] * counts[2]
    assert ours.n_evaluations == 3 * n_windows + 3  # every window for every sample, plus f(x)


def test_occlusion_tensor_and_mean_baselines(model, x):
    base = torch.rand_like(x)
    ours = Occlusion(model, window=(3, 4, 4), strides=4, baseline=base).attribute(x, T).attributions
    ref = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 4, 4), strides=4, baselines=base, target=T
    )
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-7)
    mean = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    ours = Occlusion(model, window=(3, 4, 4), strides=4, baseline="mean").attribute(x, T).attributions
    ref = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 4, 4), strides=4, baselines=mean, target=T
    )
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("batching", [1, 5, None])
def test_chunking_does_not_change_occlusion(model, x, batching):
    ref = Occlusion(model, window=(3, 4, 4), strides=3, batching=10_000).attribute(x, T).attributions
    out = Occlusion(model, window=(3, 4, 4), strides=3, batching=batching).attribute(x, T).attributions
    assert torch.allclose(out, ref, atol=1e-6)


def test_feature_ablation_equals_captum(model, x):
    fm = grid_mask((3, 16, 16), 4)
    ours = FeatureAblation(model, baseline=0.1).attribute(x, T, feature_mask=fm)
    ref = captum_attr.FeatureAblation(model).attribute(x, baselines=0.1, target=T, feature_mask=fm.unsqueeze(0))
    assert torch.allclose(ours.attributions, ref, rtol=1e-5, atol=1e-7)
    assert ours.extras["feature_scores"].shape == (3, 16)


def test_feature_ablation_per_sample_masks_and_tabular():
    mlp = seeded(TinyMLP)
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    masks = torch.stack([torch.arange(10) // k for k in (1, 2, 5, 10)])
    ours = FeatureAblation(mlp).attribute(x, 1, feature_mask=masks).attributions
    for b in range(4):
        ref = captum_attr.FeatureAblation(mlp).attribute(x[b : b + 1], target=1, feature_mask=masks[b : b + 1])
        assert torch.allclose(ours[b : b + 1], ref, atol=1e-6)
    # default: every element is its own feature
    ours = FeatureAblation(mlp).attribute(x, 1).attributions
    ref = captum_attr.FeatureAblation(mlp).attribute(x, target=1)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_feature_permutation_matches_its_definition():
    mlp = seeded(TinyMLP)
    x = torch.randn(6, 10, generator=torch.Generator().manual_seed(2))
    fm = torch.arange(10) // 2
    e = FeaturePermutation(mlp, seed=3).attribute(x, 0, feature_mask=fm)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        f = mlp(x)[:, 0]
        for feat in range(5):
            xp = x.clone()
            sel = fm == feat
            xp[:, sel] = x[perm][:, sel]
            drop = f - mlp(xp)[:, 0]
            assert torch.allclose(e.attributions[:, sel], drop[:, None].expand(-1, int(sel.sum())), atol=1e-6)


def test_bad_settings(model, x):
    with pytest.raises(st.InputError, match="larger than the input"):
        Occlusion(model, window=(3, 20, 4)).attribute(x, T)
    with pytest.raises(st.ConfigError):
        Occlusion(model, window=(0, 4)).attribute(x, T)
    with pytest.raises(st.InputError, match="baseline"):
        Occlusion(model, baseline=torch.zeros(2, 3, 5, 5)).attribute(x, T)
    with pytest.raises(st.InputError, match="feature mask"):
        FeatureAblation(model).attribute(x, T, feature_mask=torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(st.InputError, match="integer"):
        FeatureAblation(model).attribute(x, T, feature_mask=torch.zeros(16, 16))
    with pytest.raises(st.InputError, match="at least 2"):
        FeaturePermutation(model).attribute(x[:1], 0)


def test_feature_mask_renumbering():
    x = torch.zeros(2, 3, 4, 4)
    m = torch.tensor([[5, 5, 9, 9]] * 4)
    per, n = as_feature_mask(m, x)
    assert n == 2 and per.shape == (2, 3, 4, 4) and set(per.unique().tolist()) == {0, 1}
