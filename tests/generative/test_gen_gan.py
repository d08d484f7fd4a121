"""GAN latent directions: SeFa, GANSpace, supervised (InterFaceGAN-like) directions and
layer-restricted edits, on the tiny in-package generator and VAE."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError, LayerError, NotFittedError
from seethrough.generative.directions import Direction
from seethrough.generative.disentangle import FactorResponse, factor_response
from seethrough.generative.gan import (
    GANSpace,
    SeFa,
    SupervisedDirection,
    latent_layers,
    layer_edit,
    layer_traverse,
)
from seethrough.generative.latent import Latent, LatentWalk
from seethrough.generative.protocol import Generator
from seethrough.testing.generative import TinyGAN, TinyVAE


def _same_up_to_sign(a, b):
    """Largest entry-wise difference of two vectors, the better of the two signs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return min(np.abs(a - b).max(), np.abs(a + b).max())


def _eigh_reference(a):
    values, vectors = np.linalg.eigh(a.T @ a)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order].T


class _DCGANLike(nn.Module):
    """A DCGAN-style start: a transposed convolution on z as (N, Z, 1, 1)."""

    def __init__(self, latent_dim=5, channels=6):
        super().__init__()
        torch.manual_seed(3)
        self.latent_dim = latent_dim
        self.project = nn.ConvTranspose2d(latent_dim, channels, 4, 1, 0)  # 1 -> 4
        self.bn = nn.BatchNorm2d(channels)
        self.out = nn.ConvTranspose2d(channels, 1, 4, 2, 1)  # 4 -> 8
        self.eval()

    def forward(self, z):
        return torch.sigmoid(self.out(torch.relu(self.bn(self.project(z)))))


def _activations(model, layer, z):
    store = {}

    def hook(_m, _i, out):
        store["y"] = out.detach().reshape(out.shape[0], -1)

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(z)
    finally:
        handle.remove()
    return store["y"].double().numpy()


# ------------------------------------------------------------------------------ SeFa
def test_latent_layers_finds_the_layers_taking_z():
    assert latent_layers(TinyGAN()) == ["fc", "film1"]
    assert latent_layers(Generator(_DCGANLike(), z_shape=(5, 1, 1))) == ["project"]
    assert latent_layers(TinyVAE()) == ["decoder.0"]  # an autoencoder: through its decoder


def test_sefa_equals_numpy_eigh_of_linear_weight():
    g = TinyGAN(latent_dim=4, channels=8)
    s = SeFa(g, k=4).fit()
    assert s.layers_ == ("fc",)  # the first layer that takes z
    values, vectors = _eigh_reference(g.fc.weight.detach().double().numpy())
    np.testing.assert_allclose(s.eigenvalues_.numpy(), values, rtol=1e-10)
    for i in range(4):
        assert _same_up_to_sign(s.components_[i].numpy(), vectors[i]) < 1e-6
    assert np.all(np.diff(s.eigenvalues_.numpy()) <= 0)  # ordered by eigenvalue
    torch.testing.assert_close(s.components_ @ s.components_.T, torch.eye(4), atol=1e-6, rtol=0)
    np.testing.assert_allclose(s.eigenvalue_ratio_.sum().item(), 1.0, rtol=1e-10)  # k = Z: the whole trace
    torch.testing.assert_close(s.vector_, s.components_[0])
    # the top direction is what the layer amplifies most: |A n1| >= |A v| for any unit v
    a = g.fc.weight.detach()
    v = torch.randn(200, 4)
    v = v / v.norm(dim=1, keepdim=True)
    assert (a @ s.vector_).norm() >= (v @ a.T).norm(dim=1).max()


def test_sefa_normalized_and_layerwise_weights():
    g = TinyGAN(latent_dim=4, channels=8)
    s = SeFa(g, layer=["fc", "film1"], k=3, normalize=True).fit()
    a = np.concatenate([g.fc.weight.detach().double().numpy(), g.film1.weight.detach().double().numpy()])
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    values, vectors = _eigh_reference(a)
    np.testing.assert_allclose(s.eigenvalues_.numpy(), values[:3], rtol=1e-10)
    for i in range(3):
        assert _same_up_to_sign(s.components_[i].numpy(), vectors[i]) < 1e-6
    assert s.layers_ == ("fc", "film1") and s.matrix_.shape == (32 + 16, 4)
    assert [d.label for d in s.directions()] == ["SeFa1", "SeFa2", "SeFa3"]


