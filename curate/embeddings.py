"""The embedding store: ``.npy`` shards (memory-mappable) plus index rows mapping them.

An embedding set is the output of one model at one image size. Each ``embed`` run
appends shards; a shard file is written to a temporary name and renamed before its
rows are committed, so a crash never leaves rows pointing at a partial file (an
orphaned shard is overwritten by the next run).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from curate.db.lookup import named_or_latest
from curate.db.models import Batch, EmbeddingRow, EmbeddingSet, Image
from curate.errors import CurateError

DTYPES = {"float32": np.float32, "float16": np.float16}


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)


def get_set(session, name: str | None = None) -> EmbeddingSet:
    """The named embedding set, or the most recently created one."""
    return named_or_latest(session, EmbeddingSet, name, "embedding set",
                           "run `curate embed` first")


def append_shard(session, es: EmbeddingSet, image_ids: np.ndarray, X: np.ndarray) -> int:
    """Write one shard for ``image_ids`` (int64[n]) and ``X`` ((n, dim)); returns the shard number.

    The caller commits the session; rows become visible only then.
    """
    if X.shape != (len(image_ids), es.dim):
        raise ValueError(f"shard shape {X.shape} != ({len(image_ids)}, {es.dim})")
    folder = Path(es.path)
    folder.mkdir(parents=True, exist_ok=True)
    last = session.scalar(select(func.max(EmbeddingRow.shard)).where(EmbeddingRow.set_id == es.id))
    shard = 0 if last is None else last + 1
    final = folder / f"shard-{shard:05d}.npy"
    tmp = folder / f".shard-{shard:05d}.{os.getpid()}.tmp.npy"
    np.save(tmp, np.ascontiguousarray(X, dtype=DTYPES[es.dtype]))
    os.replace(tmp, final)
    session.add_all(EmbeddingRow(set_id=es.id, image_id=int(i), shard=shard, row=r)
                    for r, i in enumerate(image_ids))
    es.count = (es.count or 0) + len(image_ids)
    return shard


def embedded_ids(session, es: EmbeddingSet) -> set[int]:
    return set(session.scalars(select(EmbeddingRow.image_id).where(EmbeddingRow.set_id == es.id)))


def load_embeddings(index, set_name: str | None = None, batch: str | None = None,
                    image_ids=None, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Load an embedding set as ``(image_ids int64[N], X dtype[N, D])``, ordered by image id.

    Only images currently ``ok`` are returned; ``batch`` restricts to one ingest
    batch, ``image_ids`` to a subset. Shards are memory-mapped and gathered once.
    """
    with index.session() as s:
        es = get_set(s, set_name)
        q = (select(EmbeddingRow.image_id, EmbeddingRow.shard, EmbeddingRow.row)
             .join(Image, Image.id == EmbeddingRow.image_id)
             .where(EmbeddingRow.set_id == es.id, Image.status == "ok")
             .order_by(EmbeddingRow.image_id))
        if batch is not None:
            b = s.scalar(select(Batch).where(Batch.name == batch))
            if b is None:
                raise CurateError(f"no batch named {batch!r}")
            q = q.where(Image.batch_id == b.id)
        rows = np.array(s.execute(q).all(), dtype=np.int64).reshape(-1, 3)
        folder, dim = Path(es.path), es.dim
    if image_ids is not None:
        rows = rows[np.isin(rows[:, 0], np.asarray(image_ids, dtype=np.int64))]
    X = np.empty((len(rows), dim), dtype=dtype)
    for shard in np.unique(rows[:, 1]):
        sel = rows[:, 1] == shard
        path = folder / f"shard-{shard:05d}.npy"
        try:
            data = np.load(path, mmap_mode="r")
        except OSError:
            raise CurateError(f"embedding shard missing: {path}; rerun `curate embed`") from None
        X[sel] = data[rows[sel, 2]]
    return rows[:, 0].copy(), X
