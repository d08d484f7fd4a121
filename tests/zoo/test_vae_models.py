"""Tests of the image VAEs and the factor predictor (seethrough.zoo.vae, train_vae)."""

from __future__ import annotations

import json

import pytest
import torch

from seethrough import zoo
from seethrough._core.errors import ConfigError, InputError
from seethrough.data import mnist_split
from seethrough.data.factors import FACTOR_NAMES, make_factor_scenes
from seethrough.zoo.train import TEST_SEED_OFFSET
from seethrough.zoo.train_vae import (
    VAE_RECIPES,
    evaluate_factor_predictor,
    evaluate_reconstructed_factors,
    evaluate_vae,
    train_factor_predictor,
    train_scenes_vae,
)
from seethrough.zoo.vae import BUNDLED, FACTOR_OUTPUTS, ConvVAE, FactorPredictor, bundled

DECODER_LAYERS = ["decoder.fc", "decoder.fc2", "decoder.conv1", "decoder.conv2", "decoder.conv3", "decoder.out"]


def _shipped(name: str) -> bool:
    return (zoo.WEIGHTS_DIR / f"{name}.safetensors").is_file()


def _load(name: str) -> torch.nn.Module:
    from safetensors.torch import load_file

    if not _shipped(name):
        pytest.skip(f"{name} weights not trained (scripts/train_vae.py)")
    model = bundled(name)
    model.load_state_dict(load_file(str(zoo.WEIGHTS_DIR / f"{name}.safetensors")))
    return model.eval()


@pytest.mark.parametrize(("name", "shape", "latent"), [("mnist-vae", (1, 28, 28), 16), ("scenes-vae", (3, 32, 32), 10)])
def test_convvae_protocol_and_layer_names(name, shape, latent):
    model = bundled(name)
    assert isinstance(model, ConvVAE) and model.latent_dim == latent and model.image_shape == shape
    x = torch.rand(3, *shape)
    with torch.no_grad():
        z = model.encode(x)
        mu, logvar = model.encode_distribution(x)
        out = model.decode(z)
        rec = model(x)
    assert z.shape == (3, latent) and torch.equal(z, mu) and logvar.shape == (3, latent)
    assert out.shape == (3, *shape) and torch.equal(out, rec)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    modules = dict(model.named_modules())
    assert all(n in modules for n in DECODER_LAYERS)
    feats = {}
    hook = modules["decoder.fc"].register_forward_hook(lambda m, i, o: feats.setdefault("fc", o))
    try:
        with torch.no_grad():
            model.decode(z)
    finally:
        hook.remove()
    assert feats["fc"].shape == (3, 256) and float(feats["fc"].min()) >= 0.0  # post-ReLU units


def test_bad_shapes_name_the_expected_one():
    vae = ConvVAE(3, 32, 10)
    with pytest.raises(InputError, match=r"\(B, 3, 32, 32\)"):
        vae.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(InputError, match=r"\(B, 3, 32, 32\)"):
        vae.encode(torch.rand(2, 3, 28, 28))
    with pytest.raises(InputError, match="batch dimension"):
        vae.encode(torch.rand(3, 32, 32))
    with pytest.raises(InputError, match="float"):
        vae.encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(InputError, match=r"\(B, 10\)"):
        vae.decode(torch.zeros(2, 9))
    with pytest.raises(InputError, match=r"\(B, 10\)"):
        vae.decode(torch.zeros(10))
    pred = bundled("scenes-factors")
    with pytest.raises(InputError, match=r"\(B, 3, 32, 32\)"):
        pred.predict(torch.rand(2, 1, 28, 28))
    with pytest.raises(ConfigError, match="scenes-vae"):
        bundled("scenes-vea")
    with pytest.raises(ConfigError, match="latent_dim"):
        ConvVAE(3, 32, 0)


def test_predictor_output_units():
    pred = bundled("scenes-factors")
    assert isinstance(pred, FactorPredictor) and FACTOR_OUTPUTS == FACTOR_NAMES
    p = pred.predict(make_factor_scenes(5).images)
    assert p.shape == (5, 6)
    assert torch.equal(p[:, :2], p[:, :2].round())
    order = pred.symmetry[p[:, 0].long()]
    assert ((p[:, 5] >= 0) & (p[:, 5] < 360.0 / order + 1e-4)).all()


