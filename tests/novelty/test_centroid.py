"""Centroid distance vs numpy brute force for every metric."""

import numpy as np
import pytest

from curate.errors import CurateError
from curate.novelty import make_scorer


@pytest.mark.parametrize("metric", ["l1", "l2", "minkowski", "cosine"])
@pytest.mark.parametrize("normalize", [True, False])
def test_centroid_bruteforce(metric, normalize, make_blobs):
    X, y = make_blobs(n=150)
    Q = make_blobs(n=20, seed=6)[0] * 2.0
    sc = make_scorer("centroid", metric=metric, p=2.5, normalize=normalize).fit(X, y)
    prep = (lambda A: A / np.linalg.norm(A, axis=1, keepdims=True)) if normalize else (lambda A: A)
    Xn, Qn = prep(X), prep(Q)
    C = np.stack([Xn[y == c].mean(0) for c in range(3)])
    diff = Qn[:, None, :] - C[None]
    if metric == "l1":
        D = np.abs(diff).sum(-1)
    elif metric == "l2":
        D = np.sqrt((diff**2).sum(-1))
    elif metric == "minkowski":
        D = (np.abs(diff) ** 2.5).sum(-1) ** (1 / 2.5)
    else:
        D = 1 - (Qn @ C.T) / np.linalg.norm(Qn, axis=1)[:, None] / np.linalg.norm(C, axis=1)[None]
    np.testing.assert_allclose(sc.score_samples(Q), D.min(1), rtol=1e-9, atol=1e-12)
    e = sc.explain(Q)
    np.testing.assert_array_equal(e["nearest_class"], D.argmin(1))


def test_centroid_without_labels_is_one_centroid(make_blobs):
    X, _ = make_blobs(n=100)
    sc = make_scorer("centroid", metric="l2", normalize=False).fit(X)
    np.testing.assert_allclose(sc.score_samples(X[:3]), np.linalg.norm(X[:3] - X.mean(0), axis=1))
    assert sc.explain(X[:3])["nearest_class"] is None


def test_centroid_errors(make_blobs):
    X, y = make_blobs(n=50)
    with pytest.raises(CurateError, match="unknown metric"):
        make_scorer("centroid", metric="hamming").fit(X, y)
    with pytest.raises(CurateError, match="p must be > 0"):
        make_scorer("centroid", metric="minkowski", p=0).fit(X, y)
