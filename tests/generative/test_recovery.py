"""Latent recovery and the memorisation test: planted memorisers are flagged, a generator that
models train and held-out images alike is not; the generator is never changed."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError
from seethrough.generative.protocol import Generator
from seethrough.generative.recovery import LatentRecovery, Recovery, RecoveryTest, memorization_test
from seethrough.testing.generative import TinyGAN, TinyVAE


def _blobs(n, seed):
    """Images (n, 1, 8, 8) in [0, 1]: two Gaussian blobs at random places and sizes."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    centres = torch.rand(n, 2, 2, generator=g) * 7
    sizes = 0.8 + torch.rand(n, 2, generator=g) * 1.5
    img = torch.zeros(n, 8, 8)
    for k in range(2):
        d2 = (yy - centres[:, k, 0, None, None]) ** 2 + (xx - centres[:, k, 1, None, None]) ** 2
        img = img + torch.exp(-d2 / (2 * sizes[:, k, None, None] ** 2))
    return img.clamp(0, 1)[:, None]


class _Memoriser(nn.Module):
    """A planted memoriser: its outputs are soft mixtures of a fixed set of images (a one-hot
    mixture gives each of them exactly), so nothing else can be generated."""

    def __init__(self, images, sharpness=10.0):
        super().__init__()
        self.latent_dim = int(images.shape[0])
        self.register_buffer("images", images.clone())
        self.mix = nn.Linear(self.latent_dim, self.latent_dim, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(self.latent_dim))
        self.sharpness = sharpness
        self.eval()

    def forward(self, z):
        w = torch.softmax(self.sharpness * self.mix(z), dim=1)
        return torch.einsum("nm,mchw->nchw", w, self.images)


def _noisy_samples(g, n, seed, noise=0.03):
    with torch.no_grad():
        x = g(torch.randn(n, g.latent_dim, generator=torch.Generator().manual_seed(seed)))
    return x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 100))


def _state(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [len(getattr(m, a)) for m in model.modules() for a in ("_forward_hooks", "_forward_pre_hooks")],
        {k: v.clone() for k, v in model.state_dict().items()},
        [p.grad is None for p in model.parameters()],
    )


def _same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[4] == b[4]
    assert all(torch.equal(a[3][k], b[3][k]) for k in a[3])


