"""Tests of seethrough.report.plot."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg", force=False)  # never a display in tests

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from seethrough._core.errors import ConfigError, InputError
from seethrough._core.result import Explanation
from seethrough.report.plot import (
    array_to_png,
    color_limits,
    figure_to_png,
    image_for_display,
    mask_overlay,
    plot_explanation,
    plot_grid,
    plot_mask,
    png_data_uri,
    to_heatmap,
)


def _expl(a, *, method="saliency", signed=True, inputs=None, **kw):
    return Explanation(attributions=a, method=method, signed=signed, inputs=inputs, **kw)


def _png_image(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


# -- to_heatmap ------------------------------------------------------------------------
def test_to_heatmap_reductions_numerically():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 5, 4, generator=g)
    torch.testing.assert_close(to_heatmap(a, "sum"), a[:, 0] + a[:, 1] + a[:, 2])
    torch.testing.assert_close(to_heatmap(a, "abs_sum"), a[:, 0].abs() + a[:, 1].abs() + a[:, 2].abs())
    torch.testing.assert_close(
        to_heatmap(a, "max_abs"), torch.maximum(torch.maximum(a[:, 0].abs(), a[:, 1].abs()), a[:, 2].abs())
    )
    torch.testing.assert_close(to_heatmap(a, "l2"), (a[:, 0] ** 2 + a[:, 1] ** 2 + a[:, 2] ** 2).sqrt())
    assert to_heatmap(a).shape == (2, 5, 4)


def test_to_heatmap_planted_values():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0, 0, 0], a[0, 1, 0, 0] = 3.0, -4.0
    assert to_heatmap(a, "sum")[0, 0, 0].item() == pytest.approx(-1.0)
    assert to_heatmap(a, "abs_sum")[0, 0, 0].item() == pytest.approx(7.0)
    assert to_heatmap(a, "max_abs")[0, 0, 0].item() == pytest.approx(4.0)
    assert to_heatmap(a, "l2")[0, 0, 0].item() == pytest.approx(5.0)
    assert to_heatmap(a, "sum")[0, 1, 1].item() == 0.0


def test_to_heatmap_shapes():
    a = torch.randn(3, 1, 6, 7)
    torch.testing.assert_close(to_heatmap(a), a[:, 0])
    torch.testing.assert_close(to_heatmap(a, "abs_sum"), a[:, 0].abs())
    b = torch.randn(3, 6, 7)
    torch.testing.assert_close(to_heatmap(b), b)
    flat = torch.randn(4, 10)
    h = to_heatmap(flat)
    assert h.shape == (4, 1, 10)
    torch.testing.assert_close(h[:, 0], flat)
    torch.testing.assert_close(to_heatmap(flat, "abs_sum")[:, 0], flat.abs())
    # numpy, integer and half inputs are accepted and give float maps
    assert to_heatmap(np.ones((2, 3, 4, 4), dtype=np.int64), "sum").dtype.is_floating_point
    assert to_heatmap(np.ones((2, 3, 4, 4)), "sum")[0, 0, 0].item() == 3.0
    assert to_heatmap(torch.ones(1, 2, 3, 3, dtype=torch.bfloat16)).dtype == torch.float32
    # gradients are cut
    assert not to_heatmap(torch.randn(1, 3, 2, 2, requires_grad=True)).requires_grad


@pytest.mark.parametrize("shape", [(5,), (), (1, 2, 3, 4, 5)])
def test_to_heatmap_bad_shapes(shape):
    with pytest.raises(InputError, match="shape"):
        to_heatmap(torch.zeros(shape))


def test_to_heatmap_bad_reduce_and_type():
    with pytest.raises(ConfigError, match="reduce"):
        to_heatmap(torch.zeros(1, 3, 2, 2), reduce="median")
    with pytest.raises(InputError):
        to_heatmap("not a tensor")
    with pytest.raises(InputError, match="no samples"):
        to_heatmap(torch.zeros(0, 3, 2, 2))


def test_explanation_heatmap_goes_through_to_heatmap():
    a = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(_expl(a).heatmap("abs_sum"), a.abs().sum(1))


# -- image_for_display -------------------------------------------------------------------
def test_image_for_display_rgb_and_gray():
    x = torch.rand(3, 5, 6)
    img = image_for_display(x)
    assert img.shape == (5, 6, 3)
    np.testing.assert_allclose(img, x.permute(1, 2, 0).numpy(), atol=1e-6)
    g = image_for_display(torch.rand(1, 5, 6))
    assert g.shape == (5, 6)
    assert image_for_display(np.random.rand(5, 6, 3)).shape == (5, 6, 3)  # HWC
    assert image_for_display(torch.rand(5, 6)).shape == (5, 6)
    assert image_for_display(torch.rand(10)).shape == (1, 10)
    assert image_for_display(torch.rand(1, 3, 4, 4)).shape == (4, 4, 3)  # batch of one


def test_image_for_display_rescales_normalised_images():
    x = torch.tensor([[[-2.0, 0.0], [1.0, 2.0]]])  # outside [0, 1]
    img = image_for_display(x)
    np.testing.assert_allclose(img, [[0.0, 0.5], [0.75, 1.0]])
    u = np.full((2, 2, 3), 255, dtype=np.uint8)
    np.testing.assert_allclose(image_for_display(u), 1.0)
    nan = torch.tensor([[float("nan"), 0.5]])
    assert np.isfinite(image_for_display(nan)).all()
    flat = image_for_display(torch.full((1, 3, 3), 7.0))  # constant, out of range
    assert flat.min() >= 0.0 and flat.max() <= 1.0
    with pytest.raises(InputError):
        image_for_display(torch.zeros(2, 2, 2, 2, 2))


def test_color_limits():
    h = np.array([[-10.0, 1.0], [2.0, 0.5]])
    assert color_limits(h, signed=True, percentile=100) == (-10.0, 10.0)
    lo, hi = color_limits(h, signed=True, percentile=50)
    assert lo == -hi and hi == pytest.approx(np.percentile(np.abs(h), 50))
    assert color_limits(np.zeros((3, 3)), True) == (-1.0, 1.0)
    assert color_limits(np.zeros((3, 3)), False) == (0.0, 1.0)
    assert color_limits(np.array([0.0, 4.0]), False, 100) == (0.0, 4.0)
    with pytest.raises(ConfigError):
        color_limits(h, True, percentile=0)


# -- plot_explanation --------------------------------------------------------------------
def test_plot_explanation_returns_figure_and_symmetric_limits():
    a = torch.zeros(2, 3, 8, 8)
    a[1, 0, 2, 3] = 5.0
    a[1, 1, 4, 4] = -1.0
    e = _expl(a, inputs=torch.rand(2, 3, 8, 8), target_indices=torch.tensor([4, 7]))
    fig = plot_explanation(e, index=1, percentile=100, overlay=False, colorbar=False)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    (im,) = ax.images
    assert im.get_clim() == (-5.0, 5.0)
    assert im.get_cmap().name == "RdBu_r"
    np.testing.assert_allclose(np.asarray(im.get_array()), a[1].sum(0).numpy())
    assert "saliency" in ax.get_title() and "7" in ax.get_title()
    figure_to_png(fig)  # draws without a display


def test_plot_explanation_unsigned_uses_sequential_from_zero():
    a = torch.rand(1, 1, 6, 6) + 0.5
    e = _expl(a, method="gradcam", signed=False)
    fig = e.plot(colorbar=False, percentile=100)
    im = fig.axes[0].images[-1]
    lo, hi = im.get_clim()
    assert lo == 0.0 and hi == pytest.approx(a.max().item())
    assert im.get_cmap().name == "inferno"
    # a signed method shown with reduce="abs_sum" is non-negative too
    s = _expl(torch.randn(1, 3, 6, 6))
    im2 = s.plot(reduce="abs_sum", colorbar=False).axes[0].images[-1]
    assert im2.get_clim()[0] == 0.0


def test_plot_explanation_respects_given_ax_and_overlay():
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    x = torch.rand(1, 3, 8, 8)
    e = _expl(torch.randn(1, 3, 8, 8), inputs=x)
    out = plot_explanation(e, ax=ax2, alpha=0.4, colorbar=False, title="mine <b>")
    assert out is ax2.figure is fig
    assert len(ax1.images) == 0
    assert len(ax2.images) == 2  # input below, map above
    assert ax2.images[1].get_alpha() == 0.4
    assert ax2.get_title() == "mine <b>"
    assert len(fig.axes) == 2
    out = plot_explanation(e, ax=ax1, overlay=False, colorbar=True)
    assert len(ax1.images) == 1
    assert len(fig.axes) == 3  # a colour bar was added


def test_plot_explanation_stretches_small_layer_map_over_input():
    e = _expl(torch.rand(1, 1, 2, 2), signed=False, inputs=torch.rand(1, 1, 8, 8), layer="conv2")
    ax = e.plot(colorbar=False).axes[0]
    assert ax.images[-1].get_extent() == [-0.5, 7.5, 7.5, -0.5]
    assert "conv2" in ax.get_title()


def test_plot_explanation_index_and_flat_inputs():
    e = _expl(torch.randn(2, 3, 4, 4))
    with pytest.raises(InputError, match="out of range"):
        e.plot(index=2)
    assert isinstance(e.plot(index=-1), Figure)
    tab = _expl(torch.randn(3, 12), inputs=torch.randn(3, 12))
    fig = tab.plot(index=2, colorbar=False, percentile=100)
    im = fig.axes[0].images[-1]
    assert np.asarray(im.get_array()).shape == (1, 12)
    v = tab.attributions[2].abs().max().item()
    assert im.get_clim() == pytest.approx((-v, v))


# -- plot_grid / plot_mask -------------------------------------------------------------
def test_plot_grid_axes_count_and_titles():
    n = 4
    x = torch.rand(n, 3, 8, 8)
    e1 = _expl(torch.randn(n, 3, 8, 8), method="ig", inputs=x, seconds=0.5)
    e2 = _expl(torch.rand(n, 1, 8, 8), method="gradcam", signed=False)
    e3 = _expl(torch.randn(n, 3, 8, 8), method="saliency")
    fig = plot_grid([e1, e2, e3])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n * (1 + 3)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles[0] == "input"
    assert titles[1].startswith("ig") and "0.5 s" in titles[1]
    assert titles[2] == "gradcam" and titles[3] == "saliency"  # no run time when 0

    masks = torch.zeros(n, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 2:5] = True
    fig = plot_grid({"A": e1, "B": e2}, masks=masks, indices=[0, 2], labels=["cat", "dog"], figsize=(6, 4))
    assert len(fig.axes) == 2 * (1 + 1 + 2)
    assert [ax.get_title() for ax in fig.axes[:4]][1:] == ["ground truth", "A\n0.5 s", "B"]
    assert fig.axes[0].get_ylabel() == "cat" and fig.axes[4].get_ylabel() == "dog"
    assert tuple(fig.get_size_inches()) == (6, 4)
    # signed maps keep symmetric limits, unsigned maps start at 0
    assert fig.axes[2].images[0].get_clim()[0] == -fig.axes[2].images[0].get_clim()[1]
    assert fig.axes[3].images[0].get_clim()[0] == 0.0


def test_plot_grid_without_inputs_and_errors():
    e = _expl(torch.randn(3, 1, 5, 5))
    fig = plot_grid(e)
    assert len(fig.axes) == 3  # no input column when no inputs are known
    with pytest.raises(InputError):
        plot_grid([e], labels=["a", "b"])  # neither per row nor per sample
    with pytest.raises(InputError, match="out of range"):
        plot_grid([e], indices=[3])
    with pytest.raises(InputError):
        plot_grid([])
    with pytest.raises(InputError):
        plot_grid([object()])


def test_plot_mask_fill_and_outline():
    img = torch.rand(3, 10, 10)
    mask = torch.zeros(10, 10)
    mask[3:7, 2:6] = 1.0
    fig = Figure()
    ax = fig.add_subplot()
    out = plot_mask(img, mask, ax=ax, alpha=0.3, title="gt")
    assert out is fig
    fill = np.asarray(ax.images[-1].get_array())
    assert fill.shape == (10, 10, 4)
    np.testing.assert_allclose(fill[..., 3], mask.numpy() * 0.3)
    assert len(ax.collections) >= 1  # the contour
    assert ax.get_title() == "gt"
    assert isinstance(plot_mask(None, mask.bool()), Figure)
    with pytest.raises(InputError):
        plot_mask(img, torch.zeros(2, 3, 4, 4))


def test_mask_overlay_colors_outline_and_fill():
    img = np.zeros((4, 4))
    m = np.zeros((4, 4), dtype=bool)
    m[1:4, 1:4] = True
    out = mask_overlay(img, m, color=(1.0, 0.0, 0.0), alpha=0.5, min_size=0)
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(out[0, 0], [0, 0, 0])  # outside untouched
    np.testing.assert_allclose(out[1, 1], [1, 0, 0])  # boundary: outline colour
    np.testing.assert_allclose(out[2, 2], [0.5, 0, 0])  # interior: blended fill
    big = mask_overlay(img, m, min_size=64)
    assert big.shape == (64, 64, 3)


# -- PNG helpers -------------------------------------------------------------------------
def test_array_to_png_colormap_and_upscaling():
    arr = np.array([[0.0, 1.0], [0.5, 2.0]])
    img = _png_image(array_to_png(arr, cmap="viridis", vmin=0.0, vmax=1.0, min_size=128))
    assert img.size == (128, 128) and img.mode == "RGB"
    px = np.asarray(img)
    cm = matplotlib.colormaps["viridis"]
    np.testing.assert_allclose(px[0, 0], np.round(np.asarray(cm(0.0)[:3]) * 255), atol=1)
    np.testing.assert_allclose(px[0, 127], np.round(np.asarray(cm(1.0)[:3]) * 255), atol=1)
    np.testing.assert_allclose(px[127, 127], px[0, 127])  # clipped above vmax
    # nearest-neighbour: each source pixel becomes a flat 64x64 block
    assert (px[:64, :64] == px[0, 0]).all()


def test_array_to_png_rgb_gray_and_strips():
    rgb = np.zeros((3, 3, 3))
    rgb[0, 0] = [1.0, 0.0, 0.0]
    px = np.asarray(_png_image(array_to_png(rgb, min_size=0)))
    assert px.shape == (3, 3, 3)
    assert tuple(px[0, 0]) == (255, 0, 0) and tuple(px[2, 2]) == (0, 0, 0)
    chw = torch.rand(3, 16, 16)
    assert _png_image(array_to_png(chw)).size == (128, 128)
    gray = _png_image(array_to_png(torch.tensor([[0.0, 1.0]]), min_size=0))
    assert np.asarray(gray)[0, 0, 0] == 0 and np.asarray(gray)[0, 1, 0] == 255
    strip = _png_image(array_to_png(np.arange(100.0)[None, :]))
    w, h = strip.size
    assert w >= 128 and h >= 32  # thin strips stay visible
    const = _png_image(array_to_png(np.zeros((2, 2)), min_size=0))  # vmin == vmax is fine
    assert const.size == (2, 2)
    with pytest.raises(InputError):
        array_to_png(np.zeros((0, 3)))


def test_figure_to_png_and_data_uri():
    import base64

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    png = figure_to_png(fig, dpi=50)
    _png_image(png)
    uri = png_data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    assert figure_to_png(fig.axes[0])[:8] == png[:8]  # an Axes is accepted too
    with pytest.raises(InputError):
        figure_to_png("nope")
    with pytest.raises(InputError):
        png_data_uri("not bytes")
