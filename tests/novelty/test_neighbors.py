"""knn / max-cosine / cosine-weighted vs numpy brute force (incl. leave-one-out)."""

import numpy as np
import pytest
from scipy.special import logsumexp

from curate.errors import CurateError
from curate.novelty import make_scorer


def _cos(A, B):
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    B = B / np.linalg.norm(B, axis=1, keepdims=True)
    return A @ B.T


@pytest.fixture
def data(make_blobs):
    X, y = make_blobs(n=250)
    Q = make_blobs(n=30, seed=5)[0] + np.linspace(0, 1, 8)
    return X, y, Q


def test_knn_bruteforce(data):
    X, _, Q = data
    sc = make_scorer("knn", k=7).fit(X)
    expect = -np.sort(_cos(Q, X), axis=1)[:, ::-1][:, 6]
    np.testing.assert_allclose(sc.score_samples(Q), expect, atol=1e-5)
    C = _cos(X, X)
    np.fill_diagonal(C, -np.inf)
    loo = -np.sort(C, axis=1)[:, ::-1][:, 6]
    np.testing.assert_allclose(sc.score_reference(), loo, atol=1e-5)
    np.testing.assert_allclose(sc.score_samples(X, exclude_self=True), loo, atol=1e-5)
    np.testing.assert_allclose(sc.score_reference([3, 9]), loo[[3, 9]], atol=1e-5)


def test_knn_with_duplicates_excludes_only_self():
    X = np.repeat(np.eye(4) + 0.1, 3, axis=0)  # every row has 2 exact duplicates
    sc = make_scorer("knn", k=2).fit(X)
    np.testing.assert_allclose(sc.score_reference(), -1.0, atol=1e-6)
    sc = make_scorer("knn", k=3).fit(X)
    assert np.all(sc.score_reference() > -0.99)


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_knn_approximate_indexes_close_to_exact(index, data):
    X, _, Q = data
    exact = make_scorer("knn", k=5).fit(X).score_samples(Q)
    approx = make_scorer("knn", k=5, index=index, nprobe=64).fit(X).score_samples(Q)
    assert np.corrcoef(exact, approx)[0, 1] > 0.95


def test_knn_errors(data):
    X, _, _ = data
    with pytest.raises(CurateError, match="k=50 needs at least 51 reference rows"):
        make_scorer("knn").fit(X[:50])
    with pytest.raises(CurateError, match="unknown index"):
        make_scorer("knn", k=3, index="lsh").fit(X).score_samples(X[:2])
    sc = make_scorer("knn", k=3).fit(X)
    with pytest.raises(CurateError, match="reference rows"):
        sc.score_samples(X[:10], exclude_self=True)


def test_max_cosine_bruteforce(data):
    X, y, Q = data
    sc = make_scorer("max-cosine").fit(X, y)
    np.testing.assert_allclose(sc.score_samples(Q), -_cos(Q, X).max(1), atol=1e-5)
    C = _cos(X, X)
    np.fill_diagonal(C, -np.inf)
    np.testing.assert_allclose(sc.score_reference(), -C.max(1), atol=1e-5)
    e = sc.explain(Q, k=2)
    np.testing.assert_array_equal(e["nearest_class"], y[_cos(Q, X).argmax(1)])


@pytest.mark.parametrize("tau", [0.04, 0.005, 1.0])
def test_cosine_weighted_bruteforce(tau, data):
    X, _, Q = data
    sc = make_scorer("cosine-weighted", tau=tau, query_block=7, ref_block=64).fit(X)
    C = _cos(Q, X)
    expect = -logsumexp(C / tau, axis=1) + np.log(len(X))
    got = sc.score_samples(Q)
    # float32 GEMM: error in the exponent ~ 1e-7 x |cos / tau|
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-6 / tau)
    if tau >= 0.04:  # the paper's S(x) itself, where it does not overflow
        S = -np.mean(np.exp(C / tau), axis=1)
        np.testing.assert_allclose(got, -np.log(-S), rtol=1e-4)
    CX = _cos(X, X) / tau
    np.fill_diagonal(CX, -np.inf)
    loo = -logsumexp(CX, axis=1) + np.log(len(X) - 1)
    np.testing.assert_allclose(sc.score_reference(), loo, rtol=0, atol=1e-6 / tau)


def test_cosine_weighted_no_overflow_and_tau_error(data):
    X, _, Q = data
    s = make_scorer("cosine-weighted", tau=1e-4).fit(X).score_samples(Q)
    assert np.all(np.isfinite(s))
    with pytest.raises(CurateError, match="tau must be > 0"):
        make_scorer("cosine-weighted", tau=0).fit(X)
