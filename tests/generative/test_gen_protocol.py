"""The autoencoder protocol: a separate encoder and decoder as one autoencoder, with clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError
from seethrough.generative.protocol import Autoencoder, check_autoencoder


def test_pair_reads_latent_dim_and_takes_the_mean_of_a_distribution_encoder():
    class Enc(nn.Module):
        def forward(self, x):
            return x[:, :3], torch.zeros(x.shape[0], 3)  # (mu, logvar)

    dec = nn.Linear(3, 5)
    dec.latent_dim = 3  # type: ignore[assignment]
    ae = Autoencoder(Enc(), dec)
    check_autoencoder(ae)
    x = torch.randn(4, 6)
    torch.testing.assert_close(ae.encode(x), x[:, :3])
    assert ae(x).shape == (4, 5)


def test_pair_errors_name_the_fix():
    with pytest.raises(ConfigError, match="latent-dim"):
        Autoencoder(nn.Identity(), nn.Linear(3, 5))
    ae = Autoencoder(None, nn.Linear(3, 5), latent_dim=3)
    with pytest.raises(ConfigError, match="no encoder"):
        ae.encode(torch.randn(2, 3))
    bad = Autoencoder(nn.Linear(6, 4), nn.Linear(3, 5), latent_dim=3)
    with pytest.raises(InputError, match=r"not \(B, 3\)"):
        bad.encode(torch.randn(2, 6))
    with pytest.raises(ConfigError, match="latent_dim"):
        check_autoencoder(type("NoDim", (), {"encode": lambda s, x: x, "decode": lambda s, z: z})())
