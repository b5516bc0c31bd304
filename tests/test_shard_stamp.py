"""Issue 14: loading embeddings without re-hashing unchanged shards (``.verified``
stamps), the single-copy gather, and the join-free row map; both backends."""

import os
import time

import numpy as np
import pytest

import curate.embeddings as emb
from curate.embed import embed
from curate.embeddings import _checksum_ok, _gather, load_embeddings
from curate.errors import CurateError
from curate.ingest import ingest

PCA = dict(encoder="pixels-pca", image_size=16)


def _embedded(index, ws, image_folder):
    ingest(index, [image_folder])
    rep = embed(index, ws, **PCA)
    time.sleep(0.05)   # the shard's timestamps now predate any check (coarse fs clocks)
    return rep, next(ws.embeddings_dir.rglob("shard-00000.npy"))


def _count_hashes(monkeypatch):
    calls = []
    real = emb.sha256_file
    monkeypatch.setattr(emb, "sha256_file", lambda p: calls.append(p) or real(p))
    return calls


def test_unchanged_shard_is_hashed_once_a_rewrite_is_caught(index, ws, image_folder, monkeypatch):
    rep, shard = _embedded(index, ws, image_folder)
    calls = _count_hashes(monkeypatch)
    ids, X = load_embeddings(index, rep.embedding_set)
    assert len(calls) == 1 and shard.with_suffix(".verified").exists()
    ids2, X2 = load_embeddings(index, rep.embedding_set)
    assert len(calls) == 1   # stamp matched: no second hash
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_array_equal(X2, X)
    # same size, other values, the old mtime put back: ctime still moves, so it is hashed
    st = shard.stat()
    np.save(shard, np.load(shard) + 1)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert shard.stat().st_size == st.st_size
    with pytest.raises(CurateError, match=r"shard-00000.npy is damaged \(checksum mismatch\)"):
        load_embeddings(index, rep.embedding_set)
    assert len(calls) == 2 and not shard.with_suffix(".verified").exists()


def test_stamp_matching_a_damaged_file_is_still_caught_by_embed(index, ws, image_folder):
    """Bit rot under an unchanged stat is what a stamp cannot see: ``embed`` always hashes."""
    rep, shard = _embedded(index, ws, image_folder)
    ids, X = load_embeddings(index, rep.embedding_set)
    np.save(shard, np.load(shard) + 1)
    expected = shard.with_suffix(".sha256").read_text().strip()
    shard.with_suffix(".verified").write_text(emb._stamp_key(expected, os.stat(shard)))
    load_embeddings(index, rep.embedding_set)   # trusted (documented trade-off)
    again = embed(index, ws, **PCA)
    assert len(again.damaged_shards) == 1 and again.embedded == 24
    ids2, X2 = load_embeddings(index, rep.embedding_set)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_allclose(X2, X, atol=1e-5)


def test_no_stamp_for_a_file_changed_as_the_check_began(tmp_path, monkeypatch):
    f = tmp_path / "shard-00000.npy"
    np.save(f, np.zeros((3, 2), np.float32))
    f.with_suffix(".sha256").write_text(emb.sha256_file(f) + "\n")
    future = time.time_ns() + 10**10           # timestamps not older than the probe
    os.utime(f, ns=(future, future))
    calls = _count_hashes(monkeypatch)
    assert _checksum_ok(f, rehash=False) and _checksum_ok(f, rehash=False)
    assert len(calls) == 2 and not f.with_suffix(".verified").exists()
    assert not list(tmp_path.glob(".*tmp"))    # the probe is cleaned up
    os.utime(f, ns=(0, 0))
    time.sleep(0.05)                           # its ctime (now) must predate the probe
    assert _checksum_ok(f, rehash=False) and f.with_suffix(".verified").exists()
    assert _checksum_ok(f, rehash=False) and len(calls) == 3
    assert _checksum_ok(f, rehash=True) and len(calls) == 4
    f.with_suffix(".sha256").write_text("0" * 64 + "\n")   # the stamp names the old sum
    assert not _checksum_ok(f, rehash=False)
    f.with_suffix(".sha256").unlink()
    assert _checksum_ok(f, rehash=False)      # older sets without a checksum: not checked


@pytest.mark.parametrize("case", ["run", "permuted", "scattered", "float16", "one"])
def test_gather_equals_fancy_indexing(case):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((50, 4)).astype(np.float16 if case == "float16" else np.float32)
    X = np.full((30, 4), np.nan, np.float32)
    at = {"scattered": np.sort(rng.choice(30, 12, replace=False))}.get(case, np.arange(5, 17))
    want = {"permuted": rng.permutation(40)[:12], "one": np.array([7])}.get(
        case, np.arange(20, 20 + len(at)))
    at = at[:len(want)]
    ref = X.copy()
    ref[at] = data[want]
    _gather(data, want, X, at)
    np.testing.assert_array_equal(X, ref)


def test_row_map_drops_not_ok_images_and_keeps_batch_order(index, ws, image_folder, tmp_path):
    from helpers import write_image
    ingest(index, [image_folder], batch="b1")
    for i in range(3):
        write_image(tmp_path / "more" / f"m{i}.png", seed=700 + i)
    ingest(index, [tmp_path / "more"], batch="b2")
    rep = embed(index, ws, **PCA)
    es = index.embedding_set(rep.embedding_set)
    rows = index.embedding_rows(es.id)
    assert rows.shape == (27, 3) and rows.dtype == np.int64
    assert (np.diff(rows[:, 0]) > 0).all()
    b2 = index.embedding_rows(es.id, "b2")
    assert len(b2) == 3 and set(b2[:, 0]) <= set(rows[:, 0])
    index.mark_rejected([int(rows[0, 0]), int(b2[1, 0])], "test")
    rows2 = index.embedding_rows(es.id)
    assert len(rows2) == 25 and int(rows[0, 0]) not in rows2[:, 0]
    np.testing.assert_array_equal(index.embedding_rows(es.id, "b2"), b2[[0, 2]])
    ids, X = load_embeddings(index, rep.embedding_set, image_ids=rows2[::2, 0])
    np.testing.assert_array_equal(ids, rows2[::2, 0])
    full_ids, full_X = load_embeddings(index, rep.embedding_set)
    np.testing.assert_array_equal(X, full_X[::2])
    with pytest.raises(CurateError, match="no batch named"):
        index.embedding_rows(es.id, "nope")
