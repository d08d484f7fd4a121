"""Contract for the GAN methods: every operation that runs a generator (SeFa, GANSpace,
supervised directions, layer-restricted traversals, latent recovery and the memorisation
test, GAN dissection and unit intervention, feature extraction for the sample-quality
metrics) leaves no hook, the train/eval and ``requires_grad`` flags, parameters, buffers
and ``.grad`` as they were, on success and on deliberate failures (wrong latent size, a
failing attribute or segmenter, a layer that is not a conv layer, an unknown layer).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _model_state import assert_unchanged, freeze_some, snapshot

import seethrough as st
from seethrough.concepts import GANDissection, UnitIntervention
from seethrough.generative import (
    FeatureExtractor,
    GANSpace,
    Generator,
    Latent,
    LatentRecovery,
    SeFa,
    SupervisedDirection,
    layer_traverse,
    memorization_test,
)
from seethrough.testing.generative import TinyGAN


class Boom(Exception):
    pass


def _boom(*_args):
    raise Boom("exploded")


def _z(n=6, dim=4, seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _bright(images):
    return {"bright": images[:, 0] > 0.5, "dark": images[:, 0] <= 0.5}


def _images(_m, n=3, seed=5):
    """Target images from another generator (running the model under test here would change
    its BatchNorm statistics in train mode)."""
    with torch.no_grad():
        return TinyGAN(seed=7).eval()(_z(n, seed=seed))


def _dissect(m, **kw):
    return GANDissection(m, layer="block1.relu", segmenter=_bright, **kw).dissect(40, seed=0)


def _intervention(m):
    return UnitIntervention(m, layer="block1.relu", segmenter=_bright)


#: operation -> (function of the model, expected exception or None)
OPERATIONS = {
    "sefa": (lambda m: SeFa(m, k=2).fit(), None),
    "sefa_unknown_layer": (lambda m: SeFa(m, layer="fcc").fit(), st.LayerError),
    "ganspace": (lambda m: GANSpace(m, layer="block1.conv", n_components=2, n_samples=30).fit(), None),
    "ganspace_wrong_latent_size": (
        lambda m: GANSpace(m, layer="block1.conv", n_components=2, n_samples=30, latent_dim=5).fit(),
        st.SeethroughError,
    ),
    "supervised": (lambda m: SupervisedDirection(m, lambda x: x.mean(dim=(1, 2, 3)), n_samples=40).fit(), None),
    "supervised_bad_attribute": (lambda m: SupervisedDirection(m, _boom, n_samples=20).fit(), Boom),
    "latent_decode": (lambda m: Latent(Generator(m)).decode(_z()), None),
    "latent_decode_wrong_size": (lambda m: Latent(Generator(m)).decode(_z(dim=5)), st.InputError),
    "layer_traverse": (lambda m: layer_traverse(m, _z(1)[0], 0, layers=(1, 1), strengths=(-1.0, 1.0)), None),
    "recover": (lambda m: LatentRecovery(m, steps=3, restarts=2).recover(_images(m)), None),
    "recover_wrong_shape": (
        lambda m: LatentRecovery(m, steps=3, restarts=2).recover(torch.rand(2, 1, 7, 7)),
        st.SeethroughError,
    ),
    "memorization_test": (
        lambda m: memorization_test(m, _images(m, 4), _images(m, 4, seed=9), steps=3, restarts=1),
        None,
    ),
    "dissect": (lambda m: _dissect(m), None),
    "dissect_quantile": (lambda m: _dissect(m, threshold="quantile"), None),
    "dissect_not_conv": (
        lambda m: GANDissection(m, layer="fc", segmenter=_bright).dissect(20, seed=0),
        st.LayerError,
    ),
    "dissect_bad_segmenter": (lambda m: GANDissection(m, layer="block1.relu", segmenter=_boom).dissect(20), Boom),
    "ablate": (lambda m: _intervention(m).effect([0, 1], "bright", _z(5)), None),
    "insert": (lambda m: _intervention(m).effect([0], "bright", _z(5), mode="insert", value=3.0), None),
    "ace_curve": (
        lambda m: _intervention(m).ace_curve(_dissect(m), "bright", counts=[1, 2], n_samples=8, random_draws=2),
        None,
    ),
    "intervention_wrong_latent_size": (lambda m: _intervention(m).effect([0], "bright", _z(5, dim=3)), st.InputError),
    "features": (lambda m: FeatureExtractor(m, layer="block1.conv").extract(_z(7)), None),
    "features_unknown_layer": (lambda m: FeatureExtractor(m, layer="block9").extract(_z(7)), st.LayerError),
}


@pytest.mark.parametrize("grads", ["all", "mixed"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_gan_operation_leaves_the_model_as_it_was(operation, mode, grads):
    model = TinyGAN(seed=0)
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
