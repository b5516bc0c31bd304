"""Shared geometry of the selection strategies: the metric space, k-means, typicality.

Pure compute over float32 arrays; faiss does k-means and exact neighbour search.
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError
from curate.validation import check_matrix

METRICS = ("cosine", "euclidean")
TYPICALITY_BASE_CAP = 10_000   # neighbour base per cluster; larger clusters are subsampled
TYPICALITY_ROWS_PER_K = 5      # small clusters: at most one neighbour per 5 rows ...
TYPICALITY_MIN_K = 3           # ... but at least 3


def load_faiss():
    import faiss  # noqa: PLC0415 - heavy import, only when a strategy runs

    return faiss


def as_space(X, metric: str) -> np.ndarray:
    """Rows of ``X`` (N, d) as C-contiguous float32 in which L2 is the metric.

    cosine: rows scaled to unit norm (L2 between unit rows = sqrt(2 - 2 cos)); euclidean:
    as given. Raises CurateError on NaN/inf, zero rows under cosine, or a bad metric.
    """
    if metric not in METRICS:
        raise CurateError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    Z = np.array(check_matrix(X, "embeddings"), dtype=np.float32, copy=True, order="C")
    if not np.isfinite(Z).all():  # float64 rows beyond float32's range
        raise CurateError("embeddings contain values too large for float32")
    if metric == "cosine":
        norms = np.linalg.norm(Z, axis=1, keepdims=True)
        if (norms == 0).any():
            raise CurateError("cosine metric needs non-zero embeddings; some rows are all zero")
        Z /= norms
    return Z


def kmeans(Z: np.ndarray, k: int, random_state=None, niter: int = 20) -> np.ndarray:
    """Cluster ids int64 (N,) of ``Z`` (N, d) by k-means with ``k`` clusters.

    k-means++ seeding (scikit-learn, one trial per centre as in Arthur & Vassilvitskii
    2007, in float64: its float32 path is ~20x slower) on at most 20 k sampled rows, then faiss Lloyd
    iterations on at most 256 k sampled rows, then every row goes to its nearest centroid.
    (faiss's own random initialisation often merges two well separated modes, which
    TypiClust and ProbCover are sensitive to.) Cost:
    O(k * min(N, 20 k) * d + niter * min(N, 256 k) * k * d + N k d); memory O(N + k d).
    """
    from sklearn.cluster import kmeans_plusplus  # noqa: PLC0415

    N, d = Z.shape
    k = int(min(k, N))
    if k <= 1:
        return np.zeros(N, np.int64)
    rng = np.random.default_rng(random_state)
    sub = Z if N <= 20 * k else Z[np.sort(rng.choice(N, 20 * k, replace=False))]
    init, _ = kmeans_plusplus(sub.astype(np.float64), k, n_local_trials=1,
                              random_state=int(rng.integers(2**31 - 1)))
    km = load_faiss().Kmeans(d, k, niter=niter, seed=int(rng.integers(2**31 - 1)),
                         min_points_per_centroid=1, max_points_per_centroid=256, verbose=False)
    km.train(Z, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    _, a = km.index.search(Z, 1)
    return a[:, 0].astype(np.int64)


def cluster_gap(Z: np.ndarray, k: int = 20, sample: int = 10_000, repeats: int = 3,
                random_state=None) -> float:
    """How clustered the rows of ``Z`` (N, d) are: log(W_ref / W), where W is the k-means
    within-cluster sum of squares of (a sample of) Z and W_ref that of a Gaussian sample
    with Z's mean and covariance (a "no clusters" reference of the same second moments;
    the gap statistic of Tibshirani et al. 2001 with a Gaussian instead of a uniform
    reference), averaged over ``repeats`` k-means runs and reference draws. ~0: no more
    structure than a Gaussian; higher = clustered. Measured on pixels-pca of 10k-image
    pools (README "Which strategy?"): CIFAR-10 0.06, BreastMNIST 0.10, PneumoniaMNIST
    0.13, MNIST 0.21, Fashion-MNIST 0.48. Cost: 2 x repeats k-means on min(N, sample)
    rows plus O(d^3); memory O(min(N, sample) d).
    """
    rng = np.random.default_rng(random_state)
    Z = np.asarray(Z, np.float32)
    if len(Z) > sample:
        Z = Z[np.sort(rng.choice(len(Z), sample, replace=False))]
    k = int(min(k, len(Z) // 2))
    if k < 2:
        return 0.0
    mean, cov = Z.mean(0, dtype=np.float64), np.cov(Z.T.astype(np.float64))

    def wss(P):
        a = kmeans(P, k, random_state=int(rng.integers(2**31 - 1)))
        P = P.astype(np.float64)
        n = np.bincount(a, minlength=k)[:, None]
        sums = np.zeros((k, P.shape[1]))
        np.add.at(sums, a, P)
        return float((P ** 2).sum() - ((sums ** 2) / np.maximum(n, 1)).sum())

    faiss = load_faiss()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)   # k-means this small: OpenMP hand-offs cost more than they save
    try:
        gaps = [np.log(wss(rng.multivariate_normal(mean, cov, size=len(Z), method="eigh")
                           .astype(np.float32)) / max(wss(Z), 1e-12)) for _ in range(repeats)]
    finally:
        faiss.omp_set_num_threads(threads)
    return float(np.mean(gaps))


def knn_sqdist(base: np.ndarray, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``base`` (M, d) for each row of ``Q`` (n, d): squared L2
    distances float32 (n, k) and indices int64 (n, k). Cost O(n M d), memory O(n k)."""
    index = load_faiss().IndexFlatL2(base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    D, I = index.search(np.ascontiguousarray(Q, dtype=np.float32), int(k))
    return np.maximum(D, 0), I


def typicality(Z: np.ndarray, k: int = 20, rng=None, base_cap: int = TYPICALITY_BASE_CAP) -> np.ndarray:
    """TypiClust typicality of every row of ``Z`` (n, d): 1 / mean distance to its k
    nearest other rows (Hacohen et al. 2022, eq. 2). Higher = denser, more typical.

    In small clusters k is capped at ``max(3, n // 5)`` (and n - 1): with k near n the
    mean distance measures centrality, not density. (The paper's code caps at n // 2; on
    the validation split of ``benchmarks/al_curves.py``, n // 5 gave BreastMNIST, whose
    546-image pool makes clusters of 11-55 rows, +3.0 / +3.7 / +1.4 points at budgets
    10 / 20 / 50 over n // 2, 30 seeds, and left Fashion-MNIST, MNIST and PneumoniaMNIST
    within 0.5 points.) When n exceeds
    ``base_cap`` the neighbours come from a random subset of ``base_cap`` rows and k is
    scaled by base_cap / n, which estimates the same density ranking. Cost:
    O(n * min(n, base_cap) * d); memory O(n k).
    """
    n = len(Z)
    if n <= 2:
        return np.ones(n, np.float32)
    if n > base_cap:
        base = Z[np.sort(np.random.default_rng(rng).choice(n, base_cap, replace=False))]
        kk = max(1, int(round(k * base_cap / n)))
    else:
        base, kk = Z, max(1, min(k, max(TYPICALITY_MIN_K, n // TYPICALITY_ROWS_PER_K), n - 1))
    # one extra neighbour: the row itself (or one identical copy) comes first
    D, _ = knn_sqdist(base, Z, min(kk + 1, len(base)))
    mean = np.sqrt(D[:, 1:]).mean(axis=1)
    return (1.0 / (mean + 1e-12)).astype(np.float32)


__all__ = ["METRICS", "as_space", "cluster_gap", "kmeans", "knn_sqdist", "typicality"]
