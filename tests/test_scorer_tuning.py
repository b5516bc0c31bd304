"""tune-scorer: choosing a scorer from in-distribution images only (curate.scorer_tuning)."""

import pytest

from curate.embed import embed
from curate.errors import CurateError
from curate.ingest import ingest
from curate.scorer_tuning import fit_command, parse_candidate, tune_scorer
from novelty_images import write_batch


@pytest.fixture
def labelled(sqlite_ws, tmp_path):
    index = sqlite_ws.open_index()
    write_batch(tmp_path / "lab", "in", 60, 5, labels=3)
    ingest(index, [tmp_path / "lab"], batch="lab", labels="folders")
    embed(index, sqlite_ws, encoder="pixels-pca", image_size=16)
    yield index
    index.close()


def test_parse_candidate():
    assert parse_candidate("knn:k=10,index=flat") == {"scorer": "knn", "k": 10, "index": "flat"}
    assert parse_candidate("cosine-weighted:tau=0.02") == {"scorer": "cosine-weighted", "tau": 0.02}
    assert parse_candidate("mahalanobis") == {"scorer": "mahalanobis"}
    with pytest.raises(CurateError, match="unknown scorer 'nope'"):
        parse_candidate("nope:k=1")
    with pytest.raises(CurateError, match="bad candidate"):
        parse_candidate("knn:k")


def test_tune_picks_from_the_table(labelled):
    rep = tune_scorer(labelled, candidates=["knn:k=1", "knn:k=5", "mahalanobis", "centroid",
                                            "knn:k=500"], seed=0)
    assert rep.labelled and rep.n_train + rep.n_test == 60 and rep.n_test == 12
    assert rep.n_sens == 48 // 5
    by = {r["label"]: r for r in rep.table}
    assert by["knn:k=500"]["error"] and by["knn:k=500"]["sensitivity"] is None
    ok = [r for r in rep.table if r["sensitivity"] is not None]
    assert len(ok) == 4 and all(0 <= r["sensitivity"] <= 1 for r in ok)
    assert all(r["knn_accuracy"] is not None for r in ok)
    chosen = [r for r in rep.table if r["selected"]]
    assert len(chosen) == 1 and rep.chosen == {"scorer": chosen[0]["scorer"], **chosen[0]["params"]}
    # the rule: among sensitivities >= 0.5 the one closest to 0.5 (ties within 0.01)
    pool = [r for r in ok if r["sensitivity"] >= 0.5] or ok
    best = min(abs(r["sensitivity"] - 0.5) for r in pool)
    assert abs(chosen[0]["sensitivity"] - 0.5) <= best + 0.01
    assert fit_command({"scorer": "knn", "k": 5}, "s@16") == \
        "curate fit-scorer --scorer knn --embeddings 's@16' --k 5"


def test_class_conditional_skipped_without_labels(sqlite_ws, tmp_path):
    index = sqlite_ws.open_index()
    write_batch(tmp_path / "unl", "in", 30, 6)
    ingest(index, [tmp_path / "unl"], batch="unl")
    embed(index, sqlite_ws, encoder="pixels-pca", image_size=16)
    rep = tune_scorer(index, candidates=["vmf", "knn:k=2"], batches=["unl"])
    by = {r["label"]: r for r in rep.table}
    assert by["vmf"]["error"].startswith("skipped") and rep.chosen == {"scorer": "knn", "k": 2}
    assert not rep.labelled and by["knn:k=2"]["knn_accuracy"] is None
    with pytest.raises(CurateError, match="needs labels on every image"):
        tune_scorer(index, candidates=["vmf"])
    with pytest.raises(CurateError, match="test fraction"):
        tune_scorer(index, test_fraction=1.0)
    with pytest.raises(CurateError, match="n_sens must be in"):
        tune_scorer(index, n_sens=0)
    with pytest.raises(CurateError, match="no batch named"):
        tune_scorer(index, batches=["nope"])
    index.close()
