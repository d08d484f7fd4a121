import math

import pytest
import torch

from seethrough._core.batching import Batching
from seethrough._core.errors import ConfigError, InputError
from seethrough.generative.directions import Direction
from seethrough.generative.latent import Latent, LatentWalk, slerp
from seethrough.generative.table import AttributeTable
from seethrough.testing.generative import TinySeqAE, TinyVAE


@pytest.fixture
def vae():
    return TinyVAE()


def test_encode_decode_shapes_and_batching_invariance(vae):
    x = torch.rand(37, 1, 8, 8)
    z1 = Latent(vae, batching=Batching(batch_size=5)).encode(x)
    z2 = Latent(vae).encode(x)
    assert z1.shape == (37, 4)
    torch.testing.assert_close(z1, z2)
    torch.testing.assert_close(z2, vae.eval().encode(x).detach())
    out = Latent(vae, batching=3).decode(z1)
    assert out.shape == (37, 1, 8, 8) and not out.requires_grad
    # memory budget sizing gives small chunks and the same values
    tiny = Latent(vae, batching=Batching(memory_budget=3 * 64 * 4 * 2)).decode(z1)
    torch.testing.assert_close(out, tiny)


def test_encode_distribution(vae):
    x = torch.rand(6, 1, 8, 8)
    mu, logvar = Latent(vae, batching=4).encode_distribution(x)
    assert mu.shape == logvar.shape == (6, 4)
    torch.testing.assert_close(mu, Latent(vae).encode(x))


def test_slerp_formula_and_norm_path():
    a = torch.tensor([3.0, 0.0, 0.0])
    b = torch.tensor([0.0, 1.0, 0.0])
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    z = slerp(a, b, t)
    torch.testing.assert_close(z[0], a)
    torch.testing.assert_close(z[-1], b)
    norms = z.double().norm(dim=1)
    torch.testing.assert_close(norms, (1 - t) * 3 + t * 1, atol=1e-5, rtol=0)
    # constant angular speed: the angle to a grows linearly to 90 degrees
    ang = torch.acos((z.double() @ a.double()) / (norms * 3))
    torch.testing.assert_close(ang, t * math.pi / 2, atol=1e-5, rtol=0)
    # equal norms: Shoemake's slerp on the vectors
    c, d = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = slerp(c, d, torch.tensor([0.5], dtype=torch.float64))[0]
    torch.testing.assert_close(mid, torch.tensor([1.0, 1.0]) / math.sqrt(2))
    # parallel and antiparallel fall back to linear
    torch.testing.assert_close(slerp(c, 2 * c, t), (1 - t[:, None].float()) * c + t[:, None].float() * 2 * c)
    lin = slerp(c, -c, t)
    torch.testing.assert_close(lin[2], torch.zeros(2))


def test_interpolate_both_ends_and_describe(vae):
    lat = Latent(vae)
    x = torch.rand(2, 1, 8, 8)
    calls = []

    def describe(outputs, z):
        calls.append((outputs.shape, z.shape))
        return {"brightness": outputs.mean(dim=(1, 2, 3)), "label": [f"s{i}" for i in range(len(z))]}

    for method in ("linear", "slerp"):
        walk = lat.interpolate(x[:1], x[1:], steps=6, method=method, describe=describe)
        assert isinstance(walk, LatentWalk) and len(walk) == 6
        z = lat.encode(x)
        torch.testing.assert_close(walk.z[0], z[0])
        torch.testing.assert_close(walk.z[-1], z[1])
        assert walk.table.names == ("alpha", "z_norm", "brightness", "label")
        torch.testing.assert_close(walk.table["brightness"], walk.outputs.mean(dim=(1, 2, 3)))
        assert walk.is_image
    assert calls[0] == (torch.Size([6, 1, 8, 8]), torch.Size([6, 4]))
    lin = lat.interpolate_z(torch.zeros(4), torch.ones(4), steps=3)
    torch.testing.assert_close(lin.z[1], torch.full((4,), 0.5))


def test_traverse_strengths_and_axes(vae):
    lat = Latent(vae)
    z0 = torch.randn(4)
    d = Direction.from_vector(torch.tensor([0.0, 2.0, 0.0, 0.0]), name="y")
    walk = lat.traverse(z0, d, strengths=(-1.0, 0.0, 2.0))
    torch.testing.assert_close(walk.z[:, 1], z0[1] + torch.tensor([-1.0, 0.0, 2.0]))
    torch.testing.assert_close(walk.z[:, 0], z0[0].expand(3))
    assert walk.direction == "y" and walk.strengths is not None
    axis = lat.traverse(z0[None], 3, strengths=[1.0])
    torch.testing.assert_close(axis.z[0, 3], z0[3] + 1)
    from_x = lat.traverse_input(torch.rand(1, 1, 8, 8), 0)
    assert len(from_x) == 7


def test_sequence_model_strings():
    m = TinySeqAE()
    lat = Latent(m)
    walk = lat.interpolate("ACD", "GGEF", steps=4, describe=lambda o, z: {"sequence": m.sequences(o)})
    assert walk.outputs.shape == (4, 6, 7)
    assert all(isinstance(s, str) for s in walk.table["sequence"])
    assert not walk.is_image
    with pytest.raises(ValueError, match="alphabet"):
        lat.encode(["AXC"])


def test_errors(vae):
    lat = Latent(vae)
    with pytest.raises(ConfigError, match="method"):
        lat.interpolate_z(torch.zeros(4), torch.ones(4), method="cubic")
    with pytest.raises(ConfigError, match="steps"):
        lat.interpolate_z(torch.zeros(4), torch.ones(4), steps=1)
    with pytest.raises(InputError, match="dimensions"):
        lat.decode(torch.zeros(2, 5))
    with pytest.raises(InputError, match="NaN"):
        lat.decode(torch.full((1, 4), float("nan")))
    with pytest.raises(InputError, match="one sample"):
        lat.interpolate(torch.rand(2, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="no encoder"):
        Latent(decoder=vae.decode).encode(torch.rand(1, 1, 8, 8))
    with pytest.raises(ConfigError):
        Latent()


def test_decoder_only_callable_module(vae):
    lat = Latent(decoder=vae.decoder)
    assert lat.decode(torch.zeros(3, 4)).shape == (3, 1, 8, 8)


def test_walk_save_load_roundtrip(vae, tmp_path):
    m = TinySeqAE()
    walk = Latent(m).interpolate("AC", "GE", steps=3, describe=lambda o, z: {"sequence": m.sequences(o)})
    path = walk.save(tmp_path / "walk.safetensors")
    back = LatentWalk.load(path)
    assert isinstance(back.table, AttributeTable)
    assert back.table["sequence"] == walk.table["sequence"]
    torch.testing.assert_close(back.z, walk.z)
    torch.testing.assert_close(back.alphas, walk.alphas)
