"""One id-set hash (curate.provenance.ids_hash) for every stored ``*_ids_sha256``, and
records written before it (two older definitions, no marker) still recognised."""

import hashlib

import numpy as np
import pytest

from curate.errors import CurateError
from curate.provenance import (IDS_HASH_VERSION, add_ids_hashes, ids_hash, ids_hash_version,
                               matches_ids, read_split, same_ids)

IDS = [7, 3, 12, 1_000_000_000_000, 5]


def old_short(ids):  # the old curate.scorer_store.ids_hash / curate.simulate._ids_hash before version 2
    return hashlib.sha256(np.sort(np.asarray(ids, "<i8")).tobytes()).hexdigest()[:16]


def old_decimal(ids):  # curate.trainers.datamodule.ids_hash before version 2
    return hashlib.sha256(",".join(map(str, sorted(ids))).encode()).hexdigest()


def test_ids_hash_definition_and_invariance():
    want = hashlib.sha256(np.array(sorted(IDS), "<i8").tobytes()).hexdigest()
    assert ids_hash(IDS) == want and len(want) == 64
    assert ids_hash(np.array(IDS[::-1], np.uint64)) == want  # order and int type do not matter
    assert ids_hash(np.array([3, 1], np.int32)) == ids_hash([1, 3])
    assert ids_hash(iter(IDS)) == want and ids_hash(np.array(IDS, ">i8")) == want
    assert ids_hash(IDS[:-1]) != want and ids_hash([]) == hashlib.sha256(b"").hexdigest()


def test_add_ids_hashes_writes_the_marker():
    rec = add_ids_hashes({"n": 5}, pool_ids_sha256=IDS, test_ids_sha256=[1, 2])
    assert rec == {"n": 5, "pool_ids_sha256": ids_hash(IDS), "test_ids_sha256": ids_hash([1, 2]),
                   "ids_hash_version": IDS_HASH_VERSION}
    assert ids_hash_version(rec, "pool_ids_sha256") == 2 and matches_ids(IDS[::-1], rec, "pool_ids_sha256")
    assert not matches_ids(IDS[:-1], rec, "pool_ids_sha256") and not matches_ids(IDS, rec, "absent")


def test_old_records_are_recognised_and_compared_only_where_comparable():
    new = add_ids_hashes({}, reference_ids_sha256=IDS)
    short = {"reference_ids_sha256": old_short(IDS)}      # scorer / batch check / simulation
    decimal = {"ids_sha256": old_decimal(IDS)}             # training run
    assert ids_hash_version(short, "reference_ids_sha256") == 1
    assert ids_hash_version(decimal, "ids_sha256") == 0
    assert matches_ids(IDS, short, "reference_ids_sha256") and matches_ids(IDS, decimal, "ids_sha256")
    assert not matches_ids(IDS[1:], short, "reference_ids_sha256")
    assert not matches_ids(IDS[1:], decimal, "ids_sha256")
    # version 1 is the prefix of version 2: they compare; version 0 compares with nothing else
    assert same_ids(short, "reference_ids_sha256", new, "reference_ids_sha256") is True
    assert same_ids(new, "reference_ids_sha256", {"x": old_short(IDS[1:])}, "x") is False
    assert same_ids(decimal, "ids_sha256", new, "reference_ids_sha256") is None
    assert same_ids(decimal, "ids_sha256", {"y": old_decimal(IDS)}, "y") is True
    assert same_ids(new, "reference_ids_sha256", new, "absent") is None
    with pytest.raises(CurateError, match="no known format"):
        ids_hash_version({"z": "abc"}, "z")
    with pytest.raises(CurateError, match="newer than this curate"):
        matches_ids(IDS, {"z": ids_hash(IDS), "ids_hash_version": 3}, "z")


