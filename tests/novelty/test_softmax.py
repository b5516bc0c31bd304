"""The softmax-confidence baseline scorer (curate.novelty.softmax)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from curate.errors import CurateError
from curate.novelty import CLASS_CONDITIONAL, make_scorer
from curate.novelty._base import l2_normalize
from curate.novelty.softmax import softmax_novelty


def test_score_is_one_minus_max_probability(make_blobs):
    X, y = make_blobs(n=200)
    s = make_scorer("softmax", C=0.5).fit(X, y)
    lr = LogisticRegression(C=0.5, max_iter=1000).fit(l2_normalize(X, np.float64), y)
    Q = make_blobs(n=20, seed=3)[0]
    want = 1.0 - lr.predict_proba(l2_normalize(Q, np.float64)).max(axis=1)
    np.testing.assert_allclose(s.score_samples(Q), want, rtol=1e-6, atol=1e-9)
    assert "softmax" in CLASS_CONDITIONAL
    e = s.explain(Q[:3])
    assert set(e["nearest_class"]) <= set(y) and np.all(e["class_score"] >= 1 - e["score"] - 1e-12)


def test_two_classes_and_helper(make_blobs):
    X, y = make_blobs(n=120, k=2)
    s = make_scorer("softmax").fit(X, y)
    sc = s.score_samples(X)
    assert sc.shape == (120,) and np.all((sc >= 0) & (sc <= 0.5 + 1e-12))
    np.testing.assert_allclose(softmax_novelty(np.array([[0.7, 0.3], [0.5, 0.5]])), [0.3, 0.5])


def test_needs_two_classes(make_blobs):
    X, y = make_blobs(n=50)
    with pytest.raises(CurateError, match="needs class labels"):
        make_scorer("softmax").fit(X)
    with pytest.raises(CurateError, match=">= 2 classes"):
        make_scorer("softmax").fit(X, np.zeros(50, int))
    with pytest.raises(CurateError, match="C must be > 0"):
        make_scorer("softmax", C=0).fit(X, y)
