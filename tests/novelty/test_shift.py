"""Shift tests: MMD (exactness, null calibration, power), calibrated flag-count test (level
over redrawn calibration sets, power), BH, check_batch."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import betabinom, binom, kstest

from curate.errors import CurateError
from curate.novelty.calibration import ConformalCalibrator
from curate.novelty.shift import (
    benjamini_hochberg,
    calibrated_flag_test,
    calibrator_flag_test,
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


def _null_draws(n_cal, m, draws, seed, ties=False):
    """(flag-test p, naive binomial p) for ``draws`` in-distribution batches, each with a
    freshly drawn calibration set (exchangeable scores)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        s = rng.random(n_cal + m)
        if ties:
            s = np.floor(s * 20)  # 20 distinct values: many ties
        cal = ConformalCalibrator(0.05).fit(s[:n_cal])
        r = calibrator_flag_test(cal, s[n_cal:])
        out.append((r["p_value"], binom.sf(r["n_flagged"] - 1, m, 0.05)))
    return np.array(out)


@pytest.mark.parametrize("n_cal,m", [(100, 500), (300, 2000), (1000, 100)])
def test_flag_test_holds_its_level_when_the_calibration_set_is_redrawn(n_cal, m):
    draws, level = 2000, 0.025  # the flag test's half of check_batch's Bonferroni pair
    p = _null_draws(n_cal, m, draws, seed=n_cal + m)
    tol = 3 * np.sqrt(level * (1 - level) / draws)
    assert np.mean(p[:, 0] <= level) <= level + tol
    assert np.mean(p[:, 0] <= 0.2) <= 0.2 + 3 * np.sqrt(0.2 * 0.8 / draws)
    if n_cal < m:
        # documented comparison: the binomial test of the flags against alpha (the test
        # this one replaced) fails the same check: 0.10-0.21 false alarms at level 0.025
        assert np.mean(p[:, 1] <= level) > level + 2 * tol


def test_flag_test_valid_with_ties_and_matches_betabinomial():
    p = _null_draws(200, 300, 1000, seed=7, ties=True)
    assert np.mean(p[:, 0] <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 1000)
    r = calibrated_flag_test(60, 500, 1000, 951)
    assert r["p_value"] == pytest.approx(betabinom.sf(59, 500, 50, 951))
    assert r["expected"] == pytest.approx(50 / 1001) and r["test"] == "beta-binomial(500, 50, 951)"
    assert r["effect"] == "12.0% flagged vs 5.0% expected"
    assert calibrated_flag_test(0, 10, 100, 96)["p_value"] == 1.0
    for bad in [(5, 0, 100, 96), (11, 10, 100, 96), (1, 10, 100, 0), (1, 10, 100, 101)]:
        with pytest.raises(CurateError):
            calibrated_flag_test(*bad)


def test_flag_test_power_on_a_shifted_batch():
    rng = np.random.default_rng(11)
    cal = ConformalCalibrator(0.05).fit(rng.standard_normal(1000))
    assert calibrator_flag_test(cal, rng.standard_normal(500) + 1.0)["p_value"] < 1e-10
    # a small shift at a small calibration set: detectable, but the p-value is honest
    # about the threshold's uncertainty (larger than the binomial's would be)
    cal_small = ConformalCalibrator(0.05).fit(rng.standard_normal(100))
    r = calibrator_flag_test(cal_small, rng.standard_normal(2000) + 0.5)
    assert r["p_value"] < 0.05 and r["flagged_fraction"] > 0.1
    assert r["p_value"] > binom.sf(r["n_flagged"] - 1, 2000, r["expected"])


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
    assert same["verdict"] == "no shift" and same["flag_alpha"] == 0.05
    assert same["n_cal"] == 1000 and same["threshold_rank"] == 951 and same["flag_p"] > 0.025
    assert "an in-distribution batch of 100 has that many flags or more" in same["evidence"]
    shifted = check_batch(ref, rng.standard_normal((100, 3)) + 1, ConformalCalibrator(0.1).fit(cal_s),
                          rng.standard_normal(100) + 2, n_permutations=200)
    assert shifted["verdict"] == "shifted" and shifted["flag_alpha"] == 0.1
    assert shifted["flag_p"] < 1e-6 and "flagged vs 10.0% expected" in shifted["effect"]
    only_scores = check_batch(cal=cal_s, batch_scores=rng.standard_normal(100) + 2)
    assert only_scores["verdict"] == "shifted" and "mmd" not in only_scores
    with pytest.raises(CurateError, match="both"):
        check_batch(ref, None)
    with pytest.raises(CurateError, match="needs"):
        check_batch()
