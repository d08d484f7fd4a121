"""The CAV estimator: scikit-learn conventions, direction, held-out accuracy, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seethrough._core.errors import ConfigError, InputError
from seethrough.concepts import CAV, MIN_EXAMPLES


def _data(seed=0, n=40, d=16, shift=3.0):
    rng = np.random.default_rng(seed)
    direction = np.zeros(d)
    direction[3] = 1.0
    pos = rng.standard_normal((n, d)) + shift * direction
    neg = rng.standard_normal((n, d))
    return pos, neg, direction


@pytest.mark.parametrize("classifier", ["logistic", "sgd"])
def test_fit_returns_self_and_points_to_the_concept(classifier):
    pos, neg, direction = _data()
    cav = CAV(classifier=classifier, seed=1)
    assert cav.fit(pos, neg) is cav
    assert cav.vector_.shape == (16,) and cav.vector_.dtype == torch.float32
    assert abs(float(cav.vector_.norm()) - 1.0) < 1e-5
    assert float(cav.vector_ @ torch.tensor(direction, dtype=torch.float32)) > 0.6
    assert cav.accuracy_ >= 0.8 and cav.train_accuracy_ >= cav.accuracy_ - 0.2
    assert (cav.n_features_in_, cav.n_concept_, cav.n_random_) == (16, 40, 40)
    assert torch.allclose(cav.coef_ / cav.coef_.norm(), cav.vector_, atol=1e-6)
    # the decision function is positive on the concept side on average
    assert float(cav.decision_function(pos).mean()) > 0 > float(cav.decision_function(neg).mean())


def test_deterministic_and_seeded():
    pos, neg, _ = _data(3)
    a = CAV(classifier="sgd", seed=5).fit(pos, neg)
    b = CAV(classifier="sgd", seed=5).fit(torch.tensor(pos), torch.tensor(neg))
    assert torch.equal(a.vector_, b.vector_) and a.accuracy_ == b.accuracy_
    c = CAV(classifier="sgd", seed=6).fit(pos, neg)
    assert not torch.equal(a.vector_, c.vector_)


def test_chance_accuracy_on_random_sets():
    rng = np.random.default_rng(0)
    accs = [CAV(seed=s).fit(rng.standard_normal((30, 50)), rng.standard_normal((30, 50))).accuracy_ for s in range(20)]
    assert 0.35 < float(np.mean(accs)) < 0.65


def test_directional_derivatives():
    pos, neg, _ = _data()
    cav = CAV().fit(pos, neg)
    g = torch.randn(5, 16, dtype=torch.float64)
    assert torch.allclose(cav.directional_derivatives(g), (g @ cav.vector_.double()).float(), atol=1e-6)
    # activations with spatial dimensions are flattened
    cav2 = CAV().fit(pos.reshape(40, 4, 2, 2), neg.reshape(40, 4, 2, 2))
    assert cav2.n_features_in_ == 16


def test_errors():
    pos, neg, _ = _data()
    with pytest.raises(InputError, match=f"at least {MIN_EXAMPLES}"):
        CAV().fit(pos[: MIN_EXAMPLES - 1], neg)
    with pytest.raises(InputError, match="at least"):
        CAV().fit(pos, neg[:3])
    with pytest.raises(InputError, match="features"):
        CAV().fit(pos, neg[:, :8])
    with pytest.raises(InputError, match="NaN"):
        bad = pos.copy()
        bad[0, 0] = np.nan
        CAV().fit(bad, neg)
    with pytest.raises(ConfigError, match="classifier"):
        CAV(classifier="svm").fit(pos, neg)
    with pytest.raises(ConfigError, match="test_fraction"):
        CAV(test_fraction=1.0).fit(pos, neg)
    with pytest.raises(ConfigError, match="not fitted"):
        CAV().decision_function(pos)
    cav = CAV().fit(pos, neg)
    with pytest.raises(InputError, match="features"):
        cav.directional_derivatives(np.zeros((2, 5)))
    assert "classifier='logistic'" in repr(CAV())
