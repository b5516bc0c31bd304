"""The comparison core (curate.comparison): AUROC and its bootstrap against sklearn, the
verdict on constructed embeddings that are clearly better, worse or the same as the
baseline, the AL rows, and one-line errors."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from curate.comparison import KNN, PROBE, accuracy_rows, auroc_rows, compare_arrays, weighted_auroc
from curate.verdict import BETTER, SAME, WORSE, decide, join_metrics, verdict_line, verdicts
from curate.errors import CurateError


def _blobs(n=300, d=16, classes=3, spread=3.0, seed=0):
    """Labels and three embeddings of the same rows: ``good`` (separated class centres),
    ``base`` (the same centres drowned in noise: weakly informative), ``noise`` (none)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(0, spread, (classes, d))
    good = centres[y] + rng.normal(0, 1, (n, d))
    base = centres[y] / spread * 0.6 + rng.normal(0, 1, (n, d))
    return y, {"base": base, "good": good, "noise": rng.normal(0, 1, (n, d)),
               "copy": base.copy()}


def test_weighted_auroc_equals_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(1)
    neg, pos = rng.integers(0, 6, 80).astype(float), rng.integers(2, 9, 50).astype(float)
    truth = np.r_[np.zeros(80), np.ones(50)]
    got = weighted_auroc(neg, pos, np.ones((1, 80)), np.ones((1, 50)))[0]
    assert got == pytest.approx(roc_auc_score(truth, np.r_[neg, pos]))
    wn, wp = rng.integers(0, 4, 80), rng.integers(0, 4, 50)
    got = weighted_auroc(neg, pos, wn[None], wp[None])[0]
    assert got == pytest.approx(roc_auc_score(truth, np.r_[neg, pos], sample_weight=np.r_[wn, wp]))


def test_auroc_rows_point_is_sklearn_and_the_interval_covers_it():
    rng = np.random.default_rng(2)
    s_in, s_out = rng.normal(0, 1, 200), rng.normal(1, 1, 150)
    scores = {"a": (s_in, s_out), "b": (s_in, s_out + 5)}
    rows = {r["set"]: r for r in auroc_rows("ood", scores, "a", n_boot=300)}
    truth = np.r_[np.zeros(200), np.ones(150)]
    assert rows["a"]["value"] == pytest.approx(roc_auc_score(truth, np.r_[s_in, s_out]))
    assert 0.7 < rows["a"]["value"] < 0.85 and rows["a"]["low"] < rows["a"]["value"] < rows["a"]["high"]
    assert rows["b"]["value"] > 0.99 and rows["b"]["diff_low"] > 0.1   # paired difference
    assert rows["b"]["n"] == 350 and np.isnan(rows["a"]["diff"])
    with pytest.raises(CurateError, match="AUROC needs >= 2 rows"):
        auroc_rows("ood", {"a": (s_in, s_out[:1])}, "a")


def test_accuracy_rows_identical_outcomes_have_a_zero_difference():
    c = np.random.default_rng(3).random(100) < 0.7
    rows = {r["set"]: r for r in accuracy_rows("acc", {"a": c, "b": c.copy(), "c": ~c}, "a",
                                               n_boot=200)}
    assert rows["b"]["diff"] == rows["b"]["diff_low"] == rows["b"]["diff_high"] == 0.0
    assert rows["c"]["diff_high"] < 0 and rows["a"]["value"] == pytest.approx(c.mean())


def test_decide_needs_the_interval_to_exclude_zero():
    assert decide(0.01, 0.05) == BETTER and decide(-0.05, -0.01) == WORSE
    assert decide(-0.01, 0.05) == SAME and decide(0.0, 0.02) == SAME and decide(-0.02, 0.0) == SAME


