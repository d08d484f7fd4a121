import random
import time

import numpy as np
import pytest
import torch

from seethrough._core.errors import ConfigError, SeethroughWarning
from seethrough.generative.latent import Latent
from seethrough.generative.sampler import (
    Condition,
    ConditionalSampler,
    GaussianMixturePrior,
    NormalPrior,
    SampleSet,
    levenshtein,
    novelty,
    uniqueness,
    validity,
)
from seethrough.testing.generative import TinySeqAE


def _ref_lev(a, b):
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def test_levenshtein_matches_reference():
    rng = random.Random(1)
    qs = ["", "A", "kitten"] + ["".join(rng.choice("ACDE") for _ in range(rng.randint(0, 66))) for _ in range(25)]
    rs = ["", "sitting", "A"] + ["".join(rng.choice("ACDE") for _ in range(rng.randint(0, 64))) for _ in range(30)]
    d = levenshtein(qs, rs, max_pairs=97)  # several chunks
    ref = np.array([[_ref_lev(a, b) for b in rs] for a in qs])
    np.testing.assert_array_equal(d, ref)
    assert levenshtein("kitten", "sitting") == 3
    np.testing.assert_array_equal(levenshtein("kitten", ["sitting", "kitten"]), [3, 0])
    long = ["A" * 70 + "C", "C" * 80]
    np.testing.assert_array_equal(levenshtein(long, long[::-1]), [[_ref_lev(a, b) for b in long[::-1]] for a in long])


def test_quality_functions():
    assert validity(["AC", "", "G"], lambda s: bool(s)) == pytest.approx(2 / 3)
    assert uniqueness(["A", "A", "B", "C"]) == 0.75
    res = novelty(["ACD", "ACE", "XYZW"], ["ACD", "GGG"])
    assert res["exact"] == pytest.approx(1 / 3) and res["novelty"] == pytest.approx(2 / 3)
    assert res["mean_min_distance"] == pytest.approx((0 + 1 + 4) / 3)
    assert novelty(["ACE"], ["ACD"], threshold=1)["novelty"] == 0.0


def test_condition_parse():
    c = Condition.parse("amp > 0.8")
    assert (c.low, c.high, c.low_strict) == (0.8, None, True)
    assert list(c.holds([0.8, 0.9, float("nan")])) == [False, True, False]
    c = Condition.parse("charge in [2, 6]")
    assert (c.low, c.high) == (2.0, 6.0) and list(c.holds([2, 6, 7])) == [True, True, False]
    c = Condition.parse("2 <= charge < 6")
    assert c.name == "charge" and c.high_strict and not c.low_strict
    assert Condition.parse("0.5 < p").low == 0.5
    assert Condition.parse("x <= -1e-3").high == -1e-3
    assert str(Condition.parse(str(Condition.parse("2 <= q <= 3")))) == "q in [2, 3]"
    for bad in ("amp >> 3", "charge between 2 and 6", "in [1, 2]", ""):
        with pytest.raises(ConfigError, match="accepted forms"):
            Condition.parse(bad)
    with pytest.raises(ConfigError, match="above"):
        Condition.parse("x in [3, 1]")


def test_gmm_prior_seeded():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(-3, 0.3, (200, 2)), rng.normal(3, 0.3, (200, 2))])
    prior = GaussianMixturePrior(n_components=2, seed=0).fit(z)
    a, b = prior.sample(500, seed=1), prior.sample(500, seed=1)
    assert isinstance(a, torch.Tensor) and a.shape == (500, 2)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, prior.sample(500, seed=2))
    assert abs(float((a[:, 0] > 0).float().mean()) - 0.5) < 0.1
    assert float(a[a[:, 0] > 0].std()) < 0.5
    for cov in ("diag", "spherical", "tied"):
        assert GaussianMixturePrior(2, covariance_type=cov).fit(z).sample(5).shape == (5, 2)


def _sampler(conditions=("s > 1.0",)):
    m = TinySeqAE()
    lat = Latent(m)
    decoded = []

    def describe(outputs, z):
        decoded.append(len(z))
        return {"sequence": m.sequences(outputs), "z0": z[:, 0]}

    scorers = {"s": lambda z: z[:, 0].numpy()}
    return ConditionalSampler(lat, NormalPrior(4), scorers=scorers, conditions=conditions, describe=describe), decoded


def test_conditional_sampler_rejection():
    sampler, decoded = _sampler()
    res = sampler.sample(50, seed=0, chunk=64)
    assert isinstance(res, SampleSet) and len(res) == 50 and res.complete
    assert (res.z[:, 0] > 1.0).all()
    assert 0.1 < res.acceptance_rate < 0.22  # P(N(0,1) > 1) = 0.159
    assert res.n_candidates % 64 == 0 and decoded == [50]  # only the accepted ones are decoded
    assert res.check(["z0 > 1.0"])["all"] == 1.0
    assert res.table.names == ("s", "sequence", "z0")
    again = sampler.sample(50, seed=0, chunk=64)
    torch.testing.assert_close(again.z, res.z)
    base = sampler.unconditioned().sample(50, seed=0)
    assert base.n_candidates == 50 and base.acceptance_rate == 1.0
    assert base.check("z0 > 1.0")["all"] < 0.5


def test_conditional_sampler_many_candidates_bounded():
    sampler, decoded = _sampler(("s > 6",))  # essentially never
    t = time.perf_counter()
    with pytest.warns(SeethroughWarning, match="only 0"):
        res = sampler.sample(5, max_candidates=100_000, chunk=8192)
    assert time.perf_counter() - t < 30  # generous; scoring 100k codes must not decode them
    assert res.n_candidates == 100_000 and len(res) == 0 and not res.complete and decoded == []


def test_sampler_errors():
    with pytest.raises(ConfigError, match="no scorer"):
        _sampler(("charge > 2",))
    sampler, _ = _sampler()
    res = sampler.sample(3, chunk=256)
    with pytest.raises(ConfigError, match="no column"):
        res.check("charge > 1")


def test_sampleset_save_load(tmp_path):
    sampler, _ = _sampler()
    res = sampler.sample(5, chunk=256)
    back = SampleSet.load(res.save(tmp_path / "s.safetensors"))
    assert back.table["sequence"] == res.table["sequence"]
    assert back.acceptance_rate == res.acceptance_rate and back.conditions == ("s > 1",)
