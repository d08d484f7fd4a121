"""Latent vectors (B, Z) into generators of images (B, C, H, W): Region and Classify targets."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import seethrough as st
from seethrough._core.targets import Classify, Region
from seethrough.testing import TinyCNN, TinyGenerator, seeded

pytestmark = [pytest.mark.filterwarnings("ignore::seethrough.ZeroAttributionWarning")]

ROWS = torch.arange(2)
# out[b, c, h, w] = 100 b + 10 c + 2 h + w, on (2, 2, 2, 2)
OUT = (
    100 * torch.arange(2).reshape(2, 1, 1, 1)
    + 10 * torch.arange(2).reshape(1, 2, 1, 1)
    + 2 * torch.arange(2).reshape(1, 1, 2, 1)
    + torch.arange(2).reshape(1, 1, 1, 2)
).double()
TOP_ROW = torch.tensor([[True, True], [False, False]])


def test_region_mean_and_sum_exact():
    # top row, every channel: values 0, 1, 10, 11 (+ 100 for sample 1)
    torch.testing.assert_close(Region(TOP_ROW).score(OUT, ROWS), torch.tensor([5.5, 105.5], dtype=torch.float64))
    torch.testing.assert_close(
        Region(TOP_ROW, reduce="sum").score(OUT, ROWS), torch.tensor([22.0, 422.0], dtype=torch.float64)
    )
    one = torch.zeros(2, 2, 2, dtype=torch.bool)
    one[1, 1, 0] = True  # channel 1, row 1, column 0: 10 + 2 = 12
    torch.testing.assert_close(Region(one).score(OUT, ROWS), torch.tensor([12.0, 112.0], dtype=torch.float64))


def test_region_per_sample_masks_follow_the_rows():
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = True  # sample 0: pixel (0, 0), channels 0 and 1 -> (0 + 10) / 2
    masks[1, 1, 1] = True  # sample 1: pixel (1, 1) -> 100 + (3 + 13) / 2
    t = Region(masks, per_sample=True)
    torch.testing.assert_close(t.score(OUT, ROWS), torch.tensor([5.0, 108.0], dtype=torch.float64))
    samples = torch.tensor([1, 0, 1])
    torch.testing.assert_close(t.score(OUT[samples], samples), torch.tensor([108.0, 5.0, 108.0], dtype=torch.float64))
    assert t.per_sample and t.take([1]).mask.shape == (1, 2, 2)
    assert not Region(TOP_ROW).per_sample


def test_region_errors():
    with pytest.raises(st.TargetError, match="boolean"):
        Region(torch.ones(2, 2))
    with pytest.raises(st.ConfigError, match="reduce"):
        Region(TOP_ROW, reduce="median")
    with pytest.raises(st.TargetError, match=r"per-sample shape \(3, 3\).*\(2, 2, 2\)"):
        Region(torch.ones(3, 3, dtype=torch.bool)).score(OUT, ROWS)
    with pytest.raises(st.TargetError, match="selects no element"):
        Region(torch.zeros(2, 2, dtype=torch.bool)).score(OUT, ROWS)
    with pytest.raises(st.TargetError, match="3 per-sample Region masks for 2 samples"):
        Region(torch.ones(3, 2, 2, dtype=torch.bool), per_sample=True).resolve(None, None, 2)


@pytest.fixture
def gen():
    return seeded(TinyGenerator)


@pytest.fixture
def z():
    return torch.randn(3, 8, generator=torch.Generator().manual_seed(0))


def corner():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[:4, :4] = True
    return m


def test_saliency_wrt_latent_is_the_gradient_of_the_region_mean(gen, z):
    zg = z.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(gen(zg)[:, :, :4, :4].mean(dim=(1, 2, 3)).sum(), zg)
    got = st.Saliency(gen, abs=False).attribute(z, target=Region(corner())).attributions
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_on_generator_is_complete(gen, z):
    """Completeness within 1% of the largest gap: the generator's ReLUs make the integrand
    piecewise constant, so quadrature converges slowly (128 steps here)."""
    expl = st.IntegratedGradients(gen, steps=128).attribute(z, target=Region(corner()))
    expected = gen(z).detach()[:, :, :4, :4].mean(dim=(1, 2, 3))
    base = gen(torch.zeros_like(z)).detach()[:, :, :4, :4].mean(dim=(1, 2, 3))
    torch.testing.assert_close(expl.scores, expected)
    torch.testing.assert_close(expl.extras["baseline_scores"], base)
    gap = expected - base
    assert float(gap.abs().max()) > 5e-2
    torch.testing.assert_close(expl.attributions.sum(dim=1), gap, rtol=0, atol=0.01 * float(gap.abs().max()))
    torch.testing.assert_close(expl.extras["delta"], expl.attributions.sum(dim=1) - gap, rtol=0, atol=1e-6)
    assert expl.attributions.shape == (3, 8)


class Upsampled(nn.Module):
    """A TinyCNN classifier on (3, 16, 16), fed the generator's (3, 8, 8) images."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = seeded(TinyCNN)

    def forward(self, x):
        return self.cnn(F.interpolate(x, size=16, mode="bilinear", align_corners=False))


def test_classify_is_the_classifier_logit_on_the_generated_image(gen, z):
    clf = Upsampled().eval()
    zg = z.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(clf(gen(zg))[:, 3].sum(), zg)
    expl = st.Saliency(gen, abs=False).attribute(z, target=Classify(clf, 3))
    torch.testing.assert_close(expl.attributions, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(expl.scores, clf(gen(z))[:, 3].detach())
    assert expl.target == "Classify(Upsampled, Class(3))"


def test_classify_predicted_class_and_completeness(gen, z):
    clf = Upsampled().eval()
    expl = st.IntegratedGradients(gen, steps=64).attribute(z, target=Classify(clf))  # class predicted on gen(z)
    pred = clf(gen(z)).argmax(1)
    assert expl.target == f"Classify(Upsampled, Class({pred.tolist()}))"
    gap = expl.scores - expl.extras["baseline_scores"]
    assert float(expl.extras["delta"].abs().max()) < 0.02 * float(gap.abs().max())


def test_classify_guards_the_classifier(gen, z):
    clf = Upsampled()
    clf.train()
    bn_free = [p.requires_grad for p in clf.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ModelStateWarning)
        st.Saliency(gen).attribute(z, target=Classify(clf, 1))
    assert clf.training and [p.requires_grad for p in clf.parameters()] == bn_free
    assert all(p.grad is None for p in clf.parameters())


def test_classify_errors():
    with pytest.raises(st.TargetError, match="nn.Module"):
        Classify(lambda x: x, 0)
    with pytest.raises(st.TargetError, match="not on one of its layers"):
        Classify(Upsampled(), st.Channel("cnn.features.3", 0))


def test_region_with_a_wrong_mask_for_the_generator(gen, z):
    with pytest.raises(st.TargetError, match="does not fit"):
        st.Saliency(gen).attribute(z, target=Region(torch.ones(16, 16, dtype=torch.bool)))
