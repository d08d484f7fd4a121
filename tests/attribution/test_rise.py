"""RISE: equal to a naive reference on the same masks, deterministic, independent of
chunking and batch composition, finds a planted region; bad settings and inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError
from seethrough.attribution.rise import RISE
from seethrough.testing import TinyCNN, TinyMLP, seeded


class PatchMean(nn.Module):
    """One output: the mean of the input over a fixed patch (the only evidence)."""

    def __init__(self, rows=(4, 12), cols=(20, 28)) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        patch = x[:, :, self.rows[0] : self.rows[1], self.cols[0] : self.cols[1]]
        return (patch.mean(dim=(1, 2, 3)) * self.scale).unsqueeze(1)

    def region(self, H, W):
        r = torch.zeros(H, W, dtype=torch.bool)
        r[self.rows[0] : self.rows[1], self.cols[0] : self.cols[1]] = True
        return r


def _images(b=2, h=16, w=16, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_equals_naive_reference_on_the_same_masks():
    model = seeded(TinyCNN)
    x = _images(3, 12, 12)
    t = torch.tensor([0, 2, 4])
    n, p, base = 40, 0.4, 0.3
    rise = RISE(model, n_masks=n, grid=3, keep_prob=p, baseline=base, seed=5)
    out = rise.attribute(x, t)
    masks = rise.masks(n, (12, 12), seed=5)
    ref = torch.zeros(3, 1, 12, 12)
    with torch.no_grad():
        for b in range(3):
            for i in range(n):
                xm = x[b] * masks[i] + base * (1 - masks[i])
                ref[b] += model(xm.unsqueeze(0))[0, t[b]] * masks[i]
    ref /= n * p
    assert out.attributions.shape == (3, 1, 12, 12)
    assert torch.allclose(out.extras["rise_map"], ref, rtol=1e-4, atol=1e-5)
    # the centred map: the same sum with each score minus the mean score over the masks
    with torch.no_grad():
        f = torch.stack(
            [
                torch.stack([model((x[b] * masks[i] + base * (1 - masks[i])).unsqueeze(0))[0, t[b]] for i in range(n)])
                for b in range(3)
            ]
        )  # (B, n)
    centred = ((f - f.mean(1, keepdim=True))[:, :, None, None, None] * masks[None]).sum(1) / (n * p)
    assert torch.allclose(out.attributions, centred, rtol=1e-4, atol=1e-5)
    assert out.n_evaluations == n * 3 + 3  # every mask for every sample, plus f(x)
    assert out.method == "rise" and out.signed is True


def test_masks_are_smooth_shifted_and_reproducible():
    rise = RISE(seeded(TinyCNN), grid=4, keep_prob=0.3, seed=1)
    m = rise.masks(300, (20, 20))
    assert m.shape == (300, 1, 20, 20) and m.dtype == torch.float32
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    assert abs(float(m.mean()) - 0.3) < 0.03  # E[m] = keep_prob at every pixel
    assert bool(((m > 0) & (m < 1)).any())  # bilinear, not binary
    # any range of masks can be regenerated piecewise
    assert torch.equal(rise.masks(7, (20, 20), start=100), m[100:107])
    assert torch.equal(rise.masks(300, (20, 20), seed=1), m)
    assert not torch.equal(rise.masks(300, (20, 20), seed=2), m)
    # random shifts: the cell borders are not all at the same place
    first_rows = m[:, 0, :, 0]
    assert len({tuple(r.tolist()) for r in first_rows}) > 100
    assert rise.cell_size((20, 20)) == (5, 5)


def test_deterministic_and_independent_of_chunk_size():
    model = seeded(TinyCNN)
    x = _images(3)
    ref = RISE(model, n_masks=64, grid=4, seed=3).attribute(x, 1)
    again = RISE(model, n_masks=64, grid=4, seed=3).attribute(x, 1)
    assert torch.equal(ref.attributions, again.attributions)
    for batching in (1, 7, 10_000):
        out = RISE(model, n_masks=64, grid=4, seed=3, batching=batching).attribute(x, 1)
        assert torch.allclose(out.attributions, ref.attributions, rtol=1e-5, atol=1e-6), batching
        assert out.n_evaluations == ref.n_evaluations
    other = RISE(model, n_masks=64, grid=4, seed=4).attribute(x, 1)
    assert not torch.allclose(other.attributions, ref.attributions, atol=1e-4)


def test_same_masks_for_every_sample():
    model = seeded(TinyCNN)
    x = _images(3)
    t = torch.tensor([1, 0, 3])
    batch = RISE(model, n_masks=50, grid=4).attribute(x, t).attributions
    for b in range(3):
        one = RISE(model, n_masks=50, grid=4).attribute(x[b : b + 1], int(t[b])).attributions
        assert torch.allclose(one[0], batch[b], rtol=1e-5, atol=1e-6)


def test_finds_the_planted_region():
    x = 0.5 + 0.5 * _images(2, 32, 32, seed=1)
    model = PatchMean().eval()
    region = model.region(32, 32)
    out = RISE(model, n_masks=500, grid=4).attribute(x, 0)
    a = out.extras["rise_map"][:, 0]
    assert float(a.min()) >= 0  # non-negative scores give a non-negative paper map
    c = out.attributions[:, 0]
    assert bool((c[:, region].mean(1) > 0).all()) and bool((c[:, ~region].mean(1) < c[:, region].mean(1)).all())
    ratio = a[:, region].mean(1) / a[:, ~region].mean(1)
    # the estimate is E[f | pixel kept]: pixels outside keep only the unconditional mean,
    # so the contrast of a linear score is bounded; measured ~1.24
    assert bool((ratio > 1.15).all()), ratio
    for b in range(2):
        top = a[b].flatten().topk(64).indices
        assert float(region.flatten()[top].float().mean()) > 0.7
    # the extras: the masks' mean coverage is close to keep_prob everywhere
    assert out.extras["mask_mean"].shape == (1, 1, 32, 32)
    assert abs(float(out.extras["mask_mean"].mean()) - 0.5) < 0.05
    # control: move the evidence elsewhere and the map follows it
    moved = PatchMean(rows=(20, 28), cols=(2, 10)).eval()
    b_map = RISE(moved, n_masks=500, grid=4).attribute(x, 0).attributions[:, 0]
    assert bool((b_map[:, region].mean(1) < b_map[:, ~region].mean(1)).all())


def test_leaves_the_model_unchanged():
    model = seeded(TinyCNN)
    model.features[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    RISE(model, n_masks=20, grid=4).attribute(_images(2), 0)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(n_masks=0), "n_masks"),
        (dict(n_masks=2.5), "n_masks"),
        (dict(keep_prob=0.0), "keep_prob"),
        (dict(keep_prob=1.0), "keep_prob"),
        (dict(keep_prob=-0.2), "keep_prob"),
        (dict(keep_prob=1.5), "keep_prob"),
        (dict(grid=0), "grid"),
        (dict(seed=1.5), "seed"),
        (dict(baseline="sepia"), "baseline"),
    ],
)
def test_bad_settings(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        RISE(seeded(TinyCNN), **kwargs).attribute(_images(1), 0)


def test_bad_inputs():
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        RISE(seeded(TinyMLP), n_masks=4).attribute(torch.rand(2, 10), 0)
    with pytest.raises(InputError, match="grid"):
        RISE(seeded(TinyCNN), n_masks=4, grid=20).attribute(_images(1), 0)
    with pytest.raises(TypeError, match="unexpected"):
        RISE(seeded(TinyCNN), n_masks=4).attribute(_images(1), 0, feature_mask=None)
