"""Sensitivity score, 10-NN accuracy and the tuning rule."""

import numpy as np
import pytest

from curate.errors import CurateError
from curate.novelty.sensitivity import knn_accuracy, select_row, sensitivity, split_sens, tune


def test_split_and_sensitivity_near_half_for_iid(make_blobs):
    sens, ref = split_sens(100, 20, 0)
    assert len(sens) == 20 and len(np.intersect1d(sens, ref)) == 0 and len(ref) == 80
    X, y = make_blobs(n=600)
    Xte = make_blobs(n=200, seed=9)[0]
    s = sensitivity("knn", X, Xte, n_sens=200)
    assert 0.4 < s < 0.6
    # a test set shifted away from the training data is easy to tell apart
    assert sensitivity("knn", X, Xte[:, ::-1], n_sens=200) > 0.9
    with pytest.raises(CurateError, match="n_sens"):
        split_sens(10, 10)


def test_knn_accuracy(make_blobs):
    X, y = make_blobs(n=300)
    Xte, yte = make_blobs(n=100, seed=8)
    assert knn_accuracy(X, y, Xte, yte) > 0.95
    assert knn_accuracy(X, y, Xte, (yte + 1) % 3) < 0.1


def test_select_rule():
    rows = [
        {"candidate": 0, "sensitivity": 0.45, "knn_accuracy": 0.9},
        {"candidate": 1, "sensitivity": 0.58, "knn_accuracy": 0.7},
        {"candidate": 2, "sensitivity": 0.52, "knn_accuracy": 0.6},
        {"candidate": 3, "sensitivity": 0.525, "knn_accuracy": 0.8},
        {"candidate": 4, "sensitivity": None, "error": "boom"},
    ]
    assert select_row(rows, labelled=False)["candidate"] == 2  # closest above 0.5
    assert select_row(rows, labelled=True)["candidate"] == 3  # tie (0.02 vs 0.025) -> 10-NN acc
    below = [{"candidate": 0, "sensitivity": 0.3}, {"candidate": 1, "sensitivity": 0.45}]
    assert select_row(below, labelled=False)["candidate"] == 1
    with pytest.raises(CurateError, match="boom"):
        select_row([rows[4]], labelled=False)


def test_tune_table(make_blobs):
    X, y = make_blobs(n=400)
    Xte, yte = make_blobs(n=100, seed=10)
    cands = [{"scorer": "knn", "k": 5}, {"scorer": "cosine-weighted", "tau": 0.04},
             {"scorer": "knn", "k": 1000}]
    best, table = tune(X, Xte, cands, y_train=y, y_test=yte, n_sens=100)
    assert len(table) == 3 and sum(r["selected"] for r in table) == 1
    assert table[2]["error"] and table[2]["sensitivity"] is None
    assert best["scorer"] in ("knn", "cosine-weighted") and "embedding" not in best
    assert all(r["knn_accuracy"] > 0.9 for r in table)
    best, table = tune({"a": X, "b": X[:, ::-1]}, {"a": Xte, "b": Xte[:, ::-1]},
                       [{"scorer": "knn", "k": 5, "embedding": "b"}], n_sens=100)
    assert best == {"scorer": "knn", "k": 5, "embedding": "b"}
    with pytest.raises(CurateError, match="unknown embedding"):
        tune({"a": X}, {"a": Xte}, [{"scorer": "knn", "embedding": "z"}])
