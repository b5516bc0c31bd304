"""``curate ingest``: walk folders or read manifests, validate, hash and index images.

Every file is read once (:func:`curate.imageio.inspect_image`: only regular files,
bounded size, supported formats only): hashed (sha256) and fully decoded. Bad files
are recorded as rejected with a reason and looked at again on every rerun; the same
bytes under a second path are one image (the extra path is recorded as a duplicate).
The database holds that rule (a unique index on sha256 among ok images), so
concurrent ingests cannot store one image twice: a chunk that lost a race is
retried against what the other process committed. Work is committed in chunks, so
a rerun after a crash skips what is recorded and finishes the rest.

What is read is limited to the given roots (:mod:`curate.ingest_inputs`): a symlink
leaving the folder it was found in, or a manifest path outside the manifest's folder,
is skipped (and reported) unless ``allow_outside``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Callable

from sqlalchemy import any_, bindparam, cast, column, func, insert, null, select, update
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from curate.db.models import Batch, DuplicatePath, Image, Label
from curate.errors import CurateError
from curate.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, inspect_images
from curate.ingest_inputs import collect

__all__ = ["IngestReport", "check_batch_name", "collect", "ingest"]

DEFAULT_BATCH = "default"
NAME_LIMIT = Batch.__table__.c.name.type.length      # 255 on SQLite and PostgreSQL alike
RETRIES = 10
AHEAD = 2   # chunks being read and decoded while the oldest one is recorded
FIRST_CHUNK, MAX_CHUNK = 1024, 16384   # chunk sizes double from the first to the largest
SLICE = 256  # files per task handed to a decoding thread
IMAGE_KEYS = ("path", "batch_id", "sha256", "bytes", "width", "height", "mode", "status", "reason")
_first_two = itemgetter(0, 1)
_TRANSIENT = ("deadlock detected", "database is locked", "database table is locked",
              "could not serialize")


@dataclass
class IngestReport:
    batch: str
    files: int = 0
    added: int = 0
    duplicates: int = 0
    already: int = 0
    labels: int = 0
    recovered: int = 0   # rejected before, ok now (re-checked on every run)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)     # never read
    conflicts: list[tuple[str, list[str]]] = field(default_factory=list)  # no label stored
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"batch": self.batch, "files": self.files, "added": self.added,
                "duplicates": self.duplicates, "already_indexed": self.already,
                "labels": self.labels, "recovered": self.recovered,
                "rejected": len(self.rejected),
                "rejected_files": [{"path": p, "reason": r} for p, r in self.rejected],
                "skipped": len(self.skipped),
                "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped],
                "label_conflicts": [{"path": p, "labels": labs} for p, labs in self.conflicts],
                "seconds": round(self.seconds, 3)}


def check_batch_name(name: str | None) -> str:
    """The batch name to use: ``default`` for None; empty, over-long or control-character
    names are refused (the same on SQLite and PostgreSQL)."""
    if name is None:
        return DEFAULT_BATCH
    if not name.strip():
        raise CurateError("--batch must not be empty (leave it out for 'default')")
    if len(name) > NAME_LIMIT:
        raise CurateError(f"batch name is {len(name)} characters; the limit is {NAME_LIMIT}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise CurateError("batch name must not contain control characters")
    return name


def _write_error(index, e: Exception) -> CurateError:
    first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
    return CurateError(f"cannot write to the index database {index.url}: {first}; "
                       "free disk space (or fix the cause) and rerun: what was committed is kept")


def _retrying(index, work: Callable):
    """Run ``work(session)`` in a transaction; a transaction that lost a race with a
    concurrent writer (unique violation, deadlock, lock timeout) is rolled back and run
    again on what the other process committed. Other database failures (disk full, ...)
    become one-line errors."""
    for attempt in range(RETRIES):
        try:
            with index.session() as s:
                return work(s)
        except IntegrityError:
            pass
        except OperationalError as e:
            if not any(t in str(e.orig or e).lower() for t in _TRANSIENT):
                raise _write_error(index, e) from None
        except DataError as e:
            raise _write_error(index, e) from None
        time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise CurateError(f"lost {RETRIES} races in a row with other writers to {index.url}; "
                      "rerun to finish (what was committed is kept)")


def ingest(index, paths: list[str | Path], batch: str | None = None, labels: str | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 4, chunk_size: int | None = None,
           progress: Callable[[int, int], None] | None = None, *,
           max_bytes: int = DEFAULT_MAX_BYTES, allow_outside: bool = False) -> IngestReport:
    """Ingest ``paths`` (folders, files, manifests) into ``index`` as batch ``batch``.

    Files are read and decoded by ``workers`` threads while the calling thread records
    finished chunks (one transaction each; ``chunk_size`` files, or by default growing
    from ``FIRST_CHUNK`` to ``MAX_CHUNK``), ``AHEAD`` chunks in flight. Cost: one read +
    decode + sha256 per new file; per chunk 3-4 indexed queries and one multi-row INSERT.
    """
    t0 = time.perf_counter()
    for name, v in (("--max-pixels", max_pixels), ("--max-bytes", max_bytes)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise CurateError(f"{name} must be a positive whole number, not {v!r}")
    report = IngestReport(batch=check_batch_name(batch))
    items = collect(paths, labels, allow_outside, report.skipped, report.conflicts)
    report.files = len(items)
    batch_id = _retrying(index, lambda s: _batch_id(s, report.batch))
    with index.session() as s:   # an empty index: no file can be settled, nothing to look up
        empty = s.scalar(select(Image.id).limit(1)) is None
    workers = max(1, workers)
    pool = ThreadPoolExecutor(max_workers=workers)
    done = 0
    try:
        # Pillow's warnings about odd files, silenced once for every thread (entering
        # catch_warnings per file from several threads would race on the global filters)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"PIL\.|curate\.imageio")
            flight: deque = deque()
            for chunk in _chunks(items, chunk_size):
                flight.append(_start_chunk(index, chunk, (max_pixels, max_bytes), pool, workers,
                                           look=not empty))
                if len(flight) > AHEAD:
                    done += _finish_chunk(index, flight.popleft(), batch_id, report)
                    if progress:
                        progress(done, len(items))
            while flight:
                done += _finish_chunk(index, flight.popleft(), batch_id, report)
                if progress:
                    progress(done, len(items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.seconds = time.perf_counter() - t0
    return report


def _chunks(items: list, chunk_size: int | None):
    """``items`` in chunks of ``chunk_size``, or by default of ``FIRST_CHUNK`` doubling up
    to ``MAX_CHUNK``: the first commit (and progress) comes soon, and later commits are
    few. Each commit rewrites every index page its rows touched, and random sha256 keys
    touch most leaves of the sha256 indexes once they outgrow a chunk, so fixed small
    chunks make ingest's write work grow with N squared. The last chunk, recorded after
    the decoding threads ran dry, is kept to ``FIRST_CHUNK``."""
    if chunk_size:
        sizes = [chunk_size] * -(-len(items) // chunk_size)
    else:
        sizes, size, left = [], FIRST_CHUNK, len(items)
        while left > 0:
            sizes.append(min(size, left))
            left -= sizes[-1]
            size = min(2 * size, MAX_CHUNK)
        if len(sizes) > 1 and sizes[-1] > FIRST_CHUNK:
            sizes[-1:] = [sizes[-1] - FIRST_CHUNK, FIRST_CHUNK]
    i = 0
    for size in sizes:
        yield items[i:i + size]
        i += size


def _batch_id(s, name: str) -> int:
    b = s.scalar(select(Batch).where(Batch.name == name))
    if b is None:
        b = Batch(name=name)
        s.add(b)
        s.flush()
    return b.id


def _one_of(col, values, dialect: str):
    """``col IN values`` with the values bound as one JSON array, unpacked by the database
    (``json_each`` on SQLite, where JSON1 is built in from 3.38; ``json_array_elements_text``
    on PostgreSQL). A chunk's thousands of values then cost one C-level ``json.dumps``:
    no per-value SQL rendering (SQLAlchemy's expanding IN) or array dumping (psycopg's is
    Python). Both keep using the column's index; an expanding IN is the fallback."""
    values = list(values)
    if dialect == "postgresql":   # = ANY(array): an index scan even before ANALYZE has run
        rows = func.json_array_elements_text(bindparam(None, values, type_=JSON)
                                             ).table_valued("value")
        wanted = select(func.array_agg(cast(rows.c.value, col.type))).scalar_subquery()
        return col == any_(cast(wanted, ARRAY(col.type)))
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 38):
        return col.in_(select(func.json_each(json.dumps(values, ensure_ascii=False))
                              .table_valued("value").c.value))
    return col.in_(values)


