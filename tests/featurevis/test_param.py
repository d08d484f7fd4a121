"""Parameterizations: the Fourier spectrum scaling, colour decorrelation (estimated and
default), the squashes, the map to the model's input space, and seeding."""

from __future__ import annotations

import pytest
import torch

from seethrough._core.errors import ConfigError, InputError
from seethrough.featurevis import ColorDecorrelation, ImageParam, InputSpace
from seethrough.featurevis.param import DEFAULT_COLOR_SQRT, _InwardClamp, as_param


def _radial_power(img: torch.Tensor) -> tuple[float, float]:
    """Mean power of the lowest and the highest quarter of frequencies."""
    img = img.detach()
    spec = torch.fft.rfft2(img - img.mean(dim=(-2, -1), keepdim=True)).abs() ** 2
    h, w = img.shape[-2:]
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    f = (fx**2 + fy**2).sqrt()
    lo = (f > 0) & (f <= 0.125)
    hi = f >= 0.375
    return float(spec[..., lo].mean()), float(spec[..., hi].mean())


def test_fft_initial_images_have_a_falling_spectrum_and_pixel_ones_are_white():
    rows = list(range(16))
    fft = ImageParam("fft", decorrelate=False, sd=0.01).build((1, 32, 32), rows, seed=0).image().detach()
    pix = ImageParam("pixel", decorrelate=False, sd=0.01).build((1, 32, 32), rows, seed=0).image().detach()
    lo_f, hi_f = _radial_power(fft)
    lo_p, hi_p = _radial_power(pix)
    # amplitude ~ 1/f: power at frequencies ~0.06 vs ~0.45 differs by well over 10x
    assert lo_f / hi_f > 10
    assert 0.5 < lo_p / hi_p < 2  # white noise: flat
    # both start near mid gray
    assert abs(float(fft.mean()) - 0.5) < 0.05 and abs(float(pix.mean()) - 0.5) < 0.01


def test_each_image_depends_on_seed_and_row_only():
    p = ImageParam("fft")
    a = p.build((3, 16, 16), [0, 1, 2], seed=7).image()
    b = p.build((3, 16, 16), [2], seed=7).image()
    torch.testing.assert_close(a[2:3], b)
    c = p.build((3, 16, 16), [0, 1, 2], seed=8).image()
    assert not torch.allclose(a, c)


def test_color_decorrelation_fit_recovers_the_covariance():
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([[0.2, 0.0, 0.0], [0.1, 0.05, 0.0], [0.05, 0.02, 0.01]])
    cov = a @ a.T
    z = torch.randn(200, 3, 8, 8, generator=g)
    images = 0.5 + torch.einsum("ij,njhw->nihw", a, z)
    cd = ColorDecorrelation().fit(images)
    m = cd.matrix_.double()
    # M M^T is the covariance scaled so that its largest eigenvalue is 1
    est = m @ m.T
    target = cov.double() / torch.linalg.eigvalsh(cov.double()).max()
    torch.testing.assert_close(est, target, atol=0.03, rtol=0.05)
    torch.testing.assert_close(cd.covariance_, torch.cov(images.permute(1, 0, 2, 3).reshape(3, -1).double()))
    assert cd.n_pixels_ == 200 * 64
    # deterministic signs: largest entry of each column positive
    idx = m.abs().argmax(dim=0)
    assert bool((m[idx, torch.arange(3)] > 0).all())


def test_color_decorrelation_default_and_errors():
    d = ColorDecorrelation.default()
    ref = torch.tensor(DEFAULT_COLOR_SQRT)
    torch.testing.assert_close(d.matrix_, ref / ref.norm(dim=0).max())
    assert float(d.matrix_.norm(dim=0).max()) == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        ColorDecorrelation().fit(torch.rand(2, 1, 4, 4))
    with pytest.raises(InputError, match="no colour variation"):
        ColorDecorrelation().fit(torch.full((2, 3, 4, 4), 0.3))
    with pytest.raises(ConfigError, match="not fitted"):
        ImageParam(color=ColorDecorrelation())._check(3)


