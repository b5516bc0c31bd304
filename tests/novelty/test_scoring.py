"""Stored scorers end to end on real image files: fit, calibrate, score, exclude from
selection (curate.novelty.stored, curate.novelty.scoring), on SQLite and PostgreSQL."""

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from curate.db.models import Batch, EmbeddingSet, Image, Label, Model, Score, Scorer, Selection
from curate.embeddings import append_shard
from curate.errors import CurateError
from curate.novelty.stored import fit_scorer, load_scorer, split_calibration
from curate.novelty.scoring import flagged_ids, score_images
from curate.select.selection import select_images
from curate.workspace import init_workspace
from novelty_images import ingest_and_embed, write_corpus

FIT = dict(reference_batches=["ref"], calibration_fraction=0.25, alpha=0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("novelty-images"))


@pytest.fixture
def embedded(index, ws, corpus):
    return ingest_and_embed(index, ws, corpus)


def _batch_of(index):
    with index.session() as s:
        return dict(s.execute(select(Image.id, Batch.name).join(Batch, Batch.id == Image.batch_id)).all())


def test_fit_score_flag_store_and_rerun(index, ws, embedded):
    rep = fit_scorer(index, ws, "knn", k=5, **FIT)
    assert rep.name == f"knn@{embedded}" and rep.calibration["n_cal"] == 20
    assert rep.calibration["n_ref"] == 60 and rep.calibration["guaranteed_fpr"] <= 0.1
    with index.session() as s:
        row = s.scalar(select(Scorer))
        assert (row.kind, row.alpha, row.params["k"]) == ("knn", 0.1, 5)
        assert row.threshold == pytest.approx(rep.threshold) and "numpy" in row.versions
        assert row.calibration["reference_batches"] == ["ref"] and row.embedding_set_id
    with np.load(rep.state_path) as z:
        ref_ids, cal_ids = z["curate_reference_ids"], z["curate_calibration_ids"]
    assert len(ref_ids) == 60 and len(cal_ids) == 20 and not set(ref_ids) & set(cal_ids)
    from curate.provenance import ids_hash

    assert rep.calibration["ids_hash_version"] == 2  # the one id-set hash, full 64 hex
    assert rep.calibration["reference_ids_sha256"] == ids_hash(ref_ids)
    assert rep.calibration["calibration_ids_sha256"] == ids_hash(cal_ids)
    assert Path(rep.state_path).parent == ws.models_dir / "scorers"

    res = score_images(index)  # the latest scorer, every image
    df = res.scores
    batch = _batch_of(index)
    df["batch"] = [batch[int(i)] for i in df["image_id"]]
    assert len(df) == 140 and list(df["rank"]) == list(range(1, 141))
    assert (np.diff(df["score"]) <= 0).all()  # most novel first
    novel, fresh = df[df.batch == "new-out"], df[df.batch == "new-in"]
    assert novel["score"].min() > fresh["score"].max()
    assert novel["flagged"].all() and fresh["flagged"].mean() <= 0.2
    assert df["p_value"].between(0, 1).all() and (novel["p_value"] <= 0.1).all()
    assert set(df.head(30)["batch"]) == {"new-out"} and df.head(1)["path"].iloc[0].endswith(".png")
    # reference images scored leave-one-out (their own match skipped)
    st = load_scorer(index, rep.name)
    assert df.loc[df.image_id == ref_ids[0], "score"].iloc[0] == pytest.approx(
        st.estimator.score_reference([0])[0])
    with index.session() as s:
        n1 = s.scalar(select(func.count()).select_from(Score))
        stored = dict(s.execute(select(Score.image_id, Score.score)).all())
    assert n1 == 140 and stored[int(novel.image_id.iloc[0])] == pytest.approx(novel.score.iloc[0])
    again = score_images(index, rep.name, batch="new-out")  # idempotent upsert
    assert len(again.scores) == 30 and again.n_flagged == 30
    score_images(index, rep.name)
    with index.session() as s:
        assert s.scalar(select(func.count()).select_from(Score)) == 140


