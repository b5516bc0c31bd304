"""Batches, images and duplicate paths: lookups by batch name, per-image facts, and
ingest's writes (:meth:`ImageQueries.get_or_create_batch`, :meth:`~ImageQueries.record_images`).

Ingest's rule, held here: the same bytes under a second path are one image (the extra
path is a duplicate row), and a unique index on sha256 among ok images keeps concurrent
ingests from storing one image twice: a chunk that lost a race is retried
(:func:`.bulk.retrying`) against what the other process committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Sequence

import numpy as np
from sqlalchemy import null, select, update

from curate.db.models import Batch, DuplicatePath, Image
from curate.db.store.bulk import CHUNK, insert_rows, one_of, retrying, rows_in
from curate.db.store.labels import store_labels
from curate.errors import CurateError

__all__ = ["BATCH_NAME_LIMIT", "CHUNK", "ImageQueries", "RecordedImages"]

#: the longest batch name (255 on SQLite and PostgreSQL alike)
BATCH_NAME_LIMIT = Batch.__table__.c.name.type.length
IMAGE_KEYS = ("path", "batch_id", "sha256", "bytes", "width", "height", "mode", "status", "reason")
_first_two = itemgetter(0, 1)


@dataclass
class RecordedImages:
    """What :meth:`ImageQueries.record_images` wrote for one chunk (ingest's counts)."""

    added: int = 0
    duplicates: int = 0
    already: int = 0
    labels: int = 0
    recovered: int = 0   # rejected before, ok now
    rejected: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)


class ImageQueries:
    """Mixin of :class:`curate.db.index.Index`: batches and images."""

    def batch_ids(self, names: Sequence[str] | str | None) -> list[int] | None:
        """Ids of the batches named ``names`` (one name or several), in that order; None
        for None/empty (no restriction). An unknown name: ``no batch named 'x'``."""
        if not names:
            return None
        names = [names] if isinstance(names, str) else list(dict.fromkeys(names))
        with self.session() as s:
            found = dict(s.execute(select(Batch.name, Batch.id).where(Batch.name.in_(names))).all())
        missing = [b for b in names if b not in found]
        if missing:
            raise CurateError(f"no batch named {missing[0]!r}")
        return [found[b] for b in names]

    def batch_image_ids(self, names: Sequence[str] | str | None, status: str | None = None
                        ) -> np.ndarray | None:
        """Ids (int64, ascending) of the images ingested in batches ``names`` (None = no
        restriction, returns None), optionally only those with ``status``."""
        bids = self.batch_ids(names)
        if bids is None:
            return None
        q = select(Image.id).where(Image.batch_id.in_(bids)).order_by(Image.id)
        if status is not None:
            q = q.where(Image.status == status)
        with self.session() as s:
            return np.fromiter(s.scalars(q), np.int64)

    def image_paths(self, batch: str | None = None, status: str = "ok") -> list[tuple[int, str]]:
        """``(id, path)`` of images with ``status`` (optionally of one batch), by id."""
        q = select(Image.id, Image.path).where(Image.status == status).order_by(Image.id)
        bids = self.batch_ids(batch)
        if bids is not None:
            q = q.where(Image.batch_id == bids[0])
        with self.session() as s:
            return [(int(i), p) for i, p in s.execute(q)]

    def image_batches(self, ids: Sequence[int] | None = None) -> dict[int, str | None]:
        """image id -> name of the batch it was ingested in (None for no batch); ``ids``
        limits the query (chunks of 900 ids), else every image."""
        q = select(Image.id, Batch.name).outerjoin(Batch, Batch.id == Image.batch_id)
        with self.session() as s:
            return dict(rows_in(s, q, Image.id, ids))

    def mark_rejected(self, ids: Sequence[int], reason: str) -> None:
        """Set images ``ids`` to status ``rejected`` with ``reason`` (e.g. a file gone)."""
        ids = [int(i) for i in ids]
        with self.session() as s:
            for k in range(0, len(ids), CHUNK):
                s.execute(update(Image).where(Image.id.in_(ids[k:k + CHUNK]))
                          .values(status="rejected", reason=reason))

    def known_image_ids(self, ids: Sequence[int]) -> set[int]:
        """Those of ``ids`` that are images in the index (any status); 900 ids a query."""
        with self.session() as s:
            return {i for i, in rows_in(s, select(Image.id), Image.id, ids)}

    def image_shapes(self, ids) -> list[tuple[str | None, int | None, int | None]]:
        """``(mode, width, height)`` of the images ``ids`` (a few thousand at most)."""
        with self.session() as s:
            return [tuple(r) for r in rows_in(s, select(Image.mode, Image.width, Image.height),
                                              Image.id, ids)]

    def image_path_map(self, ids: Sequence[int]) -> dict[int, str]:
        """image id -> path for ``ids`` (one query per 900 ids)."""
        with self.session() as s:
            return dict(rows_in(s, select(Image.id, Image.path), Image.id, ids))

    # -- ingest's writes ---------------------------------------------------------------

    def get_or_create_batch(self, name: str) -> int:
        """Id of the batch ``name``, created if new (retried after a lost race)."""
        def work(s):
            b = s.scalar(select(Batch).where(Batch.name == name))
            if b is None:
                b = Batch(name=name)
                s.add(b)
                s.flush()
            return b.id
        return retrying(self, work)

    def any_images(self) -> bool:
        """Whether the index holds any image row (any status). One query."""
        with self.session() as s:
            return s.scalar(select(Image.id).limit(1)) is not None

    def settled_paths(self, paths: Sequence[str]) -> set[str]:
        """Those of ``paths`` recorded as an image that is not rejected, or as a duplicate
        path. One query (the paths bound as one JSON array)."""
        with self.session() as s:
            return {p for p, _, _ in s.execute(_known(list(paths), self.dialect, rejected=False))}

    def record_images(self, chunk: Sequence[tuple[str, str | None, str | None]], infos: dict,
                      batch_id: int) -> RecordedImages:
        """Record one ingest chunk in one transaction (all or nothing; retried from scratch
        after a lost race). ``chunk``: ``(path, label or None, label source)``; ``infos``:
        path -> what :func:`curate.imageio.inspect_images` found (``sha256``, ``bytes``,
        ``width``, ``height``, ``mode``, ``status``, ``reason``) for the paths that were
        read (settled paths have none: only their label is looked at). Cost: 3-4 indexed
        queries and one multi-row INSERT per table written."""
        return retrying(self, lambda s: _record(s, chunk, infos, batch_id, RecordedImages()))