def test_sefa_on_transposed_convolution():
    m = _DCGANLike(latent_dim=5, channels=6)
    s = SeFa(Generator(m, z_shape=(5, 1, 1)), k=5).fit()
    w = m.project.weight.detach().double().numpy()  # (Z, C, k, k)
    a = w.reshape(5, -1).T  # (C k k, Z)
    values, vectors = _eigh_reference(a)
    np.testing.assert_allclose(s.eigenvalues_.numpy(), values, rtol=1e-10)
    for i in range(5):
        assert _same_up_to_sign(s.components_[i].numpy(), vectors[i]) < 1e-6


def test_sefa_errors():
    g = TinyGAN()
    with pytest.raises(LayerError, match="'fc'"):  # unknown name: the core resolver suggests near names
        SeFa(g, layer="fcc").fit()
    with pytest.raises(LayerError, match=r"does not take the latent codes.*'fc'"):
        SeFa(g, layer="block1.conv").fit()
    assert SeFa(g, k=9).fit().components_.shape == (4, 4)  # at most Z directions
    with pytest.raises(ConfigError, match="k must be"):
        SeFa(g, k=0).fit()
    with pytest.raises(ConfigError, match="latent size"):
        SeFa(nn.Linear(3, 3)).fit()  # no latent_dim
    with pytest.raises(LayerError, match="no Linear or transposed-convolution layer"):
        SeFa(nn.Sequential(nn.Tanh(), nn.Linear(4, 8)).eval(), latent_dim=4).fit()  # z is bent before any layer
    with pytest.raises(NotFittedError):
        SeFa(g).directions()
    with pytest.raises(ConfigError, match="does not exist"):
        SeFa(g, k=2).fit().direction(2)