def _old_run_data(split_path, train, hold):
    """TrainingRun.data as curate wrote it before version 2 (no marker)."""
    return {"batch": None, "ids_sha256": old_decimal(train), "labelled": 0, "classes": 0,
            "images": len(train),
            "holdout_split": {"fraction": 0.25, "seed": 0, "n_train": len(train),
                              "n_holdout": len(hold), "holdout_ids_sha256": old_decimal(hold),
                              "path": str(split_path), "train_ids_hash": old_short(train),
                              "holdout_ids_hash": old_short(hold)}}


def test_workspace_with_old_rows_opens_and_is_recognised(ws, tmp_path):
    """Rows written in the old formats (training run with its split, simulation) in a
    workspace reopened by this curate: the split still loads through the callers'
    reader, and the old hashes compare with new ones where the definitions allow."""
    from sqlalchemy import select

    from curate.db.models import EmbeddingSet, Model, Simulation, TrainingRun
    from curate.novelty.tuning import run_split
    from curate.workspace import find_workspace

    train, hold = np.array([1, 2, 3, 5, 8, 13]), np.array([4, 9])
    split_path = tmp_path / "split.npz"
    np.savez(split_path, train_ids=train, holdout_ids=hold)
    index = ws.open_index()
    with index.session() as s:
        run = TrainingRun(name="old-run", method="simclr", params={}, status="finished",
                          data=_old_run_data(split_path, train, hold))
        s.add(run)
        s.flush()
        model = Model(name="old-run", encoder="trained", run_id=run.id, params={})
        s.add(model)
        s.flush()
        s.add(EmbeddingSet(name="old-set", model_id=model.id, dim=4, dtype="float32", path="x"))
        s.add(Simulation(name="old-sim", params={"pool_ids_sha256": old_short(train),
                                                 "test_ids_sha256": old_short(hold)}))
    index.close()

    index = find_workspace(ws.root, db=ws.db_override).open_index()  # reopened (migrations run)
    try:
        got_run, got_train, got_hold = run_split(index, "old-set")  # version-1 split keys
        assert got_run.name == "old-run"
        assert np.array_equal(got_train, train) and np.array_equal(got_hold, hold)
        with index.session() as s:
            data = s.scalar(select(TrainingRun.data).where(TrainingRun.name == "old-run"))
            sim = s.scalar(select(Simulation.params).where(Simulation.name == "old-sim"))
        assert ids_hash_version(data, "ids_sha256") == 0 and matches_ids(train, data, "ids_sha256")
        assert matches_ids(hold, data["holdout_split"], "holdout_ids_sha256")  # version 0 in the split
        new = add_ids_hashes({}, pool_ids_sha256=train[::-1])
        assert same_ids(sim, "pool_ids_sha256", new, "pool_ids_sha256") is True
        assert same_ids(sim, "test_ids_sha256", new, "pool_ids_sha256") is False
        assert same_ids(data, "ids_sha256", new, "pool_ids_sha256") is None  # never a silent False
        # a changed split file is caught with the old hashes too
        np.savez(split_path, train_ids=train[:-1], holdout_ids=hold)
        with pytest.raises(CurateError, match="does not match training run 'old-run'"):
            run_split(index, "old-set")
    finally:
        index.close()


def test_read_split_errors(tmp_path):
    with pytest.raises(CurateError, match="run r recorded no held-out split"):
        read_split(None, "run r")
    with pytest.raises(CurateError, match="missing or unreadable"):
        read_split({"path": str(tmp_path / "gone.npz")}, "run r")
    np.savez(tmp_path / "s.npz", train_ids=np.array([1, 2]), holdout_ids=np.array([3]))
    split = add_ids_hashes({"path": str(tmp_path / "s.npz")}, train_ids_sha256=[1, 2],
                           holdout_ids_sha256=[3])
    assert [a.tolist() for a in read_split(split, "run r")] == [[1, 2], [3]]
    with pytest.raises(CurateError, match="does not match run r's record"):
        read_split(dict(split, holdout_ids_sha256=ids_hash([4])), "run r")
