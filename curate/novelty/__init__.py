"""Novelty / OOD scoring core: arrays in, arrays out (no files, DB or network).

Scorers (registry ``SCORERS``, one contract: ``fit(X_ref, y=None)`` -> self,
``score_samples(X)`` -> float64[n] with **higher = more novel**, ``partial_fit``,
``explain``, ``get_state``/``from_state``):

- ``mahalanobis``, ``mahalanobis-class`` (shrinkage covariance, Cholesky solves)
- ``knn``, ``max-cosine``, ``cosine-weighted`` (cosine similarity, faiss)
- ``centroid`` (l1 / l2 / minkowski / cosine to the nearest class centroid)
- ``vmf`` (per-class von Mises-Fisher log-likelihood)
- ``softmax`` (1 - max softmax probability of a logistic regression: the baseline)

Class-conditional scorers (``CLASS_CONDITIONAL``) are fitted on labelled rows.

Also: ``calibration.ConformalCalibrator`` (split-conformal threshold and p-values),
``shift`` (calibration-aware beta-binomial flag test, MMD permutation test,
Benjamini-Hochberg, ``check_batch``),
``sensitivity`` (choosing scorer settings from in-distribution data only).

Their index-facing edges sit beside them: ``stored`` (fit/store/load scorers),
``scoring`` (score images, flagged ids), ``batch_check`` (``curate check-batch``),
``tuning`` (``curate tune-scorer``).
"""

from __future__ import annotations

from typing import Any

from curate.errors import CurateError
from curate.novelty._base import NoveltyScorer, check_labels, l2_normalize
from curate.novelty.centroid import CentroidScorer
from curate.novelty.mahalanobis import ClassMahalanobisScorer, MahalanobisScorer
from curate.novelty.neighbors import CosineWeightedScorer, KNNScorer, MaxCosineScorer
from curate.novelty.softmax import SoftmaxScorer
from curate.novelty.vmf import VMFScorer
from curate.registry import Registry
from curate.validation import check_matrix

SCORERS: Registry[type[NoveltyScorer]] = Registry("scorer")
for _cls in (MahalanobisScorer, ClassMahalanobisScorer, KNNScorer, MaxCosineScorer,
             CosineWeightedScorer, CentroidScorer, VMFScorer, SoftmaxScorer):
    SCORERS.register(_cls.name)(_cls)

#: scorers fitted per class: they need labels of the reference rows
CLASS_CONDITIONAL = ("mahalanobis-class", "centroid", "vmf", "softmax")


def make_scorer(name: str, **params: Any) -> NoveltyScorer:
    """A new scorer by registry name (CurateError listing choices if unknown)."""
    cls = SCORERS.get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise CurateError(f"bad parameters for scorer {name!r}: {exc}") from None


def scorer_from_state(state: dict[str, Any]) -> NoveltyScorer:
    """Rebuild a fitted scorer from ``get_state()`` output or a loaded .npz."""
    if "scorer" not in state or "params" not in state:
        raise CurateError("not a scorer state: missing 'scorer'/'params'")
    return NoveltyScorer.from_state(state)


__all__ = [
    "SCORERS", "CLASS_CONDITIONAL", "NoveltyScorer", "make_scorer", "scorer_from_state", "check_matrix",
    "check_labels", "l2_normalize", "MahalanobisScorer", "ClassMahalanobisScorer",
    "KNNScorer", "MaxCosineScorer", "CosineWeightedScorer", "CentroidScorer", "VMFScorer",
    "SoftmaxScorer",
]
