"""Probes: the small classifiers trained on labelled embeddings.

A probe serves two roles with one definition: uncertainty strategies (``margin``,
``entropy``, ``badge``) ask it which pool rows it is unsure of, and ``curate simulate``
measures a strategy by the test accuracy of the probe trained on its picks.

``PROBES`` maps a name to ``make(random_state) -> sklearn estimator`` (fit/predict/
predict_proba). Every probe first divides all features by one number, the mean distance
of its training rows to their mean (:class:`MeanNormScaler`), so the regularisation
strength means the same on every embedding, also on one whose rows fill a narrow cone
(a briefly trained encoder's L2-normalised features: dividing by the rows' own norm, ~1,
left the class differences at ~0.05 and the probe at 0.14 accuracy with 20 labels on
Fashion-MNIST, 0.42 with the spread; benchmarks/encoders.py). Per-feature standardisation is *not* used: with 10-50 labelled
rows the per-feature standard deviations are noise, and on Fashion-MNIST PCA-64 (a
validation split of the training set) it cost 20 points of accuracy at 10 labels
(0.19 vs 0.40 with random picks; benchmarks/al_curves.py, README "Which strategy?").

- ``logistic``: multinomial logistic regression (L2, C=10, lbfgs). Cost: O(iters * n * d * C).
- ``knn``: k = min(5, n) nearest neighbours (euclidean), distance-weighted. Cost:
  O(n * m * d) to predict m rows.
- ``mlp``: one hidden layer of 256 ReLU units, Adam, early stop off. Cost:
  O(epochs * n * 256 * (d + C)).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline

from curate.errors import CurateError
from curate.registry import Registry

PROBES: Registry = Registry("probe")


class MeanNormScaler(BaseEstimator, TransformerMixin):
    """X / the training rows' mean distance to their mean (times ``sqrt(d)`` if
    ``per_feature``, so features are O(1) each); the mean row norm when the rows are all
    equal. One scalar, no shift: the geometry of the embedding is kept (the probes'
    intercepts absorb the offset)."""

    def __init__(self, per_feature: bool = False):
        self.per_feature = per_feature

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        norm = (float(np.linalg.norm(X - X.mean(axis=0), axis=1).mean())
                or float(np.linalg.norm(X, axis=1).mean()) or 1.0)
        self.scale_ = norm / (np.sqrt(X.shape[1]) if self.per_feature else 1.0)
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) / self.scale_


class _AdaptiveKNN(BaseEstimator, ClassifierMixin):
    """Distance-weighted kNN with ``k = min(k, n_train)`` (tiny labelled sets are normal)."""

    def __init__(self, k: int = 5):
        self.k = k

    def fit(self, X, y):
        self.model_ = KNeighborsClassifier(n_neighbors=min(self.k, len(X)), weights="distance")
        self.model_.fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


@PROBES.register("logistic")
def logistic(random_state=None):
    return make_pipeline(MeanNormScaler(), LogisticRegression(C=10.0, max_iter=1000,
                                                              random_state=random_state))


@PROBES.register("knn")
def knn(random_state=None):
    return make_pipeline(MeanNormScaler(), _AdaptiveKNN(k=5))


@PROBES.register("mlp")
def mlp(random_state=None):
    return make_pipeline(MeanNormScaler(per_feature=True), MLPClassifier(hidden_layer_sizes=(256,), max_iter=300,
                                                         random_state=random_state))


def fit_probe(name: str, X: np.ndarray, y: np.ndarray, random_state=None):
    """Fit probe ``name`` on ``X`` (n, d) with integer labels ``y`` (n,); needs >= 2 classes."""
    classes = np.unique(y)
    if len(classes) < 2:
        raise CurateError(f"the {name} probe needs labels of at least 2 classes, got {len(classes)}")
    return PROBES.get(name)(random_state).fit(X, y)


__all__ = ["PROBES", "fit_probe"]
