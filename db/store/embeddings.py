"""Models (encoders), embedding sets and their rows.

Reads: :meth:`~EmbeddingQueries.model`, :meth:`~EmbeddingQueries.embedding_set` (its
``model`` loaded, readable detached), :meth:`~EmbeddingQueries.model_embedding_set`,
:meth:`~EmbeddingQueries.embedding_set_names`, :meth:`~EmbeddingQueries.embedding_rows`
(the ``(image_id, shard, row)`` map, int64[N, 3] off the DBAPI cursor: ~1 s at 1M rows),
:meth:`~EmbeddingQueries.embedded_ids`. Writes: :meth:`~EmbeddingQueries.ensure_model`
and :meth:`~EmbeddingQueries.ensure_embedding_set` (created once under the
``embed-setup`` lock), :meth:`~EmbeddingQueries.add_embedding_rows` and
:meth:`~EmbeddingQueries.drop_damaged_shards` (under the set's ``embed:<id>`` lock; the
shard files themselves are :mod:`curate.embeddings`' business, called back in the
transaction so a file and its rows appear and disappear together).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np
from sqlalchemy import delete, func, select, update

from curate.db.models import EmbeddingRow, EmbeddingSet, Model
from curate.db.store.bulk import insert_rows, rows_in
from curate.db.store.lookup import named_or_latest
from curate.errors import CurateError
from curate.locks import db_lock

_ROW_KEYS = ("set_id", "image_id", "shard", "row")


class EmbeddingQueries:
    """Mixin of :class:`curate.db.index.Index`: models, embedding sets and their rows."""

    # ------------------------------------------------------------------- models
    def model(self, name: str) -> Model:
        """The model (encoder row) named ``name``; unknown: ``no model named 'x' ...``."""
        with self.session() as s:
            row = s.scalar(select(Model).where(Model.name == name))
        if row is None:
            raise CurateError(f"no model named {name!r} in the index (see `curate train`)")
        return row

    def ensure_model(self, name: str, **fields: Any) -> Model:
        """The model named ``name``, created with ``fields`` (encoder, weights_path,
        weights_sha256, params) if missing; two embeds at once create it once."""
        with self.session() as s:
            db_lock(s, "embed-setup")
            row = s.scalar(select(Model).where(Model.name == name))
            if row is None:
                row = Model(name=name, **fields)
                s.add(row)
                s.flush()
            return row

    # ----------------------------------------------------------- embedding sets
    def embedding_set(self, name: str | None = None) -> EmbeddingSet:
        """The embedding set named ``name``, or the newest one for None; its ``model`` is
        loaded (``es.model.encoder`` reads detached)."""
        with self.session() as s:
            es = named_or_latest(s, EmbeddingSet, name, "embedding set", "run `curate embed` first")
            es.model  # noqa: B018 - load the relationship while the session is open
            return es

    def model_embedding_set(self, model: str) -> EmbeddingSet | None:
        """The newest embedding set made by the model named ``model`` (None if it has none)."""
        m = self.model(model)
        with self.session() as s:
            return s.scalar(select(EmbeddingSet).where(EmbeddingSet.model_id == m.id)
                            .order_by(EmbeddingSet.id.desc()).limit(1))

    def embedding_set_names(self, encoder: str | None = None) -> list[str]:
        """Names of every embedding set (of models with ``encoder``), oldest first."""
        q = select(EmbeddingSet.name).order_by(EmbeddingSet.id)
        if encoder is not None:
            q = q.join(Model, Model.id == EmbeddingSet.model_id).where(Model.encoder == encoder)
        with self.session() as s:
            return list(s.scalars(q))

    def ensure_embedding_set(self, name: str, **fields: Any) -> EmbeddingSet:
        """The embedding set named ``name``, created with ``fields`` (model_id, dim, dtype,
        path, params, versions) and count 0 if missing; two embeds at once create it once.
        An existing set is returned as it is (the caller checks its dtype)."""
        with self.session() as s:
            db_lock(s, "embed-setup")
            es = s.scalar(select(EmbeddingSet).where(EmbeddingSet.name == name))
            if es is None:
                es = EmbeddingSet(name=name, count=0, **fields)
                s.add(es)
                s.flush()
            return es

    # ----------------------------------------------------------- embedding rows
    def embedding_rows(self, set_id: int, batch: str | None = None) -> np.ndarray:
        """``(image_id, shard, row)`` of the set's ok images (of ``batch``), int64[N, 3]
        ordered by image id.

        Plain SQL on the DBAPI cursor: rows are read flat by ``np.fromiter`` (no
        SQLAlchemy Row objects; np.array on a list of rows takes numpy's generic-sequence
        path) and ordered in numpy. Without ``batch``: no join, the set's rows (a range of
        the ``set_id`` index) minus the ids of images not ``ok`` (usually few; a second
        query, ``np.isin``). With ``batch``: one join restricted to that batch's ok images
        (the ``(status, batch_id)`` index). Cost at 1M rows: ~0.6-1 s on SQLite, ~1.1 s on
        PostgreSQL (the ordered join through SQLAlchemy rows: ~2.3 s and ~4.2 s)."""
        bids = self.batch_ids(batch)
        with self.session() as s:
            if bids is None:
                rows = _int_matrix(s, "SELECT image_id, shard, row FROM embedding_rows "
                                      f"WHERE set_id = {int(set_id)}", 3)
                drop = _int_matrix(s, "SELECT id FROM images WHERE status <> 'ok'", 1)
                if len(drop):
                    rows = rows[~np.isin(rows[:, 0], drop[:, 0])]
            else:
                rows = _int_matrix(s, "SELECT r.image_id, r.shard, r.row FROM embedding_rows r "
                                      "JOIN images i ON i.id = r.image_id "
                                      f"WHERE r.set_id = {int(set_id)} AND i.status = 'ok' "
                                      f"AND i.batch_id = {int(bids[0])}", 3)
        if len(rows) > 1 and (rows[1:, 0] < rows[:-1, 0]).any():
            rows = rows[np.argsort(rows[:, 0], kind="stable")]
        return rows

    def embedded_ids(self, set_id: int) -> np.ndarray:
        """Ids (int64) of the images that have a row in the set (any status)."""
        with self.session() as s:
            return np.fromiter(s.scalars(select(EmbeddingRow.image_id)
                                         .where(EmbeddingRow.set_id == set_id)), np.int64)

    def add_embedding_rows(self, set_id: int, image_ids: Sequence[int],
                           write_shard: Callable[[int, np.ndarray], None]) -> int:
        """Append one shard of rows to the set, under its lock: images that already have
        a row (another process embedded them meanwhile) are left out, then
        ``write_shard(shard, keep)`` puts the shard file in place (``keep``: bool mask of
        ``image_ids`` that get rows; shard: the next free number), then the rows and the
        set's count are written in the same transaction. Returns how many rows were added.
        Cost: one range read of existing rows plus one bulk INSERT."""
        image_ids = np.asarray(image_ids, dtype=np.int64)
        with self.session() as s:
            db_lock(s, f"embed:{set_id}")
            keep = np.ones(len(image_ids), bool)
            if len(image_ids):
                have = np.fromiter(s.scalars(select(EmbeddingRow.image_id).where(
                    EmbeddingRow.set_id == set_id,
                    EmbeddingRow.image_id >= int(image_ids.min()),
                    EmbeddingRow.image_id <= int(image_ids.max()))), np.int64)
                keep = ~np.isin(image_ids, have)
            n = int(keep.sum())
            if not n:
                return 0
            last = s.scalar(select(func.max(EmbeddingRow.shard))
                            .where(EmbeddingRow.set_id == set_id))
            shard = 0 if last is None else last + 1
            write_shard(shard, keep)
            insert_rows(s, EmbeddingRow.__table__, _ROW_KEYS,
                        [(set_id, int(i), shard, r) for r, i in enumerate(image_ids[keep].tolist())],
                        s.get_bind().dialect.name)
            s.execute(update(EmbeddingSet).where(EmbeddingSet.id == set_id)
                      .values(count=EmbeddingSet.count + n))
        return n

    def drop_damaged_shards(self, set_id: int,
                            check: Callable[[int, int], str | None]) -> list[str]:
        """Under the set's lock, call ``check(shard, n_rows)`` for every shard the rows
        point at (``n_rows``: max row + 1); where it returns a problem (it moves the file
        aside), delete that shard's rows and lower the count. Returns the problems."""
        found = []
        with self.session() as s:
            db_lock(s, f"embed:{set_id}")
            for shard, max_row in s.execute(
                    select(EmbeddingRow.shard, func.max(EmbeddingRow.row))
                    .where(EmbeddingRow.set_id == set_id).group_by(EmbeddingRow.shard)).all():
                problem = check(int(shard), int(max_row) + 1)
                if problem is None:
                    continue
                found.append(problem)
                n = s.execute(delete(EmbeddingRow).where(EmbeddingRow.set_id == set_id,
                                                         EmbeddingRow.shard == shard)).rowcount
                s.execute(update(EmbeddingSet).where(EmbeddingSet.id == set_id)
                          .values(count=EmbeddingSet.count - n))
        return found

    def embedding_set_by_id(self, set_id: int | None) -> EmbeddingSet | None:
        """The embedding set with id ``set_id`` (None for None or a set that is gone)."""
        if set_id is None:
            return None
        with self.session() as s:
            return s.get(EmbeddingSet, set_id)

    def embedding_rows_of(self, set_id: int, image_ids: Sequence[int]) -> np.ndarray:
        """``int64[n, 3]`` of ``(image_id, shard, row)`` of set ``set_id`` for those of
        ``image_ids`` it holds (any status), by image id; one query per 900 ids."""
        q = select(EmbeddingRow.image_id, EmbeddingRow.shard, EmbeddingRow.row).where(
            EmbeddingRow.set_id == set_id)
        with self.session() as s:
            rows = [tuple(r) for r in rows_in(s, q, EmbeddingRow.image_id, image_ids)]
        out = np.array(rows, dtype=np.int64).reshape(-1, 3)
        return out[np.argsort(out[:, 0], kind="stable")]


def _int_matrix(s, sql: str, ncols: int) -> np.ndarray:
    """int64[n, ncols] of an all-integer ``sql`` (no bound parameters: callers format
    ints only) run on the session's DBAPI cursor: tuples fetched 64k at a time stream
    into ``np.fromiter`` without SQLAlchemy Row objects (``fetchmany``: psycopg's
    per-row ``__next__`` is Python, ~0.4 s slower at 1M rows). NULLs are not expected
    (TypeError)."""
    cur = s.connection().connection.cursor()
    chain = itertools.chain.from_iterable
    try:
        cur.execute(sql)
        flat = np.fromiter(chain(chain(iter(lambda: cur.fetchmany(1 << 16), []))),
                           dtype=np.int64)
    finally:
        cur.close()
    return flat.reshape(-1, ncols)
