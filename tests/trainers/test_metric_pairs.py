"""Pair regimes return what they promise; bad label sets give one-line errors."""

import numpy as np
import pytest

from curate.errors import CurateError
from curate.trainers.pairs import check_labels, class_pairs, knn_pairs, knn_table


def _labels():
    return np.repeat(np.arange(3), [7, 9, 8])


def test_class_pairs_positive_same_class_negative_other():
    y = _labels()
    rows = class_pairs(y, rng=1)
    assert rows.shape == (2 * len(y), 3)
    i, j, s = rows.T
    assert (i[0::2] == np.arange(len(y))).all() and (s[0::2] == 1).all() and (s[1::2] == 0).all()
    assert (y[i[s == 1]] == y[j[s == 1]]).all() and (i[s == 1] != j[s == 1]).all()
    assert (y[i[s == 0]] != y[j[s == 0]]).all()
    # over many epochs every same-class partner shows up
    seen = {tuple(r) for e in range(60) for r in class_pairs(y, rng=e)[0::2, :2]}
    assert {(0, k) for k in range(1, 7)} <= seen


def test_knn_table_is_nearest_same_class_neighbours():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 10)
    X = rng.normal(size=(20, 4)).astype(np.float32)
    tab = knn_table(X, y, k=5)
    assert tab.shape == (20, 5)
    for a in range(20):
        same = np.flatnonzero((y == y[a]) & (np.arange(20) != a))
        d = np.linalg.norm(X[same] - X[a], axis=1)
        assert set(tab[a]) == set(same[np.argsort(d)[:5]])


def test_knn_pairs_positives_in_table_negatives_other_or_non_neighbour():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 12)
    X = rng.normal(size=(36, 3))
    tab = knn_table(X, y)
    rows = knn_pairs(tab, y, rng=3)
    i, j, s = rows.T
    assert all(j[t] in tab[i[t]] for t in np.flatnonzero(s == 1))
    assert (y[i[s == 0]] != y[j[s == 0]]).all()
    rows = knn_pairs(tab, y, rng=3, same_class_negatives=True)
    i, j, s = rows.T
    neg = np.flatnonzero(s == 0)
    same = neg[y[i[neg]] == y[j[neg]]]
    assert len(same) > len(neg) // 4  # about half of the negatives are same-class
    assert all(j[t] not in tab[i[t]] and j[t] != i[t] for t in same)


def test_knn_needs_more_than_k_per_class():
    y = np.repeat([0, 1], [6, 5])
    with pytest.raises(CurateError, match="more than 5 images per class"):
        knn_table(np.zeros((11, 2)), y)


@pytest.mark.parametrize("labels,match", [
    (np.array([], dtype=np.int64), "no labelled images"),
    (np.zeros(5, dtype=np.int64), "only one class"),
    (np.array([0, 0, 1]), "fewer than 2 images"),
])
def test_check_labels_errors(labels, match):
    with pytest.raises(CurateError, match=match) as e:
        check_labels(labels, names=["cat", "dog"])
    assert "\n" not in str(e.value)
