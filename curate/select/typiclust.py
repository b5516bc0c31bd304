"""TypiClust: pick the most typical point of the largest uncovered clusters.

Hacohen, Dekel & Weinshall (2022), "Active Learning on a Budget: Opposite Strategies
Suit High and Low Budgets", ICML. With few labels, the best points to label are
typical ones (dense regions) spread over the data's modes, not outliers: the opposite
of furthest-point sampling, which picks the most isolated points first.

Algorithm (paper, section 4): cluster the pool and the seeds into ``L + B`` clusters
(at most ``max_clusters``); clusters with fewer than ``min_cluster_size`` points are
skipped; repeatedly take the cluster holding the fewest seeds/picks (ties: the largest)
and pick its most typical pool point (typicality = 1 / mean distance to the k = 20
nearest points of the cluster; fewer in clusters under 100 rows, see
:func:`curate.select.clusters.typicality`).
"""

from __future__ import annotations

import numpy as np

from curate.select.clusters import as_space, kmeans, typicality

MAX_CLUSTERS = 500      # the paper's cap; beyond it clusters are revisited in turn
MIN_CLUSTER_SIZE = 5
K_NN = 20


def typiclust(X, budget, seeds=None, *, metric="cosine", random_state=None, k_nn=K_NN,
              max_clusters=MAX_CLUSTERS, min_cluster_size=MIN_CLUSTER_SIZE):
    """Pick ``budget`` rows of ``X`` (N, d) by TypiClust; seeds (L,) count as covering.

    Every row but the seeds may be picked. Returns
    ``(indices int64[budget], typicality float32[budget], info)``; higher typicality =
    more typical. Cost: k-means O(20 * min(N, 256 K) * K * d + N K d) with
    K = min(L + budget, max_clusters), plus typicality in each visited cluster
    O(n_c * min(n_c, 10^4) * d); memory O(N + K d). No N x N matrix.
    """
    rng = np.random.default_rng(random_state)
    Z = as_space(X, metric)
    N = len(Z)
    seeds = np.asarray(seeds if seeds is not None else [], dtype=np.int64)
    pool = np.setdiff1d(np.arange(N), seeds)
    n_clusters = int(min(len(seeds) + budget, max_clusters, N))
    assign = kmeans(Z, n_clusters, rng)
    sizes = np.bincount(assign, minlength=n_clusters)
    covered = np.bincount(assign[seeds], minlength=n_clusters).astype(np.int64)
    pickable = np.zeros(N, bool)
    pickable[pool] = True
    open_pool = np.bincount(assign[pool], minlength=n_clusters)
    eligible = sizes >= min_cluster_size
    if not (eligible & (open_pool > 0)).any():
        eligible = sizes > 0
    typ_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    picks, scores = [], []
    for _ in range(budget):
        ok = eligible & (open_pool > 0)
        if not ok.any():            # every eligible cluster exhausted: allow small ones
            ok = open_pool > 0
        # fewest seeds/picks first, then the largest cluster, then the lowest id
        order = np.lexsort((np.arange(n_clusters), -sizes, covered))
        c = int(order[ok[order]][0])
        if c not in typ_cache:
            members = np.flatnonzero(assign == c)
            typ_cache[c] = (members, typicality(Z[members], k_nn, rng))
        members, typ = typ_cache[c]
        cand = pickable[members]
        j = int(np.argmax(np.where(cand, typ, -np.inf)))
        row = int(members[j])
        picks.append(row)
        scores.append(float(typ[j]))
        pickable[row] = False
        covered[c] += 1
        open_pool[c] -= 1
    info = {"n_clusters": n_clusters, "k_nn": int(k_nn), "min_cluster_size": int(min_cluster_size)}
    return np.asarray(picks, np.int64), np.asarray(scores, np.float32), info


def typical_rows(X, seeds=None, *, metric="cosine", random_state=None, n_clusters=None,
                 keep=0.5, k_nn=K_NN, min_cluster_size=MIN_CLUSTER_SIZE) -> np.ndarray:
    """Pool rows whose typicality is in the top ``keep`` fraction of their k-means cluster.

    Clusters: ``n_clusters`` (default ``min(N // 20, 50)``); typicality is measured
    within the cluster, so sparse modes keep their own dense core; clusters smaller than
    ``min_cluster_size`` are outliers and dropped. Returns int64 row indices (not
    seeds). Cost: k-means plus O(N * min(n_c, 10^4) * d).
    """
    rng = np.random.default_rng(random_state)
    Z = as_space(X, metric)
    N = len(Z)
    seeds = np.asarray(seeds if seeds is not None else [], dtype=np.int64)
    k = n_clusters or max(1, min(N // 20, 50))
    assign = kmeans(Z, k, rng)
    typ = np.empty(N, np.float32)
    keep_mask = np.zeros(N, bool)
    for c in np.unique(assign):
        members = np.flatnonzero(assign == c)
        if len(members) < min_cluster_size:
            continue
        typ[members] = typicality(Z[members], k_nn, rng)
        cut = np.quantile(typ[members], 1.0 - keep)
        keep_mask[members[typ[members] >= cut]] = True
    keep_mask[seeds] = False
    return np.flatnonzero(keep_mask)


__all__ = ["typiclust", "typical_rows"]