@pytest.mark.parametrize("db_url", [None], ids=["sqlite"])  # shadows the both-backends fixture
def test_mahalanobis_and_a_second_scorer_name(index, ws, embedded):
    a = fit_scorer(index, ws, "mahalanobis", shrinkage="oas", **FIT)
    b = fit_scorer(index, ws, "mahalanobis", **FIT)
    assert (a.name, b.name) == (f"mahalanobis@{embedded}", f"mahalanobis@{embedded}-2")
    assert a.params["shrinkage"] == "oas"
    res = score_images(index, a.name, batch="new-out")
    assert res.n_flagged == 30
    with pytest.raises(CurateError, match="exists; pick another --name"):
        fit_scorer(index, ws, "knn", name=a.name, k=5, **FIT)


def test_select_exclude_novel_never_picks_flagged(index, ws, embedded):
    fit_scorer(index, ws, "knn", k=5, **FIT)
    flagged = set(score_images(index, store=False).scores.query("flagged").image_id)
    novel = flagged_ids(index)
    res = select_images(index, 40, seed=1, exclude_ids=novel,
                        extra_params={"exclude_novel": novel.params})
    assert not set(res.picks["image_id"]) & flagged and len(flagged) >= 30
    ex = res.params["exclude_novel"]
    assert ex["excluded"] == len(flagged) == res.params["excluded"] and ex["scorer"].startswith("knn")
    assert novel == flagged and flagged_ids(index, batch="new-out") == flagged & set(
        score_images(index, batch="new-out", store=False).scores.image_id)
    with index.session() as s:
        assert s.get(Selection, res.selection_id).params["exclude_novel"]["n_scored"] == 140
        assert s.scalar(select(func.count()).select_from(Score)) == 0  # pool scores not stored
    with pytest.raises(CurateError, match="larger than the pool"):
        select_images(index, 141 - len(flagged), dry_run=True, exclude_ids=novel)


def test_class_conditional_scorers_use_index_labels(sqlite_ws, tmp_path):
    from curate.embed import embed
    from curate.ingest import ingest
    from novelty_images import write_batch

    index = sqlite_ws.open_index()
    write_batch(tmp_path / "lab", "in", 48, 7, labels=3)
    ingest(index, [tmp_path / "lab"], batch="lab", labels="folders")
    write_batch(tmp_path / "unl", "in", 12, 8)
    ingest(index, [tmp_path / "unl"], batch="unl")
    embed(index, sqlite_ws, encoder="pixels-pca", image_size=16)
    rep = fit_scorer(index, sqlite_ws, "vmf", calibration_fraction=0.25, alpha=0.1)
    assert rep.calibration["n_classes"] == 3 and rep.calibration["n_unlabelled_dropped"] == 12
    assert rep.calibration["n_ref"] + rep.calibration["n_cal"] == 48
    assert len(score_images(index, rep.name).scores) == 60
    with pytest.raises(CurateError, match="class-conditional and needs labels"):
        fit_scorer(index, sqlite_ws, "centroid", reference_batches=["unl"], alpha=0.2,
                   calibration_fraction=0.5)
    with index.session() as s:  # one class of a single image
        one = s.scalar(select(Label).order_by(Label.id).limit(1))
        one.label = "lonely"
    with pytest.raises(CurateError, match="class 'lonely' has 1 sample"):
        fit_scorer(index, sqlite_ws, "mahalanobis-class", calibration_fraction=0.25, alpha=0.1)
    index.close()


def test_split_keeps_classes_fittable():
    y = np.array(["a"] * 10 + ["b"] * 2)
    ref, cal = split_calibration(12, 0.5, 0, y, min_per_class=2)
    assert len(cal) == 6 and (y[ref] == "b").sum() == 2 and not set(ref) & set(cal)
    with pytest.raises(CurateError, match="fraction must be in"):
        split_calibration(12, 1.0, 0)


# --------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def shared(corpus, tmp_path_factory):
    """One SQLite workspace with the corpus embedded, a fitted scorer, a NaN set, a
    4-d set, labels on a single 'ref' image and an empty batch. Tests must not write."""
    ws = init_workspace(tmp_path_factory.mktemp("shared") / "ws")
    index = ws.open_index()
    ingest_and_embed(index, ws, corpus)
    name = fit_scorer(index, ws, "knn", k=5, **FIT).name
    shards = []
    with index.session() as s:
        ids = np.array(s.scalars(select(Image.id).order_by(Image.id)).all())
        m = Model(name="manual", encoder="pixels-pca")
        s.add(m)
        s.flush()
        for set_name, dim in (("nan-set", 64), ("small-set", 4)):
            es = EmbeddingSet(name=set_name, model_id=m.id, dim=dim, dtype="float32", count=0,
                              path=str(ws.embeddings_dir / set_name))
            s.add(es)
            s.flush()
            X = np.random.default_rng(0).normal(size=(len(ids), dim)).astype(np.float32)
            if set_name == "nan-set":
                X[3, 1] = np.inf
            shards.append((es, X))
        s.add(Batch(name="empty"))
    for es, X in shards:   # the store appends in its own transaction, once the sets exist
        append_shard(index, es, ids, X)
    yield ws, index, name
    index.close()


