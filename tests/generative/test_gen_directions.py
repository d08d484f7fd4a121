import numpy as np
import pytest
import torch

from seethrough._core.errors import ConfigError, GradientError, NotFittedError
from seethrough.generative.directions import (
    ClassifierDirection,
    Direction,
    GradientDirection,
    PCADirections,
    ProbeDirection,
)
from seethrough.generative.probes import LatentClassifier, LatentRegressor


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5)) * np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    w = np.array([1.0, 0.0, -2.0, 0.0, 0.0])
    return z, w


def test_base_apply_project_unit():
    d = Direction.from_vector([3.0, 4.0], name="d")
    torch.testing.assert_close(d.vector_.norm(), torch.tensor(1.0))
    z = torch.zeros(2, 2)
    torch.testing.assert_close(d.apply(z, 5.0), torch.tensor([[3.0, 4.0], [3.0, 4.0]]))
    torch.testing.assert_close(d.apply(z, torch.tensor([1.0, -1.0]))[1], torch.tensor([-0.6, -0.8]))
    torch.testing.assert_close(d.project(torch.tensor([[3.0, 4.0]])), torch.tensor([5.0]))
    with pytest.raises(NotFittedError):
        Direction([1.0]).apply(torch.zeros(1, 1))
    with pytest.raises(Exception, match="zero"):
        Direction.from_vector([0.0, 0.0])


def test_project_out_is_orthogonal_and_keeps_other_score():
    a = Direction.from_vector([1.0, 1.0, 0.0], name="a")
    b = Direction.from_vector([1.0, 0.0, 0.0], name="b")
    c = a.project_out(b)
    assert abs(c.cosine(b)) < 1e-6
    torch.testing.assert_close(c.vector_, torch.tensor([0.0, 1.0, 0.0]))
    z = torch.randn(3, 3)
    torch.testing.assert_close(b.project(c.apply(z, 2.0)), b.project(z))
    with pytest.raises(ConfigError, match="span"):
        b.project_out(a, Direction.from_vector([0.0, 1.0, 0.0]))


def test_probe_direction_recovers_normal():
    z, w = _data()
    y = (z @ w > 0).astype(int)
    d = ProbeDirection("logistic", C=100.0).fit(z, y)
    assert d.cosine(torch.tensor(w)) > 0.95
    r = ProbeDirection("linear", alpha=1e-3).fit(z, z @ w)
    assert r.cosine(torch.tensor(w)) > 0.999
    with pytest.raises(ConfigError, match="kind"):
        ProbeDirection("svm").fit(z, y)


def test_classifier_direction_from_fitted_probe():
    z, w = _data()
    probe = LatentClassifier().fit(z, z @ w > 0)
    d = ClassifierDirection(probe).fit()
    torch.testing.assert_close(d.vector_, probe.coef_ / probe.coef_.norm())
    with pytest.raises(NotFittedError):
        ClassifierDirection(LatentClassifier()).fit()
    reg = LatentRegressor().fit(z, z @ w)
    assert ClassifierDirection(reg).fit().cosine(torch.tensor(w)) > 0.99


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    z, _ = _data(300)
    ours = PCADirections(n_components=3).fit(z)
    ref = PCA(n_components=3).fit(z)
    for i in range(3):
        c = ours.components_[i].double().numpy()
        assert min(np.abs(c - ref.components_[i]).max(), np.abs(c + ref.components_[i]).max()) < 1e-6
    np.testing.assert_allclose(ours.explained_variance_ratio_.numpy(), ref.explained_variance_ratio_, rtol=1e-5)
    np.testing.assert_allclose(ours.explained_variance_.numpy(), ref.explained_variance_, rtol=1e-5)
    assert ours.direction(1).name == "PC2" and len(ours.directions()) == 3
    torch.testing.assert_close(ours.vector_, ours.components_[0])
    assert abs(ours.direction(0).cosine(torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))) > 0.95  # largest spread


def test_gradient_direction():
    w = torch.tensor([1.0, -2.0, 0.5])
    d = GradientDirection(lambda z: (z @ w) ** 2 / 2).fit(torch.ones(1, 3))
    # gradient (z.w) w with z.w = -0.5: points along -w
    assert d.cosine(-w) > 0.9999
    with pytest.raises(GradientError, match="depend"):
        GradientDirection(lambda z: torch.ones(z.shape[0])).fit(torch.ones(1, 3))
    with pytest.raises(GradientError, match="zero"):
        GradientDirection(lambda z: (z * 0).sum(dim=1)).fit(torch.ones(1, 3))
