"""The essence experiment: the threshold rule, masked forward passes (one pass for all
masks, or one per mask around skip connections) against a plain hook, determinism, and on
the bundled models the robust finding: the single most influential channel makes a better
class-vs-rest classifier than a random channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seethrough import zoo
from seethrough.influence import EssenceExperiment, balanced_accuracy_threshold
from seethrough.influence.essence import _margins
from seethrough.testing import TinyCNN, TinyResNet, seeded


def test_threshold_maximises_balanced_accuracy():
    m = torch.tensor([-2.0, -1.0, 0.5, 1.0, 3.0, 4.0])
    y = torch.tensor([False, False, True, False, True, True])
    tau, bal = balanced_accuracy_threshold(m, y)
    # margin > 2 gives TPR 2/3, TNR 1; margin > 0 gives TPR 1, TNR 2/3: a tie, the lowest wins
    assert tau == pytest.approx(-0.25) and bal == pytest.approx(5 / 6)
    tau, bal = balanced_accuracy_threshold(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([False, True, True]))
    assert tau == pytest.approx(0.5) and bal == pytest.approx(1.0)
    # equal margins cannot be split
    tau, bal = balanced_accuracy_threshold(torch.tensor([1.0, 1.0]), torch.tensor([True, False]))
    assert bal == pytest.approx(0.5) and np.isinf(tau)


def _naive_margins(model, module, x, masks, cls):
    out = []
    for m in masks:
        shape = (1, -1) + (1,) * 2
        h = module.register_forward_hook(lambda _m, _i, o, m=m: o * m.reshape(shape[: o.dim()]))
        try:
            with torch.no_grad():
                out.append(_margins(model(x), cls))
        finally:
            h.remove()
    return torch.stack(out)


@pytest.mark.parametrize(
    "cls_,layer,batch", [(TinyCNN, "features.3", None), (TinyResNet, "layer1.conv1", 3), (TinyResNet, "layer2", None)]
)
def test_masked_margins_equal_a_plain_masking_hook(cls_, layer, batch):
    # TinyResNet's layer1.conv1 has a skip connection around it: the one-pass evaluation
    # cannot broadcast there and falls back to one pass per mask
    model = seeded(cls_)
    x = torch.randn(7, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    module = dict(model.named_modules())[layer]
    n = {"features.3": 12, "layer1.conv1": 8, "layer2": 16}[layer]
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(5, n, generator=g) > 0.5).float()
    exp = EssenceExperiment(model, layer=layer, batching=batch)
    got, n_eval = exp._masked_margins(x, masks, 2, layer, module)
    torch.testing.assert_close(got, _naive_margins(model, module, x, masks, 2), atol=1e-5, rtol=1e-5)
    assert n_eval == 5 * 7


def test_seeded_and_settings_recorded():
    model = seeded(TinyCNN)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(24, 3, 16, 16, generator=g), torch.arange(24) % 3
    a = EssenceExperiment(model, layer="features.4", ks=(1, 3), n_random=4, seed=7).run(
        x[:12], y[:12], x[12:], y[12:], 1
    )
    b = EssenceExperiment(model, layer="features.4", ks=(1, 3), n_random=4, seed=7).run(
        x[:12], y[:12], x[12:], y[12:], 1
    )
    c = EssenceExperiment(model, layer="features.4", ks=(1, 3), n_random=4, seed=8).run(
        x[:12], y[:12], x[12:], y[12:], 1
    )
    torch.testing.assert_close(a.random_auc, b.random_auc)
    torch.testing.assert_close(a.top_accuracy, b.top_accuracy)
    assert not torch.equal(a.random_auc, c.random_auc)
    assert a.random_accuracy.shape == (2, 4) and a.ks == (1, 3) and a.n_neurons == 12
    assert a.settings["seed"] == 7 and a.settings["quantity"] == "vs_rest" and a.settings["layer"] == "features.4"
    assert dict(a.counts) == {"train_positive": 4, "train_negative": 8, "test_positive": 4, "test_negative": 8}
    assert a.top_neurons.tolist() == torch.sort(-a.influence.neuron_influence.double(), stable=True).indices.tolist()
    rows = a.rows()
    assert [r["k"] for r in rows] == [1, 3]
    assert rows[0]["random-k balanced accuracy (mean)"] == pytest.approx(float(a.random_accuracy[0].mean()))
    assert 0.0 <= a.full_accuracy <= 1.0 and 0.0 <= a.full_auc <= 1.0
    _check_full_scores(model, x, y, 12, 1, a)


def _check_full_scores(model, x, y, n_train, cls, result):
    """Keeping every neuron is the model itself: ``full_auc`` is the AUC of its own margin
    ``z_cls - max_{c != cls} z_c`` on the test split and ``full_accuracy`` the balanced
    accuracy there of the threshold fitted on the training split."""
    from sklearn.metrics import roc_auc_score

    with torch.no_grad():
        z = model(x)
    others = [c for c in range(z.shape[1]) if c != cls]
    margin = (z[:, cls] - z[:, others].amax(dim=1)).double()
    positive = (y == cls).numpy()
    m_te, p_te = margin[n_train:].numpy(), positive[n_train:]
    assert result.full_auc == pytest.approx(roc_auc_score(p_te.astype(int), m_te), abs=1e-12)
    tau, _ = balanced_accuracy_threshold(margin[:n_train], y[:n_train] == cls)
    pred = m_te > tau
    tpr, tnr = (pred & p_te).sum() / p_te.sum(), (~pred & ~p_te).sum() / (~p_te).sum()
    assert result.full_accuracy == pytest.approx(0.5 * (tpr + tnr), abs=1e-12)


def test_full_scores_are_those_of_the_unmasked_model():
    # labels that follow the model's own class-1 margin, with a few flipped, so the full
    # model's AUC and accuracy are neither chance nor perfect (and differ from top-k's)
    model = seeded(TinyCNN)
    x = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z = model(x)
    margin = z[:, 1] - z[:, [0, 2]].amax(dim=1)
    positive = margin > margin.median()
    positive[[1, 4, 22, 25, 30]] = ~positive[[1, 4, 22, 25, 30]]
    y = torch.where(positive, 1, torch.where(torch.arange(40) % 2 == 0, 0, 2))
    r = EssenceExperiment(model, layer="features.4", ks=(1,), n_random=3, seed=0).run(x[:20], y[:20], x[20:], y[20:], 1)
    assert 0.6 < r.full_auc < 1.0 and r.full_auc != float(r.top_auc[0])
    _check_full_scores(model, x, y, 20, 1, r)


def _check_top_beats_random(results):
    gains = []
    for r in results:
        top, rnd = float(r.top_accuracy[0]), float(r.random_accuracy[0].mean())
        assert top > rnd, f"class {r.cls}: top-1 {top:.3f} <= random-1 {rnd:.3f}"
        assert r.full_accuracy > 0.9
        gains.append(top - rnd)
    assert float(np.mean(gains)) > 0.1


@pytest.mark.slow
def test_top_channel_beats_a_random_channel_on_the_shapes_model():
    from seethrough.data import make_shapes

    model = zoo.load("shapes-cnn")
    tr, te = make_shapes(120, seed=101), make_shapes(120, seed=202)
    exp = EssenceExperiment(model, layer="features.16", ks=(1,), n_random=8)
    _check_top_beats_random([exp.run(tr.images, tr.labels, te.images, te.labels, c) for c in range(4)])


@pytest.mark.slow
def test_top_channel_beats_a_random_channel_on_the_mnist_model():
    from seethrough.data import mnist_split

    model = zoo.load("mnist-cnn")
    s = mnist_split(seed=0)
    exp = EssenceExperiment(model, layer="features.10", ks=(1,), n_random=8)
    _check_top_beats_random(
        [exp.run(s.x_train[:300], s.y_train[:300], s.x_test[:300], s.y_test[:300], c) for c in (0, 3, 7)]
    )


def test_auc_equals_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    from seethrough.influence.essence import _auc

    rng = np.random.default_rng(0)
    for _ in range(5):
        m = np.round(rng.normal(size=60), 1)  # many ties
        y = rng.random(60) < 0.3
        assert _auc(m, y) == pytest.approx(roc_auc_score(y.astype(int), m))
