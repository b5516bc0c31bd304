"""Distance to the nearest class centroid (thesis 000): higher = more novel.

Centroids are the per-class means of the (by default L2-normalised) reference rows,
one centroid without labels. ``metric``: "l1", "l2", "minkowski" (order ``p``) or
"cosine" (1 - cosine similarity; separated in/out best in 000). Running sums make
``partial_fit`` exact. Cost: score O(n K d) for K classes.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from curate.errors import CurateError
from curate.novelty._base import EPS, NoveltyScorer
from curate.novelty._classes import ClassAccumulatorMixin

METRICS = ("l1", "l2", "minkowski", "cosine")
SCORE_BLOCK = 32_768


class CentroidScorer(ClassAccumulatorMixin, NoveltyScorer):
    """Distance to the nearest class centroid; higher = more novel.

    Parameters: ``metric`` l1 | l2 | minkowski | cosine; ``p`` (minkowski order,
    > 0); ``normalize`` (L2-normalise rows first); ``sample_size``, ``random_state``.
    Learned: ``classes_``, ``centroids_`` (K, d), ``count_``, ``sum_``.
    ``explain`` reports the nearest centroid's class and distance.
    """

    name = "centroid"
    _state_attrs = ("classes_", "count_", "sum_", "centroids_")

    def __init__(self, metric: str = "cosine", p: float = 3.0, normalize: bool = True,
                 sample_size: int = 10_000, random_state: int | None = 0):
        self.metric = metric
        self.p = p
        self.normalize = normalize
        self.sample_size = sample_size
        self.random_state = random_state

    def _class_shapes(self, d):
        return {"count_": ((), np.int64), "sum_": ((d,), np.float64)}

    def _reset_acc(self):
        if self.metric not in METRICS:
            raise CurateError(f"unknown metric {self.metric!r}; choose one of: {', '.join(METRICS)}")
        if self.metric == "minkowski" and not float(self.p) > 0:
            raise CurateError(f"minkowski p must be > 0, got {self.p}")
        self.classes_ = None

    def _accumulate(self, Xp, y):
        self._add_class_sums(Xp, y, "sum_")

    def _finalize_model(self):
        self._check_class_sizes(self.count_)
        self.centroids_ = self.sum_ / self.count_[:, None]

    def _distances(self, Xp):
        C = self.centroids_
        out = np.empty((len(Xp), len(C)))
        for s in range(0, len(Xp), SCORE_BLOCK):
            x = Xp[s : s + SCORE_BLOCK]
            if self.metric == "l2":
                d2 = (np.einsum("ij,ij->i", x, x)[:, None] - 2.0 * x @ C.T
                      + np.einsum("ij,ij->i", C, C)[None, :])
                out[s : s + len(x)] = np.sqrt(np.maximum(d2, 0.0))
            elif self.metric == "cosine":
                xn = x / np.maximum(np.linalg.norm(x, axis=1), EPS)[:, None]
                cn = C / np.maximum(np.linalg.norm(C, axis=1), EPS)[:, None]
                out[s : s + len(x)] = 1.0 - xn @ cn.T
            elif self.metric == "l1":
                out[s : s + len(x)] = cdist(x, C, "cityblock")
            else:
                out[s : s + len(x)] = cdist(x, C, "minkowski", p=float(self.p))
        return out

    def _score(self, Xp):
        return self._distances(Xp).min(axis=1)

    def _nearest_class(self, Xp):
        return self._nearest_of(self._distances(Xp))