def test_shipped_vaes_reconstruct_better_than_the_mean_image():
    mnist = _load("mnist-vae")
    x_te = mnist_split(seed=0).x_test[:300]
    m = evaluate_vae(mnist, x_te)
    assert m["mse"] < 0.5 * m["mean_image_mse"] and m["bce"] < m["mean_image_bce"]
    assert m["active_units"] >= 5
    scenes = _load("scenes-vae")
    s = make_factor_scenes(300, seed=TEST_SEED_OFFSET)
    m = evaluate_vae(scenes, s.images)
    assert m["mse"] < 0.5 * m["mean_image_mse"] and m["bce"] < m["mean_image_bce"]
    assert m["active_units"] >= 4
    card = json.loads((zoo.WEIGHTS_DIR / "scenes-vae.json").read_text())
    assert card["metrics"]["beta"] == BUNDLED["scenes-vae"]["beta"] and card["metrics"]["latent_dim"] == 10


def test_shipped_factor_predictor_reads_the_factors():
    pred = _load("scenes-factors")
    s = make_factor_scenes(400, seed=TEST_SEED_OFFSET + 1)
    m = evaluate_factor_predictor(pred, s)
    assert m["shape_accuracy"] > 0.95 and m["color_accuracy"] > 0.95
    assert m["scale_r2"] > 0.9 and m["x_r2"] > 0.9 and m["y_r2"] > 0.9
    assert m["rotation_median_error_deg"] < 15.0


def test_shipped_scenes_vae_reconstructions_keep_the_factors():
    # the decoder must render what the factor predictor reads (a beta-4 model kept x / y /
    # colour but drew every shape alike: shape accuracy 0.28, chance 0.25; the shipped beta-0.5
    # one reaches 0.49 on shape and R^2 0.59 on scale: still short of the goal of 0.8)
    vae, pred = _load("scenes-vae"), _load("scenes-factors")
    assert isinstance(vae, ConvVAE) and isinstance(pred, FactorPredictor)
    s = make_factor_scenes(200, seed=TEST_SEED_OFFSET + 2)
    m = evaluate_reconstructed_factors(vae, pred, s)
    assert m["shape_accuracy"] > 0.38 and m["color_accuracy"] > 0.95
    assert m["scale_r2"] > 0.45 and m["x_r2"] > 0.95 and m["y_r2"] > 0.95
    card = json.loads((zoo.WEIGHTS_DIR / "scenes-vae.json").read_text())["metrics"]
    assert card["recon_shape_accuracy"] > 0.4 and card["recon_r2_scale"] > 0.5
    assert card["test_active_units"] >= 7


def test_reconstructed_factors_of_a_perfect_decoder_are_the_real_readings():
    pred = bundled("scenes-factors").eval()
    s = make_factor_scenes(20, seed=3)

    class Identity(ConvVAE):
        def forward(self, x):
            return x

    ident = Identity(3, 32, 10).eval()
    assert isinstance(pred, FactorPredictor)
    assert evaluate_reconstructed_factors(ident, pred, s) == evaluate_factor_predictor(pred, s)


def test_recipes_match_the_registry():
    assert sorted(VAE_RECIPES) == sorted(BUNDLED) == ["mnist-vae", "scenes-factors", "scenes-vae"]
    for name in BUNDLED:
        if name in zoo.available():
            info = zoo.info(name)
            model = bundled(name)
            assert tuple(info.input_shape) == model.image_shape
            if info.latent_dim is not None:
                assert info.latent_dim == model.latent_dim


def test_quick_training_is_deterministic():
    a, ma = train_scenes_vae(n_train=48, n_test=16, epochs=1, batch_size=16, progress=False)
    b, mb = train_scenes_vae(n_train=48, n_test=16, epochs=1, batch_size=16, progress=False)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    assert ma["test_bce"] == mb["test_bce"] and not a.training
    p, mp = train_factor_predictor(n_train=48, n_test=16, epochs=1, batch_size=16, progress=False)
    q, mq = train_factor_predictor(n_train=48, n_test=16, epochs=1, batch_size=16, progress=False)
    assert all(torch.equal(v, w) for v, w in zip(p.state_dict().values(), q.state_dict().values(), strict=True))
    assert mp["test_x_r2"] == mq["test_x_r2"]
