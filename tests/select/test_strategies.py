"""Selection strategies against brute-force references and known answers."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from curate.errors import CurateError
from curate.select import SCORES, SELECTORS
from curate.select import strategies
from curate.select.clusters import as_space, cluster_gap, typicality
from curate.select.probcover import ball_graph, choose_delta, max_coverage
from curate.select.uncertainty import (entropy_scores, gradient_embedding_parts,
                                       kmeanspp_factored, margin_scores)
from curate.select.probe import fit_probe


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=400, centers=8, n_features=6, cluster_std=0.6, random_state=0)
    return X.astype(np.float32) + 20.0, y.astype(np.int64)   # offset: cosine needs non-zero rows


@pytest.mark.parametrize("name", SELECTORS.names())
@pytest.mark.parametrize("with_labels", [False, True])
def test_every_strategy_returns_valid_reproducible_picks(blobs, name, with_labels):
    X, y = blobs
    seeds = np.arange(0, 40, 2) if with_labels else None
    labels = y[seeds] if with_labels else None
    a = SELECTORS.get(name)(X, 15, seeds, labels, random_state=7)
    b = SELECTORS.get(name)(X, 15, seeds, labels, random_state=7)
    assert a.indices.dtype == np.int64 and len(a.indices) == 15 == len(set(a.indices.tolist()))
    assert not set(a.indices.tolist()) & set(seeds.tolist() if seeds is not None else [])
    assert a.indices.min() >= 0 and a.indices.max() < len(X)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.scores.shape == (15,) and name in SCORES
    if name != "random" and not (name in ("margin", "entropy", "badge") and not with_labels):
        assert not np.isnan(a.scores).any()


@pytest.mark.parametrize("name", SELECTORS.names())
def test_every_strategy_refuses_budgets_beyond_the_pool(blobs, name):
    X, _ = blobs
    with pytest.raises(CurateError, match="larger than the pool"):
        SELECTORS.get(name)(X[:30], 25, np.arange(10), None, random_state=0)


def _brute_typicality(Z, k):
    D = np.sqrt(((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1))
    D.sort(axis=1)
    return 1.0 / (D[:, 1:k + 1].mean(1) + 1e-12)


def test_typicality_matches_brute_force(blobs):
    Z = as_space(blobs[0], "euclidean")[:150]
    np.testing.assert_allclose(typicality(Z, 20), _brute_typicality(Z, 20), rtol=1e-4)
    # small clusters: k capped at max(3, n // 5)
    np.testing.assert_allclose(typicality(Z[:60], 20), _brute_typicality(Z[:60], 12), rtol=1e-4)
    np.testing.assert_allclose(typicality(Z[:10], 20), _brute_typicality(Z[:10], 3), rtol=1e-4)
    np.testing.assert_allclose(typicality(Z[:3], 20), _brute_typicality(Z[:3], 2), rtol=1e-4)


def test_typiclust_picks_the_densest_point_of_each_uncovered_blob(blobs):
    X, y = blobs
    seeds = np.array([np.flatnonzero(y == c)[0] for c in (0, 1, 2)])   # blobs 0-2 covered
    p = SELECTORS.get("typiclust")(X, 5, seeds, None, metric="euclidean", random_state=0)
    assert sorted(y[p.indices].tolist()) == [3, 4, 5, 6, 7]   # one per uncovered blob
    Z = as_space(X, "euclidean")
    for i in p.indices:                                       # the blob's most typical point
        members = np.flatnonzero(y == y[i])
        typ = _brute_typicality(Z[members], 20)
        assert typ[list(members).index(i)] >= np.quantile(typ, 0.9)


def test_ball_graph_matches_brute_force(blobs):
    Z = as_space(blobs[0], "cosine")[:200]
    lims, nbrs = ball_graph(Z, 0.05)
    D = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
    for i in range(len(Z)):
        got = set(nbrs[lims[i]:lims[i + 1]].tolist())
        sure_in = set(np.flatnonzero(D[i] < 0.05 - 1e-5).tolist())
        sure_out = set(np.flatnonzero(D[i] > 0.05 + 1e-5).tolist())
        assert sure_in <= got and not got & sure_out and i in got


def _brute_max_coverage(A, budget, seeds, pool):
    covered = A[seeds].any(0) if len(seeds) else np.zeros(len(A), bool)
    picks, gains = [], []
    pickable = np.zeros(len(A), bool)
    pickable[pool] = True
    for _ in range(budget):
        gain = np.where(pickable, (A & ~covered).sum(1), -1)
        p = int(np.argmax(gain))
        picks.append(p)
        gains.append(gain[p])
        covered |= A[p]
        pickable[p] = False
    return picks, gains


def test_greedy_coverage_matches_brute_force():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(120, 3)).astype(np.float32)
    lims, nbrs = ball_graph(Z, 0.9)
    A = np.zeros((120, 120), bool)
    for i in range(120):
        A[i, nbrs[lims[i]:lims[i + 1]]] = True
    seeds = np.array([0, 5, 9])
    pool = np.setdiff1d(np.arange(120), seeds)
    picks, gains, n_random = max_coverage(lims, nbrs, 12, seeds, pool, rng=0)
    ref_p, ref_g = _brute_max_coverage(A, 12, seeds, pool)
    assert picks.tolist() == ref_p and gains.tolist() == ref_g and n_random == 0


def test_coverage_falls_back_to_random_once_everything_is_covered():
    Z = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5]], np.float32)
    lims, nbrs = ball_graph(Z, 1.0)
    picks, gains, n_random = max_coverage(lims, nbrs, 3, np.array([], np.int64), np.arange(4), 0)
    assert gains[:2].tolist() == [2, 2] and gains[2] == 0 and n_random == 1
    assert len(set(picks.tolist())) == 3


def test_delta_gives_the_requested_purity(blobs):
    Z = as_space(blobs[0], "euclidean")
    from curate.select.clusters import kmeans
    delta = choose_delta(Z, 8, purity=0.95, rng=0)
    assign = kmeans(Z, 8, np.random.default_rng(0))
    D = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))
    pure = [(assign[D[i] < delta] == assign[i]).all() for i in range(len(Z))]
    assert 0.93 <= np.mean(pure) <= 0.97          # the 5% quantile of the impurity distance


def test_margin_and_entropy_match_their_definitions():
    P = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(margin_scores(P), [0.5, 0.05, 1.0], atol=1e-6)
    np.testing.assert_allclose(entropy_scores(P), [-(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)),
                                                   -(0.4 * np.log(0.4) + 0.35 * np.log(0.35) + 0.25 * np.log(0.25)), 0.0],
                               atol=1e-6)


def test_margin_picks_the_rows_nearest_the_decision_boundary(blobs):
    X, y = blobs
    two = np.flatnonzero(np.isin(y, [0, 1]))
    Xs, ys = X[two], y[two]
    seeds = np.concatenate([np.flatnonzero(ys == 0)[:5], np.flatnonzero(ys == 1)[:5]])
    p = SELECTORS.get("margin")(Xs, 5, seeds, ys[seeds], random_state=0)
    probe = fit_probe("logistic", Xs[seeds], ys[seeds], 0)
    pool = np.setdiff1d(np.arange(len(Xs)), seeds)
    m = margin_scores(probe.predict_proba(Xs[pool]))
    assert set(p.indices.tolist()) == set(pool[np.argsort(m)[:5]].tolist())
    assert p.info["probe_trained_on"] == 10


@pytest.mark.parametrize("name", ["margin", "entropy", "badge"])
def test_uncertainty_falls_back_to_random_without_two_classes(blobs, name):
    X, y = blobs
    p = SELECTORS.get(name)(X, 5, np.arange(4), np.zeros(4, np.int64), random_state=1)
    assert "fallback" in p.info
    q = SELECTORS.get("random")(X, 5, np.arange(4), None, random_state=1)
    np.testing.assert_array_equal(p.indices, q.indices)


def test_badge_gradient_embedding_matches_the_explicit_outer_product(blobs):
    X, y = blobs
    probe = fit_probe("logistic", X[:60], y[:60], 0)
    A, H = gradient_embedding_parts(probe, X)
    P = probe.predict_proba(X)
    onehot = np.eye(P.shape[1])[P.argmax(1)]
    Hx = np.hstack([probe[:-1].transform(X), np.ones((len(X), 1))])
    G = np.einsum("nc,nd->ncd", P - onehot, Hx).reshape(len(X), -1)
    np.testing.assert_allclose(np.einsum("nc,nd->ncd", A, H).reshape(len(X), -1), G, atol=1e-10)
    # k-means++ on the factored form == k-means++ on the explicit matrix, same draws
    picks, d2 = kmeanspp_factored(A, H, 12, rng=5)
    rng = np.random.default_rng(5)
    ref = [int(np.argmax((G ** 2).sum(1)))]
    best = np.full(len(G), np.inf)
    for _ in range(11):
        best = np.minimum(best, ((G - G[ref[-1]]) ** 2).sum(1))
        best[ref] = 0
        ref.append(int(rng.choice(len(G), p=best / best.sum())))
    assert picks.tolist() == ref


def test_auto_switches_from_typicality_to_badge(blobs):
    X, y = blobs
    few = SELECTORS.get("auto")(X, 5, np.arange(8), y[:8], random_state=0)
    assert few.info["chose"] == "typiclust"
    many_seeds = np.arange(0, 400, 4)
    many = SELECTORS.get("auto")(X, 5, many_seeds, y[many_seeds], random_state=0)
    assert many.info["chose"] == "badge"
    late = strategies.auto_rule(1000)(X, 5, many_seeds, y[many_seeds], random_state=0)
    assert late.info["chose"] == "typiclust"


def test_cluster_gap_is_near_zero_for_a_gaussian_and_large_for_blobs():
    rng = np.random.default_rng(0)
    gauss = rng.normal(size=(4000, 16)) @ rng.normal(size=(16, 16))   # correlated, no clusters
    X, _ = make_blobs(n_samples=4000, centers=20, n_features=16, cluster_std=1.0, random_state=0)
    assert abs(cluster_gap(gauss, random_state=0)) < 0.03
    assert cluster_gap(X, random_state=0) > 1.0
    assert cluster_gap(X, random_state=1) == pytest.approx(cluster_gap(X, random_state=1))


def test_auto_picks_at_random_where_the_embedding_has_no_clusters(blobs):
    gauss = np.random.default_rng(0).normal(size=(400, 6)).astype(np.float32) + 20.0
    flat = SELECTORS.get("auto")(gauss, 5, np.arange(8), None, metric="euclidean", random_state=3)
    rand = SELECTORS.get("random")(gauss, 5, np.arange(8), None, random_state=3)
    assert flat.info["chose"] == "random" and flat.info["cluster_gap"] < 0.08
    np.testing.assert_array_equal(flat.indices, rand.indices)
    X, y = blobs
    clustered = SELECTORS.get("auto")(X, 5, np.arange(8), y[:8], random_state=3)
    assert clustered.info["chose"] == "typiclust" and clustered.info["cluster_gap"] > 0.08


def test_kcenter_typical_never_picks_outliers(blobs):
    X, y = blobs
    X = np.vstack([X, X.mean(0) + np.array([30, -30, 30, -30, 30, -30], np.float32)])  # one outlier
    k = SELECTORS.get("kcenter")(X, 3, None, None, metric="euclidean", random_state=0)
    kt = SELECTORS.get("kcenter-typical")(X, 3, None, None, metric="euclidean", random_state=0)
    assert len(X) - 1 in k.indices[:2]              # furthest-point sampling grabs it at once
    assert len(X) - 1 not in kt.indices
