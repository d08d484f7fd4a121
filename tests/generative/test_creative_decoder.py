"""Creative decoding: low-active units, the set hook, controls, the decoder left unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seethrough.generative._scanviews  # noqa: F401  (registers the views)
from seethrough._core.errors import ConfigError, NotFittedError
from seethrough.generative.creative import CreativeDecoder, CreativeSamples, set_units
from seethrough.testing import TinyGenerator


def _generator_with_dead_channels():
    torch.manual_seed(0)
    g = TinyGenerator().eval()
    with torch.no_grad():
        g.deconv[1].bias[[2, 5]] = -20.0  # channels 2 and 5 never pass the ReLU
    return g


def test_fit_finds_the_low_active_units_and_decoder_is_unchanged():
    g = _generator_with_dead_channels()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    z = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    cd = CreativeDecoder(g, layer="deconv.2").fit(z)
    assert cd.low_active_units_.tolist() == [2, 5]
    assert cd.activation_rate_.shape == (8,) and float(cd.activation_rate_[2]) == 0.0
    assert cd.reference_value_ > 0 and cd.unit_max_.shape == (8,)
    out = cd.decode(z[:6], n_units=2, seed=3)
    normal = g(z[:6])
    assert out.shape == normal.shape and not torch.allclose(out, normal)
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in before.items())
    assert not any(m._forward_hooks for m in g.modules())
    # the same seed gives the same units, chunking does not matter
    chunked = CreativeDecoder(g, layer="deconv.2", batching=2).fit(z)
    assert chunked.reference_value_ == pytest.approx(cd.reference_value_)
    assert torch.allclose(cd.decode(z[:6], n_units=1, seed=3), chunked.decode(z[:6], n_units=1, seed=3), atol=1e-6)


def test_set_units_sets_exactly_the_chosen_units():
    g = _generator_with_dead_channels()
    z = torch.randn(4, 8)
    seen = {}
    h = g.deconv[3].register_forward_pre_hook(lambda m, i: seen.__setitem__("inp", i[0].clone()))
    try:
        with set_units(g.deconv[2]) as state:
            state["mask"] = torch.zeros(4, 8, dtype=torch.bool)
            state["mask"][1, 2] = True
            state["values"] = 7.0
            with torch.no_grad():
                g(z)
    finally:
        h.remove()
    assert not g.deconv[2]._forward_hooks
    with torch.no_grad():
        g(z)
    changed = seen["inp"]
    assert torch.all(changed[1, 2] == 7.0)
    with torch.no_grad():
        plain = torch.relu(g.deconv[1](g.deconv[0](g.fc(z).reshape(-1, 16, 2, 2))))
    keep = torch.ones(4, 8, dtype=torch.bool)
    keep[1, 2] = False
    assert torch.allclose(changed[keep], plain[keep])


def test_hook_removed_after_an_exception():
    g = _generator_with_dead_channels()
    with pytest.raises(RuntimeError):
        with set_units(g.deconv[2]):
            raise RuntimeError("boom")
    assert not g.deconv[2]._forward_hooks


def test_compare_controls_and_views(tmp_path):
    g = _generator_with_dead_channels()
    z = torch.randn(100, 8, generator=torch.Generator().manual_seed(2))
    cd = CreativeDecoder(g, layer="deconv.2", reference="unit_max").fit(z)
    r = cd.compare(z[:5], strength=2.0, n_units=2)
    assert isinstance(r, CreativeSamples) and r.control_kind == "random units"
    assert r.units.shape == (5, 2) and set(r.units.reshape(-1).tolist()) <= {2, 5}
    assert r.control_units is not None and r.control_units.shape == (5, 2)
    assert torch.allclose(r.normal, g(z[:5]).detach())
    assert bool((r.creative_change > 0).all())
    rn = cd.compare(z[:5], noise=0.3)
    assert rn.control_kind == "z noise" and rn.control_units is None
    assert r.plot().axes and "creative change" in r.to_html()
    back = CreativeSamples.load(r.save(tmp_path / "c.safetensors"))
    assert torch.equal(back.creative, r.creative)


def test_linear_layer_with_features_last_and_autoencoder_decode():
    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.dec = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5))
            with torch.no_grad():
                self.dec[0].bias[3] = -50.0

        def decode(self, z):
            return self.dec(z)

        def forward(self, x):  # pragma: no cover - not used
            raise AssertionError("forward must not be called")

    ae = AE().eval()
    cd = CreativeDecoder(ae, layer="dec.1", unit_dim=-1).fit(torch.randn(50, 4))
    assert 3 in cd.low_active_units_.tolist()
    out = cd.decode(torch.randn(3, 4), units=[3], strength=1.0)
    assert out.shape == (3, 5)


def test_errors():
    g = _generator_with_dead_channels()
    with pytest.raises(NotFittedError):
        CreativeDecoder(g, layer="deconv.2").decode(torch.randn(2, 8))
    with pytest.raises(ConfigError, match="max_rate"):
        CreativeDecoder(g, layer="deconv.2", max_rate=0.0, threshold=-1e9).fit(torch.randn(20, 8))
    cd = CreativeDecoder(g, layer="deconv.2").fit(torch.randn(50, 8))
    with pytest.raises(ConfigError, match="n_units"):
        cd.decode(torch.randn(2, 8), n_units=5)
    with pytest.raises(ConfigError, match="units"):
        cd.decode(torch.randn(2, 8), units=[99])
