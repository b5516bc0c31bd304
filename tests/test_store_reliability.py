"""Issue 11, embedding store side: copied workspaces, damaged shards, damaged index,
bombs and missing files after ingest, unwritable folders, backups."""

import hashlib
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from sqlalchemy import select

from curate.backup import backup_index
from curate.db.models import EmbeddingSet, Image
from curate.embed import embed
from curate.embeddings import load_embeddings
from curate.errors import CurateError
from curate.ingest import ingest
from curate.workspace import find_workspace
from helpers import write_image

PCA = dict(encoder="pixels-pca", image_size=16)


def _cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "curate", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def _one_line_error(r, needle, code=2):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.npy"))}


def test_copied_workspace_writes_its_own_shards(sqlite_ws, image_folder, tmp_path):
    index = sqlite_ws.open_index()
    ingest(index, [image_folder], batch="b1")
    rep = embed(index, sqlite_ws, **PCA)
    index.close()
    before = _digest(sqlite_ws.embeddings_dir)
    shutil.copytree(sqlite_ws.root, tmp_path / "ws2")
    ws2 = find_workspace(tmp_path / "ws2")
    idx2 = ws2.open_index()
    for i in range(3):
        write_image(tmp_path / "new" / f"n{i}.png", seed=700 + i)
    ingest(idx2, [tmp_path / "new"], batch="b2")
    assert embed(idx2, ws2, **PCA).embedded == 3
    assert _digest(sqlite_ws.embeddings_dir) == before  # the original is untouched
    assert len(_digest(ws2.embeddings_dir)) == len(before) + 1
    assert len(load_embeddings(idx2, rep.embedding_set)[0]) == 27
    # a set recorded (by an older curate) with an absolute folder of another workspace is refused
    with idx2.session() as s:
        s.scalar(select(EmbeddingSet)).path = str(sqlite_ws.embeddings_dir / "x")
    with pytest.raises(CurateError, match="outside this workspace"):
        load_embeddings(idx2)
    with pytest.raises(CurateError, match="outside this workspace"):
        embed(idx2, ws2, **PCA)
    idx2.close()


def _damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif how == "garbage":
        path.write_bytes(os.urandom(path.stat().st_size))
    elif how == "shorter":
        np.save(path, np.load(path)[:5])
    elif how == "object":
        np.save(path, np.array([object()] * 3, dtype=object), allow_pickle=True)
    elif how == "same-shape-other-values":
        np.save(path, np.load(path) + 1)


@pytest.mark.parametrize("how", ["truncated", "garbage", "shorter", "object", "same-shape-other-values"])
def test_damaged_shard_is_named_then_reembedded(index, ws, image_folder, how):
    ingest(index, [image_folder])
    rep = embed(index, ws, **PCA)
    ids, X = load_embeddings(index)
    shard = next((ws.embeddings_dir).rglob("shard-00000.npy"))
    _damage(shard, how)
    with pytest.raises(CurateError, match="shard-00000.npy is damaged") as e:
        load_embeddings(index)
    assert "\n" not in str(e.value)
    again = embed(index, ws, **PCA)  # notices the damage instead of "already embedded"
    assert (again.embedded, again.already) == (24, 0) and len(again.damaged_shards) == 1
    ids2, X2 = load_embeddings(index, rep.embedding_set)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_allclose(X2, X, atol=1e-5)
    assert list(shard.parent.glob("*.damaged"))  # kept aside, not deleted
    with index.session() as s:
        assert s.scalar(select(EmbeddingSet)).count == 24


def _png_header_only(path, w, h):
    """A PNG whose header claims w x h pixels (a decompression bomb), with a tiny body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_bomb_swapped_in_after_ingest_is_rejected_at_embed(sqlite_ws, image_folder, tmp_path):
    ws = sqlite_ws
    target = image_folder / "class1" / "img3.png"
    _cli("-w", ws.root, "ingest", image_folder, cwd=tmp_path)
    _png_header_only(target, 40000, 40000)
    r = _cli("-w", ws.root, "embed", "--encoder", "pixels-pca", "--image-size", "16", "--json",
             cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    index = ws.open_index()
    with index.session() as s:
        img = s.scalar(select(Image).where(Image.path == str(target)))
        assert img.status == "rejected" and "embed time" in img.reason
    assert len(load_embeddings(index)[0]) == 23
    index.close()


def test_unwritable_embeddings_folder_is_one_line(sqlite_ws, image_folder, tmp_path):
    _cli("-w", sqlite_ws.root, "ingest", image_folder, cwd=tmp_path)
    folder = sqlite_ws.embeddings_dir
    if os.geteuid() == 0:  # root writes through permissions: make the set folder a file instead
        (folder / "pixels-pca-16@16").write_text("not a folder")
    else:
        folder.chmod(0o555)
    try:
        r = _cli("-w", sqlite_ws.root, "embed", "--encoder", "pixels-pca", "--image-size", "16",
                 cwd=tmp_path)
    finally:
        folder.chmod(0o755)
    _one_line_error(r, "cannot write embeddings to")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_index_file_is_named_and_left_alone(sqlite_ws, image_folder, tmp_path, damage):
    _cli("-w", sqlite_ws.root, "ingest", image_folder, cwd=tmp_path)
    db = sqlite_ws.sqlite_path
    for extra in ("-wal", "-shm"):
        (db.parent / (db.name + extra)).unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(b"this is not sqlite" * 500)
    else:
        data = db.read_bytes()
        db.write_bytes(data[:100] + b"\0" * 4096 + data[100 + 4096: len(data) // 2])
    before = db.read_bytes()
    r = _cli("-w", sqlite_ws.root, "ingest", image_folder, cwd=tmp_path)
    _one_line_error(r, f"index database {db} is damaged")
    assert "curate backup" in r.stderr
    assert db.read_bytes() == before  # never touched


def test_backup_is_a_consistent_copy_and_refuses_overwrite(sqlite_ws, image_folder, tmp_path):
    index = sqlite_ws.open_index()
    ingest(index, [image_folder])
    index.close()
    r = _cli("-w", sqlite_ws.root, "backup", tmp_path / "b.sqlite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(tmp_path / "b.sqlite") as c:
        assert c.execute("select count(*) from images where status='ok'").fetchone()[0] == 24
    _one_line_error(_cli("-w", sqlite_ws.root, "backup", tmp_path / "b.sqlite", cwd=tmp_path),
                    "exists")


def test_backup_of_postgres_index_points_at_pg_dump(pg_url, tmp_path):
    from curate.workspace import init_workspace

    ws = init_workspace(tmp_path / "pg", db=pg_url)
    with pytest.raises(CurateError, match="pg_dump"):
        backup_index(ws, tmp_path / "b")