def _snapshot(ws, index):
    with index.session() as s:
        counts = tuple(s.scalar(select(func.count()).select_from(t)) for t in (Scorer, Score, Selection))
    return counts, sorted(p.name for p in (ws.models_dir / "scorers").iterdir())


BAD = [
    ("nan", lambda ws, ix, n: fit_scorer(ix, ws, "mahalanobis", embeddings="nan-set", alpha=0.1,
                                          calibration_fraction=0.25), "NaN/inf embeddings"),
    ("dim", lambda ws, ix, n: score_images(ix, n, embeddings="small-set"), "dimension mismatch"),
    ("other-set", lambda ws, ix, n: score_images(ix, n, embeddings="nan-set"), "different spaces"),
    ("k", lambda ws, ix, n: fit_scorer(ix, ws, "knn", k=500, **FIT), "needs at least 501 reference"),
    ("alpha0", lambda ws, ix, n: fit_scorer(ix, ws, "knn", k=5, alpha=0.0), r"alpha must be in \(0, 1\)"),
    ("alpha>1", lambda ws, ix, n: fit_scorer(ix, ws, "knn", k=5, alpha=1.5), r"alpha must be in \(0, 1\)"),
    ("alpha-small", lambda ws, ix, n: fit_scorer(ix, ws, "knn", k=5, alpha=0.01, reference_batches=["ref"]),
     "below 1/"),
    ("frac", lambda ws, ix, n: fit_scorer(ix, ws, "knn", k=5, calibration_fraction=0), "fraction must be"),
    ("empty-batch", lambda ws, ix, n: score_images(ix, n, batch="empty"), "batch 'empty' has no embedded"),
    ("empty-ref", lambda ws, ix, n: fit_scorer(ix, ws, "knn", reference_batches=["empty"]),
     "holds no embedded images"),
    ("no-batch", lambda ws, ix, n: score_images(ix, n, batch="nope"), "no batch named 'nope'"),
    ("no-ref-batch", lambda ws, ix, n: fit_scorer(ix, ws, "knn", reference_batches=["nope"]),
     "no batch named 'nope'"),
    ("name", lambda ws, ix, n: score_images(ix, "nope"), "no scorer named 'nope'; have: knn@"),
    ("kind", lambda ws, ix, n: fit_scorer(ix, ws, "nope"), "unknown scorer 'nope'; choose one of"),
    ("param", lambda ws, ix, n: fit_scorer(ix, ws, "mahalanobis", k=3), "bad parameters for scorer"),
    ("no-labels", lambda ws, ix, n: fit_scorer(ix, ws, "mahalanobis-class"), "needs labels"),
    ("dup", lambda ws, ix, n: fit_scorer(ix, ws, "knn", name=n, k=5, **FIT), "exists"),
    ("flagged", lambda ws, ix, n: flagged_ids(ix, "nope"), "no scorer named"),
]


@pytest.mark.parametrize("case,call,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_writes_nothing(shared, case, call, match):
    ws, index, name = shared
    before = _snapshot(ws, index)
    with pytest.raises(CurateError, match=match) as exc:
        call(ws, index, name)
    assert "\n" not in str(exc.value) and exc.value.exit_code == 2
    assert _snapshot(ws, index) == before


def test_no_scorer_yet(sqlite_ws):
    index = sqlite_ws.open_index()
    for call in (lambda: score_images(index), lambda: load_scorer(index),
                 lambda: flagged_ids(index)):
        with pytest.raises(CurateError, match="no scorer yet; run `curate fit-scorer`"):
            call()
    index.close()


def test_missing_state_file(shared, tmp_path):
    ws, index, name = shared
    with index.session() as s:
        path = s.scalar(select(Scorer.state_path).where(Scorer.name == name))
    moved = tmp_path / "moved.npz"
    Path(path).rename(moved)
    try:
        with pytest.raises(CurateError, match="cannot read the state of scorer"):
            score_images(index, name)
    finally:
        moved.rename(path)