def test_color_decorrelation_is_an_estimator():
    from seethrough._core.errors import NotFittedError
    from seethrough._core.estimator import Estimator

    cd = ColorDecorrelation()
    assert isinstance(cd, Estimator) and not cd.is_fitted() and "not fitted" in repr(cd)
    with pytest.raises(NotFittedError):
        cd.check_fitted()
    with pytest.raises(NotFittedError):
        ImageParam(color=cd)._check(3)
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    assert cd.fit(images) is cd and cd.is_fitted()
    assert set(cd.fitted_attributes()) == {"matrix_", "covariance_", "mean_", "n_pixels_"}
    assert repr(cd) == "ColorDecorrelation(fitted on 256 pixels)"
    assert ColorDecorrelation.default().is_fitted()


def test_image_param_holds_its_settings():
    p = ImageParam("pixel", squash="clip", sd=0.1)
    assert (p.space, p.decorrelate, p.squash, p.sd, p.decay_power) == ("pixel", "auto", "clip", 0.1, 1.0)
    with pytest.raises(TypeError):
        ImageParam("fft", "auto")  # everything after the space is keyword-only


def test_decorrelation_uses_the_given_matrix():
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    cd = ColorDecorrelation().fit(images)
    p_fit = ImageParam("pixel", color=images, sd=0.5).build((3, 4, 4), [0], seed=0)
    p_obj = ImageParam("pixel", color=cd, sd=0.5).build((3, 4, 4), [0], seed=0)
    p_raw = ImageParam("pixel", decorrelate=False, sd=0.5).build((3, 4, 4), [0], seed=0)
    torch.testing.assert_close(p_fit.image(), p_obj.image())
    t = p_raw.params[0]
    expected = torch.sigmoid(torch.einsum("ij,kjhw->kihw", cd.matrix_, t))
    torch.testing.assert_close(p_obj.image(), expected)


def test_decorrelation_needs_three_channels():
    assert ImageParam()._check(1) is None  # "auto": off for grayscale
    with pytest.raises(ConfigError, match="3-channel"):
        ImageParam(decorrelate=True)._check(1)


def test_clip_squash_and_its_gradient():
    p = ImageParam("pixel", decorrelate=False, squash="clip", sd=1.0).build((1, 8, 8), [0], seed=0)
    img = p.image().detach()
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    torch.testing.assert_close(img, (p.params[0].detach() + 0.5).clamp(0, 1))
    # outside the range, the gradient passes only where descent moves the value back
    x = torch.tensor([-1.0, -1.0, 0.5, 2.0, 2.0], requires_grad=True)
    _InwardClamp.apply(x).backward(torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0]))
    assert x.grad.tolist() == [-1.0, 0.0, 1.0, 1.0, 0.0]


def test_param_settings_errors():
    with pytest.raises(ConfigError, match="fft"):
        as_param("wavelet")
    with pytest.raises(ConfigError, match="squash"):
        ImageParam(squash="tanh")._check(3)
    with pytest.raises(ConfigError, match="sd"):
        ImageParam(sd=-1)._check(3)
    with pytest.raises(ConfigError, match="color"):
        ImageParam(color="imagenet")._check(3)


def test_input_space_maps():
    s = InputSpace.build(3)
    assert s.scale == (1.0,) * 3 and s.shift == (0.0,) * 3
    s = InputSpace.build(3, input_range=(-1, 1))
    scale, shift = s.tensors()
    u = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(u * scale + shift, 2 * u - 1)
    s = InputSpace.build(3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    scale, shift = s.tensors()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(u * scale + shift, (u - mean) / std)
    s = InputSpace.build(1, mean=0.1307, std=0.3081)
    assert len(s.scale) == 1
    with pytest.raises(ConfigError, match="not both"):
        InputSpace.build(3, input_range=(0, 1), mean=[0.5] * 3, std=[0.5] * 3)
    with pytest.raises(ConfigError, match="both mean= and std="):
        InputSpace.build(3, mean=[0.5] * 3)
    with pytest.raises(ConfigError, match="3-channel"):
        InputSpace.build(3, mean=[0.5, 0.5], std=[1, 1])
    with pytest.raises(ConfigError, match="positive"):
        InputSpace.build(3, mean=0.5, std=0.0)
    with pytest.raises(ConfigError, match="lo < hi"):
        InputSpace.build(3, input_range=(1, 0))