# --------------------------------------------------------------------------- GANSpace
def test_ganspace_matches_sklearn_pca_and_lstsq():
    from sklearn.decomposition import PCA

    g = TinyGAN(latent_dim=4, channels=8)
    n, k = 600, 5
    ours = GANSpace(g, layer="block1.conv", n_components=k, n_samples=n, seed=7, batching=64).fit()
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(7))
    y = _activations(g, g.block1.conv, z)
    ref = PCA(n_components=k, svd_solver="full").fit(y)
    assert ours.components_.shape == (k, 128) and ours.n_features_ == 128
    for i in range(k):
        assert _same_up_to_sign(ours.components_[i].numpy(), ref.components_[i]) < 1e-5
    np.testing.assert_allclose(ours.explained_variance_ratio_.numpy(), ref.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_.numpy(), ref.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(ours.mean_.numpy(), y.mean(axis=0), atol=1e-6)
    # the paper's regression U = argmin sum |U x_j - z_j|^2 on the PCA coordinates, with our signs
    v = ours.components_.double().numpy()
    x = (y - y.mean(axis=0)) @ v.T
    u, *_ = np.linalg.lstsq(x, z.double().numpy(), rcond=None)  # (K, Z)
    np.testing.assert_allclose(ours.regression_.numpy(), u, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.z_components_.numpy(), u / np.linalg.norm(u, axis=1, keepdims=True), atol=1e-5)
    assert ours.solver_ == "covariance" and ours.residual_ < 1e-10
    # chunking does not change the result
    other = GANSpace(g, layer="block1.conv", n_components=k, n_samples=n, seed=7, batching=n).fit()
    torch.testing.assert_close(other.z_components_, ours.z_components_, atol=1e-5, rtol=0)


def test_ganspace_randomized_solver_matches_the_covariance_solver():
    g = TinyGAN(latent_dim=4, channels=8)
    exact = GANSpace(g, layer="block1.conv", n_components=3, n_samples=800, solver="covariance").fit()
    fast = GANSpace(g, layer="block1.conv", n_components=3, n_samples=800, max_features=64).fit()  # auto: D > 64
    assert fast.solver_ == "randomized" and fast.residual_ < 1e-6
    for i in range(3):
        assert _same_up_to_sign(fast.components_[i].numpy(), exact.components_[i].numpy()) < 1e-5
    np.testing.assert_allclose(fast.explained_variance_.numpy(), exact.explained_variance_.numpy(), rtol=1e-8)
    np.testing.assert_allclose(
        fast.explained_variance_ratio_.numpy(), exact.explained_variance_ratio_.numpy(), rtol=1e-8
    )
    torch.testing.assert_close(fast.z_components_, exact.z_components_, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.mean_, exact.mean_)
    rough = GANSpace(g, layer="block1.conv", n_components=3, n_samples=800, solver="randomized", n_iter=0).fit()
    assert rough.residual_ > fast.residual_  # fewer passes, further from converged: residual_ says so


def test_ganspace_finds_a_dominant_latent_direction():
    class Planted(nn.Module):
        latent_dim = 4

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(4, 16)
            with torch.no_grad():
                self.fc.weight.mul_(0.1)
                self.fc.weight[:, 2] = torch.linspace(1.0, 3.0, 16)  # z[2] drives most of the variance
            self.head = nn.Linear(16, 6)
            self.eval()

        def forward(self, z):
            return self.head(torch.tanh(self.fc(z) * 0.3))

    gs = GANSpace(Planted(), layer="fc", n_components=2, n_samples=2000).fit()
    assert abs(gs.z_components_[0, 2].item()) > 0.99
    assert gs.explained_variance_ratio_[0] > 0.8


def test_ganspace_errors():
    g = TinyGAN()
    with pytest.raises(LayerError, match="'block1.conv'"):
        GANSpace(g, layer="block1.cnv").fit()
    with pytest.raises(ConfigError, match="128 features.*randomized.*max_features"):
        GANSpace(g, layer="block1.conv", n_samples=50, solver="covariance", max_features=64).fit()
    with pytest.raises(ConfigError, match="solver"):
        GANSpace(g, layer="fc", solver="svd").fit()
    with pytest.raises(ConfigError, match="only 32 features"):
        GANSpace(g, layer="fc", n_components=33, n_samples=100).fit()
    with pytest.raises(ConfigError, match="n_samples"):
        GANSpace(g, layer="fc", n_components=10, n_samples=10).fit()
    broken = TinyGAN()
    with torch.no_grad():
        broken.fc.weight[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        GANSpace(broken, layer="fc", n_components=2, n_samples=50).fit()
    with pytest.raises(InputError, match="NaN"):
        SeFa(broken).fit()
    with pytest.raises(ConfigError, match="vary along only"):
        GANSpace(g, layer="fc", n_components=6, n_samples=200).fit()  # fc is rank 4 in z (then a ReLU is after)


# ------------------------------------------------- directions in traversals and factor responses
def _mean_and_top(images):
    return torch.stack([images.mean(dim=(1, 2, 3)), images[:, :, :4].mean(dim=(1, 2, 3))], dim=1)


def test_gan_directions_work_in_traverse_and_factor_response():
    g = TinyGAN()
    lat = Latent(Generator(g))
    sefa = SeFa(g, k=3).fit()
    gs = GANSpace(g, layer="block1.conv", n_components=3, n_samples=300).fit()
    z0 = torch.randn(4, generator=torch.Generator().manual_seed(1))
    for d in (sefa.direction(0), gs.direction(1)):
        walk = lat.traverse(z0, d, strengths=(-2.0, 0.0, 2.0))
        assert isinstance(walk, LatentWalk) and walk.direction == d.label
        with torch.no_grad():
            expected = g(z0[None] + torch.tensor([-2.0, 0.0, 2.0])[:, None] * d.vector_[None])
        torch.testing.assert_close(walk.outputs, expected)
    codes = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    res = factor_response(lat, _mean_and_top, codes, sefa.directions() + gs.directions(), factor_names=["m", "t"])
    assert isinstance(res, FactorResponse) and res.response.shape == (6, 2)
    assert res.directions == ("SeFa1", "SeFa2", "SeFa3", "PC1", "PC2", "PC3")
    assert bool(torch.isfinite(res.response).all()) and bool((res.response > 0).all())


def test_directions_found_on_a_vae_decoder():
    vae = TinyVAE()
    sefa = SeFa(vae, k=2).fit()
    np.testing.assert_allclose(
        sefa.eigenvalues_.numpy(), _eigh_reference(vae.decoder[0].weight.detach().double().numpy())[0][:2], rtol=1e-10
    )
    gs = GANSpace(vae, layer="decoder.2", n_components=2, n_samples=300).fit()
    lat = Latent(vae)
    z0 = torch.zeros(4)
    for d in (sefa.direction(0), gs.direction(0)):
        walk = lat.traverse(z0, d, strengths=(1.0, 2.0))
        with torch.no_grad():
            expected = vae.decode(torch.stack([d.vector_, 2 * d.vector_]))
        torch.testing.assert_close(walk.outputs, expected)
    res = factor_response(lat, _mean_and_top, torch.randn(5, 4), [sefa.direction(0), gs.direction(0)])
    assert res.response.shape == (2, 2)


# --------------------------------------------------------------------- supervised directions
class _Identity(nn.Module):
    """A "generator" whose outputs are its codes, so the attribute's boundary in z is known."""

    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.eval()

    def forward(self, z):
        return z * 1.0


def test_supervised_direction_recovers_a_known_boundary():
    w = torch.tensor([1.0, 1.0, 0.0, 0.0])
    d = SupervisedDirection(_Identity(), lambda x: (x @ w) > 0.3, n_samples=1500, C=100.0).fit()
    assert d.cosine(w) > 0.98
    assert d.train_score_ > 0.97 and d.used_.all() and d.z_.shape == (1500, 4)
    # scores: the extremes become labels (InterFaceGAN), or linear regression of the score
    e = SupervisedDirection(_Identity(), lambda x: x @ w + 0.2 * x[:, 3], extremes=0.2, n_samples=1000).fit()
    assert e.cosine(w + 0.2 * torch.tensor([0.0, 0.0, 0.0, 1.0])) > 0.97
    assert int(e.used_.sum()) == 400 and e.labels_.shape == (400,)
    r = SupervisedDirection(_Identity(), lambda x: x[:, 2] - x[:, 0], kind="linear", n_samples=500).fit()
    assert r.cosine(torch.tensor([-1.0, 0.0, 1.0, 0.0])) > 0.999


def test_conditional_direction_keeps_the_other_attribute():
    a = SupervisedDirection(_Identity(), lambda x: x[:, 0] + x[:, 1] > 0, n_samples=800, name="a").fit()
    b = SupervisedDirection(_Identity(), lambda x: x[:, 1] - x[:, 2] > 0, n_samples=800, name="b").fit()
    c = a.project_out(b)
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    moved = c.apply(z, 3.0)
    np.testing.assert_allclose(b.probe_.decision_function(moved), b.probe_.decision_function(z), atol=1e-4)
    assert (a.probe_.decision_function(moved) > a.probe_.decision_function(z) + 0.5).all()  # a still moves


def test_supervised_direction_on_a_generator_moves_the_attribute():
    g = TinyGAN()
    d = SupervisedDirection(g, lambda x: x.mean(dim=(1, 2, 3)), n_samples=600, batching=100).fit()
    z = torch.randn(40, 4, generator=torch.Generator().manual_seed(4))
    lat = Latent(Generator(g))
    before = lat.decode(z).mean(dim=(1, 2, 3))
    after = lat.decode(d.apply(z, 1.0)).mean(dim=(1, 2, 3))
    assert (after > before).float().mean() > 0.9


def test_supervised_direction_errors():
    with pytest.raises(ConfigError, match="same label"):
        SupervisedDirection(_Identity(), lambda x: torch.ones(x.shape[0], dtype=torch.bool), n_samples=50).fit()
    with pytest.raises(InputError, match="one value per output"):
        SupervisedDirection(_Identity(), lambda x: x, n_samples=50).fit()
    with pytest.raises(ConfigError, match="scores only"):
        SupervisedDirection(_Identity(), lambda x: x[:, 0] > 0, extremes=0.1, n_samples=50).fit()
    with pytest.raises(ConfigError, match="extremes"):
        SupervisedDirection(_Identity(), lambda x: x[:, 0], extremes=0.7, n_samples=50).fit()
    with pytest.raises(ConfigError, match="kind"):
        SupervisedDirection(_Identity(), lambda x: x[:, 0], kind="svm").fit()


# ----------------------------------------------------------------------- layer-restricted edits
def test_layer_edit_moves_only_the_chosen_inputs():
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    d = Direction.from_vector([0.0, 1.0, 0.0, 0.0])
    codes = layer_edit(z, d, 2.0, layers=(1, 2), n_latent_layers=4)
    assert codes.shape == (3, 4, 4)
    torch.testing.assert_close(codes[:, 0], z)
    torch.testing.assert_close(codes[:, 3], z)
    torch.testing.assert_close(codes[:, 1], d.apply(z, 2.0))
    torch.testing.assert_close(codes[:, 2], d.apply(z, 2.0))
    g = TinyGAN()
    two = layer_edit(z, d, torch.tensor([1.0, 0.0, -1.0]), layers=0, n_latent_layers=g)
    torch.testing.assert_close(two[:, 0, 1] - z[:, 1], torch.tensor([1.0, 0.0, -1.0]))
    torch.testing.assert_close(two[:, 1], z)


def test_layer_edit_errors():
    z = torch.randn(2, 4)
    with pytest.raises(ConfigError, match="no per-layer latent inputs"):
        layer_edit(z, 0, 1.0, layers=0, n_latent_layers=TinyVAE())
    with pytest.raises(ConfigError, match="no per-layer latent inputs"):
        layer_traverse(nn.Sequential(nn.Linear(4, 4)), z[0], 0, layers=0, latent_dim=4)
    with pytest.raises(ConfigError, match="outside the 2 latent inputs"):
        layer_edit(z, 0, 1.0, layers=(1, 2), n_latent_layers=2)
    with pytest.raises(ConfigError, match="inclusive range"):
        layer_edit(z, 0, 1.0, layers=(0, 1, 2), n_latent_layers=4)
    with pytest.raises(InputError, match="dimensions"):
        layer_edit(torch.randn(2, 5), Direction.from_vector(torch.ones(4)), 1.0, layers=0, n_latent_layers=2)
    with pytest.raises(InputError, match="3 layers"):
        layer_edit(torch.randn(2, 3, 4), 0, 1.0, layers=0, n_latent_layers=2)


def test_layer_traverse_decodes_per_layer_codes():
    g = TinyGAN()
    z0 = torch.randn(4, generator=torch.Generator().manual_seed(3))
    d = SeFa(g, layer="film1", k=1).fit().direction(0)
    walk = layer_traverse(g, z0, d, layers=1, strengths=(-2.0, 0.0, 2.0), batching=2)
    assert walk.z.shape == (3, 2, 4) and walk.direction == "SeFa1 @ layer 1"
    torch.testing.assert_close(walk.z[:, 0], z0.expand(3, -1))  # the fc input is left alone
    with torch.no_grad():
        torch.testing.assert_close(walk.outputs, g(walk.z))
        full = g(z0[None] + 2.0 * d.vector_[None])
    assert not torch.allclose(walk.outputs[2], full[0])  # differs from the edit of every input
    torch.testing.assert_close(walk.outputs[1], g(z0[None])[0])
    with pytest.raises(InputError, match="one code"):
        layer_traverse(g, torch.randn(2, 4), d, layers=1)
    with pytest.raises(InputError, match="5 dimensions"):
        layer_traverse(g, torch.randn(5), 0, layers=1)


# ---------------------------------------------------------------------------- model state
def _state(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [len(getattr(m, a)) for m in model.modules() for a in ("_forward_hooks", "_forward_pre_hooks")],
        {k: v.clone() for k, v in model.state_dict().items()},
        [p.grad is None for p in model.parameters()],
    )


def _same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[4] == b[4]
    assert all(torch.equal(a[3][k], b[3][k]) for k in a[3])


@pytest.mark.parametrize("train", [False, True])
def test_model_unchanged_after_every_call_and_error(train):
    g = TinyGAN()
    g.train(train)
    g.film1.weight.requires_grad_(False)
    before = _state(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        latent_layers(g)
        _same(before, _state(g))
        s = SeFa(g, k=2).fit()
        _same(before, _state(g))
        GANSpace(g, layer="block1.conv", n_components=2, n_samples=64).fit()
        _same(before, _state(g))
        SupervisedDirection(g, lambda x: x.mean(dim=(1, 2, 3)), n_samples=64).fit()
        _same(before, _state(g))
        layer_traverse(g, torch.zeros(4), s, layers=(0, 1))
        _same(before, _state(g))
        with pytest.raises(LayerError):
            SeFa(g, layer="block1.conv").fit()
        _same(before, _state(g))
        GANSpace(g, layer="block1.conv", n_components=2, n_samples=64, solver="randomized", n_iter=2).fit()
        _same(before, _state(g))
        with pytest.raises(ConfigError):
            GANSpace(g, layer="block1.conv", n_samples=50, solver="covariance", max_features=8).fit()
        _same(before, _state(g))

        def broken(images):
            raise RuntimeError("attribute failed")

        with pytest.raises(RuntimeError, match="attribute failed"):
            SupervisedDirection(g, broken, n_samples=16).fit()
        _same(before, _state(g))
        with pytest.raises(InputError):
            layer_traverse(g, torch.zeros(5), s, layers=0)
        _same(before, _state(g))


def test_attribute_module_is_guarded():
    g = TinyGAN()
    clf = nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Dropout(0.5))  # outputs (N, 1): one score each
    clf.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = SupervisedDirection(g, clf, n_samples=64).fit()
        again = SupervisedDirection(g, clf, n_samples=64).fit()
    assert clf.training and all(p.requires_grad for p in clf.parameters())  # restored
    torch.testing.assert_close(d.values_, again.values_)  # scored in eval mode: no dropout noise
