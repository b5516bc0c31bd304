"""Mahalanobis novelty scores with a shrinkage covariance.

- ``mahalanobis``: one Gaussian fitted to the reference ("K-means with K = 1",
  methods.md §3, thesis 003 ch. 5): ``s(x) = (f - mu)^T Sigma^{-1} (f - mu)``.
- ``mahalanobis-class``: class means with one shared (within-class) covariance, score =
  min over classes (Lee et al., NeurIPS 2018, "A simple unified framework for
  detecting out-of-distribution samples and adversarial attacks").

Higher score = more novel (squared Mahalanobis distance, >= 0). Features are L2-
normalised first (``normalize=True``). Sigma is the Ledoit-Wolf (default) or OAS shrunk
MLE covariance computed from running float64 sums (see ``_moments``), so
``partial_fit`` over chunks equals ``fit`` and 1M x 512 fits in O(d^2) memory per group.
Solves use the Cholesky factor (``scipy.linalg.solve_triangular``), never an inverse.
Cost: fit O(n d^2); score O(n d^2) (+ O(n d K) for K classes).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError, cholesky, solve_triangular

from curate.errors import CurateError
from curate.novelty._base import NoveltyScorer
from curate.novelty._classes import ClassAccumulatorMixin
from curate.novelty._moments import accumulate, moment_shapes, pooled_moments, shrunk_covariance

SCORE_BLOCK = 32_768
MAX_ACC_BYTES = 2 * 1024**3


class MahalanobisScorer(ClassAccumulatorMixin, NoveltyScorer):
    """Squared Mahalanobis distance to the reference mean; higher = more novel.

    Parameters: ``shrinkage`` "ledoit-wolf" | "oas" | float in [0, 1];
    ``normalize`` L2-normalise rows first; ``sample_size`` reference rows kept for
    score percentiles; ``random_state`` seeds that sample.
    Learned: ``location_`` (d,), ``covariance_`` (d, d), ``shrinkage_``, ``chol_``
    (lower Cholesky factor of ``covariance_``).
    """

    name = "mahalanobis"
    per_class = False
    _acc_names = tuple(moment_shapes(1))
    _state_attrs = ("classes_", *_acc_names, "location_", "covariance_", "shrinkage_", "chol_")

    def __init__(self, shrinkage="ledoit-wolf", normalize: bool = True,
                 sample_size: int = 10_000, random_state: int | None = 0):
        self.shrinkage = shrinkage
        self.normalize = normalize
        self.sample_size = sample_size
        self.random_state = random_state

    def _class_shapes(self, d):
        return moment_shapes(d)

    def _reset_acc(self):
        self.classes_ = None

    def _accumulate(self, Xp, y):
        gi, present = self._group_index(y if self.per_class else None, len(Xp))
        need = len(self.classes_) * self.n_features_in_**2 * 8
        if need > MAX_ACC_BYTES:
            raise CurateError(
                f"{self.name} with {len(self.classes_)} classes at d={self.n_features_in_} needs "
                f"{need / 2**30:.1f} GiB of running sums; reduce d (PCA) or the number of classes"
            )
        acc = {k: getattr(self, k) for k in self._acc_names}
        for g in present:
            accumulate(acc, int(g), Xp if len(present) == 1 else Xp[gi == g])

    def _finalize_model(self):
        self._check_class_sizes(self.count_)
        if self.n_samples_seen_ < 2:
            raise CurateError(f"{self.name} needs at least 2 reference rows, got {self.n_samples_seen_}")
        acc = {k: getattr(self, k) for k in self._acc_names}
        means, S, n, q4 = pooled_moments(acc)
        if np.trace(S) <= 0:
            raise CurateError(f"{self.name}: the reference rows have zero variance")
        cov, s = shrunk_covariance(S, n, q4, self.shrinkage)
        self.covariance_ = cov
        self.shrinkage_ = s
        self.location_ = means if self.per_class else means[0]
        self._factor()

    def _factor(self):
        try:
            self.chol_ = cholesky(self.covariance_, lower=True)
        except LinAlgError:
            raise CurateError(
                f"{self.name}: covariance is singular (shrinkage={self.shrinkage_:.3g}); "
                "use shrinkage='ledoit-wolf'/'oas' or a positive value"
            ) from None

    def _whiten(self, Xp):
        """L^{-1} (X - mu)^T for the single Gaussian: (d, n)."""
        return solve_triangular(self.chol_, (Xp - self.location_).T, lower=True, check_finite=False)

    def _score(self, Xp):
        out = np.empty(len(Xp))
        for s in range(0, len(Xp), SCORE_BLOCK):
            Z = self._whiten(Xp[s : s + SCORE_BLOCK])
            out[s : s + Z.shape[1]] = np.einsum("ij,ij->j", Z, Z)
        return out

    def _nearest_class(self, Xp):
        return None, None


class ClassMahalanobisScorer(MahalanobisScorer):
    """min over classes of the squared Mahalanobis distance to the class mean, with one
    shared within-class shrunk covariance (Lee et al. 2018); higher = more novel.

    Needs y (without y it is the single Gaussian) and >= 2 samples per class.
    ``location_`` is (K, d) class means in ``classes_`` order. ``explain`` reports the
    nearest class and its squared distance.
    """

    name = "mahalanobis-class"
    per_class = True
    min_class_size = 2

    def _finalize_model(self):
        super()._finalize_model()
        self._whitened_means = solve_triangular(self.chol_, self.location_.T, lower=True)

    def _after_load(self):
        self._whitened_means = solve_triangular(self.chol_, self.location_.T, lower=True)

    def _class_d2(self, Xp):
        """Squared distances (n, K) to every class mean."""
        V = self._whitened_means  # (d, K)
        vv = np.einsum("ij,ij->j", V, V)
        out = np.empty((len(Xp), V.shape[1]))
        for s in range(0, len(Xp), SCORE_BLOCK):
            W = solve_triangular(self.chol_, Xp[s : s + SCORE_BLOCK].T, lower=True, check_finite=False)
            ww = np.einsum("ij,ij->j", W, W)
            out[s : s + W.shape[1]] = np.maximum(ww[:, None] - 2.0 * (W.T @ V) + vv[None, :], 0.0)
        return out

    def _score(self, Xp):
        return self._class_d2(Xp).min(axis=1)

    def _nearest_class(self, Xp):
        return self._nearest_of(self._class_d2(Xp))
