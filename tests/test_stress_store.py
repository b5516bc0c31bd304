"""Issue 11 stress test (embed/select half): concurrent `curate embed` and `curate select`
processes on one workspace, on SQLite and PostgreSQL, then the store's invariants:
every embedding row is readable and equals its image's vector, counts add up, and the
stored selections are disjoint."""

import os
import subprocess
import sys

import numpy as np
import torch
from sqlalchemy import func, select

from curate.db.models import EmbeddingRow, EmbeddingSet, Image, SelectionItem
from curate.embeddings import load_embeddings
from curate.encoders.pixels_pca import PixelsPCA
from curate.imageio import load_image
from curate.ingest import ingest
from helpers import write_image

BATCHES, PER_BATCH = 3, 10


def _start(ws, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    db = ["--db", ws.db_override] if ws.db_override else []
    return subprocess.Popen([sys.executable, "-m", "curate", "-w", str(ws.root), *db, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait(procs):
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append((p.returncode, stderr))
    return out


def test_concurrent_embeds_and_selects_keep_the_store_consistent(ws, tmp_path):
    index = ws.open_index()
    for b in range(BATCHES):
        for i in range(PER_BATCH):
            write_image(tmp_path / f"b{b}" / f"{i}.png", seed=1000 * b + i)
        ingest(index, [tmp_path / f"b{b}"], batch=f"b{b}")
    embed_args = ["embed", "--encoder", "pixels-pca", "--image-size", "16", "--batch-size", "4"]
    # one embed per batch, plus a second embed of batch b0 (same images, same set)
    procs = [_start(ws, *embed_args, "--batch", f"b{b}") for b in range(BATCHES)]
    procs.append(_start(ws, *embed_args, "--batch", "b0"))
    for code, err in _wait(procs):
        assert code == 0 and "Traceback" not in err, err[-3000:]

    ids, X = load_embeddings(index)  # every row readable (shape, count and checksum checked)
    assert len(ids) == len(set(ids.tolist())) == BATCHES * PER_BATCH
    with index.session() as s:
        es = s.scalar(select(EmbeddingSet))
        assert es.count == BATCHES * PER_BATCH
        assert s.scalar(select(func.count()).select_from(EmbeddingRow)) == BATCHES * PER_BATCH
        paths = dict(s.execute(select(Image.id, Image.path)).all())
    enc = PixelsPCA(image_size=16)  # the one PCA every process used (fitted once, under a lock)
    with np.load(ws.models_dir / "pixels-pca-16.npz") as z:
        enc.set_state(dict(z))
    batch = np.stack([enc.transform(load_image(paths[int(i)])).numpy() for i in ids])
    expect = enc.encode(torch.from_numpy(batch)).float().numpy()
    np.testing.assert_allclose(X, expect, atol=1e-4)  # each row is its own image's vector

    results = _wait([_start(ws, "select", "--budget", "5", "--json") for _ in range(3)])
    stored = 0
    for code, err in results:
        assert "Traceback" not in err, err[-3000:]
        if code == 0:
            stored += 1
        else:  # a lost race is refused in one line, nothing stored
            assert code == 2 and "rerun" in err and len(err.strip().splitlines()) == 1, err
    assert stored >= 1
    with index.session() as s:
        picked = s.scalars(select(SelectionItem.image_id)).all()
    assert len(picked) == 5 * stored and len(set(picked)) == len(picked)  # disjoint
    index.close()
