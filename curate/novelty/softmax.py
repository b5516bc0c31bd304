"""Softmax-confidence baseline (Hendrycks & Gimpel 2017): higher = more novel.

A multinomial logistic regression is fitted on the labelled reference rows (by default
L2-normalised); the score of a row is ``1 - max_k p_k``, one minus the probability of
its most likely class (:func:`softmax_novelty`). A weak detector by design (a linear
model is confident far from the data too, Hein et al. 2019): it is the baseline the
distance scorers are compared against. Needs labels of >= 2 classes.

The reference rows are kept (``ref_X_``, ``ref_y_``), so ``fit(X)`` equals
``partial_fit`` over any chunking and ``partial_fit`` continues after ``from_state``;
the model is refitted on every row on the next score. Cost: fit O(iter n d K),
score O(n d K), memory n d float32.
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError
from curate.novelty._base import NoveltyScorer


def softmax_novelty(probs: np.ndarray) -> np.ndarray:
    """Novelty from class probabilities ``probs`` (n, K): ``1 - max_k p_k`` float64[n]
    (higher = more novel)."""
    return 1.0 - np.asarray(probs, np.float64).max(axis=1)


class SoftmaxScorer(NoveltyScorer):
    """One minus the top softmax probability of a logistic regression; higher = more novel.

    Parameters: ``C`` (inverse L2 regularisation strength, > 0), ``max_iter``,
    ``normalize`` (L2-normalise rows first), ``sample_size``, ``random_state``.
    Learned: ``classes_``, ``coef_`` (K', d), ``intercept_`` (K',) (sklearn's layout:
    one row for two classes), the kept reference ``ref_X_``, ``ref_y_``.
    ``explain`` reports the predicted class and its probability.
    """

    name = "softmax"
    _state_attrs = ("ref_X_", "ref_y_", "classes_", "coef_", "intercept_")

    def __init__(self, C: float = 1.0, max_iter: int = 1000, normalize: bool = True,
                 sample_size: int = 10_000, random_state: int | None = 0):
        self.C = C
        self.max_iter = max_iter
        self.normalize = normalize
        self.sample_size = sample_size
        self.random_state = random_state

    def _reset_acc(self):
        if not float(self.C) > 0:
            raise CurateError(f"C must be > 0, got {self.C}")
        self.ref_X_ = None
        self.ref_y_ = None

    def _accumulate(self, Xp, y):
        if y is None:
            raise CurateError("softmax needs class labels of the reference rows (>= 2 classes)")
        Xp = Xp.astype(np.float32)
        self.ref_X_ = Xp if self.ref_X_ is None else np.concatenate([self.ref_X_, Xp])
        self.ref_y_ = y if self.ref_y_ is None else np.concatenate([self.ref_y_, y])

    def _finalize_model(self):
        from sklearn.linear_model import LogisticRegression

        classes = np.unique(self.ref_y_)
        if len(classes) < 2:
            raise CurateError(f"softmax needs >= 2 classes, got {len(classes)}")
        lr = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter))
        lr.fit(np.asarray(self.ref_X_, np.float64), self.ref_y_)
        self.classes_, self.coef_, self.intercept_ = lr.classes_, lr.coef_, lr.intercept_

    def _proba(self, Xp):
        z = np.asarray(Xp, np.float64) @ self.coef_.T + self.intercept_
        if z.shape[1] == 1:  # binary: sklearn keeps one logit for classes_[1]
            z = np.hstack([np.zeros_like(z), z])
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def _score(self, Xp):
        return softmax_novelty(self._proba(Xp))

    def _nearest_class(self, Xp):
        p = self._proba(Xp)
        k = p.argmax(axis=1)
        return self.classes_[k], p[np.arange(len(k)), k]
