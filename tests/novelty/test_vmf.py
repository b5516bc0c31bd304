"""vMF: log normaliser (stable Bessel), kappa approximation, scores vs brute force."""

import numpy as np
import pytest
from scipy.special import gammaln, iv, ive

from curate.errors import CurateError
from curate.novelty import make_scorer
from curate.novelty.vmf import (
    VMFScorer,
    _log_iv_uniform,
    banerjee_kappa,
    log_bessel_iv,
    vmf_log_normalizer,
    vmf_mean_resultant,
)


@pytest.mark.parametrize("d", [4, 10, 32, 64])
def test_log_normalizer_vs_direct_scipy(d):
    kappa = np.array([0.1, 1.0, 5.0, 20.0, 100.0])
    v = d / 2 - 1
    direct = v * np.log(kappa) - d / 2 * np.log(2 * np.pi) - np.log(iv(v, kappa))
    np.testing.assert_allclose(vmf_log_normalizer(d, kappa), direct, rtol=1e-10)


def test_log_normalizer_closed_forms():
    k = np.array([0.5, 3.0, 40.0])
    np.testing.assert_allclose(vmf_log_normalizer(3, k), np.log(k / (4 * np.pi * np.sinh(k))), rtol=1e-10)
    d = 50  # kappa -> 0: uniform density 1 / area(S^{d-1}) = Gamma(d/2) / (2 pi^{d/2})
    np.testing.assert_allclose(vmf_log_normalizer(d, 1e-8), gammaln(d / 2) - np.log(2) - d / 2 * np.log(np.pi), rtol=1e-7)


def test_uniform_expansion_matches_ive_where_both_work():
    for v in [30.0, 100.0, 300.0, 511.0]:
        x = np.array([0.5, 5.0, 50.0, 500.0, 5000.0])
        x = x[ive(v, x) > 1e-290]
        ref = np.log(ive(v, x)) + x
        np.testing.assert_allclose(_log_iv_uniform(np.full_like(x, v), x), ref, rtol=1e-9, atol=1e-8)


def test_large_d_is_finite_and_monotone():
    d = 1024
    kappa = np.logspace(-3, 5, 200)
    assert ive(d / 2 - 1, 1.0) == 0.0  # the case the fallback exists for
    ln = vmf_log_normalizer(d, kappa)
    assert np.all(np.isfinite(ln))
    li = log_bessel_iv(d / 2 - 1, kappa)
    assert np.all(np.diff(li) > 0)  # I_v increasing in x
    # no jump where the code switches between ive and the expansion
    x = np.linspace(1, 2000, 5000)
    np.testing.assert_allclose(log_bessel_iv(511.0, x), _log_iv_uniform(np.full_like(x, 511.0), x), rtol=1e-10)


GRID = [(d, k) for d in (2, 3, 4, 10, 33, 128, 1024, 4096)
        for k in (1e-6, 1e-3, 0.1, 1.0, 5.0, 30.0, 100.0, 1e3, 1e4, 1e5, 1e6)]


def test_log_normalizer_vs_mpmath_50_digits():
    """Brute force at 50 digits (mpmath's own Bessel I), d up to 4096, kappa up to 1e6:
    the value to 1e-13 relative and its derivative -A_d(kappa) to 1e-10."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    d = np.array([g[0] for g in GRID])
    k = np.array([g[1] for g in GRID])
    ref = np.array([float((mp.mpf(di) / 2 - 1) * mp.log(ki) - mp.mpf(di) / 2 * mp.log(2 * mp.pi)
                          - mp.log(mp.besseli(mp.mpf(di) / 2 - 1, ki))) for di, ki in GRID])
    got = np.array([float(vmf_log_normalizer(di, ki)) for di, ki in GRID])
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)
    ref_a = np.array([float(mp.besseli(mp.mpf(di) / 2, ki) / mp.besseli(mp.mpf(di) / 2 - 1, ki))
                      for di, ki in GRID])
    got_a = np.array([float(vmf_mean_resultant(di, ki)) for di, ki in GRID])
    np.testing.assert_allclose(got_a, ref_a, rtol=1e-10)
    assert np.all((got_a > 0) & (got_a < 1)) and len(np.unique(d)) == 8 and k.max() == 1e6


@pytest.mark.parametrize("d", [3, 10, 64])
@pytest.mark.parametrize("kappa", [0.5, 20.0, 800.0])
def test_normalizer_integrates_the_density_to_one(d, kappa):
    """Independent of any Bessel code: int_{S^{d-1}} C_d exp(kappa mu.x) dx = 1, as
    |S^{d-2}| int_{-1}^{1} exp(kappa t) (1 - t^2)^{(d-3)/2} dt (quadrature, in logs)."""
    from scipy.integrate import quad
    from scipy.special import xlog1py

    def g(t):  # log of the integrand without the exp(kappa) factor
        return kappa * (t - 1) + xlog1py((d - 3) / 2, -t * t)

    t0 = np.sqrt(1 + ((d - 3) / (2 * kappa)) ** 2) - (d - 3) / (2 * kappa)  # its maximum
    val, _ = quad(lambda t: np.exp(g(t) - g(t0)), -1, 1, points=[t0], limit=500, epsabs=0,
                  epsrel=1e-13)
    log_area = np.log(2) + (d - 1) / 2 * np.log(np.pi) - gammaln((d - 1) / 2)  # |S^{d-2}|
    log_int = np.log(val) + g(t0) + kappa + log_area
    assert vmf_log_normalizer(d, kappa) + log_int == pytest.approx(0.0, abs=1e-9)


def test_banerjee_kappa():
    assert banerjee_kappa(0.5, 3) == pytest.approx(0.5 * (3 - 0.25) / 0.75)
    assert np.isfinite(banerjee_kappa(1.0, 10))


def test_vmf_scores_bruteforce(make_blobs):
    X, y = make_blobs(n=200)
    Q = make_blobs(n=20, seed=7)[0] - 0.5
    sc = make_scorer("vmf").fit(X, y)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    d = X.shape[1]
    ll = []
    for c in range(3):
        R = Xn[y == c].sum(0)
        rbar = np.linalg.norm(R) / (y == c).sum()
        kap = rbar * (d - rbar**2) / (1 - rbar**2)
        mu = R / np.linalg.norm(R)
        logc = (d / 2 - 1) * np.log(kap) - d / 2 * np.log(2 * np.pi) - np.log(iv(d / 2 - 1, kap))
        ll.append(logc + kap * Qn @ mu)
    ll = np.stack(ll, 1)
    np.testing.assert_allclose(sc.score_samples(Q), -ll.max(1), rtol=1e-9)
    e = sc.explain(Q)
    np.testing.assert_array_equal(e["nearest_class"], ll.argmax(1))


def test_from_params_round_trip(make_blobs):
    X, y = make_blobs(n=200)
    fitted = make_scorer("vmf").fit(X, y)
    given = VMFScorer.from_params(fitted.means_[::-1] * 3.0, fitted.kappas_[::-1], labels=[2, 1, 0])
    np.testing.assert_allclose(given.score_samples(X[:10]), fitted.score_samples(X[:10]), rtol=1e-12)
    assert np.isnan(given.explain(X[:2])["percentile"]).all()
    with pytest.raises(CurateError, match="kappas"):
        VMFScorer.from_params(fitted.means_, [1.0, -1.0, 2.0])
    with pytest.raises(CurateError, match="3 means but 2 kappas"):
        VMFScorer.from_params(fitted.means_, [1.0, 2.0])
