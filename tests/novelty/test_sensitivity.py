"""The sensitivity score (thesis 003 §3.4) on cases with a known answer, DeLong intervals,
the maximise rule, and the one-kind scope."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from curate.errors import CurateError
from curate.novelty.sensitivity import (check_one_kind, delong, knn_accuracy, select_row,
                                        sensitivity, split_sens, tune)


def memorised(n_train=1200, n_test=300, d=16, seed=0, jitter=1e-3):
    """An encoder that memorised its training images: every training embedding has a
    near-duplicate among the other training embeddings (as if each image had been pulled
    onto a training neighbour), while never-seen test images land anywhere in the same
    distribution. Returns (X_train, X_test)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n_train // 2, d))
    X_train = np.concatenate([base, base + jitter * rng.standard_normal(base.shape)])
    return X_train, rng.standard_normal((n_test, d))


def never_saw(n_train=1200, n_test=300, d=16, seed=0):
    """An encoder that never saw the training images: train and test rows are i.i.d."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_train, d)), rng.standard_normal((n_test, d))


def test_split_sens():
    sens, ref = split_sens(100, 20, 0)
    assert len(sens) == 20 and len(ref) == 80 and len(np.intersect1d(sens, ref)) == 0
    assert np.array_equal(np.sort(np.r_[sens, ref]), np.arange(100))
    with pytest.raises(CurateError, match="n_sens"):
        split_sens(10, 10)


@pytest.mark.parametrize("scorer", ["knn", "cosine-weighted"])
def test_memorised_scores_clearly_above_half_never_seen_about_half(scorer):
    from curate.novelty import make_scorer

    sc = make_scorer(scorer, **({"k": 1} if scorer == "knn" else {"tau": 0.01}))
    # ~83% of the sens rows keep their near-duplicate in the reference: they look far
    # less novel than test rows, so sensitivity ~ 0.83 + 0.17 / 2
    assert sensitivity(sc, *memorised(), n_sens=200) > 0.85
    vals = [sensitivity(sc, *never_saw(seed=s), n_sens=300, random_state=s) for s in range(4)]
    assert all(abs(v - 0.5) < 0.07 for v in vals), vals
    assert abs(np.mean(vals) - 0.5) < 0.04, vals


def test_delong_matches_sklearn_and_its_variance_matches_simulation():
    rng = np.random.default_rng(0)
    neg, pos = rng.standard_normal(80), rng.standard_normal(60) + 0.7
    neg[:5] = pos[:5]  # ties count 1/2
    auc, cov = delong(neg, pos)
    assert auc[0] == pytest.approx(roc_auc_score(np.r_[np.zeros(80), np.ones(60)], np.r_[neg, pos]))
    aucs, variances = [], []
    for _ in range(400):
        a, c = delong(rng.standard_normal(80), rng.standard_normal(60) + 0.7)
        aucs.append(a[0])
        variances.append(c[0, 0])
    assert np.var(aucs) == pytest.approx(np.mean(variances), rel=0.25)
    # two scorers on the same rows: the covariance is symmetric and positive for a
    # monotone copy (identical ranks -> identical AUROCs, difference variance 0)
    s = rng.standard_normal((1, 140))
    auc2, cov2 = delong(np.r_[s[:, :80], 3 * s[:, :80]], np.r_[s[:, 80:], 3 * s[:, 80:]])
    assert auc2[0] == auc2[1] and cov2[0, 0] + cov2[1, 1] - 2 * cov2[0, 1] == pytest.approx(0)
    with pytest.raises(CurateError, match="AUROC needs"):
        delong([1.0], [0.0, 2.0])


def test_knn_accuracy(make_blobs):
    X, y = make_blobs(n=300)
    Xte, yte = make_blobs(n=100, seed=8)
    assert knn_accuracy(X, y, Xte, yte) > 0.95
    assert knn_accuracy(X, y, Xte, (yte + 1) % 3) < 0.1


def test_select_row_maximises():
    rows = [{"candidate": 0, "sensitivity": 0.52}, {"candidate": 1, "sensitivity": 0.71},
            {"candidate": 2, "sensitivity": 0.49}, {"candidate": 3, "sensitivity": 0.71},
            {"candidate": 4, "sensitivity": None, "error": "boom"}]
    assert select_row(rows)["candidate"] == 1  # the maximum, the earlier one on exact ties
    assert select_row(rows[:1] + rows[2:3])["candidate"] == 0  # not "closest to 0.5"
    with pytest.raises(CurateError, match="boom"):
        select_row([rows[4]])


def test_tune_picks_the_maximum_with_intervals():
    Xtr, Xte = memorised()
    cands = [{"kind": "knn", "k": 200}, {"kind": "knn", "k": 1}, {"kind": "knn", "k": 50},
             {"kind": "knn", "k": 100_000}]
    best, table, dec = tune(Xtr, Xte, cands, n_sens=200)
    by = {r["candidate"]: r for r in table}
    assert best == {"kind": "knn", "k": 1} and by[1]["selected"] and dec["best"] == 1
    ok = [r for r in table if r["sensitivity"] is not None]
    assert by[3]["error"] and by[3]["sensitivity"] is None and len(ok) == 3
    assert by[1]["sensitivity"] == max(r["sensitivity"] for r in ok) > 0.85
    assert all(r["ci"][0] < r["sensitivity"] < r["ci"][1] for r in ok)
    # k=1 sees the near-duplicates, k=200 averages them away: a decisive choice
    assert dec["decisive"] and dec["above_chance"] and not dec["tied"]
    assert by[0]["diff_ci"][0] > 0 and by[0]["diff_to_best"] > 0.2
    assert dec["n_sens"] == 200 and dec["n_test"] == 300


def test_tune_says_when_the_data_cannot_choose():
    Xtr, Xte = never_saw(n_train=600, n_test=150)
    cands = [{"kind": "cosine-weighted", "tau": t} for t in (0.02, 0.04, 0.08)]
    _, table, dec = tune(Xtr, Xte, cands, n_sens=150)
    assert not dec["above_chance"]  # the best is not significantly above 0.5
    assert not dec["decisive"] and dec["tied"]  # and the others are within noise of it
    assert all(r["tied_with_best"] for r in table if not r["selected"])
    assert all(r["diff_ci"][0] <= 0 <= r["diff_ci"][1] for r in table if not r["selected"])


def test_tune_across_embeddings_picks_the_memorising_one(make_blobs):
    Xm, Xm_te = memorised(n_train=800, n_test=200)
    Xn, Xn_te = never_saw(n_train=800, n_test=200)
    y = np.arange(800) % 3
    cands = [{"kind": "knn", "k": 1, "embedding": e} for e in ("never", "mem")]
    best, table, dec = tune({"never": Xn, "mem": Xm}, {"never": Xn_te, "mem": Xm_te}, cands,
                            y_train=y, y_test=np.arange(200) % 3, n_sens=200)
    assert best == {"kind": "knn", "k": 1, "embedding": "mem"} and dec["decisive"]
    assert all(r["knn_accuracy"] is not None for r in table)
    with pytest.raises(CurateError, match="unknown embedding"):
        tune({"a": Xn}, {"a": Xn_te}, [{"kind": "knn", "embedding": "z"}])
    with pytest.raises(CurateError, match="same training and test rows"):
        tune({"a": Xn, "b": Xn[:10]}, {"a": Xn_te, "b": Xn_te}, [{"kind": "knn"}])


def test_mixed_scorer_kinds_are_refused():
    assert check_one_kind([{"kind": "knn", "k": 1}, {"kind": "knn", "k": 5}]) == "knn"
    with pytest.raises(CurateError, match=r"mix scorer kinds \(knn, mahalanobis\).*tune each kind"):
        tune(*never_saw(), [{"kind": "knn"}, {"kind": "mahalanobis"}])
