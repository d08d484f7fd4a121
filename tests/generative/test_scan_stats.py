"""Subset scanning: p-values, Berk-Jones, the fast scan against brute force, the planted check."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from seethrough._core.errors import ConfigError, InputError
from seethrough.generative.scanning import (
    alpha_grid,
    berk_jones,
    detection_auc,
    empirical_pvalues,
    planted_check,
    subset_scan,
)


def _direct_pvalues(bg: torch.Tensor, test: torch.Tensor, tail: str = "right"):
    n = bg.shape[0]
    pmin = torch.empty(test.shape, dtype=torch.float64)
    pmax = torch.empty(test.shape, dtype=torch.float64)
    for i in range(test.shape[0]):
        for j in range(test.shape[1]):
            a, col = test[i, j], bg[:, j]
            if tail == "right":
                lo, hi = int((col > a).sum()), int((col >= a).sum())
            else:
                lo, hi = int((col < a).sum()), int((col <= a).sum())
            pmin[i, j], pmax[i, j] = (lo + 1) / (n + 1), (hi + 1) / (n + 1)
    return pmin, pmax


@pytest.mark.parametrize("tail", ["right", "left"])
def test_pvalues_match_a_direct_count_with_ties(tail):
    g = torch.Generator().manual_seed(0)
    bg = torch.relu(torch.randn(40, 6, generator=g)).round(decimals=1)  # zeros and repeated values
    test = torch.relu(torch.randn(9, 6, generator=g)).round(decimals=1)
    test[0] = bg[3]  # exact ties with background rows
    pmin, pmax = empirical_pvalues(bg, test, tail=tail)
    dmin, dmax = _direct_pvalues(bg, test, tail)
    assert torch.equal(pmin, dmin) and torch.equal(pmax, dmax)
    assert bool((pmax > pmin).any())  # ties give ranges
    assert float(pmin.min()) >= 1 / 41 and float(pmax.max()) <= 1.0


def test_pvalue_of_relu_zero_spans_the_zeros():
    bg = torch.tensor([[0.0], [0.0], [0.0], [1.0], [2.0]])
    pmin, pmax = empirical_pvalues(bg, torch.tensor([[0.0], [5.0]]))
    assert pmin[0, 0] == pytest.approx(3 / 6) and pmax[0, 0] == pytest.approx(1.0)
    assert pmin[1, 0] == pmax[1, 0] == pytest.approx(1 / 6)


def test_pvalue_errors():
    with pytest.raises(InputError, match="nodes"):
        empirical_pvalues(torch.zeros(5, 3), torch.zeros(2, 4))
    with pytest.raises(InputError, match="NaN"):
        empirical_pvalues(torch.zeros(5, 3), torch.full((2, 3), float("nan")))
    with pytest.raises(ConfigError, match="tail"):
        empirical_pvalues(torch.zeros(5, 3), torch.zeros(2, 3), tail="both")


def _bj_direct(na: float, n: float, a: float) -> float:
    if n == 0 or na / n <= a:
        return 0.0
    q = na / n
    kl = q * math.log(q / a) + ((1 - q) * math.log((1 - q) / (1 - a)) if q < 1 else 0.0)
    return n * kl


def test_berk_jones_matches_the_formula():
    cases = [(3, 5, 0.1), (5, 5, 0.05), (1, 10, 0.2), (0, 4, 0.3), (2.5, 4, 0.25), (0, 0, 0.5), (7, 8, 0.5)]
    for na, n, a in cases:
        assert float(berk_jones(na, n, a)) == pytest.approx(_bj_direct(na, n, a), rel=1e-12, abs=1e-12)
    vec = berk_jones(torch.tensor([3.0, 1.0]), torch.tensor([5.0, 10.0]), 0.1)
    assert vec.shape == (2,) and float(vec[1]) == 0.0
    with pytest.raises(ConfigError):
        berk_jones(1, 2, 1.0)


def _contribution(pmin, pmax, a):
    if pmax <= a:
        return 1.0
    if pmin > a:
        return 0.0
    return (a - pmin) / (pmax - pmin)


def _brute(pmin: torch.Tensor, pmax: torch.Tensor, alphas: torch.Tensor):
    j = pmin.shape[0]
    best, best_set = 0.0, ()
    for k in range(1, j + 1):
        for s in itertools.combinations(range(j), k):
            for a in alphas.tolist():
                na = sum(_contribution(float(pmin[i]), float(pmax[i]), a) for i in s)
                v = _bj_direct(na, k, a)
                if v > best + 1e-12:
                    best, best_set = v, s
    return best, best_set


@pytest.mark.parametrize("ranged", [False, True])
def test_fast_scan_equals_brute_force(ranged):
    g = torch.Generator().manual_seed(1 + ranged)
    n = 30
    bg = torch.randn(n, 8, generator=g)
    test = torch.randn(12, 8, generator=g) + torch.linspace(0, 2.5, 12)[:, None] * (torch.arange(8) < 3)
    if ranged:
        bg, test = torch.relu(bg).round(decimals=1), torch.relu(test).round(decimals=1)
    pmin, pmax = empirical_pvalues(bg, test)
    if ranged:
        assert bool((pmax > pmin).any())
    r = subset_scan(pmin, pmax, alpha_max=0.5, max_alphas=None)
    for i in range(test.shape[0]):
        score, subset = _brute(pmin[i], pmax[i], r.alpha_grid)
        assert float(r.scores[i]) == pytest.approx(score, rel=1e-5, abs=1e-6)
        if score > 0:
            # the subset returned reaches the best score (ties between subsets may differ)
            mask = r.subsets[i]
            a = float(r.alphas[i])
            na = sum(_contribution(float(pmin[i, j]), float(pmax[i, j]), a) for j in range(8) if mask[j])
            assert _bj_direct(na, int(mask.sum()), a) == pytest.approx(score, rel=1e-5)
            assert int(r.sizes[i]) == int(mask.sum())
        else:
            assert int(r.sizes[i]) == 0 and math.isnan(float(r.alphas[i]))


def test_grid_without_ties_is_the_exact_maximum_over_alpha():
    g = torch.Generator().manual_seed(3)
    p = (torch.randperm(40, generator=g)[:8].double() + 1) / 41  # distinct p-values
    r = subset_scan(p[None], alpha_max=0.5, max_alphas=None)
    dense = torch.linspace(1e-4, 0.5, 2000, dtype=torch.float64)
    best = max(_bj_direct(float((p <= a).sum()), float((p <= a).sum()), float(a)) for a in dense)
    assert float(r.scores[0]) >= best - 1e-9


def test_alpha_grid_thinning_keeps_ends():
    p = torch.arange(1, 1001, dtype=torch.float64)[None] / 1001
    grid = alpha_grid(p, p, alpha_max=0.5, max_alphas=16)
    assert grid.numel() <= 18 and float(grid[0]) == pytest.approx(1 / 1001) and float(grid[-1]) <= 0.5
    assert torch.all(grid[1:] > grid[:-1])


def test_scan_vectorised_over_many_samples_matches_per_sample():
    g = torch.Generator().manual_seed(4)
    bg, test = torch.relu(torch.randn(200, 64, generator=g)), torch.relu(torch.randn(50, 64, generator=g))
    pmin, pmax = empirical_pvalues(bg, test)
    whole = subset_scan(pmin, pmax)
    for i in (0, 17, 49):
        one = subset_scan(pmin[i : i + 1], pmax[i : i + 1], alphas=whole.alpha_grid)
        assert float(one.scores[0]) == pytest.approx(float(whole.scores[i]))
        assert torch.equal(one.subsets[0], whole.subsets[i])


def test_planted_units_are_found_and_null_is_chance():
    r = planted_check(nodes=64, planted=8, n_background=1000, n_test=100, seed=0)
    assert r.precision >= 0.9 and r.recall >= 0.9
    assert r.auc >= 0.99
    assert abs(r.null_auc - 0.5) < 0.15
    assert r.passed


def test_detection_auc():
    assert detection_auc([0, 1, 2], [3, 4]) == 1.0
    assert detection_auc([3, 4], [0, 1]) == 0.0
    with pytest.raises(InputError):
        detection_auc([], [1.0])
