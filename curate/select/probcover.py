"""ProbCover: greedy maximum coverage of delta-balls.

Yehuda, Dekel, Hacohen & Weinshall (2022), "Active Learning Through a Covering Lens",
NeurIPS. Every point covers the points within distance ``delta`` of it; picking
greedily the point that covers the most still-uncovered points maximises the
probability coverage of the labelled set, which bounds the error of a 1-NN classifier
in the low-budget regime.

``delta`` is chosen without labels as in the paper (section 4.1): cluster the data
into as many k-means clusters as there are classes, call a ball *pure* when every point
in it has its centre's cluster id, and take the largest delta whose fraction of pure
balls is at least ``purity`` (0.95). A ball around x is pure iff x's nearest point of
another cluster is farther than delta, so that largest delta is the (1 - purity)
quantile of that distance, estimated on a sample of ``n_purity_sample`` points.
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError
from curate.select.clusters import load_faiss, as_space, kmeans, knn_sqdist

PURITY = 0.95
N_PURITY_SAMPLE = 5_000
MAX_EDGES = 50_000_000
EXACT_MAX_ROWS = 100_000     # above: inverted-file (approximate) range search


def choose_delta(Z: np.ndarray, n_clusters: int, purity: float = PURITY, rng=None,
                 n_sample: int = N_PURITY_SAMPLE) -> float:
    """Largest ball radius with a fraction >= ``purity`` of pure balls (see module doc).

    ``Z`` (N, d) in its metric space (L2). Cost: k-means plus, for each cluster c, one
    exact search of the sampled members of c among the rows outside c:
    O(n_sample * N * d); memory O(N).
    """
    rng = np.random.default_rng(rng)
    N = len(Z)
    assign = kmeans(Z, n_clusters, rng)
    sample = np.sort(rng.choice(N, min(N, n_sample), replace=False))
    d_other = np.full(len(sample), np.inf)
    for c in np.unique(assign[sample]):
        q = assign[sample] == c
        others = np.flatnonzero(assign != c)
        if len(others) == 0:
            continue
        D, _ = knn_sqdist(Z[others], Z[sample[q]], 1)
        d_other[q] = np.sqrt(D[:, 0])
    finite = d_other[np.isfinite(d_other)]
    if finite.size == 0:
        raise CurateError("probcover: the data forms a single cluster; cannot choose delta")
    return float(np.quantile(finite, 1.0 - purity))


def _range_index(Z: np.ndarray, rng=None):
    """faiss L2 index over ``Z``: exact (flat) up to 100k rows, else an inverted file
    with 4 sqrt(N) lists of which 16 are searched (approximate: a few neighbours near
    list borders are missed)."""
    faiss = load_faiss()
    N, d = Z.shape
    if N <= EXACT_MAX_ROWS:
        index = faiss.IndexFlatL2(d)
    else:
        nlist = int(4 * np.sqrt(N))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist)
        train = Z[np.sort(np.random.default_rng(rng).choice(N, min(N, 64 * nlist), replace=False))]
        index.train(train)
        index.nprobe = 16
        index.referenced_objects = [quantizer]
    index.add(Z)
    return index


def ball_graph(Z: np.ndarray, delta: float, index=None) -> tuple[np.ndarray, np.ndarray]:
    """CSR adjacency ``(lims int64[N+1], nbrs int64[E])`` of ``||z_i - z_j|| < delta``
    (each row includes itself). faiss range search: exact O(N^2 d) time up to 100k rows,
    inverted file O(N^1.5 d) above; O(E) memory, no N x N matrix."""
    index = index if index is not None else _range_index(Z)
    lims, _, nbrs = index.range_search(Z, float(delta) ** 2)
    return lims.astype(np.int64), nbrs.astype(np.int64)


def mean_ball_size(index, Q: np.ndarray, delta: float) -> float:
    """Mean number of indexed rows within ``delta`` of the rows of ``Q`` (edges / N)."""
    lims, _, _ = index.range_search(np.ascontiguousarray(Q), float(delta) ** 2)
    return float(np.diff(lims).mean())


def _neighbours_of(lims, nbrs, rows: np.ndarray) -> np.ndarray:
    """Concatenated neighbour lists of ``rows`` (with repeats)."""
    if len(rows) == 0:
        return np.empty(0, np.int64)
    starts, ends = lims[rows], lims[rows + 1]
    lens = ends - starts
    offs = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    return nbrs[np.arange(lens.sum()) + offs]


def max_coverage(lims, nbrs, budget, seeds, pool, rng=None):
    """Greedy max coverage on a symmetric ball graph (CSR ``lims``, ``nbrs``).

    Points covered by ``seeds`` start covered. Each step picks the pool row covering
    the most uncovered points (lowest index on ties); once nothing is left to cover the
    rest are random pool rows (gain 0), as in the paper. Returns
    ``(indices int64[budget], gains float32[budget], n_random)``. Cost O(E + budget * N).
    """
    rng = np.random.default_rng(rng)
    N = len(lims) - 1
    covered = np.zeros(N, bool)
    covered[_neighbours_of(lims, nbrs, np.asarray(seeds, np.int64))] = True
    deg = np.add.reduceat((~covered[nbrs]).astype(np.int64), lims[:-1]) if len(nbrs) else np.zeros(N, np.int64)
    deg[np.diff(lims) == 0] = 0
    pickable = np.zeros(N, bool)
    pickable[pool] = True
    picks, gains, n_random = [], [], 0
    for _ in range(budget):
        cand = np.where(pickable, deg, -1)
        p = int(np.argmax(cand))
        if cand[p] <= 0:
            rest = np.flatnonzero(pickable)
            extra = rng.choice(rest, budget - len(picks), replace=False)
            n_random = len(extra)
            picks.extend(int(e) for e in extra)
            gains.extend([0.0] * len(extra))
            break
        ball = nbrs[lims[p]:lims[p + 1]]
        newly = ball[~covered[ball]]
        covered[newly] = True
        np.subtract.at(deg, _neighbours_of(lims, nbrs, newly), 1)
        picks.append(p)
        gains.append(float(len(newly)))
        pickable[p] = False
    return np.asarray(picks, np.int64), np.asarray(gains, np.float32), n_random


def probcover(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
              delta=None, n_clusters=None, purity=PURITY):
    """Pick ``budget`` rows of ``X`` (N, d) by ProbCover; seeds (L,) start covered.

    ``n_clusters`` for choosing delta: default the number of labelled classes among the
    seeds when at least 2, else 10. Returns ``(indices, gains float32, info)``: a
    pick's gain is how many uncovered points it covered (higher = earlier).
    Cost: delta O(5000 N d); graph O(N^2 d) time up to 100k rows, O(N^1.5 d) above
    (approximate inverted-file search), O(E) memory (E edges, capped at 5e7: delta
    shrinks by 0.8 until the graph fits, recorded in ``info``); greedy O(E + budget N).
    """
    rng = np.random.default_rng(random_state)
    Z = as_space(X, metric)
    N = len(Z)
    seeds = np.asarray(seeds if seeds is not None else [], dtype=np.int64)
    pool = np.setdiff1d(np.arange(N), seeds)
    if n_clusters is None:
        known = np.unique(labels[labels >= 0]) if labels is not None and len(labels) else []
        n_clusters = len(known) if len(known) >= 2 else 10
    chosen = delta is None
    if chosen:
        delta = choose_delta(Z, n_clusters, purity, rng)
    index = _range_index(Z, rng)
    sample = Z[rng.choice(N, min(N, 2_000), replace=False)]
    shrunk = 0
    while mean_ball_size(index, sample, delta) * N > MAX_EDGES and delta > 0:
        delta *= 0.8
        shrunk += 1
    lims, nbrs = ball_graph(Z, delta, index)
    picks, gains, n_random = max_coverage(lims, nbrs, budget, seeds, pool, rng)
    info = {"delta": float(delta), "delta_chosen": chosen, "purity": purity,
            "n_clusters": int(n_clusters), "edges": int(len(nbrs)), "delta_shrunk": shrunk,
            "random_after_full_coverage": int(n_random)}
    return picks, gains, info


__all__ = ["probcover", "choose_delta", "ball_graph", "max_coverage"]
