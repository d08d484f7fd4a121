import numpy as np
import pytest
import torch

from seethrough._core.errors import InputError, NotFittedError
from seethrough.generative.probes import LatentClassifier, LatentRegressor


def _data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4)) * np.array([1.0, 5.0, 0.2, 1.0]) + 3.0
    return z, rng


def test_classifier_torch_parity_and_auc():
    z, rng = _data()
    y = ((z[:, 0] - 3) + 0.3 * rng.normal(size=len(z)) > 0).astype(int)
    clf = LatentClassifier(C=1.0).fit(z[:400], y[:400])
    p = clf.predict_proba(z[400:])
    t = clf.torch_score(torch.tensor(z[400:], dtype=torch.float64))
    np.testing.assert_allclose(t.detach().numpy(), p[:, 1], atol=1e-6)
    np.testing.assert_allclose(clf(z[400:]), p[:, 1])
    zt = torch.tensor(z[:3], dtype=torch.float32, requires_grad=True)
    clf.torch_score(zt).sum().backward()
    assert zt.grad is not None and zt.grad.abs().sum() > 0
    res = clf.evaluate(z[400:], y[400:])
    assert res["auc"] > 0.9 and clf.score_ == res["auc"] and 0 <= res["accuracy"] <= 1
    # sklearn agreement on the standardised problem
    from sklearn.linear_model import LogisticRegression

    m, s = z[:400].mean(0), z[:400].std(0)
    ref = LogisticRegression(C=1.0, max_iter=1000).fit((z[:400] - m) / s, y[:400])
    np.testing.assert_allclose(p[:, 1], ref.predict_proba((z[400:] - m) / s)[:, 1], atol=1e-4)
    assert set(clf.predict(z[:10]).tolist()) <= {0, 1}


def test_classifier_errors():
    z, _ = _data(20)
    with pytest.raises(InputError, match="two classes"):
        LatentClassifier().fit(z, np.arange(20) % 3)
    with pytest.raises(NotFittedError):
        LatentClassifier().predict_proba(z)
    clf = LatentClassifier().fit(z, np.arange(20) % 2)
    with pytest.raises(InputError, match="dimensions"):
        clf.predict_proba(z[:, :3])
    with pytest.raises(InputError, match="one per code"):
        LatentClassifier().fit(z, [0, 1])


def test_regressor_parity_and_r2():
    z, rng = _data()
    y = 2 * z[:, 1] - z[:, 2] + 0.1 * rng.normal(size=len(z))
    reg = LatentRegressor(alpha=1.0).fit(z[:400], y[:400])
    pred = reg.predict(z[400:])
    np.testing.assert_allclose(reg.torch_score(torch.tensor(z[400:])).numpy(), pred, atol=1e-8)
    res = reg.evaluate(z[400:], y[400:])
    assert res["r2"] > 0.99 and reg.score_ == res["r2"] and res["rmse"] > 0
    assert abs(reg.coef_[1].item() - 2.0) < 0.05
