"""LIME: recovers a model that is linear in the interpretable features on image,
token-sequence and tabular inputs; kernel, extras, determinism, chunking, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import seethrough as st
from seethrough.attribution.masks import grid_mask, superpixel_mask
from seethrough.attribution.surrogate import Lime, lime_kernel
from seethrough.testing import TinyCNN, TinyMLP, seeded


class FeatureMeans(nn.Module):
    """``f(x) = sum_j c_j mean(x over feature j)``, and its negative as a second output."""

    def __init__(self, mask: torch.Tensor, coefs: torch.Tensor) -> None:
        super().__init__()
        flat = mask.reshape(-1)
        counts = torch.bincount(flat).float()
        self.register_buffer("w", coefs[flat] / counts[flat])

    def forward(self, x):
        s = x.flatten(1) @ self.w
        return torch.stack([s, -s], dim=1)


def _coefs(n: int, seed: int) -> torch.Tensor:
    c = torch.linspace(-2.0, 3.0, n)  # distinct
    return c[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]


def _inputs(shape, seed):
    return 0.5 + 0.5 * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


CASES = {
    # images: a 4x4 grid over (3, 16, 16)
    "image": ((3, 16, 16), grid_mask((3, 16, 16), 4)),
    # token sequences: (T=10, E=8) embeddings, one feature per token
    "text": ((10, 8), torch.arange(10)[:, None].expand(10, 8).clone()),
    # tabular: one feature per column
    "tabular": ((12,), torch.arange(12)),
}


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("surrogate", ["ridge", "lasso"])
def test_recovers_a_model_linear_in_the_features(kind, surrogate):
    shape, mask = CASES[kind]
    F = int(mask.max()) + 1
    c = _coefs(F, seed=F)
    model = FeatureMeans(mask, c).eval()
    x = _inputs((3,) + shape, seed=1)
    feature_mask = mask[:, :1] if kind == "text" else mask  # (T, 1) broadcasts over the embedding
    e = Lime(model, n_samples=600, surrogate=surrogate).attribute(x, 0, feature_mask=feature_mask)
    # in the binary representation (baseline 0) the model's coefficient of feature j is
    # c_j times the mean of x over j
    means = torch.stack([torch.stack([x[b][mask == j].mean() for j in range(F)]) for b in range(3)])
    truth = c * means
    coefs = e.extras["coefficients"]
    assert coefs.shape == (3, F)
    for b in range(3):
        assert spearmanr(coefs[b].numpy(), truth[b].numpy()).statistic == pytest.approx(1.0)
        top = e.extras["top_features"][b]
        assert set(top.tolist()) == set(truth[b].abs().argsort(descending=True)[:5].tolist())
    assert (e.extras["r2"] > 0.99).all()
    assert torch.allclose(e.attributions, coefs[:, mask], atol=1e-6)
    # second output is the negative: the surrogate flips
    neg = Lime(model, n_samples=600, surrogate=surrogate).attribute(x, 1, feature_mask=feature_mask)
    assert torch.allclose(neg.extras["coefficients"], -coefs, atol=1e-4)


def test_ridge_is_nearly_unbiased_and_lasso_shrinks_small_features():
    shape, mask = CASES["tabular"]
    c = _coefs(12, seed=3)
    model = FeatureMeans(mask, c).eval()
    x = torch.ones(1, 12)
    ridge = Lime(model, n_samples=2000, alpha=1e-6).attribute(x, 0, feature_mask=mask).extras
    assert torch.allclose(ridge["coefficients"][0], c, atol=1e-3)
    assert ridge["intercept"][0].abs() < 1e-3
    lasso = Lime(model, n_samples=2000, surrogate="lasso", alpha=0.2).attribute(x, 0, feature_mask=mask).extras
    zero = lasso["coefficients"][0] == 0
    assert 0 < int(zero.sum()) < 12
    assert c[zero].abs().max() < c[~zero].abs().min()  # the smallest coefficients are dropped


def test_kernel_and_perturbations():
    z = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    w = lime_kernel(z, distance="cosine", kernel_width=0.25)
    d = 1 - np.sqrt(0.5)
    assert np.allclose(w, [1.0, np.exp(-(d**2) / 0.0625), np.exp(-1 / 0.0625)])
    we = lime_kernel(z, distance="euclidean", kernel_width=0.5)
    assert np.allclose(we, [1.0, np.exp(-0.5 / 0.25), np.exp(-1 / 0.25)])
    p = Lime(nn.Identity(), n_samples=4000, keep_prob=0.3, seed=2).perturbations(10)
    assert p[0].all() and p.shape == (4000, 10)
    assert abs(p[1:].mean() - 0.3) < 0.01


@pytest.fixture(scope="module")
def cnn():
    return seeded(TinyCNN)


@pytest.fixture(scope="module")
def images():
    # coloured blocks plus noise: structure for superpixels to find
    g = torch.Generator().manual_seed(0)
    blocks = torch.rand(2, 3, 4, 4, generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)
    return (0.8 * blocks + 0.2 * torch.rand(2, 3, 16, 16, generator=g)).clamp(0, 1)


def test_superpixel_masks_per_image(cnn, images):
    pytest.importorskip("skimage")
    masks = [superpixel_mask(img, n_segments=12) for img in images]
    n = [int(m.max()) + 1 for m in masks]
    offset = torch.stack([masks[0], masks[1] + n[0]])  # disjoint ids: samples have different features
    e = Lime(cnn, n_samples=150, top_k=4).attribute(images, 1, feature_mask=offset)
    F = n[0] + n[1]
    coefs = e.extras["coefficients"]
    assert coefs.shape == (2, F) and e.extras["top_features"].shape == (2, 4)
    assert (coefs[0, n[0] :] == 0).all() and (coefs[1, : n[0]] == 0).all()
    assert set(e.extras["top_features"][1].tolist()) <= set(range(n[0], F))
    assert torch.allclose(e.attributions[0], coefs[0][offset[0]])
    with torch.no_grad():
        clean = cnn(images)[:, 1]
    assert torch.allclose(e.scores, clean, atol=1e-6)  # the first perturbation is the input itself
    assert e.n_evaluations <= 2 * 150


def test_top_k_larger_than_features_pads(cnn, images):
    e = Lime(cnn, n_samples=50, top_k=20).attribute(images, 0, feature_mask=grid_mask((3, 16, 16), 8))
    top = e.extras["top_features"]
    assert top.shape == (2, 4) and sorted(top[0].tolist()) == [0, 1, 2, 3]


def test_determinism_and_chunking(cnn, images):
    fm = grid_mask((3, 16, 16), 4)
    a = Lime(cnn, n_samples=120, seed=0).attribute(images, 2, feature_mask=fm)
    b = Lime(cnn, n_samples=120, seed=0, batching=1).attribute(images, 2, feature_mask=fm)
    c = Lime(cnn, n_samples=120, seed=1).attribute(images, 2, feature_mask=fm)
    scale = a.attributions.abs().max()
    assert torch.allclose(a.attributions, b.attributions, atol=1e-5 * scale, rtol=0)
    assert torch.equal(a.extras["top_features"], b.extras["top_features"])
    assert a.n_evaluations == b.n_evaluations
    assert not torch.allclose(a.attributions, c.attributions)
    again = Lime(cnn, n_samples=120, seed=0).attribute(images, 2, feature_mask=fm)
    assert torch.equal(a.attributions, again.attributions)


def test_tabular_default_mask_is_one_feature_per_column():
    mlp = seeded(TinyMLP)
    x = torch.randn(2, 10, generator=torch.Generator().manual_seed(3))
    e = Lime(mlp, n_samples=100).attribute(x, 1)
    assert e.extras["coefficients"].shape == (2, 10)
    assert torch.equal(e.attributions, e.extras["coefficients"])


def test_bad_input_and_settings(cnn, images):
    with pytest.raises(st.InputError, match="feature mask"):
        Lime(cnn).attribute(images, 0, feature_mask=torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(st.InputError, match="baseline"):
        Lime(cnn, baseline=torch.zeros(3, 4, 4)).attribute(images, 0, feature_mask=grid_mask((3, 16, 16), 8))
    fm = grid_mask((3, 16, 16), 8)
    for kwargs in (
        {"n_samples": 0},
        {"kernel_width": 0},
        {"distance": "manhattan"},
        {"surrogate": "tree"},
        {"keep_prob": 1.0},
        {"alpha": -1.0},
        {"top_k": 0},
    ):
        with pytest.raises(st.ConfigError):
            Lime(cnn, **kwargs).attribute(images, 0, feature_mask=fm)
