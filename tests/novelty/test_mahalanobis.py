"""Mahalanobis scorers vs sklearn / numpy brute force; shrinkage from running sums."""

import numpy as np
import pytest
from sklearn.covariance import OAS, LedoitWolf, ledoit_wolf_shrinkage

from curate.errors import CurateError
from curate.novelty import make_scorer
from curate.novelty._moments import (
    accumulate,
    moment_shapes,
    pooled_moments,
    shrunk_covariance,
)


def _norm(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _acc(groups, d):
    acc = {k: np.zeros((len(groups), *shape), dt) for k, (shape, dt) in moment_shapes(d).items()}
    for g, parts in enumerate(groups):
        for part in parts:
            accumulate(acc, g, part, block=7)
    return acc


def test_lw_and_oas_from_running_sums_match_sklearn():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 12)) @ rng.standard_normal((12, 12)) + 3.0
    _, S, n, q4 = pooled_moments(_acc([[X[:10], X[10:11], X[11:]]], 12))
    np.testing.assert_allclose(S, np.cov(X.T, bias=True), rtol=1e-10)
    lw, s = shrunk_covariance(S, n, q4, "ledoit-wolf")
    assert s == pytest.approx(ledoit_wolf_shrinkage(X), rel=1e-9)
    np.testing.assert_allclose(lw, LedoitWolf().fit(X).covariance_, rtol=1e-9)
    oas, s = shrunk_covariance(S, n, q4, "oas")
    ref = OAS().fit(X)
    assert s == pytest.approx(ref.shrinkage_, rel=1e-9)
    np.testing.assert_allclose(oas, ref.covariance_, rtol=1e-9)


def test_pooled_within_class_lw_matches_sklearn_on_centred_rows():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    X = rng.standard_normal((200, 6)) + 2.0 * y[:, None]
    groups = [[X[y == c][:5], X[y == c][5:]] for c in range(3)]
    means, S, n, q4 = pooled_moments(_acc(groups, 6))
    Z = X - np.stack([X[y == c].mean(0) for c in range(3)])[y]
    cov, s = shrunk_covariance(S, n, q4, "ledoit-wolf")
    assert s == pytest.approx(ledoit_wolf_shrinkage(Z), rel=1e-9)
    np.testing.assert_allclose(cov, LedoitWolf().fit(Z).covariance_, rtol=1e-9)


@pytest.mark.parametrize("shrinkage", ["ledoit-wolf", "oas", 0.3])
def test_single_gaussian_vs_bruteforce(shrinkage, make_blobs):
    X, _ = make_blobs(n=200)
    Q = make_blobs(n=20, seed=3)[0] + 0.2
    sc = make_scorer("mahalanobis", shrinkage=shrinkage).fit(X)
    Xn, Qn = _norm(X), _norm(Q)
    if shrinkage == "ledoit-wolf":
        est = LedoitWolf().fit(Xn)
        cov, mu = est.covariance_, est.location_
    elif shrinkage == "oas":
        est = OAS().fit(Xn)
        cov, mu = est.covariance_, est.location_
    else:
        emp, mu = np.cov(Xn.T, bias=True), Xn.mean(0)
        cov = 0.7 * emp + 0.3 * np.trace(emp) / 8 * np.eye(8)
    diff = Qn - mu
    expect = np.einsum("ij,ij->i", diff, np.linalg.solve(cov, diff.T).T)
    np.testing.assert_allclose(sc.score_samples(Q), expect, rtol=1e-8)
    np.testing.assert_allclose(sc.covariance_, cov, rtol=1e-9)


def test_class_conditional_vs_bruteforce(make_blobs):
    X, y = make_blobs(n=240)
    Q = make_blobs(n=25, seed=4)[0] * 1.3
    sc = make_scorer("mahalanobis-class").fit(X, y)
    Xn, Qn = _norm(X), _norm(Q)
    means = np.stack([Xn[y == c].mean(0) for c in range(3)])
    cov = LedoitWolf().fit(Xn - means[y]).covariance_
    d2 = np.stack([np.einsum("ij,ij->i", Qn - m, np.linalg.solve(cov, (Qn - m).T).T) for m in means], 1)
    np.testing.assert_allclose(sc.score_samples(Q), d2.min(1), rtol=1e-8)
    e = sc.explain(Q)
    np.testing.assert_array_equal(e["nearest_class"], d2.argmin(1))
    np.testing.assert_allclose(e["class_score"], d2.min(1), rtol=1e-8)


def test_unnormalized_and_errors(make_blobs):
    X, _ = make_blobs(n=100)
    sc = make_scorer("mahalanobis", normalize=False, shrinkage="oas").fit(X)
    est = OAS().fit(X)
    diff = X[:5] - est.location_
    np.testing.assert_allclose(sc.score_samples(X[:5]),
                               np.einsum("ij,ij->i", diff, np.linalg.solve(est.covariance_, diff.T).T), rtol=1e-8)
    with pytest.raises(CurateError, match="unknown shrinkage"):
        make_scorer("mahalanobis", shrinkage="nope").fit(X)
    with pytest.raises(CurateError, match="singular"):
        make_scorer("mahalanobis", shrinkage=0.0).fit(X[:5])  # 5 rows in 8-d
    with pytest.raises(CurateError, match="at least 2"):
        make_scorer("mahalanobis").fit(X[:1])
    with pytest.raises(CurateError, match="zero variance"):
        make_scorer("mahalanobis").fit(np.ones((10, 4)))
