import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from curate.db.models import EmbeddingRow, EmbeddingSet, Label, Model, Selection, SelectionItem
from curate.embed import embed
from curate.embeddings import append_shard
from curate.errors import CurateError
from curate.export import write_selection
from curate.ingest import ingest
from curate.select import SELECTORS
from curate.select.selection import select_images


@pytest.fixture
def embedded(index, ws, image_folder):
    ingest(index, [image_folder], batch="b1")
    return embed(index, ws, encoder="pixels-pca", image_size=16).embedding_set


def test_selection_is_stored_with_provenance(index, embedded):
    res = select_images(index, 5, strategy="kcenter", metric="euclidean", seed=1)
    assert list(res.picks["rank"]) == [1, 2, 3, 4, 5]
    assert np.isnan(res.picks["score"][0])  # no centres yet: a seeded random first pick
    d = res.picks["score"].to_numpy()[1:]
    assert (np.diff(d) <= 1e-6).all()  # furthest-point distances never grow
    with index.session() as s:
        sel = s.get(Selection, res.selection_id)
        assert sel.strategy == "kcenter" and sel.budget == 5 and sel.params["metric"] == "euclidean"
        assert "numpy" in sel.versions and sel.embedding_set_id is not None
        items = s.scalars(select(SelectionItem).where(SelectionItem.selection_id == sel.id)
                          .order_by(SelectionItem.rank)).all()
        assert [i.image_id for i in items] == list(res.picks["image_id"])


def test_labels_and_earlier_picks_are_centres_and_never_picked(index, embedded):
    first = select_images(index, 4, strategy="kcenter")
    with index.session() as s:
        picked = [int(i) for i in first.picks["image_id"]]
        labelled = s.scalars(select(EmbeddingRow.image_id)
                             .where(EmbeddingRow.image_id.not_in(picked)).limit(3)).all()
        s.add_all(Label(image_id=i, label="x", source="folder") for i in labelled)
    second = select_images(index, 6, strategy="kcenter")
    assert not set(second.picks["image_id"]) & (set(first.picks["image_id"]) | set(labelled))
    assert second.params["n_centres"] == 7 and second.params["pool_size"] == 24 - 7
    assert second.picks["score"].notna().all()  # seeded: every pick has a distance


def test_same_result_as_kernel_on_loaded_embeddings(index, embedded):
    from curate.embeddings import load_embeddings
    from curate.select import kcenter_greedy
    ids, X = load_embeddings(index, embedded)
    idx, dist = kcenter_greedy(X, 7, metric="cosine", random_state=3, device="cpu")
    res = select_images(index, 7, strategy="kcenter", seed=3, device="cpu", dry_run=True)
    assert list(res.picks["image_id"]) == list(ids[idx])


def test_dry_run_stores_nothing_and_random_strategy(index, embedded):
    assert select_images(index, 3, dry_run=True).selection_id is None
    res = select_images(index, 3, strategy="random", seed=0)
    assert res.picks["score"].isna().all()
    with index.session() as s:
        assert s.scalar(select(Selection.strategy)) == "random"


def test_batch_restricts_the_pool(index, ws, embedded, tmp_path):
    from helpers import write_image
    for i in range(4):
        write_image(tmp_path / "b2" / f"{i}.png", seed=500 + i)
    ingest(index, [tmp_path / "b2"], batch="b2")
    embed(index, ws, encoder="pixels-pca", image_size=16)
    res = select_images(index, 4, batch="b2")
    assert all("/b2/" in p for p in res.picks["path"])
    with pytest.raises(CurateError, match="larger than the pool of 0"):
        select_images(index, 1, batch="b2")


@pytest.mark.parametrize("budget,match", [(0, "budget must be positive"), (-3, "budget must be positive"),
                                          (25, "larger than the pool of 24")])
def test_bad_budgets(index, embedded, budget, match):
    with pytest.raises(CurateError, match=match):
        select_images(index, budget)
    with index.session() as s:
        assert s.scalar(select(Selection)) is None


def test_no_embeddings_yet(index, image_folder):
    ingest(index, [image_folder])
    with pytest.raises(CurateError, match="no embedding set yet"):
        select_images(index, 3)
    with pytest.raises(CurateError, match="unknown strategy"):
        select_images(index, 3, strategy="nope")


def test_nan_rows_are_refused(index, ws, image_folder):
    ingest(index, [image_folder])
    with index.session() as s:
        m = Model(name="m", encoder="pixels-pca")
        s.add(m)
        s.flush()
        es = EmbeddingSet(name="nan-set", model_id=m.id, dim=4, dtype="float32", count=0,
                          path=str(ws.embeddings_dir / "nan-set"))
        s.add(es)
        s.flush()
    X = np.ones((24, 4), np.float32) * np.arange(24)[:, None]
    X[5, 2] = np.nan
    ids = np.arange(1, 25)
    append_shard(index, es, ids, X)
    with pytest.raises(CurateError, match="NaN"):
        select_images(index, 3, embeddings="nan-set")


@pytest.mark.parametrize("name", SELECTORS.names())
def test_every_strategy_exports(index, embedded, tmp_path, name):
    res = select_images(index, 5, strategy=name)
    for suffix in ("csv", "parquet", "json"):
        out = write_selection(res.picks, tmp_path / f"picks.{suffix}")
        df = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[suffix](out)
        assert list(df["image_id"]) == list(res.picks["image_id"])


def test_files_deleted_after_embed_are_skipped_and_marked(index, embedded):
    from pathlib import Path

    from curate.db.models import Image
    first = select_images(index, 3, strategy="kcenter", seed=0, dry_run=True)
    for p in first.picks["path"]:
        Path(p).unlink()
    res = select_images(index, 3, strategy="kcenter", seed=0)
    assert not set(res.picks["image_id"]) & set(first.picks["image_id"])
    assert sorted(res.missing) == sorted(first.picks["path"]) and res.params["missing_skipped"] == 3
    with index.session() as s:
        st = s.execute(select(Image.status, Image.reason)
                       .where(Image.id.in_(first.picks["image_id"].tolist()))).all()
    assert st and all(r == ("rejected", "file missing at select time") for r in st)


def test_default_strategy_is_auto_and_records_what_it_chose(index, embedded):
    res = select_images(index, 4)
    info = res.params["info"]
    flat = info["cluster_gap"] < info["min_cluster_gap"]     # a few noise images: may be flat
    assert res.strategy == "auto" and info["chose"] == ("random" if flat else "typiclust")
    assert res.params["score"].startswith("the score of the strategy auto chose")
    with index.session() as s:
        ids = s.scalars(select(EmbeddingRow.image_id).limit(6)).all()
        s.add_all(Label(image_id=i, label=("a" if k % 2 else "b"), source="folder")
                  for k, i in enumerate(ids))
    later = select_images(index, 3)
    assert later.params["n_labelled"] == 6 and later.params["classes"] == ["a", "b"]
    assert later.params["info"]["chose"] == ("random" if flat else "typiclust")  # 3 per class < 10
