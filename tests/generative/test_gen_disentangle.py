import numpy as np
import pytest
import torch

from seethrough._core.errors import ConfigError
from seethrough.generative.directions import Direction
from seethrough.generative.disentangle import FactorResponse, dci, factor_response, mig
from seethrough.generative.latent import Latent


def _factors(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.uniform(0, 1, (n, 3))
    f[:, 0] = rng.integers(0, 3, n)  # categorical
    return f, rng


def _rotated(f, rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return ((f - f.mean(0)) / f.std(0)) @ q


def test_mig_synthetic():
    f, rng = _factors()
    perfect = mig(f, f, categorical=[0])
    rotated = mig(_rotated(f, rng), f, categorical=[0])
    noise = mig(rng.normal(size=f.shape), f, categorical=[0])
    assert perfect.score > 0.9
    assert rotated.score < perfect.score - 0.3
    assert noise.score < 0.05
    assert perfect.mutual_information.shape == (3, 3)
    # a duplicated coordinate leaves no gap
    assert mig(np.concatenate([f, f[:, :1]], axis=1), f, categorical=[0]).gap[0] < 0.05


def test_dci_synthetic():
    f, rng = _factors(800)
    kw = {"categorical": [0], "model": "forest", "n_estimators": 20}
    perfect = dci(f, f, **kw)
    rotated = dci(_rotated(f, rng), f, **kw)
    noise = dci(rng.normal(size=f.shape), f, **kw)
    assert perfect.disentanglement > 0.8 and perfect.completeness > 0.8 and perfect.informativeness > 0.95
    assert rotated.disentanglement < perfect.disentanglement - 0.25
    assert noise.informativeness < 0.4
    assert perfect.importance.shape == (3, 3)
    with pytest.raises(ConfigError, match="model"):
        dci(f, f, model="svm")


@pytest.mark.slow
def test_dci_gradient_boosting():
    f, _ = _factors(600)
    res = dci(f, f, categorical=[0], model="gbt", n_estimators=30)
    assert res.disentanglement > 0.8 and res.informativeness > 0.9


def test_factor_response_purity():
    # decoder = identity, predictor reads factor 0 from z[0] and factor 1 from z[1] + z[2]
    lat = Latent(decoder=lambda z: z)
    z0 = torch.randn(20, 3)

    def predictor(out):
        return torch.stack([out[:, 0], out[:, 1] + out[:, 2]], dim=1)

    dirs = {"a": Direction.from_vector([1.0, 0.0, 0.0]), "mix": Direction.from_vector([1.0, 1.0, 0.0])}
    res = factor_response(lat, predictor, z0, dirs, factor_names=["f0", "f1"], scale=[1.0, 1.0])
    assert isinstance(res, FactorResponse)
    np.testing.assert_allclose(res.response.numpy(), [[1.0, 0.0], [0.7071, 0.7071]], atol=1e-4)
    np.testing.assert_allclose(res.purity.numpy(), [1.0, 0.5], atol=1e-5)
    assert res.dominant[0] == "f0" and res.rows()[0]["direction"] == "a"
    # categorical: share of changed predictions
    cat = factor_response(
        lambda z: z, lambda o: (o[:, :1] > 100).float(), z0, [Direction.from_vector([1.0, 0, 0])], categorical=[0]
    )
    assert float(cat.response[0, 0]) == 0.0
