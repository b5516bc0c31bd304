"""Contract tests run on every registered scorer (SCORERS.names())."""

import io

import numpy as np
import pytest

from curate.errors import CurateError
from curate.novelty import SCORERS, make_scorer, scorer_from_state

NAMES = SCORERS.names()
SMALL = {"knn": {"k": 5}}


def new(name, **kw):
    return make_scorer(name, **{**SMALL.get(name, {}), **kw})


def test_registry_lists_all():
    assert set(NAMES) == {"mahalanobis", "mahalanobis-class", "knn", "max-cosine",
                          "cosine-weighted", "centroid", "vmf", "softmax"}
    with pytest.raises(CurateError, match="choose one of"):
        make_scorer("nope")
    with pytest.raises(CurateError, match="bad parameters"):
        make_scorer("knn", kk=3)


@pytest.mark.parametrize("name", NAMES)
def test_far_point_scores_higher(name, make_blobs):
    X, y = make_blobs()
    s = new(name).fit(X, y)
    near = X[:5] + 0.01
    far = np.tile(-np.ones(X.shape[1]), (5, 1)) + np.eye(5, X.shape[1])
    sn, sf = s.score_samples(near), s.score_samples(far)
    assert sn.dtype == np.float64 and sn.shape == (5,)
    assert sf.min() > sn.max()
    assert "higher = more novel" in " ".join(type(s).__doc__.split())


@pytest.mark.parametrize("name", NAMES)
def test_partial_fit_equals_fit(name, make_blobs):
    X, y = make_blobs(n=320)
    full = new(name, sample_size=50).fit(X, y)
    part = new(name, sample_size=50)
    for a, b in [(0, 40), (40, 41), (41, 200), (200, 320)]:
        part.partial_fit(X[a:b], y[a:b])
    Q = make_blobs(n=40, seed=1)[0]
    np.testing.assert_allclose(part.score_samples(Q), full.score_samples(Q), rtol=1e-9, atol=1e-10)
    np.testing.assert_array_equal(part.sample_index_, full.sample_index_)
    np.testing.assert_allclose(part.reference_scores_, full.reference_scores_, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_npz(name, make_blobs):
    X, y = make_blobs()
    s = new(name, sample_size=64).fit(X[:250], y[:250])
    buf = io.BytesIO()
    np.savez(buf, **s.get_state())
    buf.seek(0)
    state = dict(np.load(buf, allow_pickle=False))
    s2 = scorer_from_state(state)
    assert type(s2) is type(s) and s2.get_params() == s.get_params()
    Q = make_blobs(n=30, seed=2)[0]
    np.testing.assert_array_equal(s2.score_samples(Q), s.score_samples(Q))
    np.testing.assert_array_equal(s2.explain(Q)["percentile"], s.explain(Q)["percentile"])
    # partial_fit continues after a reload exactly as without one
    s.partial_fit(X[250:], y[250:])
    s2.partial_fit(X[250:], y[250:])
    np.testing.assert_allclose(s2.score_samples(Q), s.score_samples(Q), rtol=1e-12)
    np.testing.assert_array_equal(s2.sample_index_, s.sample_index_)  # reservoir resumed


@pytest.mark.parametrize("name", NAMES)
def test_explain(name, make_blobs):
    X, y = make_blobs()
    s = new(name).fit(X, y)
    e = s.explain(X[:4], k=3)
    np.testing.assert_allclose(e["score"], s.score_samples(X[:4]))
    assert e["neighbor_index"].shape == (4, 3) and e["neighbor_similarity"].shape == (4, 3)
    assert np.all(np.diff(e["neighbor_similarity"], axis=1) <= 1e-6)
    assert np.all((e["percentile"] >= 0) & (e["percentile"] <= 100))
    if e["neighbors_from"] == "reference":  # a reference row is its own nearest neighbour
        np.testing.assert_array_equal(e["neighbor_index"][:, 0], np.arange(4))
    if e["nearest_class"] is not None:
        assert len(e["nearest_class"]) == 4 and set(e["nearest_class"]) <= set(y)
    with pytest.raises(CurateError):
        s.explain(X[:2], k=0)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs(name, make_blobs):
    X, y = make_blobs(n=100)
    s = new(name)
    with pytest.raises(CurateError, match="not fitted"):
        s.score_samples(X)
    with pytest.raises(CurateError, match="empty"):
        new(name).fit(X[:0])
    with pytest.raises(CurateError, match="2-D"):
        new(name).fit(X[0])
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(CurateError, match="row 7"):
        new(name).fit(bad, y)
    with pytest.raises(CurateError, match="labels but X has"):
        new(name).fit(X, y[:-1])
    with pytest.raises(CurateError, match="numeric"):
        new(name).fit(np.array([["a", "b"]]))
    s.fit(X, y)
    with pytest.raises(CurateError, match="features but the scorer was fitted on 8"):
        s.score_samples(X[:, :5])
    bad = X[:3].copy()
    bad[1, 0] = np.inf
    with pytest.raises(CurateError, match="NaN or inf"):
        s.score_samples(bad)
    with pytest.raises(CurateError, match="every partial_fit call or in none"):
        s.partial_fit(X[:5])


@pytest.mark.parametrize("name", ["mahalanobis-class", "vmf"])
def test_class_with_one_sample_refused(name, make_blobs):
    X, y = make_blobs(n=100)
    y = y.copy()
    y[0] = 99
    with pytest.raises(CurateError, match="class 99 has 1 sample"):
        new(name).fit(X, y)


def test_string_labels_and_new_classes_in_later_chunks(make_blobs):
    X, y = make_blobs(n=200)
    names = np.array(["cat", "dog", "emu"])[y]
    full = make_scorer("mahalanobis-class").fit(X, names)
    order = np.argsort(y, kind="stable")  # classes arrive one after another
    part = make_scorer("mahalanobis-class")
    for chunk in np.array_split(order, 3):
        part.partial_fit(X[chunk], names[chunk])
    Q = X[:10]
    np.testing.assert_allclose(part.score_samples(Q), full.score_samples(Q), rtol=1e-9)
    assert list(full.classes_) == ["cat", "dog", "emu"]
    assert set(full.explain(Q)["nearest_class"]) <= {"cat", "dog", "emu"}


@pytest.mark.parametrize("name", NAMES)
def test_sample_size_zero_and_numpy_params(name, make_blobs):
    X, y = make_blobs(n=100)
    s = new(name, sample_size=0).fit(X, y)
    assert s.reference_scores_.size == 0 and np.isnan(s.explain(X[:2])["percentile"]).all()
    s.get_state()
    with pytest.raises(CurateError, match="sample_size"):
        new(name, sample_size=-1).fit(X, y)
    if name == "mahalanobis":
        st = make_scorer(name, shrinkage=np.float64(0.2)).fit(X).get_state()
        assert scorer_from_state(st).shrinkage == 0.2
