"""Contract for the generative family: every operation that runs an autoencoder (encode,
decode, interpolate, traverse, conditioned sampling, attribution through the decoder,
creative decoding, subset scanning, factor response) leaves no hook, the train/eval and
``requires_grad`` flags, parameters, buffers and ``.grad`` as they were, on success and on
deliberate failures (bad codes, a failing describer or predictor, an unknown layer).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _model_state import assert_unchanged, freeze_some, snapshot

import seethrough as st
from seethrough._core.targets import Region
from seethrough.generative import (
    ConditionalSampler,
    CreativeDecoder,
    Direction,
    Latent,
    LatentAttribution,
    NormalPrior,
    SubsetScanner,
    factor_response,
)
from seethrough.testing import TinyVAE


class Boom(Exception):
    pass


def _boom(*_args):
    raise Boom("exploded")


def _x(n=6, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _z(n=6, dim=4, seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


_MASK = torch.zeros(1, 8, 8, dtype=torch.bool)
_MASK[:, :4] = True


def _creative(m):
    return CreativeDecoder(m, layer="decoder.1", max_rate=0.99).fit(_z(32))


#: operation -> (function of the model, expected exception or None)
OPERATIONS = {
    "encode": (lambda m: Latent(m).encode(_x()), None),
    "encode_distribution": (lambda m: Latent(m).encode_distribution(_x()), None),
    "decode": (lambda m: Latent(m).decode(_z()), None),
    "decode_wrong_size": (lambda m: Latent(m).decode(_z(dim=5)), st.InputError),
    "interpolate": (lambda m: Latent(m).interpolate(_x(1), _x(1, seed=2), steps=4, method="slerp"), None),
    "interpolate_bad_describe": (lambda m: Latent(m).interpolate(_x(1), _x(1, seed=2), describe=_boom), Boom),
    "traverse": (lambda m: Latent(m).traverse(_z(1)[0], 2, strengths=(-1.0, 1.0)), None),
    "sample": (
        lambda m: ConditionalSampler(
            Latent(m), NormalPrior(4), scorers={"s": lambda z: z[:, 0]}, conditions=["s > 0"]
        ).sample(5, max_candidates=200),
        None,
    ),
    "sample_bad_describe": (
        lambda m: ConditionalSampler(Latent(m), NormalPrior(4), describe=_boom).sample(3, max_candidates=10),
        Boom,
    ),
    "latent_ig": (
        lambda m: LatentAttribution(m, method="integrated_gradients", steps=4).attribute(_z(2), target=Region(_MASK)),
        None,
    ),
    "latent_saliency_wrong_size": (
        lambda m: LatentAttribution(m, method="saliency").attribute(_z(2, dim=3), target=Region(_MASK)),
        st.InputError,
    ),
    "creative_compare": (lambda m: _creative(m).compare(_z(3), strength=2.0, n_units=1), None),
    "creative_unknown_layer": (lambda m: CreativeDecoder(m, layer="decoder.9").fit(_z(8)), st.LayerError),
    "scan": (lambda m: SubsetScanner(m, layer="encoder.3").fit(_x(40)).scan(_x(5, seed=3)), None),
    "scan_wrong_input": (
        lambda m: SubsetScanner(m, layer="encoder.3").fit(_x(40)).scan(torch.rand(2, 1, 7, 7)),
        st.InputError,
    ),
    "factor_response": (
        lambda m: factor_response(
            Latent(m), lambda out: out.flatten(1)[:, :3], _z(4), [Direction.from_vector(torch.eye(4)[0])]
        ),
        None,
    ),
    "factor_response_bad_predictor": (
        lambda m: factor_response(Latent(m), _boom, _z(4), [Direction.from_vector(torch.eye(4)[0])]),
        Boom,
    ),
}


@pytest.mark.parametrize("grads", ["all", "mixed"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_generative_operation_leaves_the_model_as_it_was(operation, mode, grads):
    model = TinyVAE(seed=0)
    model.train(mode == "train")
    if grads == "mixed":
        freeze_some(model)
    snap = snapshot(model)
    fn, expected = OPERATIONS[operation]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # train-mode warnings are tested elsewhere
        if expected is None:
            fn(model)
        else:
            with pytest.raises(expected):
                fn(model)
    assert_unchanged(model, snap)