def test_verdicts_on_constructed_embeddings():
    y, X = _blobs()
    ood = np.zeros(len(y), bool)
    ood[:60] = True
    X["good"][:60] += 6.0          # only the good space moves the OOD rows away
    table, info = compare_arrays(X, "base", y=y, ood={"far": ood}, al=False, n_boot=300)
    v = verdicts(table, "base")
    assert set(v) == {"good", "noise", "copy"}
    assert v["good"][BETTER] == [KNN, PROBE, "OOD AUROC far (knn)", "OOD AUROC far (mahalanobis)"]
    assert set(v["noise"][WORSE]) == {KNN, PROBE}                   # noise has no class structure
    assert v["copy"][SAME] == [KNN, PROBE, "OOD AUROC far (knn)", "OOD AUROC far (mahalanobis)"]
    assert not v["copy"][BETTER] and not v["copy"][WORSE]
    assert info["labelled_eval"] == "5-fold cross-validation" and info["n_test"] == 240
    assert info["n_labelled"] == 240 and info["ood_in"] + info["ood_reference"] == 240
    base = table[(table.set == "base") & (table.metric == KNN)].iloc[0]
    assert not base["in_verdict"] and base["verdict"] is None
    line = verdict_line("good", v["good"], "base")
    assert line.startswith("good: better than base on 10-NN accuracy, linear probe accuracy")


def test_test_part_and_al_rows():
    y, X = _blobs(n=240, seed=4)
    X = {k: X[k] for k in ("base", "good")}
    test = np.zeros(len(y), bool)
    test[::4] = True
    table, info = compare_arrays(X, "base", y=y, test=test, al_budgets=(6, 30, 1000),
                                 al_seeds=2, n_boot=200)
    assert info["labelled_eval"] == "test batch" and info["n_test"] == 60 and info["n_train"] == 180
    assert info["al_budgets"] == [6, 30]                   # 1000 > pool: dropped
    al = table[table.kind == "al"]
    assert sorted(al.metric.unique()) == ["AL auto @30", "AL auto @6", "AL random @30", "AL random @6"]
    assert (al["n"] == 2).all() and al["low"].ge(0).all() and al["high"].le(1).all()
    good = al[al.set == "good"]
    assert (good["verdict"].notna()).all() and good["value"].min() > 0.8


def test_unlabelled_rows_without_ood_measure_nothing_and_bad_input_is_refused():
    y, X = _blobs(n=60)
    table, info = compare_arrays(X, "base", y=None, n_boot=200)
    assert table.empty and info["skipped"] == ["labelled metrics: no labelled images"]
    with pytest.raises(CurateError, match="baseline 'pix' is not among"):
        compare_arrays(X, "pix", y=y)
    with pytest.raises(CurateError, match="same rows"):
        compare_arrays({"base": X["base"], "short": X["good"][:10]}, "base", y=y)


def test_join_metrics_merges_al_budgets():
    assert join_metrics(["10-NN accuracy", "AL auto @20", "AL auto @100", "AL random @20"]) == \
        "10-NN accuracy, AL auto @20/@100, AL random @20"


def test_compare_on_the_index_sqlite_and_postgres(ws, index, tmp_path):
    """Every set by default; the latest pixels-pca set is the baseline; an OOD batch."""
    from curate.compare import compare
    from curate.embed import embed
    from curate.ingest import ingest
    from helpers import write_class_images

    ingest(index, [write_class_images(tmp_path / "lab", 3, 20, seed=1)], batch="lab",
           labels="folders")
    ingest(index, [write_class_images(tmp_path / "odd", [5, 6], 10, seed=2)], batch="odd")
    small = embed(index, ws, encoder="pixels-pca", image_size=8, device="cpu").embedding_set
    base = embed(index, ws, encoder="pixels-pca", image_size=16, device="cpu").embedding_set
    res = compare(index, ws, ood_batches=["odd"], al_budgets=(6, 12), al_seeds=2, n_boot=200,
                  out=tmp_path / "t.json")
    assert res.baseline == base and [s["name"] for s in res.sets] == [base, small]
    assert res.info["n_images"] == 80 and res.info["n_labelled"] == 60
    assert set(res.table["metric"]) == {KNN, PROBE, "AL auto @6", "AL auto @12", "AL random @6",
                                        "AL random @12", "OOD AUROC odd (knn)",
                                        "OOD AUROC odd (mahalanobis)"}
    assert res.lines[0].startswith(f"{small}: ") and list(res.verdicts) == [small]
    knn = res.table[(res.table.metric == KNN) & (res.table.set == base)].iloc[0]
    assert knn["value"] > 0.9 and knn["n"] == 60      # class templates separate in pixels
    assert (tmp_path / "t.json").read_text().startswith("[")
    with pytest.raises(CurateError, match="no batch named 'nope'"):
        compare(index, ws, ood_batches=["nope"])
