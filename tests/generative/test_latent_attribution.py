"""Attribution through a decoder: latent dimensions that drive a region or a classifier score."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError
from seethrough._core.targets import Region
from seethrough.generative.attribution import LatentAttribution
from seethrough.generative.protocol import DecoderModule


class _LinearAE(nn.Module):
    """decode(z) = sigmoid-free linear map: image pixel (r, c) depends on z[r] only."""

    latent_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.dec = nn.Linear(4, 16, bias=False)
        w = torch.zeros(16, 4)
        for p in range(16):
            w[p, p // 4] = 1.0 + p % 4  # row r of the 4x4 image reads z[r]
        self.dec.weight.data = w
        self.enc = nn.Linear(16, 4)

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, z):
        return self.dec(z).reshape(-1, 1, 4, 4)


def test_region_of_the_generated_image_is_attributed_to_its_latent_dimension():
    ae = _LinearAE().eval()
    z = torch.randn(3, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[2] = True  # the third row: driven by z[2] only
    e = LatentAttribution(ae, method="integrated_gradients", steps=16).attribute(z, target=Region(mask))
    assert e.attributions.shape == (3, 4)
    off = [0, 1, 3]
    assert torch.all(e.attributions[:, off].abs() < 1e-6)
    # linear decoder, zero baseline: IG = z * mean weight of the row (2.5) exactly, and complete
    torch.testing.assert_close(e.attributions[:, 2], z[:, 2] * 2.5, rtol=1e-5, atol=1e-6)
    assert e.delta is not None and e.delta.abs().max() < 1e-5


def test_head_on_the_decoded_output_and_saliency():
    ae = _LinearAE().eval()
    head = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    z = torch.randn(2, 4, requires_grad=False)
    e = LatentAttribution(ae, head=head, method="saliency").attribute(z, target=1)
    assert e.attributions.shape == (2, 4)
    # gradient of head[1] o decoder w.r.t. z: W_head[1] @ W_dec, the same for every sample
    g = (head[1].weight[1] @ ae.dec.weight).abs()
    torch.testing.assert_close(e.attributions[0].abs(), g.detach(), rtol=1e-5, atol=1e-6)


def test_bad_input_and_model_left_unchanged():
    ae = _LinearAE().train()
    flags = [p.requires_grad for p in ae.parameters()]
    with pytest.warns(UserWarning, match="train mode"), pytest.raises(InputError, match=r"shape \(B, 4\)"):
        LatentAttribution(ae, method="saliency").attribute(
            torch.randn(2, 5), target=Region(torch.ones(4, 4, dtype=torch.bool))
        )
    with pytest.raises(ConfigError, match="integrated_gradients"):
        LatentAttribution(ae, method="integrated_gradient").attribute(torch.randn(2, 4))
    with pytest.raises(ConfigError, match="not an autoencoder"):
        DecoderModule(nn.Linear(2, 2))
    assert ae.training and [p.requires_grad for p in ae.parameters()] == flags
    assert not ae._forward_hooks and not ae.dec._forward_hooks
