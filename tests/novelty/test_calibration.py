"""Split-conformal calibrator: rules agree, refusals, FPR coverage."""

import numpy as np
import pytest

from curate.errors import CurateError
from curate.novelty.calibration import ConformalCalibrator


def test_p_values_formula_and_threshold_rule_agree():
    rng = np.random.default_rng(0)
    for n, alpha in [(19, 0.05), (20, 0.05), (100, 0.1), (57, 0.33), (9, 0.1)]:
        cal = np.round(rng.standard_normal(n), 1)  # ties on purpose
        c = ConformalCalibrator(alpha).fit(cal)
        s = np.r_[np.round(rng.standard_normal(500) * 1.5, 1), cal]
        p = c.p_values(s)
        expect = (1 + (cal[None, :] >= s[:, None]).sum(1)) / (n + 1)
        np.testing.assert_allclose(p, expect)
        np.testing.assert_array_equal(c.predict(s), p <= alpha)
        d = c.decide(s)
        np.testing.assert_array_equal(d["flag"], p <= alpha)


def test_refusals():
    with pytest.raises(CurateError, match="below 1/\\(n\\+1\\)"):
        ConformalCalibrator(0.01).fit(np.arange(50.0))
    ConformalCalibrator(0.01).fit(np.arange(99.0))  # alpha == 1/(n+1) is allowed
    for a in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(CurateError, match="alpha must be in"):
            ConformalCalibrator(a).fit(np.arange(100.0))
    with pytest.raises(CurateError, match="empty"):
        ConformalCalibrator().fit([])
    with pytest.raises(CurateError, match="NaN"):
        ConformalCalibrator().fit([1.0, np.nan])
    with pytest.raises(CurateError, match="not fitted"):
        ConformalCalibrator().p_values([1.0])


def test_state_round_trip():
    c = ConformalCalibrator(0.1).fit(np.random.default_rng(1).standard_normal(200))
    c2 = ConformalCalibrator.from_state({k: np.asarray(v) for k, v in c.get_state().items()})
    s = np.linspace(-3, 3, 50)
    np.testing.assert_array_equal(c2.p_values(s), c.p_values(s))
    assert c2.threshold_ == c.threshold_


def test_fpr_coverage_on_gaussians():
    alpha, hits, fprs = 0.05, 0, []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        c = ConformalCalibrator(alpha).fit(rng.standard_normal(5000))
        r = c.achieved_fpr(rng.standard_normal(2000))
        assert r["ci_low"] <= r["fpr"] <= r["ci_high"] and r["n"] == 2000
        hits += r["ci_low"] <= alpha <= r["ci_high"]
        fprs.append(r["fpr"])
    assert hits >= 32  # ~90% expected; the CI ignores the calibration-set noise
    assert abs(np.mean(fprs) - alpha) < 0.004
