"""Shift tests: MMD (exactness, null calibration, power), binomial, BH, check_batch."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import binomtest, kstest

from curate.errors import CurateError
from curate.novelty.calibration import ConformalCalibrator
from curate.novelty.shift import (
    benjamini_hochberg,
    binomial_flag_test,
    check_batch,
    mmd_test,
)


def _mmd2_brute(X, Y, sigma):
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2))  # noqa: E731
    m, n = len(X), len(Y)
    return ((k(X, X).sum() - m) / (m * (m - 1)) + (k(Y, Y).sum() - n) / (n * (n - 1))
            - 2 * k(X, Y).mean())


def test_mmd_statistic_and_permutations_vs_bruteforce():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((70, 4)), rng.standard_normal((30, 4)) + 0.4
    r = mmd_test(X, Y, n_permutations=50, bandwidth=1.5, row_block=13, random_state=3)
    assert r["statistic"] == pytest.approx(_mmd2_brute(X, Y, 1.5), rel=1e-5)
    # same permutations recomputed by brute force give the same p-value
    rng2 = np.random.default_rng(3)
    Z = np.r_[X, Y]
    perm = []
    for _ in range(50):
        idx = rng2.choice(100, 30, replace=False)
        mask = np.zeros(100, bool)
        mask[idx] = True
        perm.append(_mmd2_brute(Z[~mask], Z[mask], 1.5))
    p = (1 + np.sum(np.array(perm) >= _mmd2_brute(X, Y, 1.5) - 1e-9)) / 51
    assert r["p_value"] == pytest.approx(p)
    assert set(r) >= {"statistic", "p_value", "n_permutations", "bandwidth", "effect_size",
                      "n_ref", "n_batch"}


def test_mmd_null_uniform_and_power():
    ps = [mmd_test(*np.split(np.random.default_rng(s).standard_normal((90, 3)), [60]),
                   n_permutations=200, random_state=s)["p_value"] for s in range(40)]
    assert kstest(ps, "uniform").pvalue > 0.01
    assert 0.0 < np.mean(np.array(ps) <= 0.1) <= 0.25
    rng = np.random.default_rng(1)
    r = mmd_test(rng.standard_normal((200, 3)), rng.standard_normal((60, 3)) + 1.0,
                 n_permutations=200)
    assert r["p_value"] == pytest.approx(1 / 201)
    assert r["effect_size"] > 0.1 and r["statistic"] > 0


def test_mmd_subsamples_and_errors():
    rng = np.random.default_rng(2)
    r = mmd_test(rng.standard_normal((300, 2)), rng.standard_normal((50, 2)),
                 n_permutations=20, max_ref=100, max_batch=40)
    assert (r["n_ref"], r["n_batch"]) == (100, 40)
    with pytest.raises(CurateError, match="features"):
        mmd_test(np.ones((5, 2)), np.ones((5, 3)))
    with pytest.raises(CurateError, match=">= 2 rows"):
        mmd_test(np.ones((5, 2)), np.ones((1, 2)))


def test_binomial_matches_scipy():
    r = binomial_flag_test(60, 500, 0.05)
    assert r["p_value"] == pytest.approx(binomtest(60, 500, 0.05, alternative="greater").pvalue)
    assert r["effect"] == "12.0% flagged vs 5.0% expected"
    with pytest.raises(CurateError):
        binomial_flag_test(5, 0, 0.05)


def test_bh_vs_hand_computed():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    # sorted 0.01, 0.03, 0.04, 0.2 -> p*m/rank = 0.04, 0.06, 0.0533, 0.2 -> monotone 0.04, 0.0533, 0.0533, 0.2
    rej, adj = benjamini_hochberg(p, q=0.05)
    np.testing.assert_allclose(adj, [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    np.testing.assert_array_equal(rej, [True, False, False, False])
    assert benjamini_hochberg([], 0.05)[0].size == 0
    with pytest.raises(CurateError):
        benjamini_hochberg([1.5])


def test_check_batch_verdicts():
    rng = np.random.default_rng(3)
    ref, cal_s = rng.standard_normal((400, 3)), rng.standard_normal(1000)
    same = check_batch(ref, rng.standard_normal((100, 3)), cal_s, rng.standard_normal(100),
                       n_permutations=200)
    assert same["verdict"] == "no shift" and same["expected"] == 0.05
    shifted = check_batch(ref, rng.standard_normal((100, 3)) + 1, ConformalCalibrator(0.1).fit(cal_s),
                          rng.standard_normal(100) + 2, n_permutations=200)
    assert shifted["verdict"] == "shifted" and shifted["expected"] == 0.1
    assert shifted["binomial_p"] < 1e-6 and "flagged vs 10.0% expected" in shifted["effect"]
    only_scores = check_batch(cal=cal_s, batch_scores=rng.standard_normal(100) + 2)
    assert only_scores["verdict"] == "shifted" and "mmd" not in only_scores
    with pytest.raises(CurateError, match="both"):
        check_batch(ref, None)
    with pytest.raises(CurateError, match="needs"):
        check_batch()
