"""Every method of the area leaves the model as it was (mode, requires_grad, no hooks), also on errors."""

import warnings

import pytest
import torch

from seethrough.generative.directions import Direction
from seethrough.generative.disentangle import factor_response
from seethrough.generative.latent import Latent
from seethrough.generative.sampler import ConditionalSampler, NormalPrior
from seethrough.testing.generative import TinySeqAE, TinyVAE


def _state(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [
            len(getattr(m, a))
            for m in model.modules()
            for a in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
        ],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2]
    assert a[3].keys() == b[3].keys() and all(torch.equal(a[3][k], b[3][k]) for k in a[3])


@pytest.mark.parametrize("train", [False, True])
def test_model_unchanged(train):
    vae = TinyVAE()
    vae.train(train)
    vae.mu.weight.requires_grad_(False)
    before = _state(vae)
    lat = Latent(vae)
    x = torch.rand(5, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = lat.encode(x)
        lat.encode_distribution(x)
        lat.decode(z)
        lat.interpolate(x[:1], x[1:2], steps=3, method="slerp")
        lat.traverse(z[0], Direction.from_vector(torch.ones(4)), strengths=(1.0,))
        factor_response(lat, lambda o: o.mean(dim=(2, 3)), z, [0, 1])
        ConditionalSampler(lat, NormalPrior(4), scorers={"a": lambda z: z[:, 0].numpy()}, conditions="a > 0").sample(
            3, chunk=32
        )
        _same(before, _state(vae))
        with pytest.raises(RuntimeError):

            def bad(outputs, z):
                raise RuntimeError("describer failed")

            lat.interpolate(x[:1], x[1:2], describe=bad)
        with pytest.raises(Exception):
            lat.encode(torch.rand(2, 3, 5))  # wrong shape: the forward pass fails inside the guard
    _same(before, _state(vae))


def test_seq_model_unchanged():
    m = TinySeqAE()
    before = _state(m)
    lat = Latent(m, batching=2)
    lat.interpolate("AC", "GE", steps=5)
    with pytest.raises(ValueError):
        lat.encode(["ZZ"])
    _same(before, _state(m))