def _known(paths: list[str], dialect: str, rejected: bool = True):
    """``(path, image id, status)`` of the images with these paths (``rejected=False``:
    leave rejected ones out) and ``(path, image id, None)`` of recorded duplicate paths."""
    images = select(Image.path, Image.id, Image.status).where(one_of(Image.path, paths, dialect))
    if not rejected:
        images = images.where(Image.status != "rejected")
    return images.union_all(select(DuplicatePath.path, DuplicatePath.image_id, null())
                            .where(one_of(DuplicatePath.path, paths, dialect)))


def _owners(s, shas, dialect: str) -> list[tuple[str, int, str]]:
    """``(sha256, id, path)`` of the ok images with these hashes. The status is checked
    here, not in SQL: given ``status = 'ok'`` and the hashes in a subquery, SQLite's
    planner walks the status index (every ok image, once per chunk: quadratic ingest)
    instead of the sha256 index."""
    rows = s.execute(select(Image.sha256, Image.id, Image.path, Image.status).where(
        one_of(Image.sha256, shas, dialect)))
    return [(sha, i, p) for sha, i, p, st in rows if st == "ok"]


def _record(s, chunk, infos, batch_id, d: RecordedImages) -> RecordedImages:
    """Record one chunk in session ``s`` (see :meth:`ImageQueries.record_images`).

    New images go in with one INSERT in sha256 order (concurrent writers take the unique
    index's locks in one order); their ids are read back only where a label or a second
    path of the same bytes needs them. Rows rejected before are updated in place.
    """
    dialect = s.get_bind().dialect.name
    # settled before reading (no info) stays so: looked up again only for its label
    paths = [p for p, lab, _ in chunk if p in infos or lab is not None]
    wanted = set(paths)
    rows: dict[str, tuple[int, str]] = {}
    dups: set[str] = set()
    for p, i, st in s.execute(_known(paths, dialect)) if paths else ():
        if st is None:
            dups.add(p)
        else:
            rows[p] = (i, st)
    shas = {i.sha256 for i in infos.values() if i.status == "ok"}
    owners = _owners(s, shas, dialect) if shas else []
    by_sha: dict[str, int | None] = {sha: i for sha, i, _ in owners}   # None: new, id unknown yet
    # read after ``rows``: a path another process stored in between is its own sha's owner
    rows.update({p: (i, "ok") for _, i, p in owners if p in wanted})
    keyed = []   # by sha256 (stable): concurrent writers take the index locks in one order
    for k, item in enumerate(chunk):
        info = infos.get(item[0])
        keyed.append(((info.sha256 or "") if info is not None else "", k, item))
    keyed.sort(key=_first_two)
    new: list[tuple] = []   # rows of IMAGE_KEYS
    later: list[tuple[str, str, int | None]] = []     # (path, sha256, rejected row id): copies
    labels: list[tuple[str, int | None, str, str]] = []   # (path, image id or None, label, source)
    for _, _, (p, lab, src) in keyed:
        row, info = rows.get(p), infos.get(p)
        if p in dups or (row and row[1] != "rejected") or info is None:
            d.already += 1   # labels given for images seen before still count
            if row and row[1] == "ok" and lab is not None:
                labels.append((p, row[0], lab, src))
            continue
        if info.status == "ok" and info.sha256 in by_sha:
            later.append((p, info.sha256, row[0] if row else None))
            d.duplicates += 1
            continue
        values = (info.sha256, info.bytes, info.width, info.height, info.mode, info.status,
                  info.reason)
        if row is None:
            new.append((p, batch_id, *values))
        else:   # a rejected record: keep the row, with what the file is now
            s.execute(update(Image).where(Image.id == row[0])
                      .values(dict(zip(IMAGE_KEYS[2:], values))))
        if info.status != "ok":
            d.rejected.append((p, info.reason))
            continue
        by_sha[info.sha256] = row[0] if row else None
        d.added += 1
        d.recovered += row is not None
        if lab is not None:
            labels.append((p, row[0] if row else None, lab, src))
    if new:
        insert_rows(s, Image.__table__, IMAGE_KEYS, new, dialect)
    if any(by_sha[sha] is None for _, sha, _ in later):
        by_sha.update((sha, i) for sha, i, _ in _owners(s, {sha for _, sha, _ in later}, dialect))
    dup_rows = []
    for p, sha, rid in later:
        if rid is None:
            dup_rows.append((p, by_sha[sha], batch_id))
        else:   # a rejected record, readable now: keep the row (nothing recorded is lost)
            s.execute(update(Image).where(Image.id == rid).values(
                status="duplicate", sha256=sha, reason=f"same bytes as image {by_sha[sha]}"))
    if dup_rows:
        insert_rows(s, DuplicatePath.__table__, ("path", "image_id", "batch_id"), dup_rows,
                    dialect)
    if labels:
        d.labels += store_labels(s, labels, dialect)
    return d
