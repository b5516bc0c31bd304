"""Pair regimes for the siamese contrastive trainer (004); arrays in, arrays out.

Every epoch each anchor ``i`` gets one positive pair (``y = 1``) and one negative pair
(``y = 0``), so an epoch has ``2 N`` pairs, half similar:

- ``class``: positive = a random other item of the same class; negative = a random item
  of another class.
- ``knn``: positive = one of the ``k`` (5) nearest same-class neighbours of ``i`` in the
  current embedding (:func:`knn_table`, refreshed by the trainer each epoch); negative =
  a random item of another class, or with ``same_class_negatives`` half of the
  negatives are same-class items that are not among the ``k`` neighbours (the
  "regime 2" of 004: it spreads classes and keeps intra-class structure visible).

Labels are int codes ``0..K-1`` (int64[N]). Cost: O(N) per epoch for the sampling;
:func:`knn_table` is an exact kNN search inside each class, O(sum_c n_c^2 D).
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError

KNN_K = 5


def check_labels(labels: np.ndarray, names: list[str] | None = None, min_per_class: int = 2,
                 why: str = "") -> None:
    """Raise CurateError (one line) unless there are >= 2 classes with >= ``min_per_class`` items."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise CurateError("no labelled images; add labels (folders, a manifest or a Label Studio "
                          "pull) before metric learning")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        name = names[classes[0]] if names else classes[0]
        raise CurateError(f"only one class ({name!r}) among the labelled images; metric learning "
                          "needs at least 2 classes")
    small = classes[counts < min_per_class]
    if len(small):
        shown = ", ".join(f"{names[c] if names else c!r} ({counts[classes == c][0]})" for c in small[:5])
        raise CurateError(f"{len(small)} class(es) have fewer than {min_per_class} images{why}: "
                          f"{shown}; add images or drop those labels")


class _Groups:
    """Items grouped by class: sorted order, class start/size, rank of each item in its class."""

    def __init__(self, labels: np.ndarray):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.order = np.argsort(self.labels, kind="stable")
        K = int(self.labels.max()) + 1
        self.size = np.bincount(self.labels, minlength=K)
        self.start = np.concatenate([[0], np.cumsum(self.size)[:-1]])
        self.rank = np.empty(len(self.labels), dtype=np.int64)
        self.rank[self.order] = np.arange(len(self.labels)) - self.start[self.labels[self.order]]

    def same_class(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random item of the anchor's class other than the anchor itself."""
        c = self.labels[anchors]
        r = (rng.random(len(anchors)) * (self.size[c] - 1)).astype(np.int64)
        r = r + (r >= self.rank[anchors])  # skip the anchor
        return self.order[self.start[c] + r]

    def other_class(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random item of any other class."""
        c = self.labels[anchors]
        n = len(self.labels)
        r = (rng.random(len(anchors)) * (n - self.size[c])).astype(np.int64)
        r = r + np.where(r >= self.start[c], self.size[c], 0)  # skip the own class block
        return self.order[r]


def class_pairs(labels: np.ndarray, rng: np.random.Generator | int = 0) -> np.ndarray:
    """``class`` regime: int64[2N, 3] rows ``(i, j, y)`` (one positive, one negative per anchor)."""
    rng = np.random.default_rng(rng)
    g = _Groups(labels)
    a = np.arange(len(g.labels))
    pos, neg = g.same_class(a, rng), g.other_class(a, rng)
    return _stack(a, pos, neg)


def knn_table(X: np.ndarray, labels: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """int64[N, k]: the ``k`` nearest same-class neighbours (euclidean, self excluded) of each item.

    Every class needs more than ``k`` items (CurateError otherwise).
    """
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels, dtype=np.int64)
    X = np.asarray(X, dtype=np.float32)
    out = np.empty((len(labels), k), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) <= k:
            raise CurateError(f"--pairs knn needs more than {k} images per class; class {c} has "
                              f"{len(members)}")
        nn = NearestNeighbors(n_neighbors=k + 1).fit(X[members])
        _, idx = nn.kneighbors(X[members])
        own = np.arange(len(members))[:, None]
        # drop the item itself (usually column 0; with exact duplicates it may be elsewhere)
        keep = idx != own
        first_k = np.cumsum(keep, axis=1) <= k
        idx = idx[keep & first_k].reshape(len(members), k)
        out[members] = members[idx]
    return out


def knn_pairs(table: np.ndarray, labels: np.ndarray, rng: np.random.Generator | int = 0,
              same_class_negatives: bool = False, tries: int = 8) -> np.ndarray:
    """``knn`` regime from a :func:`knn_table`: int64[2N, 3] rows ``(i, j, y)``.

    Positives: a random one of the anchor's ``k`` neighbours. Negatives: another class;
    with ``same_class_negatives`` every second anchor instead gets a same-class item
    that is not among its neighbours (if its class has one; else another class).
    """
    rng = np.random.default_rng(rng)
    g = _Groups(labels)
    n, k = table.shape
    a = np.arange(n)
    pos = table[a, rng.integers(0, k, n)]
    neg = g.other_class(a, rng)
    if same_class_negatives:
        want = (a % 2 == 1) & (g.size[g.labels] > k + 1)  # a non-neighbour exists
        cand = np.flatnonzero(want)
        for _ in range(tries):
            if not len(cand):
                break
            j = g.same_class(cand, rng)
            ok = ~(table[cand] == j[:, None]).any(1)
            neg[cand[ok]] = j[ok]
            cand = cand[~ok]
        # anchors still left keep their other-class negative
    return _stack(a, pos, neg)


def _stack(a: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    rows = np.empty((2 * len(a), 3), dtype=np.int64)
    rows[0::2, 0], rows[0::2, 1], rows[0::2, 2] = a, pos, 1
    rows[1::2, 0], rows[1::2, 1], rows[1::2, 2] = a, neg, 0
    return rows