def _known(paths: list[str], dialect: str, rejected: bool = True):
    """``(path, image id, status)`` of the images with these paths (``rejected=False``:
    leave rejected ones out) and ``(path, image id, None)`` of recorded duplicate paths."""
    images = select(Image.path, Image.id, Image.status).where(_one_of(Image.path, paths, dialect))
    if not rejected:
        images = images.where(Image.status != "rejected")
    return images.union_all(select(DuplicatePath.path, DuplicatePath.image_id, null())
                            .where(_one_of(DuplicatePath.path, paths, dialect)))


def _owners(s, shas, dialect: str) -> list[tuple[str, int, str]]:
    """``(sha256, id, path)`` of the ok images with these hashes. The status is checked
    here, not in SQL: given ``status = 'ok'`` and the hashes in a subquery, SQLite's
    planner walks the status index (every ok image, once per chunk: quadratic ingest)
    instead of the sha256 index."""
    rows = s.execute(select(Image.sha256, Image.id, Image.path, Image.status).where(
        _one_of(Image.sha256, shas, dialect)))
    return [(sha, i, p) for sha, i, p, st in rows if st == "ok"]


def _start_chunk(index, chunk, limits, pool, workers, look: bool = True):
    """Leave out what is settled (rejected files are re-checked) and hand the rest to the
    pool in slices of at most ``SLICE`` files (an interrupted ingest waits for at most
    one slice per thread)."""
    paths = [p for p, _, _ in chunk]
    settled = set()
    if look:   # (only saves work: what was recorded meanwhile is found again in _record)
        with index.session() as s:
            settled = {p for p, _, _ in s.execute(_known(paths, index.dialect, rejected=False))}
    todo = [p for p in paths if p not in settled]
    step = max(1, min(SLICE, -(-len(todo) // workers)))
    slices = [todo[i:i + step] for i in range(0, len(todo), step)]
    return chunk, slices, [pool.submit(inspect_images, sl, *limits) for sl in slices]


def _finish_chunk(index, started, batch_id, report: IngestReport) -> int:
    chunk, slices, futures = started
    infos = {p: info for sl, fut in zip(slices, futures) for p, info in zip(sl, fut.result())}
    if not infos and all(lab is None for _, lab, _ in chunk):
        report.already += len(chunk)   # all settled, no labels to add: nothing to write
        return len(chunk)
    delta = _retrying(index, lambda s: _record(s, chunk, infos, batch_id,
                                               IngestReport(report.batch)))
    for k in ("added", "duplicates", "already", "labels", "recovered"):
        setattr(report, k, getattr(report, k) + getattr(delta, k))
    report.rejected += delta.rejected
    return len(chunk)


def _record(s, chunk, infos, batch_id, d: IngestReport) -> IngestReport:
    """Record one chunk in session ``s`` (all or nothing; rerun from scratch on a lost race).

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
        _insert_rows(s, Image.__table__, IMAGE_KEYS, new, dialect)
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
        _insert_rows(s, DuplicatePath.__table__, ("path", "image_id", "batch_id"), dup_rows,
                     dialect)
    if labels:
        d.labels += _store_labels(s, labels, dialect)
    return d


def _store_labels(s, labels: list[tuple[str, int | None, str, str]], dialect: str) -> int:
    """Insert or change one label per (image, source); returns how many were written."""
    need = [p for p, i, _, _ in labels if i is None]
    ids = dict(s.execute(select(Image.path, Image.id).where(
        _one_of(Image.path, need, dialect))).all()) if need else {}
    wanted = {(i if i is not None else ids[p], src): lab for p, i, lab, src in labels}
    have = {(i, src): (lid, lab) for lid, i, src, lab in s.execute(
        select(Label.id, Label.image_id, Label.source, Label.label).where(
            _one_of(Label.image_id, {i for i, _ in wanted}, dialect)))}
    add = [(i, lab, src) for (i, src), lab in wanted.items() if (i, src) not in have]
    change = [{"lid": have[k][0], "new": lab} for k, lab in wanted.items()
              if k in have and have[k][1] != lab]
    if add:
        _insert_rows(s, Label.__table__, ("image_id", "label", "source"), add, dialect)
    if change:
        s.execute(update(Label.__table__).where(Label.__table__.c.id == bindparam("lid"))
                  .values(label=bindparam("new")), change)
    return len(add) + len(change)


def _insert_rows(s, table, keys: tuple[str, ...], rows: list[tuple], dialect: str) -> None:
    """INSERT ``rows`` (tuples of the columns ``keys``) into ``table`` in their order, as one
    statement without ORM objects: the rows go as one JSON document that the database
    unpacks (SQLite ``json_each``, PostgreSQL ``json_to_recordset``). An executemany
    instead runs a statement (PostgreSQL) or a step (SQLite, each releasing the GIL to
    decoding threads) per row; it stays the fallback. Python-side column defaults
    (timestamps, label status) are evaluated once per statement by SQLAlchemy."""
    keys = list(keys)
    if dialect == "postgresql":
        doc = bindparam(None, [dict(zip(keys, r)) for r in rows], type_=JSON)
        src = func.json_to_recordset(doc).table_valued(
            *[column(k, table.c[k].type) for k in keys]).render_derived(with_types=True)
        cols = [src.c[k] for k in keys]
    elif dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 38):
        src = func.json_each(json.dumps(rows, ensure_ascii=False)).table_valued("value")
        cols = [func.json_extract(src.c.value, f"$[{i}]") for i in range(len(keys))]
    else:
        s.execute(insert(table), [dict(zip(keys, r)) for r in rows])
        return
    s.execute(insert(table).from_select(keys, select(*cols)))   # + the columns' defaults