# ------------------------------------------------------------------------------ recovery
def test_recovery_finds_codes_of_generated_images():
    g = TinyGAN(seed=3)
    z_true = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = g(z_true)
    rec = LatentRecovery(g, steps=150, restarts=3, lr=0.05, seed=0).recover(images)
    assert isinstance(rec, Recovery) and len(rec) == 6
    assert rec.z.shape == (6, 4) and rec.restart_errors.shape == (6, 3) and rec.best_restart.shape == (6,)
    assert float(rec.errors.max()) < 1e-3  # a generated image is recovered (MSE far below its variance)
    assert float(rec.errors.max()) < 0.05 * float(images.var())
    with torch.no_grad():
        torch.testing.assert_close(rec.reconstructions, g(rec.z))
    expected = ((rec.reconstructions - images) ** 2).mean(dim=(1, 2, 3)).double()
    torch.testing.assert_close(rec.errors, expected)
    torch.testing.assert_close(rec.errors, rec.restart_errors.min(dim=1).values, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(rec.best_restart, rec.restart_errors.argmin(dim=1))
    assert rec.rows()[0].keys() >= {"image", "error", "best restart"}


def test_recovery_does_not_depend_on_chunking_and_is_seeded():
    g = TinyGAN(seed=3)
    images = _blobs(5, 0)
    a = LatentRecovery(g, steps=40, restarts=2, batching=3, seed=1).recover(images)
    b = LatentRecovery(g, steps=40, restarts=2, seed=1).recover(images)
    torch.testing.assert_close(a.errors, b.errors, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(a.z, b.z, rtol=1e-3, atol=1e-4)
    c = LatentRecovery(g, steps=40, restarts=2, seed=2).recover(images)
    assert not torch.allclose(a.z, c.z)


def test_recovery_improves_on_the_starting_codes():
    g = TinyGAN(seed=3)
    images = _blobs(4, 2)
    start = LatentRecovery(g, steps=0, restarts=2, seed=0).recover(images)
    after = LatentRecovery(g, steps=60, restarts=2, seed=0).recover(images)
    assert bool((after.errors <= start.errors + 1e-12).all()) and float(after.errors.mean()) < float(
        start.errors.mean()
    )


def test_recovery_losses_and_wrappers():
    g = TinyGAN(seed=3)
    images = _blobs(3, 0)
    l1 = LatentRecovery(g, steps=10, restarts=1, loss="l1").recover(images)
    torch.testing.assert_close(l1.errors, (l1.reconstructions - images).abs().mean(dim=(1, 2, 3)).double())

    def weighted(out, target):
        return ((out - target) ** 2).sum(dim=(1, 2, 3))

    custom = LatentRecovery(g, steps=10, restarts=1, loss=weighted).recover(images)
    assert custom.loss == "weighted"
    # a Generator wrapper and an autoencoder's decoder work the same way
    wrapped = LatentRecovery(Generator(g), steps=10, restarts=1).recover(images)
    plain = LatentRecovery(g, steps=10, restarts=1).recover(images)
    torch.testing.assert_close(wrapped.errors, plain.errors)
    vae = TinyVAE()
    rec = LatentRecovery(vae, steps=10, restarts=1).recover(images)
    with torch.no_grad():
        torch.testing.assert_close(rec.reconstructions, vae.decode(rec.z))


def test_recovery_errors():
    g = TinyGAN()
    with pytest.raises(InputError, match=r"\(1, 8, 8\).*\(3, 8, 8\)"):
        LatentRecovery(g, steps=2).recover(torch.rand(2, 3, 8, 8))
    bad = torch.rand(2, 1, 8, 8)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        LatentRecovery(g, steps=2).recover(bad)
    with pytest.raises(InputError, match="floating point"):
        LatentRecovery(g, steps=2).recover(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ConfigError, match="loss"):
        LatentRecovery(g, loss="ssim").recover(torch.rand(2, 1, 8, 8))
    with pytest.raises(InputError, match="one error per row"):
        LatentRecovery(g, loss=lambda o, t: ((o - t) ** 2).mean()).recover(torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="steps"):
        LatentRecovery(g, steps=-1).recover(torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="restarts"):
        LatentRecovery(g, restarts=0).recover(torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="lr"):
        LatentRecovery(g, lr=0.0).recover(torch.rand(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="latent size"):
        LatentRecovery(nn.Linear(4, 4)).recover(torch.rand(2, 4))


@pytest.mark.parametrize("train", [False, True])
def test_generator_unchanged_and_gets_no_gradients(train):
    g = TinyGAN(seed=3)
    g.train(train)
    g.fc.bias.requires_grad_(False)
    before = _state(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LatentRecovery(g, steps=5, restarts=2).recover(_blobs(3, 0))
        _same(before, _state(g))
        memorization_test(g, _blobs(3, 0), _blobs(3, 1), steps=3, restarts=1)
        _same(before, _state(g))
        with pytest.raises(InputError):
            LatentRecovery(g, steps=2).recover(torch.rand(2, 3, 8, 8))  # raised inside the guard
        _same(before, _state(g))

        def failing(out, target):
            raise RuntimeError("loss failed")

        with pytest.raises(RuntimeError, match="loss failed"):
            LatentRecovery(g, steps=2, loss=failing).recover(_blobs(2, 0))
        _same(before, _state(g))


# ----------------------------------------------------------------------- memorisation test
def test_planted_memoriser_is_flagged():
    train, heldout = _blobs(8, 0), _blobs(8, 1)
    res = memorization_test(_Memoriser(train), train, heldout, steps=100, restarts=2)
    assert isinstance(res, RecoveryTest) and res.flagged
    assert res.effect == 1.0 and res.p_value < 1e-3 and res.median_ratio < 1e-3
    assert float(res.train_errors.max()) < 1e-4 < float(res.heldout_errors.min())


def test_generator_without_memorisation_is_not_flagged():
    g = TinyGAN(seed=3)
    train, heldout = _noisy_samples(g, 16, 1), _noisy_samples(g, 16, 2)  # one distribution, both modelled
    res = memorization_test(g, train, heldout, steps=100, restarts=2)
    assert not res.flagged
    assert res.p_value > 0.05 and res.effect < res.min_effect and 0.7 < res.median_ratio < 1.4


@pytest.mark.slow
def test_trained_memoriser_is_flagged():
    """A TinyGAN fitted to reproduce 8 images from 8 fixed codes (a few hundred steps)."""
    train, heldout = _blobs(8, 0), _blobs(8, 1)
    g = TinyGAN(latent_dim=4, channels=16, seed=1)
    codes = torch.randn(8, 4, generator=torch.Generator().manual_seed(5))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g.train()
        opt = torch.optim.Adam(g.parameters(), lr=1e-2)
        for _ in range(400):
            opt.zero_grad()
            loss = ((g(codes) - train) ** 2).mean()
            loss.backward()
            opt.step()
    g.eval()
    for p in g.parameters():
        p.grad = None
    res = memorization_test(g, train, heldout, steps=150, restarts=3)
    assert res.flagged and res.effect > 0.9
    assert float(res.train_errors.median()) < 0.1 * float(res.heldout_errors.median())


def test_effect_size_is_cliffs_delta_and_test_is_mann_whitney():
    from scipy.stats import mannwhitneyu

    train, heldout = _blobs(6, 0), _blobs(7, 1)
    res = memorization_test(TinyGAN(seed=3), train, heldout, steps=20, restarts=1)
    tr, ho = res.train_errors.numpy(), res.heldout_errors.numpy()
    pairs = np.sign(ho[None, :] - tr[:, None])  # +1 where the train error is smaller
    np.testing.assert_allclose(res.effect, pairs.mean(), atol=1e-12)
    ref = mannwhitneyu(tr, ho, alternative="less")
    np.testing.assert_allclose([res.statistic, res.p_value], [ref.statistic, ref.pvalue], rtol=1e-12)
    np.testing.assert_allclose(res.median_ratio, np.median(tr) / np.median(ho), rtol=1e-12)
    assert res.flagged == (res.p_value < res.alpha and res.effect >= res.min_effect)
    assert [r["set"] for r in res.rows()] == ["train", "held-out"] and res.summary()["n held-out"] == 7


def test_memorization_test_errors():
    g = TinyGAN()
    with pytest.raises(InputError, match="at least 2 images"):
        memorization_test(g, torch.rand(1, 1, 8, 8), torch.rand(4, 1, 8, 8))
    with pytest.raises(ConfigError, match="alpha"):
        memorization_test(g, torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8), alpha=1.5)
    with pytest.raises(ConfigError, match="min_effect"):
        memorization_test(g, torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8), min_effect=2.0)


# ------------------------------------------------------------------------------ views
def test_views_and_persistence(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    train, heldout = _blobs(4, 0), _blobs(4, 1)
    res = memorization_test(_Memoriser(train), train, heldout, steps=20, restarts=1)
    assert isinstance(res.plot(), Figure)
    fig = Figure()
    ax = fig.add_subplot()
    assert res.plot(ax=ax) is fig and len(ax.patches) > 0  # the histogram bars
    html = res.to_html()
    assert "memorisation" in html and "Mann-Whitney" in html and "<img" in html
    assert isinstance(res.train.plot(), Figure) and "latent recovery" in res.train.to_html()
    path = res.save(tmp_path / "test.safetensors")
    back = RecoveryTest.load(path)
    assert back.flagged == res.flagged and back.p_value == res.p_value
    torch.testing.assert_close(back.train.z, res.train.z)
    torch.testing.assert_close(back.heldout_errors, res.heldout_errors)
